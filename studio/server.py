"""`studio serve`: one FastAPI process with the HTTP API at /v1 (and the web app, XR client and
scene stream when present). Binds 127.0.0.1 by default; any other bind needs an API token."""
from __future__ import annotations

import hmac
import ipaddress
import threading
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, File, Header, HTTPException, Request, Response, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field

from .api import Studio
from .errors import InsecureBindError, InvalidAssetError, ModelUnavailableError, StudioError, UnsafePathError
from .jobs import Job
from .paths import safe_child
from .pipeline import ParamsError, params_schema
from .runner import UnknownPipelineError


class GenerateRequest(BaseModel):
    pipeline: str = Field(..., description="pipeline name, see GET /v1/pipelines")
    params: dict[str, Any] = Field(default_factory=dict, description="the pipeline's params (its JSON schema)")


class JobView(BaseModel):
    id: str
    pipeline: str
    state: str
    stage: str
    progress: float
    message: str
    error: str | None
    params: dict[str, Any]
    results: dict[str, str]
    created: float
    started: float | None
    finished: float | None


def is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RateLimiter:
    """Sliding-window limit of `limit` events per `window` seconds per client."""

    def __init__(self, limit: int = 60, window: float = 60.0):
        self.limit, self.window = limit, window
        self._events: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        with self._lock:
            q = self._events[client]
            while q and now - q[0] > self.window:
                q.popleft()
            if len(q) >= self.limit:
                return False
            q.append(now)
            return True


