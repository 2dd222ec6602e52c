"""One version, written in pyproject.toml, reported by /healthz, the OpenAPI document and the kits."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]


def _pyproject_version(path: Path) -> str:
    with path.open("rb") as fh:
        return str(tomllib.load(fh)["project"]["version"])


VERSION = _pyproject_version(ROOT / "pyproject.toml")


def test_the_version_is_a_release_or_development_number() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+)?", VERSION)


@pytest.mark.embedded
def test_healthz_reports_the_version() -> None:
    assert Client().get("/healthz").json()["data"]["version"] == VERSION


@pytest.mark.embedded
def test_the_openapi_document_carries_the_version(db: None) -> None:
    response = Client().get("/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert json.loads(response.content)["info"]["version"] == VERSION


def test_the_changelog_has_a_section_for_the_version() -> None:
    """A development version collects its changes under [Unreleased]; a release has its own section."""
    changelog = (ROOT / "CHANGELOG.md").read_text()
    heading = "Unreleased" if ".dev" in VERSION else re.escape(VERSION)
    assert re.search(rf"^## \[{heading}\]", changelog, re.M), f"CHANGELOG.md has no [{heading}] section"


def test_the_python_kit_has_the_service_version() -> None:
    assert _pyproject_version(ROOT / "clients" / "python" / "pyproject.toml") == VERSION


def _semver(version: str) -> str:
    """npm's spelling of a PEP 440 version: 0.3.0.dev0 -> 0.3.0-dev.0."""
    return re.sub(r"\.dev(\d+)$", r"-dev.\1", version)


def test_the_js_kit_has_the_service_version() -> None:
    package = json.loads((ROOT / "clients" / "js" / "package.json").read_text())
    assert package["version"] == _semver(VERSION)
    module = (ROOT / "clients" / "js" / "src" / "scoreboard.js").read_text()
    assert f'export const VERSION = "{_semver(VERSION)}";' in module
