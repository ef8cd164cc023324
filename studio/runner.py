"""The job runner: executes pipelines stage by stage through the stage cache, in a bounded pool
of worker threads, with cooperative cancellation and resume-after-crash from cached stages."""
from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import queue
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cache import StageCache
from .errors import CancelledError, StudioError
from .jobs import FINAL, Job, JobStore
from .pipeline import Pipeline, Stage, StageContext, parse_params, params_to_dict

log = logging.getLogger("studio.runner")


def tree_digest(roots: tuple[Path, ...]) -> str:
    """Hash of every .py file under `roots` (relative names and contents)."""
    h = hashlib.sha256()
    for root in roots:
        for f in sorted(Path(root).rglob("*.py")):
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def studio_code_digest() -> str:
    """tree_digest of the studio's packages (studio, assets, pipelines, renderers) and its version:
    stages call into the whole 3D core, so a change anywhere in it must invalidate their results."""
    import studio
    import studio.assets
    import studio.pipelines
    import studio.renderers

    roots = tuple(Path(m.__file__).parent for m in (studio, studio.assets, studio.pipelines, studio.renderers))
    return hashlib.sha256((studio.__version__ + tree_digest(roots)).encode()).hexdigest()


@functools.lru_cache(maxsize=256)
def code_fingerprint(fn) -> str:
    """Hash of the source file defining a stage function plus the studio's code, so editing a
    stage's module — or anything it calls — invalidates its cache entries even when nobody bumped
    Stage.version. (With the stage's module alone, a fix in a helper module served stale meshes.)"""
    try:
        src = Path(inspect.getsourcefile(fn) or "").read_bytes()
    except (OSError, TypeError):
        src = getattr(fn, "__qualname__", repr(fn)).encode()
    return hashlib.sha256(src + studio_code_digest().encode()).hexdigest()[:16]


def _observe(stage: str, seconds: float) -> None:
    try:
        from .monitoring import observe_stage
    except ImportError:  # prometheus-client is optional for the runner
        return
    observe_stage(stage, seconds)


class UnknownPipelineError(StudioError):
    exit_code = 2


@dataclass
class StageCall:
    """One stage to execute for a job: what a StageExecutor needs besides the in-process ctx.
    `inputs` maps upstream stage names to values (or executor references from `lookup`/`run`);
    the stage's progress maps onto the job's bar as (base + fraction * stage.weight) / total."""

    job_id: str
    stage: Stage
    key: str
    params: Any
    inputs: dict[str, Any]
    out_dir: Path
    base: float
    total: float


class StageExecutor:
    """Where stages run. This default runs them in the worker thread and keeps values in memory;
    `studio.ray_backend.RayExecutor` runs each stage as a Ray task reading and writing the cache."""

    def lookup(self, cache: StageCache, key: str) -> tuple[bool, Any]:
        """(hit, value or reference) for a cached stage output."""
        return cache.get(key)

    def run(self, cache: StageCache, call: StageCall, ctx: StageContext) -> Any:
        """Execute `call.stage`, store its output in the cache when the stage is cached, return it."""
        s = call.stage
        val = s.fn(call.params, call.inputs, ctx)
        if s.cache:
            cache.put(call.key, val, {"stage": s.name, "version": s.version, "job": call.job_id})
        return val

    def resolve(self, cache: StageCache, value: Any) -> Any:
        """The plain value of something `lookup`/`run` returned (the job's final output)."""
        return value

    def close(self) -> None:
        """Release executor resources (the Ray executor disconnects from its cluster)."""


