"""The ASGI application's start-up: its long-lived heap is frozen out of later garbage collections."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_start_up_heap_is_frozen_out_of_later_collections() -> None:
    # A fresh interpreter: the test process has imported scoreboard.asgi (and frozen) long before.
    probe = "import gc; import scoreboard.asgi; print(gc.get_freeze_count())"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "scoreboard.settings"}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    frozen = int(out.stdout.strip().splitlines()[-1])
    assert frozen > 50_000, out.stdout  # Django and the apps: well over 100,000 objects
