"""Ray backend: every stage of a job runs as a Ray task (`studio serve --backend ray`).

The driver (the studio's runner thread) never handles cached stage outputs: a task loads its
inputs from the shared StageCache, runs the stage function, writes its output back to the
cache and returns only a `CacheRef`. Progress and cancellation go through the SQLite job store,
which the tasks open on the same path. Both `$STUDIO_HOME/cache` and `jobs.sqlite` must therefore
be on a path every Ray node sees (one machine, or a shared filesystem with working locks).

Stages flagged `Stage(gpu=True)` request one GPU (`num_gpus=1`) when the cluster has any; on
a GPU-less cluster they run on CPU like any other stage. Only this module imports ray, and only
`Studio(backend="ray")` imports this module.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayTaskError, TaskCancelledError

from .cache import StageCache
from .errors import CancelledError, StudioError, ToolUnavailableError
from .jobs import JobStore
from .pipeline import StageContext
from .runner import StageCall, StageExecutor

log = logging.getLogger("studio.ray")


@dataclass(frozen=True)
class CacheRef:
    """A stage output stored in the shared stage cache under `key` (loaded where it is used)."""

    key: str


class SharedCacheMissError(StudioError):
    """A task did not find an upstream output in the cache: the cache path is not shared."""


# ---- inside a Ray worker ------------------------------------------------------------------
_STORES: dict[str, JobStore] = {}
_CACHES: dict[tuple[str, int], StageCache] = {}
_LOCK = threading.Lock()


def _store(path: str) -> JobStore:
    with _LOCK:
        if path not in _STORES:
            _STORES[path] = JobStore(path)
        return _STORES[path]


def _cache(root: str, limit: int) -> StageCache:
    with _LOCK:
        if (root, limit) not in _CACHES:
            _CACHES[(root, limit)] = StageCache(root, limit)
        return _CACHES[(root, limit)]


class _StoreProgress:
    """`report(fraction, message)` for a task: writes the job's stage/progress into the store."""

    def __init__(self, store: JobStore, call: StageCall):
        self.store, self.call = store, call

    def __call__(self, fraction: float, message: str) -> None:
        c = self.call
        self.store.update(c.job_id, stage=c.stage.name, progress=(c.base + fraction * c.stage.weight) / c.total, message=message)


def _cancel_requested(store: JobStore, job_id: str) -> bool:
    j = store.get(job_id)
    return j is None or j.state == "cancelled" or bool(j.cancel_requested)


def run_stage_task(store_path: str, cache_root: str, cache_limit: int, call: StageCall) -> Any:
    """Body of the Ray task: load `CacheRef` inputs from the shared cache, run the stage with a
    store-backed progress/cancel context, write a cached stage's output back to the cache and
    return its `CacheRef` (an uncached stage's value is returned as is)."""
    store, cache = _store(store_path), _cache(cache_root, cache_limit)
    inputs: dict[str, Any] = {}
    for name, value in call.inputs.items():
        if isinstance(value, CacheRef):
            hit, value = cache.get(value.key)
            if not hit:
                raise SharedCacheMissError(
                    f"stage {call.stage.name}: input {name!r} is not in the stage cache {cache_root}; "
                    "with --backend ray the studio home must be on a path every Ray node sees"
                )
        inputs[name] = value
    call.out_dir.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(out_dir=call.out_dir, report=_StoreProgress(store, call),
                       is_cancelled=lambda: _cancel_requested(store, call.job_id))
    s = call.stage
    value = s.fn(call.params, inputs, ctx)
    if not s.cache:
        return value
    cache.put(call.key, value, {"stage": s.name, "version": s.version, "job": call.job_id, "backend": "ray"})
    return CacheRef(call.key)


# ---- in the studio process (driver) --------------------------------------------------------
class RayExecutor(StageExecutor):
    """Runs stages as Ray tasks on the cluster at `address` (None: start a local Ray instance
    on first use; "auto": the running cluster on this machine). `store_path` is the job store
    the tasks report progress to; `init_kwargs` go to `ray.init` (e.g. num_cpus=2)."""

    def __init__(self, store_path: str | Path, address: str | None = None, poll_s: float = 0.1, **init_kwargs: Any):
        self.store_path = str(store_path)
        self.address = address
        self.poll_s = poll_s
        self.init_kwargs = {"include_dashboard": False, "ignore_reinit_error": True} | init_kwargs
        self._lock = threading.Lock()
        self._remote = None
        self._gpus: float | None = None
        self._started_ray = False

    def _connect(self):
        with self._lock:
            if not ray.is_initialized():
                try:
                    ray.init(address=self.address, **self.init_kwargs)
                except ConnectionError as e:
                    raise ToolUnavailableError(f"cannot reach the Ray cluster at {self.address!r}: {e}") from None
                self._started_ray = True
            if self._remote is None:
                self._remote = ray.remote(run_stage_task)
                self._gpus = float(ray.cluster_resources().get("GPU", 0))
            return self._remote

    def lookup(self, cache: StageCache, key: str) -> tuple[bool, Any]:
        """Cache hit → a CacheRef (the value stays on disk for the task that reads it)."""
        if cache.has(key):
            cache.hits += 1
            return True, CacheRef(key)
        cache.misses += 1
        return False, None

    def num_gpus(self, call: StageCall) -> int:
        if not call.stage.gpu:
            return 0
        if not self._gpus:
            log.warning("stage %s wants a GPU but the Ray cluster has none: running it on CPU", call.stage.name)
            return 0
        return 1

    def run(self, cache: StageCache, call: StageCall, ctx: StageContext) -> Any:
        """Submit the stage as a Ray task and wait for it, cancelling the task (ray.cancel) when
        the job is cancelled; the task's own cooperative check stops it at its next progress call."""
        remote = self._connect()
        ref = remote.options(num_gpus=self.num_gpus(call), name=f"studio.{call.stage.name}", max_retries=0).remote(
            self.store_path, str(cache.root), cache.limit_bytes, call
        )
        while not ray.wait([ref], timeout=self.poll_s)[0]:
            if ctx.is_cancelled():
                ray.cancel(ref)
                ray.wait([ref], timeout=10)  # let it stop before the job is marked cancelled
                raise CancelledError(f"job {call.job_id} cancelled during stage {call.stage.name}")
        try:
            return ray.get(ref)
        except TaskCancelledError:
            raise CancelledError(f"job {call.job_id} cancelled during stage {call.stage.name}") from None
        except RayTaskError as e:  # re-raise the stage's own exception (CancelledError, StudioError, ...)
            cause = getattr(e, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None
            raise

    def resolve(self, cache: StageCache, value: Any) -> Any:
        if isinstance(value, CacheRef):
            hit, loaded = cache.get(value.key)
            if not hit:
                raise SharedCacheMissError(f"final stage output {value.key} vanished from the stage cache {cache.root}")
            return loaded
        return value

    def close(self) -> None:
        """Shut down the Ray instance this executor started (a cluster it joined keeps running)."""
        with self._lock:
            if self._started_ray and ray.is_initialized():
                ray.shutdown()
            self._started_ray = False
            self._remote = None