def create_app(studio: Studio, token: str | None = None, submit_rate: int = 120, upload_limits=None) -> FastAPI:
    """The FastAPI app. With `token`, every /v1 call needs `Authorization: Bearer <token>`."""
    app = FastAPI(title="studio", version="1", description="3D content studio HTTP API", docs_url="/v1/docs", openapi_url="/v1/openapi.json")
    limiter = RateLimiter(limit=submit_rate, window=60.0)
    app.state.studio = studio
    from .monitoring import instrument

    instrument(app)  # submit/poll latency histograms for /metrics

    def auth(authorization: str | None = Header(default=None)) -> None:
        if token is None:
            return
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong API token: send 'Authorization: Bearer <token>'")

    def view(job: Job, request: Request) -> dict:
        d = {k: getattr(job, k) for k in JobView.model_fields}
        d["results"] = {name: str(request.url_for("asset_file", job_id=job.id, file=Path(p).name)) for name, p in job.results.items()}
        return d

    @app.exception_handler(StudioError)
    async def studio_error(request: Request, exc: StudioError):
        from .uploads import UploadTooLargeError

        if isinstance(exc, UploadTooLargeError):
            code = 413
        elif isinstance(exc, ModelUnavailableError):
            code = 503
        elif isinstance(exc, (ParamsError, UnknownPipelineError, UnsafePathError, InvalidAssetError)):
            code = 400
        else:
            code = 500
        return JSONResponse({"error": type(exc).__name__, "detail": str(exc)}, status_code=code)

    @app.get("/v1/health")
    def health() -> dict:
        return {"ok": True, "jobs": studio.store.counts()}

    @app.get("/v1/pipelines", dependencies=[Depends(auth)])
    def list_pipelines() -> list[dict]:
        from .registry import availability

        out = []
        for p in studio.runner.pipelines.values():
            ok, why = availability(p)
            out.append({"name": p.name, "description": p.description, "stages": [s.name for s in p.stages],
                        "params": params_schema(p.params_type), "available": ok, "unavailable_reason": why or None})
        return out

    @app.post("/v1/generate", dependencies=[Depends(auth)], status_code=202)
    def generate(req: GenerateRequest, request: Request, response: Response, idempotency_key: str | None = Header(default=None)) -> dict:
        client = request.client.host if request.client else "?"
        if not limiter.allow(client):
            raise HTTPException(429, "too many job submissions; slow down")
        from .registry import availability

        from .pipeline import LOCAL_ONLY_PARAMS

        if refused := sorted(LOCAL_ONLY_PARAMS & set(req.params)):  # folders whose programs the server would run
            raise HTTPException(400, f"{', '.join(refused)} cannot be set over the API; set it in the server's environment "
                                     "(STUDIO_NS_ENV=PATH) instead")
        ok, why = availability(studio.runner.pipeline(req.pipeline))
        if not ok:
            raise ModelUnavailableError(f"pipeline {req.pipeline} is unavailable: {why}")
        job, created = studio.runner.submit_once(req.pipeline, req.params, idempotency_key=idempotency_key)
        if not created:
            response.status_code = 200
        return view(job, request)

    @app.get("/v1/jobs", dependencies=[Depends(auth)])
    def jobs(request: Request, state: str | None = None, limit: int = 100) -> list[dict]:
        return [view(j, request) for j in studio.store.list(state=state, limit=min(limit, 1000))]

    @app.get("/v1/jobs/{job_id}", dependencies=[Depends(auth)])
    def job(job_id: str, request: Request) -> dict:
        j = studio.store.get(job_id)
        if j is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return view(j, request)

    @app.delete("/v1/jobs/{job_id}", dependencies=[Depends(auth)])
    def cancel(job_id: str, request: Request) -> dict:
        j = studio.runner.cancel(job_id)
        if j is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return view(j, request)

    @app.get("/v1/assets/{job_id}/{file}", name="asset_file", dependencies=[Depends(auth)])
    def asset_file(job_id: str, file: str) -> FileResponse:
        j = studio.store.get(job_id)
        if j is None:
            raise HTTPException(404, f"no job {job_id!r}")
        by_name = {Path(p).name: Path(p) for p in j.results.values()}
        if file not in by_name:
            safe_child(studio.home, file)  # raises UnsafePathError (400) on ../ and control characters
            raise HTTPException(404, f"job {job_id} has no result {file!r}")
        return FileResponse(by_name[file], filename=file)

    @app.post("/v1/reconstruct", dependencies=[Depends(auth)], status_code=202)
    async def reconstruct(request: Request, response: Response, files: list[UploadFile] = File(...),
                          idempotency_key: str | None = Header(default=None)) -> dict:
        """Upload photos of an object (multipart, field `files`) → a `capture_to_asset` job."""
        from .uploads import UploadLimits, store_uploads

        client = request.client.host if request.client else "?"
        if not limiter.allow(client):
            raise HTTPException(429, "too many job submissions; slow down")
        earlier = studio.store.by_idempotency_key(idempotency_key) if idempotency_key else None
        if earlier is not None:  # a retried upload: don't store the photos a second time
            response.status_code = 200
            return view(earlier, request)
        limits = upload_limits or UploadLimits()
        data = []
        for f in files[: limits.max_files + 1]:
            blob = await f.read(limits.max_file_bytes + 1)
            data.append((f.filename or "upload", blob))
        folder = store_uploads(data, studio.home / "uploads", limits, images_only=True)
        job = studio.runner.submit("capture_to_asset", {"photos": str(folder)}, idempotency_key=idempotency_key)
        return view(job, request)

    @app.get("/v1/models", dependencies=[Depends(auth)])
    def models() -> list[dict]:
        """Every registered model: present or missing, size on disk, which pipelines need it."""
        from dataclasses import asdict

        from .models import list_models

        return [asdict(m) | {"path": str(m.path) if m.path else None} for m in list_models()]

    @app.post("/v1/caption", dependencies=[Depends(auth)])
    async def caption(file: UploadFile = File(...), model: str = "blip-base", question: str | None = None) -> dict:
        """Caption an uploaded image (runs in a worker thread; the model stays warm between calls)."""
        import asyncio

        from .uploads import UploadLimits, store_uploads

        limits = upload_limits or UploadLimits()
        blob = await file.read(limits.max_file_bytes + 1)
        folder = store_uploads([(file.filename or "image.png", blob)], studio.home / "uploads", limits, images_only=True)
        path = next(folder.iterdir())
        from studio.pipelines.caption import caption_path

        r = await asyncio.to_thread(caption_path, path, model, question)
        return {"caption": r.caption, "tags": r.tags}

    @app.get("/metrics")
    def metrics() -> Response:
        from .monitoring import render_metrics

        body, ctype = render_metrics(studio)
        return Response(body, media_type=ctype)

    from .scene_stream import mount_xr

    mount_xr(app, studio, token=token)  # scene stream at /v1/scene*, WebXR client at /xr/
    return app


def serve(host: str = "127.0.0.1", port: int = 7860, token: str | None = None, workers: int = 1, home: Path | None = None, with_ui: bool = True,
          backend: str = "local", ray_address: str | None = None, submit_rate: int | None = None) -> None:
    """Run the studio server until interrupted. `backend="ray"` runs stages as Ray tasks on the
    cluster at `ray_address` (None: a local Ray instance). `submit_rate`: job submissions per
    minute per client (default $STUDIO_SUBMIT_RATE or 120)."""
    import os

    import uvicorn

    if not is_loopback(host) and not token:
        raise InsecureBindError(f"refusing to bind {host} without an API token: pass --token (or STUDIO_TOKEN)")
    studio = Studio(home, workers=workers, backend=backend, ray_address=ray_address)
    studio.runner.start()
    try:
        app = create_app(studio, token=token, submit_rate=submit_rate or int(os.environ.get("STUDIO_SUBMIT_RATE", "120")))
        if with_ui:
            import gradio as gr

            from .webapp import build_app

            app = gr.mount_gradio_app(app, build_app(studio, public_url=f"http://{host}:{port}"), path="/")
        uvicorn.run(app, host=host, port=port, log_level="info")
    finally:
        studio.runner.shutdown()
