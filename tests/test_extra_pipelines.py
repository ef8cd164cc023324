"""$STUDIO_EXTRA_PIPELINES: pipelines from a .py file or a module join the registry (the load
bench's toy pipeline reaches `studio serve` this way) and run like built-in ones."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.api import Studio
from studio.registry import pipelines

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_load.py"


def test_pipelines_from_a_file_join_the_registry(tmp_path, monkeypatch):
    assert "echo" not in pipelines()
    monkeypatch.setenv("STUDIO_EXTRA_PIPELINES", str(BENCH))
    found = pipelines()
    assert "echo" in found and "demo" in found
    st = Studio(tmp_path)
    job = st.run("echo", {"text": "hi", "bucket": 3})
    assert job.state == "succeeded", job.error
    assert json.loads(Path(job.results["echo"]).read_text()) == {"text": "hi", "bucket": 3, "square": 9}


def test_bad_entries_fail_loudly(monkeypatch):
    monkeypatch.setenv("STUDIO_EXTRA_PIPELINES", "studio_no_such_module_xyz")
    with pytest.raises(ModuleNotFoundError):
        pipelines()
    monkeypatch.setenv("STUDIO_EXTRA_PIPELINES", "/nonexistent/pipes.py")
    with pytest.raises((ImportError, FileNotFoundError)):
        pipelines()
