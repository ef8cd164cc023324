"""The Python API behind every surface: one Studio holds the job store, stage cache and runner."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .cache import StageCache
from .config import cache_limit_bytes, studio_home
from .errors import ToolUnavailableError
from .jobs import Job, JobStore
from .registry import pipelines
from .runner import Runner


class Studio:
    """State under `home` ($STUDIO_HOME): jobs.sqlite, cache/, results/<job id>/."""

    def __init__(self, home: str | Path | None = None, workers: int = 1, cache_bytes: int | None = None, pipelines_override: dict | None = None,
                 backend: str = "local", ray_address: str | None = None):
        """`backend="ray"` runs stages as Ray tasks (needs the `ray` extra; `ray_address` None
        starts a local Ray instance, "auto" or "ray://host:port" joins a cluster)."""
        if backend not in ("local", "ray"):
            raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
        self.home = Path(home) if home else studio_home()
        self.home.mkdir(parents=True, exist_ok=True)
        self.store = JobStore(self.home / "jobs.sqlite")
        self.cache = StageCache(self.home / "cache", cache_bytes or cache_limit_bytes())
        executor = None
        if backend == "ray":
            try:
                from .ray_backend import RayExecutor
            except ImportError as e:
                raise ToolUnavailableError(f"--backend ray needs Ray: pip install 'studio3d[ray]' ({e})") from None
            executor = RayExecutor(self.store.path, address=ray_address)
        self.backend = backend
        self.runner = Runner(self.store, self.cache, pipelines_override or pipelines(), self.home / "results", workers=workers, executor=executor)

    def run(self, pipeline: str, params: dict[str, Any] | None = None, progress=None) -> Job:
        """Submit and run a job in this thread; `progress(fraction, message)` is polled from the store."""
        job = self.runner.submit(pipeline, params)
        if progress is None:
            return self.runner.run_job(job.id)
        import threading

        done = threading.Event()
        result: list[Job] = []

        def work() -> None:
            result.append(self.runner.run_job(job.id))
            done.set()

        t = threading.Thread(target=work, daemon=True)
        t.start()
        while not done.wait(0.2):
            j = self.store.get(job.id)
            if j is not None:
                progress(j.progress, j.message or j.stage)
        t.join()
        j = result[0]
        progress(1.0, j.message or j.state)
        return j


def run(pipeline: str, params: dict[str, Any] | None = None, home: str | Path | None = None) -> Job:
    """`studio.api.run("demo", {...})`: run a pipeline to completion and return its Job."""
    return Studio(home).run(pipeline, params)
