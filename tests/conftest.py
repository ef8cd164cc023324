"""Shared fixtures. Test data is read from ../shared/testdata (never copied into the repo)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "testdata"


@pytest.fixture(scope="session")
def testdata() -> Path:
    """Path to ../shared/testdata; a missing folder is an error, not a skip."""
    if not SHARED.is_dir():
        pytest.fail(f"shared test data not found at {SHARED}; clone the project next to shared/")
    return SHARED


def gltf_manifest() -> list[dict]:
    """Entries of ../shared/testdata/gltf/manifest.json (for parametrisation at collection time)."""
    p = SHARED / "gltf" / "manifest.json"
    return json.loads(p.read_text()) if p.exists() else []


def invalid_manifest() -> list[dict]:
    p = SHARED / "gltf-invalid" / "manifest.json"
    return json.loads(p.read_text()) if p.exists() else []
