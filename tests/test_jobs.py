"""Stage cache, job store and runner: cache hits on re-run, cancellation, params errors,
idempotency, and resume after the process is killed with SIGKILL."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from studio.cache import StageCache, stable_hash
from studio.jobs import JobStore
from studio.pipeline import ParamsError, Pipeline, Stage, param, params_schema, parse_params
from studio.runner import Runner, UnknownPipelineError

CALLS: list[str] = []


@dataclass(frozen=True)
class ToyParams:
    n: int = param(4, "size", minimum=1, maximum=1000)
    scale: float = param(2.0, "multiplier")
    mode: str = param("sum", "how to reduce")
    slow: bool = param(False, "sleep in the last stage")


def make(p, inputs, ctx):
    CALLS.append("make")
    return np.arange(p.n, dtype=np.float64)


def scale(p, inputs, ctx):
    CALLS.append("scale")
    return inputs["make"] * p.scale


def reduce(p, inputs, ctx):
    CALLS.append("reduce")
    for i in range(50 if p.slow else 1):
        ctx.progress(i / 50, "reducing")
        if p.slow:
            time.sleep(0.05)
    (ctx.out_dir / "result.txt").write_text(repr(float(inputs["scale"].sum())))
    return {"result": ctx.out_dir / "result.txt"}


TOY = Pipeline(
    "toy",
    ToyParams,
    (
        Stage("make", make, params=("n",)),
        Stage("scale", scale, inputs=("make",), params=("scale",)),
        Stage("reduce", reduce, inputs=("scale",), cache=False),
    ),
)


def runner(tmp_path: Path, workers: int = 1) -> Runner:
    return Runner(JobStore(tmp_path / "jobs.sqlite"), StageCache(tmp_path / "cache"), {"toy": TOY}, tmp_path / "results", workers)


def test_rerun_is_cache_hits_only_and_changes_invalidate_downstream(tmp_path):
    r = runner(tmp_path)
    CALLS.clear()
    j1 = r.run_job(r.submit("toy", {"n": 5}).id)
    assert j1.state == "succeeded", j1.error
    assert float(Path(j1.results["result"]).read_text()) == 2.0 * sum(range(5))
    assert CALLS == ["make", "scale", "reduce"]
    CALLS.clear()
    j2 = r.run_job(r.submit("toy", {"n": 5}).id)
    assert CALLS == ["reduce"], "every cached stage must be a hit"
    assert "scale: cache hit" in j2.log and "make: skipped" in j2.log
    CALLS.clear()
    r.run_job(r.submit("toy", {"n": 5, "scale": 3.0}).id)
    assert CALLS == ["scale", "reduce"], "a param of one stage re-runs it and what follows, not what precedes"


def test_params_are_checked_with_field_names(tmp_path):
    r = runner(tmp_path)
    with pytest.raises(ParamsError, match="'n'"):
        r.submit("toy", {"n": "many"})
    with pytest.raises(ParamsError, match="'n' must be <= 1000"):
        r.submit("toy", {"n": 5000})
    with pytest.raises(ParamsError, match="unknown parameter"):
        r.submit("toy", {"bogus": 1})
    with pytest.raises(UnknownPipelineError):
        r.submit("nope", {})
    assert parse_params(ToyParams, {"n": "7", "slow": "true"}) == ToyParams(n=7, slow=True)
    schema = params_schema(ToyParams)
    assert schema["properties"]["n"] == {"type": "integer", "description": "size", "minimum": 1, "maximum": 1000, "default": 4}


def test_idempotency_key_returns_the_same_job(tmp_path):
    r = runner(tmp_path)
    a = r.submit("toy", {"n": 3}, idempotency_key="abc")
    b = r.submit("toy", {"n": 3}, idempotency_key="abc")
    assert a.id == b.id and len(r.store.list()) == 1


def test_cancel_running_job_with_worker_pool(tmp_path):
    r = runner(tmp_path, workers=2)
    r.start()
    try:
        job = r.submit("toy", {"slow": True})
        for _ in range(100):
            if r.store.get(job.id).stage == "reduce":
                break
            time.sleep(0.05)
        r.cancel(job.id)
        done = r.wait(job.id, timeout=20)
        assert done.state == "cancelled"
        ok = r.wait(r.submit("toy", {"n": 2}).id, timeout=20)
        assert ok.state == "succeeded"
    finally:
        r.shutdown()


def test_cache_evicts_least_recently_used(tmp_path):
    c = StageCache(tmp_path, limit_bytes=3_000)
    for i in range(5):
        c.put(f"{i:064x}", np.zeros(100), {})
        time.sleep(0.01)
    st = c.stats()
    assert st.bytes <= 3_000 and st.entries < 5
    assert c.has(f"{4:064x}") and not c.has(f"{0:064x}")
    assert stable_hash({"a": np.ones(3)}) != stable_hash({"a": np.ones(4)})


def test_corrupt_cache_entry_is_a_miss(tmp_path):
    c = StageCache(tmp_path)
    key = "ab" * 32
    c.put(key, [1, 2, 3])
    (tmp_path / key[:2] / key / "value.pkl").write_bytes(b"\x80garbage")
    assert c.get(key) == (False, None) and not c.has(key)


SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {testdir!r})
    import importlib.util
    spec = importlib.util.spec_from_file_location("toymod", {testfile!r})
    mod = importlib.util.module_from_spec(spec); sys.modules["toymod"] = mod; spec.loader.exec_module(mod)
    r = mod.runner(__import__("pathlib").Path({home!r}))
    r.run_job({jid!r})
    """
)


