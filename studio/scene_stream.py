"""The live scene that headsets show (DESIGN §7): state, a JSON-over-WebSocket stream and its routes.

Protocol (`/v1/scene/ws`, one JSON object per text message):
- server → client, first: ``{"type": "snapshot", "seq", "client", "assets": [...], "environment"}``;
  each asset is ``{"id", "kind": "gltf"|"splats", "name", "url", "rev", "transform", "visible", "material"}``
  with `transform` a 4x4 matrix as 16 numbers in column-major order (glTF/three.js layout,
  metres, +Y up) and `material` the overrides set so far (``base_color`` RGBA linear,
  ``metallic``, ``roughness``, ``emissive`` RGB linear; absent keys mean "as authored").
- then deltas with strictly increasing `seq` (each also carries `t`, the server's send time in
  Unix milliseconds): ``asset_added`` / ``asset_replaced`` {asset}, ``asset_removed`` {id},
  ``transform`` {id, matrix, origin}, ``material`` {id, material, reset?}, ``visibility`` {id, visible},
  ``environment`` {environment}.
- a client whose queue overflows (it reads too slowly) has its queue dropped and gets a fresh
  snapshot instead; a client that reconnects gets a snapshot of the current state.
- client → server: ``{"type": "transform", "id", "matrix": [16]}`` (validated, then broadcast to
  everyone with ``origin`` = the sender's client id) and ``{"type": "ping"}`` (→ ``pong``).
  Anything else, malformed JSON or a message over `MAX_MESSAGE_BYTES` gets
  ``{"type": "error", "detail"}`` and the connection stays open.

Files live under ``<studio home>/scene/<asset id>/<file>`` and are served from there only.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import math
import os
import re
import shutil
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse

from .errors import InvalidAssetError, StudioError, UnsupportedFormatError, safe_name
from .paths import safe_child, sanitize_upload_name

MAX_MESSAGE_BYTES = 64 * 1024
MAX_CLIENT_MESSAGES_PER_S = 240  # a grabbing hand sends ~30/s; far more is a broken or hostile client
DEFAULT_MAX_ASSET_BYTES = 512 * 1024 * 1024
DEFAULT_QUEUE_LIMIT = 256
GLTF_SUFFIXES = {".glb"}
SPLAT_SUFFIXES = {".ply", ".splat", ".spz", ".ksplat"}
CONVERTIBLE_SUFFIXES = {".gltf", ".obj", ".stl", ".usd", ".usda", ".usdc", ".usdz"}
_ID_RE = re.compile(r"^[0-9a-f]{12}$")
MAX_TRANSLATION_M = 10_000.0


class SceneError(StudioError):
    """A scene request that cannot be honoured (unknown asset id, bad transform, bad material)."""


class SceneNotFoundError(SceneError):
    """No scene asset (or no such file of one) under that id."""


class AssetTooLargeError(InvalidAssetError):
    """An uploaded or pushed scene asset over the configured size limit."""


def max_asset_bytes() -> int:
    """Upload limit in bytes: $STUDIO_XR_MAX_ASSET_BYTES or 512 MiB."""
    return int(os.environ.get("STUDIO_XR_MAX_ASSET_BYTES", DEFAULT_MAX_ASSET_BYTES))


@dataclass
class SceneAsset:
    id: str
    kind: str  # "gltf" | "splats"
    file: str  # file name inside <root>/<id>/
    name: str
    rev: int = 1
    transform: list[float] = field(default_factory=lambda: np.eye(4).flatten(order="F").tolist())
    visible: bool = True
    material: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "name": self.name, "rev": self.rev,
            "url": f"/v1/scene/assets/{self.id}/{self.file}?rev={self.rev}",
            "transform": list(self.transform), "visible": self.visible, "material": dict(self.material),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "SceneAsset":
        return cls(id=d["id"], kind=d["kind"], file=d["file"], name=d.get("name", d["file"]), rev=int(d.get("rev", 1)),
                   transform=[float(x) for x in d["transform"]], visible=bool(d.get("visible", True)),
                   material=dict(d.get("material", {})))


class Subscriber:
    """One connected client: a bounded queue of encoded messages plus a wake-up for its sender task."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None, limit: int):
        self.id = uuid.uuid4().hex[:8]
        self.loop = loop
        self.limit = limit
        self.queue: deque[str] = deque()
        self.overflowed = False
        self.event = asyncio.Event() if loop is not None else None
        self.snapshots_sent = 0
        self.window_start = 0.0
        self.window_count = 0

    def over_rate(self, limit: int) -> bool:
        """True when this client has sent more than `limit` messages in the current second."""
        now = time.monotonic()
        if now - self.window_start >= 1.0:
            self.window_start, self.window_count = now, 0
        self.window_count += 1
        return self.window_count > limit

    def _wake(self) -> None:
        if self.loop is not None and self.event is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed: client is gone
                self.loop.call_soon_threadsafe(self.event.set)