class Runner:
    """Runs jobs from `store` with `pipelines`, caching stage outputs in `cache`.

    Results of job J are written to `results_root/J/`. `workers` threads take queued jobs; each
    stage runs through `executor` (default: in the worker thread).
    """

    def __init__(self, store: JobStore, cache: StageCache, pipelines: dict[str, Pipeline], results_root: Path, workers: int = 1,
                 executor: StageExecutor | None = None):
        self.executor = executor or StageExecutor()
        self.store = store
        self.cache = cache
        self.pipelines = pipelines
        self.results_root = Path(results_root)
        self.workers = workers
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._cancel: set[str] = set()
        self._threads: list[threading.Thread] = []
        self._done = threading.Condition()

    # ---- submitting and controlling ---------------------------------------------------
    def pipeline(self, name: str) -> Pipeline:
        if name not in self.pipelines:
            raise UnknownPipelineError(f"unknown pipeline '{name}'; available: {', '.join(sorted(self.pipelines))}")
        return self.pipelines[name]

    def submit(self, pipeline: str, params: dict[str, Any] | None = None, idempotency_key: str | None = None) -> Job:
        """Validate params against the pipeline's schema, store a queued job, enqueue it."""
        return self.submit_once(pipeline, params, idempotency_key)[0]

    def submit_once(self, pipeline: str, params: dict[str, Any] | None = None,
                    idempotency_key: str | None = None) -> tuple[Job, bool]:
        """As `submit`, also saying whether a new job was created (False: the idempotency key's
        earlier job is returned, decided atomically by the store)."""
        p = self.pipeline(pipeline)
        parsed = parse_params(p.params_type, params)
        job, created = self.store.create(pipeline, params_to_dict(parsed), idempotency_key)
        if created and self._threads:
            self._queue.put(job.id)
        return job, created

    def cancel(self, job_id: str) -> Job | None:
        job = self.store.get(job_id)
        if job is None or job.state in FINAL:
            return job
        self._cancel.add(job_id)
        self.store.update(job_id, cancel_requested=1)
        if job.state == "queued":
            self.store.update(job_id, state="cancelled", finished=time.time(), message="cancelled before start")
        return self.store.get(job_id)

    def start(self) -> list[str]:
        """Requeue jobs a dead process left running, enqueue queued jobs, start the workers."""
        resumed = self.store.requeue_interrupted()
        for job in reversed(self.store.list(state="queued", limit=10_000)):
            self._queue.put(job.id)
        for i in range(self.workers):
            t = threading.Thread(target=self._worker, name=f"studio-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return resumed

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()
        self.executor.close()

    def wait(self, job_id: str, timeout: float = 600.0) -> Job:
        end = time.time() + timeout
        while True:
            job = self.store.get(job_id)
            if job is None or job.state in FINAL or time.time() > end:
                return job  # type: ignore[return-value]
            with self._done:
                self._done.wait(timeout=0.2)

    def _worker(self) -> None:
        while True:
            jid = self._queue.get()
            if jid is None:
                return
            try:
                self.run_job(jid)
            except Exception:  # run_job records failures; never kill the worker
                log.exception("worker error on job %s", jid)
            with self._done:
                self._done.notify_all()

    # ---- executing ------------------------------------------------------------------
    def run_job(self, job_id: str) -> Job:
        """Run one queued job to completion in this thread (the CLI calls this directly)."""
        if not self.store.claim(job_id):
            return self.store.get(job_id)  # type: ignore[return-value]
        job = self.store.get(job_id)
        assert job is not None
        try:
            pipe = self.pipeline(job.pipeline)
            params = parse_params(pipe.params_type, job.params)
            results = self._execute(job, pipe, params)
            self.store.update(job_id, state="succeeded", progress=1.0, results=results, finished=time.time(), message="done")
        except CancelledError:
            self.store.update(job_id, state="cancelled", finished=time.time(), message="cancelled")
        except StudioError as e:
            self.store.update(job_id, state="failed", error=f"{type(e).__name__}: {e}", finished=time.time())
        except Exception as e:  # a bug: keep the traceback in the job log
            self.store.append_log(job_id, traceback.format_exc())
            self.store.update(job_id, state="failed", error=f"internal error {type(e).__name__}: {e}", finished=time.time())
        finally:
            self._cancel.discard(job_id)
        return self.store.get(job_id)  # type: ignore[return-value]

    def stage_keys(self, pipe: Pipeline, params: Any) -> dict[str, str]:
        """Cache key of every stage (depends on params and upstream keys only, not on values)."""
        keys: dict[str, str] = {}
        for s in pipe.stages:
            sub = params if s.params is None else {f: getattr(params, f) for f in s.params}
            keys[s.name] = self.cache.key(s.name, f"{s.version}:{code_fingerprint(s.fn)}", sub, [keys[i] for i in s.inputs])
        return keys

    def _execute(self, job: Job, pipe: Pipeline, params: Any) -> dict[str, str]:
        keys = self.stage_keys(pipe, params)
        # Walk backwards: a stage must run (or load) only if something downstream that runs reads it.
        needed = {pipe.stages[-1].name}
        for s in reversed(pipe.stages):
            if s.name in needed and not (s.cache and self.cache.has(keys[s.name])):
                needed.update(s.inputs)
        total = sum(s.weight for s in pipe.stages)
        done_w = 0.0
        out_dir = self.results_root / job.id
        out_dir.mkdir(parents=True, exist_ok=True)
        values: dict[str, Any] = {}
        last: Any = None
        for s in pipe.stages:
            if s.name not in needed:
                self.store.append_log(job.id, f"{s.name}: skipped (downstream cached)")
                done_w += s.weight
                continue
            if s.cache:
                hit, val = self.executor.lookup(self.cache, keys[s.name])
                if hit:
                    values[s.name] = last = val
                    done_w += s.weight
                    self.store.append_log(job.id, f"{s.name}: cache hit")
                    self.store.update(job.id, stage=s.name, progress=done_w / total)
                    continue
            base = done_w

            def report(frac: float, msg: str, base: float = base, s=s) -> None:
                self.store.update(job.id, stage=s.name, progress=(base + frac * s.weight) / total, message=msg)

            ctx = StageContext(out_dir=out_dir, report=report, is_cancelled=lambda: job.id in self._cancel or self._cancelled_in_store(job.id))
            ctx.progress(0.0, f"{s.name}: started")
            t0 = time.perf_counter()
            call = StageCall(job.id, s, keys[s.name], params, {i: values[i] for i in s.inputs}, out_dir, base, total)
            val = self.executor.run(self.cache, call, ctx)
            elapsed = time.perf_counter() - t0
            self.store.append_log(job.id, f"{s.name}: ran in {elapsed:.2f} s")
            _observe(s.name, elapsed)
            values[s.name] = last = val
            done_w += s.weight
        last = self.executor.resolve(self.cache, last)
        if isinstance(last, dict):
            return {k: str(v) for k, v in last.items()}
        return {}

    def _cancelled_in_store(self, job_id: str) -> bool:
        j = self.store.get(job_id)
        return j is not None and (j.state == "cancelled" or bool(j.cancel_requested))
