"""The uvicorn and websockets releases whose internals realtime/wire.py and realtime/protocol.py read."""

from __future__ import annotations

from importlib import metadata

# Version prefixes; requirements.in pins the same.
# Upgrading either: run tests/realtime/test_wire.py and test_protocol.py against the new release, then widen this.
VERIFIED_RELEASES = {"uvicorn": ("0.54.",), "websockets": ("17.",)}


def _verified(package: str) -> str | None:
    try:
        version = metadata.version(package)
    except metadata.PackageNotFoundError:
        return f"{package} is not installed"
    if not version.startswith(VERIFIED_RELEASES[package]):
        return f"{package} {version} is not a release the writer was verified with ({VERIFIED_RELEASES[package]})"
    return None


def releases_problem() -> str | None:
    """Why the installed uvicorn/websockets are not the releases checked here, or None when they are."""
    for package in VERIFIED_RELEASES:
        if problem := _verified(package):
            return problem
    return None