def _matrix16(m: Any) -> list[float]:
    """A (4,4) array (math layout, rows = output axes) or 16 numbers (column-major) → 16 floats, validated."""
    if isinstance(m, np.ndarray) and m.shape == (4, 4):
        flat = m.astype(np.float64).flatten(order="F")
    else:
        if not isinstance(m, (list, tuple, np.ndarray)) or len(m) != 16:
            raise SceneError("transform must be a 4x4 array or 16 numbers (column-major)")
        if not all(isinstance(x, (int, float, np.floating, np.integer)) and not isinstance(x, bool) for x in m):
            raise SceneError("transform must contain only numbers")
        flat = np.asarray(m, dtype=np.float64)
    if not np.all(np.isfinite(flat)):
        raise SceneError("transform contains NaN or infinity")
    M = flat.reshape(4, 4, order="F")
    if not np.allclose(M[3], [0, 0, 0, 1], atol=1e-6):
        raise SceneError("transform must be affine (last row 0 0 0 1)")
    det = abs(float(np.linalg.det(M[:3, :3])))
    if not (1e-9 < det < 1e9):
        raise SceneError(f"transform is degenerate or absurdly scaled (|det| = {det:.3g})")
    if np.linalg.norm(M[:3, 3]) > MAX_TRANSLATION_M:
        raise SceneError(f"transform moves the asset more than {MAX_TRANSLATION_M:g} m away")
    return [float(x) for x in flat]


def _colour(v: Any, n: int, what: str) -> list[float]:
    if not isinstance(v, (list, tuple, np.ndarray)) or len(v) != n:
        raise SceneError(f"{what} must be {n} numbers")
    out = [float(x) for x in v]
    if not all(math.isfinite(x) and 0.0 <= x for x in out):
        raise SceneError(f"{what} must be finite and non-negative")
    if what == "base_color" and any(x > 1.0 for x in out):
        raise SceneError("base_color components must be in [0, 1]")
    return out


