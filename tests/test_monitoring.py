"""/metrics after real API traffic: submit/poll latency histograms, response codes, stage
durations, cache hit rate, process memory, OOM count; GPU memory where CUDA exists."""
from __future__ import annotations

import importlib.util
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from studio.api import Studio
from studio.monitoring import POLL_ROUTE, SUBMIT_ROUTE, snapshot
from studio.pipeline import Pipeline, Stage
from studio.server import create_app

_spec = importlib.util.spec_from_file_location("toy_jobs_monitoring", Path(__file__).parent / "test_jobs.py")
toy = importlib.util.module_from_spec(_spec)
sys.modules["toy_jobs_monitoring"] = toy
_spec.loader.exec_module(toy)


@dataclass(frozen=True)
class NoParams:
    pass


def out_of_memory(p, inputs, ctx):
    import torch

    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


OOM = Pipeline("oom", NoParams, (Stage("alloc", out_of_memory, cache=False),))


def scrape(client) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one /metrics scrape."""
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def val(m, name, **labels) -> float:
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture()
def studio(tmp_path):
    st = Studio(tmp_path, workers=2, pipelines_override={"toy": toy.TOY, "oom": OOM})
    st.runner.start()
    yield st
    st.runner.shutdown()


def wait_done(c, jid, timeout=20.0) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        j = c.get(f"/v1/jobs/{jid}").json()
        if j["state"] in ("succeeded", "failed", "cancelled"):
            return j
        time.sleep(0.02)
    raise AssertionError(f"job {jid} did not finish")


def test_metrics_after_requests(studio):
    c = TestClient(create_app(studio, submit_rate=1000))
    before = scrape(c)  # the histograms are process-wide: compare deltas
    sub = dict(route=SUBMIT_ROUTE, method="POST")
    poll = dict(route=POLL_ROUTE, method="GET")

    # the same params twice: the second run is a cache hit on `scale` (and skips `make`)
    for _ in range(2):
        j = wait_done(c, c.post("/v1/generate", json={"pipeline": "toy", "params": {"n": 7}}).json()["id"])
        assert j["state"] == "succeeded"
    assert c.post("/v1/generate", json={"pipeline": "toy", "params": {"n": -1}}).status_code == 400
    assert c.get("/v1/jobs/does-not-exist").status_code == 404
    oom = wait_done(c, c.post("/v1/generate", json={"pipeline": "oom", "params": {}}).json()["id"])
    assert oom["state"] == "failed" and "OutOfMemoryError" in oom["error"]

    m = scrape(c)
    d = lambda name, **lb: val(m, name, **lb) - val(before, name, **lb)  # noqa: E731
    assert d("studio_request_seconds_count", **sub) == 4
    n_polls = d("studio_request_seconds_count", **poll)
    assert n_polls >= 4  # at least one poll per job plus the 404
    assert d("studio_http_responses_total", **sub, status="202") == 3
    assert d("studio_http_responses_total", **sub, status="400") == 1
    assert d("studio_http_responses_total", **poll, status="404") == 1
    assert d("studio_http_responses_total", **poll, status="200") == n_polls - 1
    # latencies are plausible: positive, each well under the 10 s top bucket, buckets cumulative
    for lb in (sub, poll):
        total = d("studio_request_seconds_sum", **lb)
        count = d("studio_request_seconds_count", **lb)
        assert 0 < total < 5.0 * count
        assert d("studio_request_seconds_bucket", **lb, le="10.0") == count
        assert d("studio_request_seconds_bucket", **lb, le="0.0005") <= d("studio_request_seconds_bucket", **lb, le="1.0")
    assert d("studio_stage_seconds_count", stage="make") == 1 and d("studio_stage_seconds_count", stage="reduce") == 2

    assert val(m, 'studio_jobs', state="succeeded") == 2 and val(m, "studio_jobs", state="failed") == 1
    assert val(m, "studio_queue_depth") == 0
    # first run: misses on make and scale; second: one hit on scale (make is skipped)
    assert (val(m, "studio_cache_hits"), val(m, "studio_cache_misses")) == (1, 2)
    assert val(m, "studio_cache_hit_ratio") == pytest.approx(1 / 3)
    assert val(m, "studio_cache_entries") == 2 and val(m, "studio_cache_bytes") > 0
    rss, peak = val(m, "studio_process_resident_bytes"), val(m, "studio_process_max_rss_bytes")
    assert 20 << 20 < rss <= peak < 64 << 30
    assert val(m, "studio_gpu_oom") >= 1  # the failed job (plus allocator OOMs where CUDA runs)

    snap = snapshot(studio)
    assert snap["cache"]["hit_ratio"] == pytest.approx(1 / 3) and snap["jobs"]["failed"] == 1
    assert snap["submit"]["count"] == val(m, "studio_request_seconds_count", **sub)
    assert 0 < snap["poll"]["mean_s"] < 5.0


def test_gpu_memory_metrics_where_cuda_exists(studio):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: GPU memory metrics are only exported on a GPU")
    x = torch.empty(64 << 20, dtype=torch.uint8, device="cuda")  # 64 MiB
    m = scrape(TestClient(create_app(studio)))
    assert val(m, "studio_gpu_memory_bytes", device="0", kind="allocated") >= x.numel()
    assert val(m, "studio_gpu_memory_bytes", device="0", kind="reserved") >= x.numel()
    before = val(m, "studio_gpu_oom")
    free, _ = torch.cuda.mem_get_info()
    with pytest.raises(torch.cuda.OutOfMemoryError):
        torch.empty(free * 4, dtype=torch.uint8, device="cuda")
    assert val(scrape(TestClient(create_app(studio))), "studio_gpu_oom") == before + 1
    del x