def test_job_killed_mid_pipeline_resumes_from_cached_stages(tmp_path):
    r = runner(tmp_path)
    job = r.submit("toy", {"n": 6, "slow": True})
    script = SCRIPT.format(testdir=str(Path(__file__).parent), testfile=__file__, home=str(tmp_path), jid=job.id)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        for _ in range(300):  # wait until the slow last stage is running: earlier stages are cached
            j = r.store.get(job.id)
            if j.stage == "reduce" and j.progress > 0.7:
                break
            time.sleep(0.05)
        assert r.store.get(job.id).state == "running"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert r.store.get(job.id).state == "running"  # the dead process left it running
    CALLS.clear()
    r2 = runner(tmp_path)
    assert r2.store.requeue_interrupted() == [job.id]
    done = r2.run_job(job.id)
    assert done.state == "succeeded" and done.attempts == 2
    assert CALLS == ["reduce"], "resume must reuse the cached stages"
    fresh = runner(tmp_path / "fresh")
    ref = fresh.run_job(fresh.submit("toy", {"n": 6}).id)
    assert Path(done.results["result"]).read_text() == Path(ref.results["result"]).read_text()


def test_demo_texture_size_invalidates_the_bake_but_not_the_mesh(tmp_path):
    """Each stage's key holds only what it reads: a new bake size re-bakes without re-fusing the mesh."""
    from studio.pipelines.demo import DEMO

    r = Runner(JobStore(tmp_path / "j.sqlite"), StageCache(tmp_path / "c"), {"demo": DEMO}, tmp_path / "r")
    a = r.stage_keys(DEMO, parse_params(DEMO.params_type, {}))
    b = r.stage_keys(DEMO, parse_params(DEMO.params_type, {"bake_size": 256}))
    assert [k for k in a if a[k] != b[k]] == ["bake", "export"]


def test_code_fingerprint_covers_helper_modules(tmp_path):
    """A stage's cache key changes when any module of the package changes, not only the stage's own:
    editing a helper the stage calls must not serve stale results."""
    from studio.runner import code_fingerprint, studio_code_digest, tree_digest

    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "stage.py").write_text("def run(): return helper()\n")
    (pkg / "sub" / "helper.py").write_text("def helper(): return 1\n")
    before = tree_digest((pkg,))
    assert tree_digest((pkg,)) == before  # deterministic
    (pkg / "sub" / "helper.py").write_text("def helper(): return 2\n")
    assert tree_digest((pkg,)) != before
    assert len(studio_code_digest()) == 64 and len(code_fingerprint(test_code_fingerprint_covers_helper_modules)) == 16
