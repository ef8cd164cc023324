"""Prometheus metrics for /metrics: jobs by state, queue depth, API latency (submit/poll),
stage durations, cache hit rate, process memory and, where CUDA is in use, GPU memory and
out-of-memory counts. `snapshot(studio)` gives the same figures as a dict for the web app."""
from __future__ import annotations

import os
import resource
import sys
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

STAGE_REGISTRY = CollectorRegistry()
STAGE_SECONDS = Histogram(
    "studio_stage_seconds", "Wall time of executed (non-cached) stages", ["stage"], registry=STAGE_REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800),
)
REQUEST_SECONDS = Histogram(
    "studio_request_seconds", "HTTP API latency by route template and method (route=/v1/generate: submit; "
    "route=/v1/jobs/{job_id}, method=GET: poll)", ["route", "method"], registry=STAGE_REGISTRY,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RESPONSES = Counter(
    "studio_http_responses", "HTTP API responses by route template, method and status code",
    ["route", "method", "status"], registry=STAGE_REGISTRY,
)
SUBMIT_ROUTE, POLL_ROUTE = "/v1/generate", "/v1/jobs/{job_id}"


def observe_stage(stage: str, seconds: float) -> None:
    STAGE_SECONDS.labels(stage=stage).observe(seconds)


class LatencyMiddleware:
    """ASGI middleware timing every /v1 HTTP request into `studio_request_seconds`, labelled by
    the matched route template (so /v1/jobs/abc and /v1/jobs/def share one series)."""

    def __init__(self, app, prefix: str = "/v1"):
        self.app, self.prefix = app, prefix

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            return await self.app(scope, receive, send)
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        t0 = time.perf_counter()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            REQUEST_SECONDS.labels(route=route, method=scope["method"]).observe(time.perf_counter() - t0)
            RESPONSES.labels(route=route, method=scope["method"], status=str(status["code"])).inc()


def instrument(app) -> None:
    """Add the latency middleware to a FastAPI/Starlette app (call before it starts serving)."""
    app.add_middleware(LatencyMiddleware)


def process_memory_bytes() -> tuple[int, int]:
    """(current resident set size, peak resident set size) of this process in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    try:
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        rss = peak
    return rss, max(peak, rss)  # the two readings are not atomic: keep peak >= current


def gpu_stats() -> list[dict[str, Any]]:
    """Per CUDA device: allocated/reserved/peak bytes and the allocator's OOM count. Empty when
    torch was never imported by this process (then it holds no GPU memory) or CUDA is absent."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        stats = torch.cuda.memory_stats(i)
        out.append({
            "device": str(i),
            "allocated": torch.cuda.memory_allocated(i),
            "reserved": torch.cuda.memory_reserved(i),
            "peak": torch.cuda.max_memory_allocated(i),
            "ooms": int(stats.get("num_ooms", 0)),
        })
    return out


def oom_failed_jobs(studio) -> int:
    """Jobs that failed with a CUDA out-of-memory error (any backend: read from the job store)."""
    return studio.store.count_failed_with("OutOfMemoryError")


def snapshot(studio) -> dict[str, Any]:
    """The /metrics figures as plain numbers (for the web app's Jobs tab)."""
    counts = studio.store.counts()
    st = studio.cache.stats()
    lookups = st.hits + st.misses
    rss, peak = process_memory_bytes()

    def latency(route: str, method: str) -> dict[str, float]:
        n = s = 0.0
        for metric in REQUEST_SECONDS.collect():
            for sample in metric.samples:
                if sample.labels.get("route") == route and sample.labels.get("method") == method:
                    if sample.name.endswith("_count"):
                        n = sample.value
                    elif sample.name.endswith("_sum"):
                        s = sample.value
        return {"count": n, "mean_s": s / n if n else 0.0}

    gpus = gpu_stats()
    return {
        "jobs": counts,
        "queue_depth": counts.get("queued", 0),
        "cache": {"entries": st.entries, "bytes": st.bytes, "hits": st.hits, "misses": st.misses,
                  "hit_ratio": st.hits / lookups if lookups else 0.0},
        "submit": latency(SUBMIT_ROUTE, "POST"),
        "poll": latency(POLL_ROUTE, "GET"),
        "memory": {"rss_bytes": rss, "peak_rss_bytes": peak},
        "gpus": gpus,
        "oom": sum(g["ooms"] for g in gpus) + oom_failed_jobs(studio),
    }


def render_metrics(studio) -> tuple[bytes, str]:
    """Scrape-time gauges plus the process-wide histograms, in Prometheus text format."""
    reg = CollectorRegistry()
    snap = snapshot(studio)
    jobs = Gauge("studio_jobs", "Jobs by state", ["state"], registry=reg)
    for state, n in snap["jobs"].items():
        jobs.labels(state=state).set(n)
    Gauge("studio_queue_depth", "Queued jobs", registry=reg).set(snap["queue_depth"])
    c = snap["cache"]
    Gauge("studio_cache_entries", "Stage cache entries", registry=reg).set(c["entries"])
    Gauge("studio_cache_bytes", "Stage cache size", registry=reg).set(c["bytes"])
    Gauge("studio_cache_hits", "Stage cache hits since start", registry=reg).set(c["hits"])
    Gauge("studio_cache_misses", "Stage cache misses since start", registry=reg).set(c["misses"])
    Gauge("studio_cache_hit_ratio", "Cache hits / lookups since start", registry=reg).set(c["hit_ratio"])
    Gauge("studio_process_resident_bytes", "Resident memory of the studio process", registry=reg).set(snap["memory"]["rss_bytes"])
    Gauge("studio_process_max_rss_bytes", "Peak resident memory", registry=reg).set(snap["memory"]["peak_rss_bytes"])
    Gauge("studio_scrape_timestamp_seconds", "When this scrape ran", registry=reg).set(time.time())
    oom = Gauge("studio_gpu_oom", "CUDA out-of-memory events: allocator OOMs in this process plus jobs failed with "
                "OutOfMemoryError", registry=reg)
    oom.set(snap["oom"])
    if snap["gpus"]:
        mem = Gauge("studio_gpu_memory_bytes", "CUDA memory of this process", ["device", "kind"], registry=reg)
        for g in snap["gpus"]:
            for kind in ("allocated", "reserved", "peak"):
                mem.labels(device=g["device"], kind=kind).set(g[kind])
    return generate_latest(reg) + generate_latest(STAGE_REGISTRY), CONTENT_TYPE_LATEST
