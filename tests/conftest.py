"""Shared fixtures. Test data is read from ../shared/testdata (never copied into the repo)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
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


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--use-angle=swiftshader",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                "--ignore-gpu-blocklist"]


@pytest.fixture(scope="module")
def chromium() -> tuple[str, list[str]]:
    """(Debian Chromium's path, the flags that give WebGL2 on SwiftShader with no network noise)."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed; run bash .ci/install.sh")
    return CHROMIUM, list(BROWSER_ARGS)


@pytest.fixture(scope="module")
def studio_server(tmp_path_factory):
    """A real `python -m studio serve` on a free loopback port with its own STUDIO_HOME: (url, home)."""
    home = tmp_path_factory.mktemp("studio_home")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(home / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "studio", "serve", "--port", str(port), "--workers", "1"],
                            env=dict(os.environ, STUDIO_HOME=str(home)), stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"studio serve exited: {(home / 'serve.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}", home
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
