"""Prometheus metrics for /metrics: jobs by state, queue depth, stage durations, cache hit rate, memory."""
from __future__ import annotations

import resource
import time

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

STAGE_REGISTRY = CollectorRegistry()
STAGE_SECONDS = Histogram(
    "studio_stage_seconds", "Wall time of executed (non-cached) stages", ["stage"], registry=STAGE_REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800),
)
REQUEST_SECONDS = Histogram(
    "studio_request_seconds", "HTTP API latency", ["route"], registry=STAGE_REGISTRY,
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
)


def observe_stage(stage: str, seconds: float) -> None:
    STAGE_SECONDS.labels(stage=stage).observe(seconds)


def render_metrics(studio) -> tuple[bytes, str]:
    """Scrape-time gauges plus the process-wide histograms, in Prometheus text format."""
    reg = CollectorRegistry()
    jobs = Gauge("studio_jobs", "Jobs by state", ["state"], registry=reg)
    for state, n in studio.store.counts().items():
        jobs.labels(state=state).set(n)
    Gauge("studio_queue_depth", "Queued jobs", registry=reg).set(studio.store.counts().get("queued", 0))
    st = studio.cache.stats()
    Gauge("studio_cache_entries", "Stage cache entries", registry=reg).set(st.entries)
    Gauge("studio_cache_bytes", "Stage cache size", registry=reg).set(st.bytes)
    total = st.hits + st.misses
    Gauge("studio_cache_hit_ratio", "Cache hits / lookups since start", registry=reg).set(st.hits / total if total else 0.0)
    Gauge("studio_process_max_rss_bytes", "Peak resident memory", registry=reg).set(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    Gauge("studio_scrape_timestamp_seconds", "When this scrape ran", registry=reg).set(time.time())
    try:
        import torch

        if torch.cuda.is_available():
            Gauge("studio_gpu_memory_bytes", "CUDA memory allocated", registry=reg).set(torch.cuda.memory_allocated())
    except ImportError:  # pragma: no cover
        pass
    return generate_latest(reg) + generate_latest(STAGE_REGISTRY), CONTENT_TYPE_LATEST
