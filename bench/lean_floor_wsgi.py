"""The lean floor (bench/lean_floor.py) as a WSGI application, for gunicorn: ``make bench`` serves it
in place of the app behind the same nginx site and runs the same update ladder against it."""

from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scoreboard.settings")
django.setup()

from bench.lean_floor import FloorHandler  # noqa: E402 (after django.setup())

application = FloorHandler()
