"""The service's version: ``pyproject.toml`` is the one place it is written.

``/healthz``, the OpenAPI document and the client kits (``clients/python``, ``clients/js``) all
report this value; a test keeps the kits' own manifests equal to it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _read_version() -> str:
    with PYPROJECT.open("rb") as fh:
        return str(tomllib.load(fh)["project"]["version"])


__version__ = _read_version()