def _unit(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise SceneError(f"{what} must be a number")
    x = float(v)
    if not (0.0 <= x <= 1.0):
        raise SceneError(f"{what} must be in [0, 1], got {x}")
    return x


def sniff_kind(path: Path) -> str:
    """'gltf' or 'splats' for a file the stream can serve as is; raises for broken or unknown files."""
    suffix = path.suffix.lower()
    with open(path, "rb") as f:
        head = f.read(4096)
    if suffix == ".glb":
        if head[:4] != b"glTF":
            raise InvalidAssetError(path, "not a binary glTF (missing 'glTF' magic)")
        return "gltf"
    if suffix == ".ply":
        if not head.startswith(b"ply"):
            raise InvalidAssetError(path, "not a PLY file (missing 'ply' magic)")
        header = head.split(b"end_header")[0]
        return "splats" if (b"f_dc_0" in header or b"scale_0" in header) else "mesh-ply"
    if suffix == ".spz":
        if head[:2] != b"\x1f\x8b" and head[:4] != b"NGSP":
            raise InvalidAssetError(path, "not an spz file (neither gzip nor NGSP magic)")
        return "splats"
    if suffix in (".splat", ".ksplat"):
        if not head:
            raise InvalidAssetError(path, "empty splat file")
        return "splats"
    raise UnsupportedFormatError(f"{safe_name(path.name)}: the scene stream takes .glb, splat .ply/.splat/.spz/.ksplat"
                                 f" or a convertible mesh ({', '.join(sorted(CONVERTIBLE_SUFFIXES))})")


class SceneState:
    """The scene shown by every headset; thread-safe, persisted to ``<root>/scene.json``.

    Mutators (`push_asset`, `set_transform`, `set_material`, `set_visible`, `set_environment`,
    `remove`) may be called from any thread (pipelines, HTTP handlers, WebSocket handlers);
    each bumps `seq` and broadcasts one delta.
    """

    def __init__(self, root: str | Path, queue_limit: int = DEFAULT_QUEUE_LIMIT, max_bytes: int | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.queue_limit = queue_limit
        self.max_bytes = max_asset_bytes() if max_bytes is None else max_bytes
        self._lock = threading.RLock()
        self._subs: dict[str, Subscriber] = {}
        self.seq = 0
        self.assets: dict[str, SceneAsset] = {}
        self.environment: dict[str, Any] = {"background": [0.0, 0.0, 0.0], "exposure": 1.0}
        self._save_timer: threading.Timer | None = None
        self._load()

    # -- persistence -------------------------------------------------------------------------
    def _load(self) -> None:
        p = self.root / "scene.json"
        if not p.exists():
            return
        try:
            d = json.loads(p.read_text())
            self.seq = int(d.get("seq", 0))
            self.environment.update(d.get("environment", {}))
            for a in d.get("assets", []):
                sa = SceneAsset.from_json(a)
                if _ID_RE.match(sa.id) and (self.root / sa.id / sa.file).is_file():
                    self.assets[sa.id] = sa
        except (ValueError, KeyError, TypeError):
            pass  # a corrupt scene.json starts an empty scene rather than breaking `studio serve`

    def save(self) -> None:
        from .assets.atomic import write_bytes_atomic

        with self._lock:
            self._save_timer = None
            d = {"seq": self.seq, "environment": self.environment,
                 "assets": [{**a.to_json(), "file": a.file} for a in self.assets.values()]}
        write_bytes_atomic(self.root / "scene.json", json.dumps(d).encode())

    def _save_quietly(self) -> None:
        try:
            self.save()
        except OSError:
            pass  # the folder went away (tests, a removed home); the next change tries again

    def _schedule_save(self) -> None:
        if self._save_timer is None:
            self._save_timer = threading.Timer(0.5, self._save_quietly)
            self._save_timer.daemon = True
            self._save_timer.start()

    # -- subscribers --------------------------------------------------------------------------
    def subscribe(self, loop: asyncio.AbstractEventLoop | None = None) -> Subscriber:
        """Register a client; its first queued message is a snapshot consistent with later deltas."""
        sub = Subscriber(loop, self.queue_limit)
        with self._lock:
            self._subs[sub.id] = sub
            sub.queue.append(json.dumps(self.snapshot(client=sub.id)))
            sub.snapshots_sent += 1
        sub._wake()
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subs.pop(sub.id, None)

    @property
    def client_count(self) -> int:
        return len(self._subs)

    def drain(self, sub: Subscriber) -> list[str]:
        """Messages for `sub` in order; a fresh snapshot alone if its queue overflowed."""
        with self._lock:
            if sub.overflowed:
                sub.overflowed = False
                sub.queue.clear()
                sub.snapshots_sent += 1
                return [json.dumps(self.snapshot(client=sub.id))]
            out = list(sub.queue)
            sub.queue.clear()
            return out

    def send_to(self, sub: Subscriber, msg: dict[str, Any]) -> None:
        """Queue a message for one client only (errors, pongs); not sequenced, dropped when its queue is full."""
        with self._lock:
            if sub.overflowed or len(sub.queue) >= sub.limit:
                return
            sub.queue.append(json.dumps(msg))
        sub._wake()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Hold the lock over several mutations: clients see them as one burst (no drain in between)."""
        with self._lock:
            yield

    def _broadcast(self, msg: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.seq += 1
            msg = {"seq": self.seq, "t": time.time() * 1000.0, **msg}
            text = json.dumps(msg)
            for sub in self._subs.values():
                if sub.overflowed:
                    continue
                if len(sub.queue) >= sub.limit:
                    sub.overflowed = True
                    sub.queue.clear()
                else:
                    sub.queue.append(text)
            subs = list(self._subs.values())
            self._schedule_save()
        for sub in subs:
            sub._wake()
        return msg

    # -- reads --------------------------------------------------------------------------------
    def snapshot(self, client: str | None = None) -> dict[str, Any]:
        with self._lock:
            d = {"type": "snapshot", "seq": self.seq, "t": time.time() * 1000.0,
                 "assets": [a.to_json() for a in self.assets.values()], "environment": dict(self.environment)}
        if client is not None:
            d["client"] = client
        return d

    def _get(self, asset_id: str) -> SceneAsset:
        a = self.assets.get(asset_id) if isinstance(asset_id, str) else None
        if a is None:
            raise SceneNotFoundError(f"no scene asset {safe_name(str(asset_id))!r}")
        return a

    def file_path(self, asset_id: str, file: str) -> Path:
        """The on-disk file of a scene asset; UnsafePathError for `..`/absolute names, SceneError if unknown."""
        safe_child(self.root, file)  # refuse traversal before anything else
        if not isinstance(asset_id, str) or not _ID_RE.match(asset_id):
            raise SceneNotFoundError(f"no scene asset {safe_name(str(asset_id))!r}")
        with self._lock:
            a = self._get(asset_id)
            if file != a.file:
                raise SceneNotFoundError(f"scene asset {asset_id} has no file {safe_name(file)!r}")
            return safe_child(self.root / asset_id, file)

    # -- mutations ----------------------------------------------------------------------------
    def push_asset(self, path: str | Path, *, replace: str | None = None, name: str | None = None,
                   transform: Any = None) -> str:
        """Add (or, with `replace`, swap in) a GLB / splat file / convertible mesh; returns the scene asset id.

        The file is copied (or converted to GLB) into the scene folder, so the caller may delete it.
        Raises AssetTooLargeError over the size limit, InvalidAssetError / UnsupportedFormatError
        for broken or unknown files, SceneError for an unknown `replace` id.
        """
        src = Path(path)
        if not src.is_file():
            raise InvalidAssetError(src, "no such file")
        size = src.stat().st_size
        if size > self.max_bytes:
            raise AssetTooLargeError(src, f"is {size} bytes; the scene asset limit is {self.max_bytes} bytes")
        fname = sanitize_upload_name(name or src.name)
        suffix = src.suffix.lower()
        if suffix in CONVERTIBLE_SUFFIXES:
            kind = "convert"
        else:
            kind = sniff_kind(src)
        if replace is not None:
            self._get(replace)
        asset_id = replace or uuid.uuid4().hex[:12]
        folder = self.root / asset_id
        staging = self.root / f".staging-{uuid.uuid4().hex[:8]}"
        staging.mkdir(parents=True)
        try:
            if kind in ("convert", "mesh-ply"):
                kind, fname = self._convert(src, staging, Path(fname).stem)
            else:
                shutil.copyfile(src, staging / fname)
            with self._lock:
                old = self.assets.get(asset_id)
                if old is not None:
                    (folder / old.file).unlink(missing_ok=True)
                folder.mkdir(parents=True, exist_ok=True)
                os.replace(staging / fname, folder / fname)
                if old is None:
                    a = SceneAsset(id=asset_id, kind=kind, file=fname, name=name or src.name)
                    if transform is not None:
                        a.transform = _matrix16(transform)
                    self.assets[asset_id] = a
                    self._broadcast({"type": "asset_added", "asset": a.to_json()})
                else:
                    old.kind, old.file, old.name, old.rev = kind, fname, name or src.name, old.rev + 1
                    if transform is not None:
                        old.transform = _matrix16(transform)
                    self._broadcast({"type": "asset_replaced", "asset": old.to_json()})
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return asset_id

    def _convert(self, src: Path, folder: Path, stem: str) -> tuple[str, str]:
        from .assets.io import load, save

        asset = load(src)
        if asset.meshes:
            out = folder / f"{stem}.glb"
            save(asset, out)
            return "gltf", out.name
        if asset.splats is not None and len(asset.splats):
            out = folder / f"{stem}.ply"
            save(asset, out)
            return "splats", out.name
        raise InvalidAssetError(src, "has neither meshes nor splats to show")

    def set_transform(self, asset_id: str, m: Any, origin: str | None = None) -> dict[str, Any]:
        """Place an asset: `m` a (4,4) array (metres, +Y up) or 16 column-major numbers."""
        flat = _matrix16(m)
        with self._lock:
            a = self._get(asset_id)
            a.transform = flat
            return self._broadcast({"type": "transform", "id": asset_id, "matrix": flat, "origin": origin})

    def set_material(self, asset_id: str, *, base_color: Sequence[float] | None = None, metallic: float | None = None,
                     roughness: float | None = None, emissive: Sequence[float] | None = None,
                     reset: bool = False) -> dict[str, Any]:
        """Override material factors of every material of the asset (linear RGBA/RGB, factors in [0,1]).

        Overrides accumulate; `reset=True` drops the earlier ones first (alone: back to as authored).
        """
        upd: dict[str, Any] = {}
        if base_color is not None:
            bc = list(base_color)
            upd["base_color"] = _colour(bc + [1.0] if len(bc) == 3 else bc, 4, "base_color")
        if metallic is not None:
            upd["metallic"] = _unit(metallic, "metallic")
        if roughness is not None:
            upd["roughness"] = _unit(roughness, "roughness")
        if emissive is not None:
            upd["emissive"] = _colour(emissive, 3, "emissive")
        if not upd and not reset:
            raise SceneError("material update names none of base_color, metallic, roughness, emissive, reset")
        with self._lock:
            a = self._get(asset_id)
            if reset:
                a.material.clear()
            a.material.update(upd)
            msg: dict[str, Any] = {"type": "material", "id": asset_id, "material": upd}
            if reset:
                msg["reset"] = True
            return self._broadcast(msg)

    def set_visible(self, asset_id: str, visible: bool) -> dict[str, Any]:
        with self._lock:
            a = self._get(asset_id)
            a.visible = bool(visible)
            return self._broadcast({"type": "visibility", "id": asset_id, "visible": a.visible})

    def set_environment(self, *, background: Sequence[float] | None = None, exposure: float | None = None) -> dict[str, Any]:
        """Background colour (linear RGB) and tone-mapping exposure of every client."""
        upd: dict[str, Any] = {}
        if background is not None:
            upd["background"] = _colour(background, 3, "background")
        if exposure is not None:
            if isinstance(exposure, bool) or not isinstance(exposure, (int, float)) or not (0 < float(exposure) < 100):
                raise SceneError("exposure must be a number in (0, 100)")
            upd["exposure"] = float(exposure)
        if not upd:
            raise SceneError("environment update names neither background nor exposure")
        with self._lock:
            self.environment.update(upd)
            return self._broadcast({"type": "environment", "environment": upd})

    def remove(self, asset_id: str) -> None:
        with self._lock:
            a = self._get(asset_id)
            del self.assets[asset_id]
            self._broadcast({"type": "asset_removed", "id": asset_id})
        shutil.rmtree(self.root / a.id, ignore_errors=True)

    # -- client messages ----------------------------------------------------------------------
    def handle_client_message(self, sub: Subscriber, data: str | bytes | None) -> None:
        """Apply one client message; errors go back to that client only."""
        try:
            if data is None:
                raise SceneError("empty message")
            if sub.over_rate(MAX_CLIENT_MESSAGES_PER_S):
                raise SceneError(f"more than {MAX_CLIENT_MESSAGES_PER_S} messages per second; message dropped")
            if len(data) > MAX_MESSAGE_BYTES:
                raise SceneError(f"message of {len(data)} bytes is over the {MAX_MESSAGE_BYTES} byte limit")
            try:
                msg = json.loads(data)
            except (ValueError, UnicodeDecodeError) as e:
                raise SceneError(f"not JSON: {e}") from None
            if not isinstance(msg, dict):
                raise SceneError("message must be a JSON object")
            kind = msg.get("type")
            if kind == "ping":
                self.send_to(sub, {"type": "pong", "t": time.time() * 1000.0, "echo": msg.get("t")})
            elif kind == "transform":
                self.set_transform(msg.get("id"), msg.get("matrix"), origin=sub.id)
            else:
                raise SceneError(f"unknown message type {safe_name(str(kind))!r}; clients may send 'transform' or 'ping'")
        except SceneError as e:
            self.send_to(sub, {"type": "error", "detail": str(e)})


_STATES: dict[Path, SceneState] = {}
_STATES_LOCK = threading.Lock()


def get_scene(studio_or_home: Any) -> SceneState:
    """The one SceneState of a studio home (a Studio, or its home folder): ``<home>/scene``."""
    home = Path(getattr(studio_or_home, "home", studio_or_home)).resolve()
    with _STATES_LOCK:
        st = _STATES.get(home)
        if st is None:
            st = _STATES[home] = SceneState(home / "scene")
        return st


def send_to_headset(studio_or_home: Any, path: str | Path, replace: str | None = None) -> str:
    """Pipelines' and the web app's "send to headset": push a result file into the live scene."""
    return get_scene(studio_or_home).push_asset(path, replace=replace)


def xr_dist_dir() -> Path:
    """The built WebXR client: $STUDIO_XR_DIST or <repo>/xr/dist."""
    env = os.environ.get("STUDIO_XR_DIST")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "xr" / "dist"


# -- FastAPI wiring -----------------------------------------------------------------------------
def same_origin(headers: Any) -> bool:
    """False when a browser says the request comes from a page of another origin (CSRF, CSWSH).

    Requests without an Origin header (CLI, scripts, same-origin GETs) pass.
    """
    from urllib.parse import urlsplit

    origin = headers.get("origin")
    if not origin:
        return True
    return urlsplit(origin).netloc.lower() == (headers.get("host") or "").lower()


def mount_xr(app: Any, studio: Any, token: str | None = None, scene: SceneState | None = None) -> SceneState:
    """Add the scene routes (/v1/scene, /v1/scene/ws, /v1/scene/push, /v1/scene/assets/…) and /xr/ to `app`.

    With `token`, scene routes need ``Authorization: Bearer <token>`` or ``?token=`` (headset
    browsers cannot set headers on WebSockets or on the loaders' fetches).
    """
    state = scene or get_scene(studio)
    app.state.scene = state

    def authorised(headers: Any, query: Any) -> bool:
        if token is None:
            return True
        given = (headers.get("authorization") or "").removeprefix("Bearer ").strip() or query.get("token", "")
        return hmac.compare_digest(given.encode(), token.encode())

    def check(request: Request) -> None:
        if not authorised(request.headers, request.query_params):
            raise HTTPException(401, "missing or wrong API token: send 'Authorization: Bearer <token>' or ?token=")

    def check_write(request: Request) -> None:
        check(request)
        if not same_origin(request.headers):
            raise HTTPException(403, "cross-origin scene edits are refused")

    def error(exc: StudioError) -> JSONResponse:
        code = 413 if isinstance(exc, AssetTooLargeError) else 404 if isinstance(exc, SceneNotFoundError) else 400
        return JSONResponse({"error": type(exc).__name__, "detail": str(exc)}, status_code=code)

    @app.get("/v1/scene")
    def scene_get(request: Request) -> dict:
        check(request)
        return state.snapshot()

    @app.post("/v1/scene/push")
    async def scene_push(request: Request) -> JSONResponse:
        """Body: the file (application/octet-stream, `?name=`), a multipart form with `file`, or JSON
        ``{"job": id, "result": key or file name}``. `?replace=<id>` swaps an existing asset."""
        check_write(request)
        replace = request.query_params.get("replace") or None
        ctype = request.headers.get("content-type", "")
        length = int(request.headers.get("content-length") or 0)
        if length > state.max_bytes:
            return error(AssetTooLargeError(None, f"upload of {length} bytes; the scene asset limit is {state.max_bytes} bytes"))
        try:
            if ctype.startswith("application/json"):
                body = await request.body()
                if len(body) > MAX_MESSAGE_BYTES:
                    raise SceneError("JSON body too large")
                try:
                    ref = json.loads(body)
                    job_id, result = str(ref["job"]), str(ref.get("result", "glb"))
                except (ValueError, KeyError, TypeError):
                    raise SceneError('JSON body must be {"job": <id>, "result": <key or file name>}') from None
                job = studio.store.get(job_id)
                if job is None:
                    raise SceneError(f"no job {safe_name(job_id)!r}")
                paths = {**{Path(p).name: p for p in job.results.values()}, **job.results}
                if result not in paths:
                    raise SceneError(f"job {job_id} has no result {safe_name(result)!r} (has {sorted(job.results)})")
                aid = await asyncio.to_thread(state.push_asset, paths[result], replace=replace)
            else:
                tmpdir = state.root / f".upload-{uuid.uuid4().hex[:8]}"
                tmpdir.mkdir()
                try:
                    if ctype.startswith("multipart/form-data"):
                        form = await request.form()
                        up = form.get("file")
                        if up is None or not hasattr(up, "read"):
                            raise SceneError("multipart upload needs a 'file' field")
                        name = sanitize_upload_name(up.filename or "upload")
                        dst = safe_child(tmpdir, name)
                        total = 0
                        with open(dst, "wb") as f:
                            while chunk := await up.read(1 << 20):
                                total += len(chunk)
                                if total > state.max_bytes:
                                    raise AssetTooLargeError(name, f"is over the scene asset limit of {state.max_bytes} bytes")
                                f.write(chunk)
                    else:
                        raw = request.query_params.get("name")
                        if not raw:
                            raise SceneError("raw upload needs ?name=<file name with suffix>")
                        name = sanitize_upload_name(raw)
                        dst = safe_child(tmpdir, name)
                        total = 0
                        with open(dst, "wb") as f:
                            async for chunk in request.stream():
                                total += len(chunk)
                                if total > state.max_bytes:
                                    raise AssetTooLargeError(name, f"is over the scene asset limit of {state.max_bytes} bytes")
                                f.write(chunk)
                    aid = await asyncio.to_thread(state.push_asset, dst, replace=replace, name=name)
                finally:
                    shutil.rmtree(tmpdir, ignore_errors=True)
        except StudioError as e:
            return error(e)
        a = state.assets[aid]
        return JSONResponse({"id": aid, "asset": a.to_json(), "seq": state.seq}, status_code=201)

    @app.post("/v1/scene/{asset_id}/{what}")
    async def scene_edit(asset_id: str, what: str, request: Request) -> JSONResponse:
        """JSON edits: transform {matrix}, material {base_color, metallic, roughness, emissive}, visibility {visible}."""
        check_write(request)
        body = await request.body()
        try:
            if len(body) > MAX_MESSAGE_BYTES:
                raise SceneError("body too large")
            try:
                d = json.loads(body or b"{}")
            except ValueError:
                raise SceneError("body is not JSON") from None
            if not isinstance(d, dict):
                raise SceneError("body must be a JSON object")
            if what == "transform":
                msg = state.set_transform(asset_id, d.get("matrix"))
            elif what == "material":
                unknown = set(d) - {"base_color", "metallic", "roughness", "emissive", "reset"}
                if unknown:
                    raise SceneError(f"unknown material fields {sorted(unknown)}")
                if not isinstance(d.get("reset", False), bool):
                    raise SceneError("reset must be true or false")
                msg = state.set_material(asset_id, **d)
            elif what == "visibility":
                if not isinstance(d.get("visible"), bool):
                    raise SceneError("visibility needs {\"visible\": true|false}")
                msg = state.set_visible(asset_id, d["visible"])
            else:
                raise SceneError(f"unknown edit {safe_name(what)!r}: transform, material or visibility")
        except StudioError as e:
            return error(e)
        return JSONResponse(msg)

    @app.delete("/v1/scene/{asset_id}")
    def scene_remove(asset_id: str, request: Request) -> JSONResponse:
        check_write(request)
        try:
            state.remove(asset_id)
        except StudioError as e:
            return error(e)
        return JSONResponse({"removed": asset_id, "seq": state.seq})

    @app.get("/v1/scene/assets/{asset_id}/{file:path}")
    def scene_file(asset_id: str, file: str, request: Request):
        check(request)
        try:
            p = state.file_path(asset_id, file)
        except StudioError as e:
            return error(e)
        return FileResponse(p, filename=file, headers={"Cache-Control": "no-cache"})

    @app.websocket("/v1/scene/ws")
    async def scene_ws(ws: WebSocket) -> None:
        if not authorised(ws.headers, ws.query_params):
            await ws.close(code=1008, reason="missing or wrong API token")
            return
        if not same_origin(ws.headers):
            await ws.close(code=1008, reason="cross-origin scene stream connections are refused")
            return
        await ws.accept()
        sub = state.subscribe(asyncio.get_running_loop())

        async def sender() -> None:
            while True:
                await sub.event.wait()
                sub.event.clear()
                for text in state.drain(sub):
                    await ws.send_text(text)

        task = asyncio.create_task(sender())
        try:
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                data = msg.get("text")
                if data is None:
                    data = msg.get("bytes")
                state.handle_client_message(sub, data)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            state.unsubscribe(sub)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    dist = xr_dist_dir()

    @app.get("/xr", include_in_schema=False)
    def xr_redirect(request: Request) -> RedirectResponse:
        q = request.url.query
        return RedirectResponse("/xr/" + (f"?{q}" if q else ""))

    if (dist / "index.html").is_file():
        from fastapi.staticfiles import StaticFiles

        app.mount("/xr", StaticFiles(directory=dist, html=True), name="xr")
    else:
        @app.get("/xr/{rest:path}", include_in_schema=False)
        def xr_missing(rest: str) -> HTMLResponse:
            return HTMLResponse("<h1>WebXR client not built</h1><p>Run <code>npm ci</code> in <code>xr/</code>"
                                " (it builds <code>xr/dist/</code>), then restart <code>studio serve</code>.</p>", status_code=503)

    return state
