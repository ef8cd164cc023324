"""Shared fixtures. Test data is read from ../shared/testdata (never copied into the repo)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The OpenXR tests run against Monado, which `.ci/install.sh --tests` builds into a cache folder
# outside the clone; point the OpenXR loader at it unless the user chose a runtime.
if not os.environ.get("XR_RUNTIME_JSON"):
    _cached = sorted(Path(os.environ.get("STUDIO_CACHE", "/var/cache/studio")).glob("monado-*/openxr_monado-dev.json"))
    if _cached:
        os.environ["XR_RUNTIME_JSON"] = str(_cached[-1])
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
