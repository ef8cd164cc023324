"""Ray backend: a job on a local Ray instance gives the same result as the in-process runner,
re-runs are cache hits, progress comes back through the job store, cancellation stops the
task, and the default (local) path never imports ray."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from studio.api import Studio
from studio.errors import EmptyResultError
from studio.pipeline import Pipeline, Stage, param

ray = pytest.importorskip("ray", reason="the ray extra is not installed")


@dataclass(frozen=True)
class RayToyParams:
    n: int = param(6, "size", minimum=1, maximum=10_000)
    seed: int = param(0, "random seed")
    slow: int = param(0, "50 ms steps of the last stage (for cancellation and crashes)", minimum=0)
    fail: bool = param(False, "raise in the first stage")


def make(p, inputs, ctx):
    ctx.progress(0.0, "making")
    if p.fail:
        raise EmptyResultError("nothing to make")
    return np.random.default_rng(p.seed).standard_normal((p.n, 3))


def transform(p, inputs, ctx):  # a GPU stage: Ray hands it a GPU (CUDA_VISIBLE_DEVICES)
    x = inputs["make"]
    return {"points": x @ np.diag([1.0, 2.0, 3.0]), "pid": os.getpid(), "gpus": os.environ.get("CUDA_VISIBLE_DEVICES")}


def export(p, inputs, ctx):
    pts = inputs["transform"]["points"]
    steps = max(p.slow, 2)
    for i in range(steps):
        ctx.progress(i / steps, "exporting")
        if p.slow:
            time.sleep(0.05)
    np.save(ctx.out_dir / "points.npy", pts)
    (ctx.out_dir / "pid.txt").write_text(str(os.getpid()))
    return {"points": ctx.out_dir / "points.npy", "pid": ctx.out_dir / "pid.txt"}


RAY_TOY = Pipeline(
    "raytoy",
    RayToyParams,
    (
        Stage("make", make, params=("n", "seed", "fail")),
        Stage("transform", transform, inputs=("make",), params=(), gpu=True),
        Stage("export", export, inputs=("transform",), cache=False),
    ),
)


@pytest.fixture(scope="module")
def ray_instance():
    # The toy stages live in this test module, which Ray workers cannot import: ship them by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    # one logical GPU (no CUDA needed): Ray schedules GPU stages onto it and sets CUDA_VISIBLE_DEVICES
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _studio(home: Path, backend: str) -> Studio:
    return Studio(home, workers=1, pipelines_override={"raytoy": RAY_TOY}, backend=backend)


def test_ray_job_equals_local_job_and_rerun_hits_cache(tmp_path, ray_instance):
    local = _studio(tmp_path / "local", "local").run("raytoy", {"n": 50, "seed": 3})
    assert local.state == "succeeded", local.error

    st = _studio(tmp_path / "ray", "ray")
    j1 = st.run("raytoy", {"n": 50, "seed": 3})
    assert j1.state == "succeeded", j1.error + j1.log if j1.error else j1.log
    assert j1.progress == 1.0 and j1.stage == "export"
    np.testing.assert_array_equal(np.load(j1.results["points"]), np.load(local.results["points"]))
    # every stage ran in a Ray worker, not in this process
    assert int(Path(j1.results["pid"]).read_text()) != os.getpid()
    for s in ("make", "transform", "export"):
        assert f"{s}: ran in" in j1.log
    # the tasks wrote the cache (the driver never ran a stage): same keys, same values as local
    keys = st.runner.stage_keys(RAY_TOY, RayToyParams(n=50, seed=3))
    hit, value = st.cache.get(keys["transform"])
    assert hit and value["pid"] != os.getpid()
    assert value["gpus"] == "0", "a Stage(gpu=True) task must be given the cluster's GPU"
    np.testing.assert_array_equal(value["points"], np.load(local.results["points"]))

    hits_before = st.cache.hits
    j2 = st.run("raytoy", {"n": 50, "seed": 3})
    assert j2.state == "succeeded", j2.error
    assert "transform: cache hit" in j2.log and "make: skipped" in j2.log
    assert "transform: ran in" not in j2.log and "make: ran in" not in j2.log
    assert st.cache.hits == hits_before + 1
    np.testing.assert_array_equal(np.load(j2.results["points"]), np.load(local.results["points"]))

    j3 = st.run("raytoy", {"n": 50, "seed": 4})  # a params change reruns upstream stages
    assert "make: ran in" in j3.log and "transform: ran in" in j3.log
    assert not np.array_equal(np.load(j3.results["points"]), np.load(local.results["points"]))


def test_ray_progress_and_cancel(tmp_path, ray_instance):
    st = _studio(tmp_path, "ray")
    st.runner.start()
    try:
        job = st.runner.submit("raytoy", {"n": 5, "slow": 100})
        seen = None
        end = time.time() + 30
        while time.time() < end:
            j = st.store.get(job.id)
            if j.stage == "export" and j.message == "exporting" and 0 < j.progress < 1:
                seen = j  # progress written by the Ray task into the shared job store
                break
            time.sleep(0.05)
        assert seen is not None, st.store.get(job.id)
        st.runner.cancel(job.id)
        final = st.runner.wait(job.id, timeout=20)
        assert final.state == "cancelled", (final.state, final.error)
        time.sleep(0.5)
        assert not (st.home / "results" / job.id / "points.npy").exists(), "the task kept running after cancel"
        # a stage error in a task surfaces as the stage's own error type, not a Ray wrapper
        bad = st.runner.wait(st.runner.submit("raytoy", {"n": 5, "fail": True}).id, timeout=30)
        assert bad.state == "failed" and bad.error == "EmptyResultError: nothing to make", bad.error
    finally:
        st.runner.shutdown()


def test_killed_driver_resumes_on_ray_from_cached_stages(tmp_path, ray_instance):
    """A studio process driving a job on the (shared) Ray cluster is SIGKILLed during its last
    stage; a new studio on the same home resumes the job from the Ray-written cache."""
    address = ray.get_runtime_context().gcs_address
    code = textwrap.dedent(f"""
        import importlib.util, sys, ray
        spec = importlib.util.spec_from_file_location("raytoy_mod", {__file__!r})
        mod = importlib.util.module_from_spec(spec); sys.modules["raytoy_mod"] = mod; spec.loader.exec_module(mod)
        ray.cloudpickle.register_pickle_by_value(mod)
        from studio.api import Studio
        st = Studio({str(tmp_path)!r}, pipelines_override={{"raytoy": mod.RAY_TOY}}, backend="ray", ray_address={address!r})
        job = st.runner.submit("raytoy", {{"n": 20, "slow": 30}})
        print(job.id, flush=True)
        st.runner.run_job(job.id)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        jid = proc.stdout.readline().strip()
        st = _studio(tmp_path, "ray")
        end = time.time() + 40
        while time.time() < end:  # wait until the upstream stages are cached and export runs
            j = st.store.get(jid)
            if j is not None and j.stage == "export" and j.progress > 0.7:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"job never reached the export stage: {st.store.get(jid)}")
    finally:
        proc.kill()
        proc.wait()
    assert st.store.get(jid).state == "running"
    st.runner.start()  # requeues the dead process's job and resumes it on the cluster
    try:
        final = st.runner.wait(jid, timeout=40)
    finally:
        st.runner.shutdown()
    assert final.state == "succeeded", (final.state, final.error, final.log)
    after = final.log.split("requeued")[1]
    assert "transform: cache hit" in after and "make: skipped" in after and "export: ran in" in after
    assert "transform: ran in" not in after and final.attempts == 2
    expected = np.random.default_rng(0).standard_normal((20, 3)) @ np.diag([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(np.load(final.results["points"]), expected)


def test_gpu_stages_fall_back_to_cpu_on_a_gpu_less_cluster(tmp_path):
    from studio.ray_backend import RayExecutor
    from studio.runner import StageCall

    ex = RayExecutor(tmp_path / "jobs.sqlite")
    call = StageCall("j", RAY_TOY.stages[1], "k", RayToyParams(), {}, tmp_path, 0.0, 3.0)
    ex._gpus = 0.0
    assert ex.num_gpus(call) == 0
    ex._gpus = 2.0
    assert ex.num_gpus(call) == 1
    assert ex.num_gpus(StageCall("j", RAY_TOY.stages[0], "k", RayToyParams(), {}, tmp_path, 0.0, 3.0)) == 0


def test_local_backend_never_imports_ray(tmp_path):
    code = (
        "import sys; import studio.api, studio.server, studio.runner;"
        f"st = studio.api.Studio({str(tmp_path)!r}); st.runner.shutdown();"
        "assert 'ray' not in sys.modules, 'ray imported on the local path'; print('ok')"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
    with pytest.raises(ValueError, match="backend"):
        Studio(tmp_path, backend="dask")
