"""Native OpenXR viewer (`studio xr openxr FILE`): shows an asset, or the studio's live scene
stream, in any OpenXR runtime that offers an EGL/OpenGL binding (Monado; see openxr_session).

Each eye is drawn by the studio's raster `Renderer` (the same PBR shading as `studio view`) from
the runtime's per-eye pose and asymmetric FOV, into that eye's swapchain image. The asset keeps its
real size (metres, +Y up): on the first frame it is placed in front of the viewer's head, its
bounding-box centre at eye height and at a distance where it fits the field of view, its +Z (glTF
front) turned towards the viewer; after that it stays put in the reference space (world-locked).

The session state machine is handled in full (READY → begin, STOPPING → end, EXITING / LOSS_PENDING
→ leave); the viewer ends with `xrRequestExitSession` after `frames` frames, when `on_frame`
returns False, on Ctrl-C, or when the runtime ends the session — never by breaking out of a frame.

Scene stream (`stream_url`, the studio's `/v1/scene/ws`, studio/scene_stream.py): a snapshot, then
deltas with sequence numbers, applied between frames (see `ViewerScene.apply`); assets are fetched
and parsed on the stream's thread. The stream's environment (background colour, exposure) wins
over the viewer's defaults.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import queue
import signal
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from studio.assets.asset import Asset
from studio.assets.cameras import Cameras
from studio.errors import InvalidAssetError, StudioError

from .openxr_session import EyeTarget, LocatedView, XRSession, pose_matrix, view_camera

log = logging.getLogger(__name__)

DEFAULT_BACKGROUND = "environment"


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------


@dataclass
class FrameInfo:
    """What `on_frame` sees after each frame with pixels.

    index: rendered-frame counter from 0. cameras: per eye, OpenCV `Cameras` (one view) in the frame
    of `scene` (the asset drawn), so `Renderer.render(scene, cameras[i])` reproduces eye i.
    images: per eye (H,W,4) uint8 RGBA read back from the swapchain image just rendered (row 0 at
    the top, sRGB bytes as stored), only when the viewer runs with capture=True, else None.
    stream_seq: last scene-stream sequence number applied (-1 without a stream).
    """

    index: int
    state: str
    cameras: list[Cameras]
    scene: Asset | None
    images: list[np.ndarray] | None
    stream_seq: int


@dataclass
class ViewerStats:
    """Summary of one viewer run. fps = frames_submitted / wall time between the first begin_frame
    and the last end_frame. eye_images / eye_cameras: the last captured frame (capture=True)."""

    runtime: str = ""
    binding: str = ""
    reference_space: str = ""
    swapchain_size: tuple[int, int] = (0, 0)
    swapchain_format: int = 0
    frames_submitted: int = 0
    frames_rendered: int = 0
    states: list[str] = field(default_factory=list)
    fps: float = 0.0
    wall_s: float = 0.0
    exit_reason: str = ""
    placement: np.ndarray | None = None
    eye_images: list[np.ndarray] | None = None
    eye_cameras: list[Cameras] | None = None
    stream_seq: int = -1
    stream_updates: int = 0

    @property
    def reached_focused(self) -> bool:
        return "FOCUSED" in self.states

    def summary(self) -> str:
        return (
            f"{self.runtime}: {self.frames_rendered} frames rendered ({self.frames_submitted} submitted) "
            f"at {self.fps:.1f} fps, {self.swapchain_size[0]}x{self.swapchain_size[1]} per eye, "
            f"{self.binding.upper()} binding, {self.reference_space} space; states {' -> '.join(self.states)}; exit: {self.exit_reason}"
        )


# ---------------------------------------------------------------------------------------------
# scene (what is drawn) and its stream
# ---------------------------------------------------------------------------------------------


@dataclass
class SceneItem:
    asset: Asset
    transform: np.ndarray = field(default_factory=lambda: np.eye(4))  # scene-from-asset, metres
    visible: bool = True
    url: str = ""


def _matrix(value: Any) -> np.ndarray:
    """(4,4) float64 from 16 numbers (column-major, as glTF / three.js Matrix4.elements and the
    scene stream) or a nested 4×4 list (row-major). Raises ValueError otherwise."""
    a = np.asarray(value, np.float64)
    if a.shape == (16,):
        a = a.reshape(4, 4).T
    if a.shape != (4, 4) or not np.isfinite(a).all():
        raise ValueError(f"transform must be 16 numbers or 4x4, got shape {a.shape}")
    return a


# scene-stream material override keys → glTF material factors (all linear)
MATERIAL_OVERRIDES = {
    "base_color": ("base_color_factor", 4),
    "metallic": ("metallic_factor", 0),
    "roughness": ("roughness_factor", 0),
    "emissive": ("emissive_factor", 3),
}


def apply_material_overrides(asset: Asset, overrides: dict[str, Any]) -> None:
    """Set the stream's material overrides (base_color RGBA, metallic, roughness, emissive RGB;
    linear) on every material of `asset`, in place. Unknown keys are ignored."""
    for key, value in (overrides or {}).items():
        if key not in MATERIAL_OVERRIDES:
            continue
        attr, n = MATERIAL_OVERRIDES[key]
        v = tuple(float(x) for x in value)[:n] if n else float(value)
        for mesh in asset.meshes:
            setattr(mesh.material, attr, v)


class ViewerScene:
    """What the viewer draws: items by id, the environment, and the stream's sequence number.

    `apply(msg)` takes one decoded message of the studio's scene stream (studio/scene_stream.py,
    `/v1/scene/ws`) whose assets `SceneStreamClient` already loaded (key "_loaded" beside each
    asset's "url"):
      {"type": "snapshot", "seq", "assets": [{"id", "url", "transform": [16], "visible", "material"}], "environment"}
      {"type": "asset_added" | "asset_replaced", "seq", "asset": {...as in the snapshot}}
      {"type": "asset_removed", "seq", "id"}
      {"type": "transform", "seq", "id", "matrix": [16]}
      {"type": "visibility", "seq", "id", "visible"}
      {"type": "material", "seq", "id", "material": {"base_color"?, "metallic"?, "roughness"?, "emissive"?}}
      {"type": "environment", "seq", "environment": {"background"? linear RGB, "exposure"?}}
    Deltas must follow the last seq by exactly one: a repeated one is ignored, a gap is refused
    (`apply` returns False) so the client reconnects for a fresh snapshot. `version` increases on
    every change; `layout_version` only when items are added/replaced/removed (then the viewer
    places the scene in front of the viewer again).
    """

    def __init__(self) -> None:
        self.items: dict[str, SceneItem] = {}
        self.seq = -1
        self.version = 0
        self.layout_version = 0
        self.environment: dict[str, Any] = {}
        self._combined: tuple[int, Asset | None] = (-1, None)

    def set_single(self, asset: Asset) -> None:
        self.items = {"asset": SceneItem(asset)}
        self.version += 1
        self.layout_version += 1

    @staticmethod
    def _item(d: dict[str, Any]) -> SceneItem:
        asset = d["_loaded"]
        apply_material_overrides(asset, d.get("material") or {})
        return SceneItem(asset, _matrix(d.get("transform", np.eye(4))), bool(d.get("visible", True)), str(d.get("url", "")))

    def apply(self, msg: dict[str, Any]) -> bool:
        kind = msg.get("type")
        seq = msg.get("seq")
        if kind == "error":
            log.warning("scene stream: server says %s", msg.get("detail"))
            return True
        if kind in ("pong", None) or seq is None:
            return True
        if kind == "snapshot":
            self.items = {str(a["id"]): self._item(a) for a in msg.get("assets", [])}
            self.environment = dict(msg.get("environment") or {})
            self.seq = int(seq)
            self.version += 1
            self.layout_version += 1
            return True
        if self.seq >= 0 and int(seq) != self.seq + 1:
            return int(seq) <= self.seq  # already applied: ignore; a gap: refuse
        iid = str(msg.get("id", ""))
        if kind in ("asset_added", "asset_replaced"):
            d = msg["asset"]
            self.items[str(d["id"])] = self._item(d)
            self.layout_version += 1
        elif kind == "asset_removed":
            self.items.pop(iid, None)
            self.layout_version += 1
        elif kind == "transform":
            if iid in self.items:
                self.items[iid].transform = _matrix(msg["matrix"])
        elif kind == "visibility":
            if iid in self.items:
                self.items[iid].visible = bool(msg["visible"])
        elif kind == "material":
            if iid in self.items:
                apply_material_overrides(self.items[iid].asset, msg.get("material") or {})
        elif kind == "environment":
            self.environment.update(msg.get("environment") or {})
        else:
            log.warning("scene stream: ignoring message type %r", kind)
        self.seq = int(seq)
        self.version += 1
        return True

    def background(self) -> tuple[float, float, float] | None:
        """The stream's background as an sRGB colour for the renderer (None when it sets none)."""
        bg = self.environment.get("background")
        if bg is None:
            return None
        from studio.assets.colour import linear_to_srgb

        return tuple(float(x) for x in linear_to_srgb(np.asarray(bg, np.float64)[:3]))

    def combined(self) -> Asset | None:
        """One Asset holding every visible item with its transform applied (the item's own Asset
        when there is just one, untransformed, so the renderer's upload cache keeps hitting)."""
        if self._combined[0] == self.version:
            return self._combined[1]
        vis = [it for it in self.items.values() if it.visible]
        if not vis:
            out = None
        elif len(vis) == 1 and np.allclose(vis[0].transform, np.eye(4)):
            out = vis[0].asset
        else:
            meshes, splats = [], []
            for it in vis:
                meshes += [dataclasses.replace(m, transform=it.transform @ m.transform) for m in it.asset.meshes]
                if it.asset.splats is not None and len(it.asset.splats):
                    splats.append(it.asset.splats.transformed(it.transform))
            out = Asset(meshes=meshes, splats=_concat_splats(splats))
        self._combined = (self.version, out)
        return out


def _concat_splats(parts: list) -> Any:
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    from studio.assets.splats import GaussianSplats

    k = min(p.sh.shape[1] for p in parts)
    return GaussianSplats(
        np.concatenate([p.means for p in parts]),
        np.concatenate([p.quats for p in parts]),
        np.concatenate([p.log_scales for p in parts]),
        np.concatenate([p.opacity_logits for p in parts]),
        np.concatenate([p.sh[:, :k] for p in parts]),
    )


class SceneStreamClient:
    """Background subscriber to the studio's scene stream (a WebSocket URL such as
    ws://127.0.0.1:8000/v1/scene/ws). Downloads and parses the assets a message names on its own
    thread, then queues the message (with "asset" filled in) for the render thread, which applies
    it between frames. Reconnects with exponential back-off (0.25 s doubling to 5 s); after a
    sequence gap the render thread calls `resync()` and the next connection starts with a snapshot.
    """

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url
        self.token = token
        self.messages: "queue.Queue[dict[str, Any]]" = queue.Queue()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._resync = threading.Event()
        self._tmp = tempfile.TemporaryDirectory(prefix="studio-xr-")
        self._cache: dict[tuple[str, str], Asset] = {}  # (id, rev) → loaded asset (a resync reuses it)
        self._thread = threading.Thread(target=self._run, name="scene-stream", daemon=True)
        self._thread.start()

    def resync(self) -> None:
        self._resync.set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._tmp.cleanup()

    def _asset_url(self, url: str) -> str:
        if urllib.parse.urlparse(url).scheme in ("http", "https"):
            return url
        p = urllib.parse.urlparse(self.url)
        base = urllib.parse.urlunparse((p.scheme.replace("ws", "http"), p.netloc, p.path, "", "", ""))
        return urllib.parse.urljoin(base, url)

    def _load(self, url: str) -> Asset:
        import httpx

        from studio.assets import io

        full = self._asset_url(url)
        name = Path(urllib.parse.urlparse(full).path).name or "asset.glb"
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        r = httpx.get(full, headers=headers, timeout=60, follow_redirects=True)
        r.raise_for_status()
        path = Path(self._tmp.name) / f"{time.monotonic_ns()}_{Path(name).name}"
        path.write_bytes(r.content)
        return io.load(path)

    def _resolve(self, msg: dict[str, Any]) -> dict[str, Any]:
        kind = msg.get("type")
        entries = msg.get("assets", []) if kind == "snapshot" else [msg["asset"]] if kind in ("asset_added", "asset_replaced") else []
        for a in entries:
            key = (str(a["id"]), str(a.get("rev", a["url"])))
            if key not in self._cache:
                self._cache[key] = self._load(a["url"])
            a["_loaded"] = self._cache[key]
        return msg

    def _run(self) -> None:
        from websockets.sync.client import connect

        delay = 0.25
        while not self._stop.is_set():
            try:
                headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
                with connect(self.url, additional_headers=headers, open_timeout=5, max_size=2**24) as ws:
                    delay = 0.25
                    self._resync.clear()
                    while not self._stop.is_set() and not self._resync.is_set():
                        try:
                            raw = ws.recv(timeout=0.2)
                        except TimeoutError:
                            continue
                        try:
                            msg = json.loads(raw)
                            if not isinstance(msg, dict):
                                raise ValueError("not a JSON object")
                            self.messages.put(self._resolve(msg))
                        except (ValueError, KeyError, StudioError, OSError) as exc:
                            self.errors.append(f"{type(exc).__name__}: {exc}")
                            log.warning("scene stream: dropped a message (%s)", exc)
                        except Exception as exc:  # noqa: BLE001 - httpx errors etc.
                            self.errors.append(f"{type(exc).__name__}: {exc}")
                            log.warning("scene stream: dropped a message (%s)", exc)
            except Exception as exc:  # noqa: BLE001 - connection refused / closed: back off, retry
                if not self._stop.is_set():
                    self.errors.append(f"connect: {type(exc).__name__}: {exc}")
                    level = logging.WARNING if len(self.errors) == 1 else logging.INFO
                    log.log(level, "scene stream %s: %s; retrying in %.2f s (is `studio serve` running?)", self.url, exc, delay)
                    self._stop.wait(delay)
                    delay = min(delay * 2, 5.0)


# ---------------------------------------------------------------------------------------------
# placement
# ---------------------------------------------------------------------------------------------


def placement_in_front(bounds: np.ndarray, head: np.ndarray, fov: tuple[float, float, float, float]) -> np.ndarray:
    """(4,4) float64 world-from-scene rigid transform putting the scene's bounding box centre in
    front of `head` (space-from-head, OpenGL axes) at eye height, at a distance where the bounding
    sphere fills about 80 % of the smaller half-FOV, turned about +Y so the scene's +Z faces the
    head. Real size is kept (no scale)."""
    lo, hi = np.asarray(bounds, np.float64)
    centre = (lo + hi) / 2 if np.isfinite(lo).all() and np.isfinite(hi).all() else np.zeros(3)
    radius = max(float(np.linalg.norm(hi - lo)) / 2, 1e-3) if np.isfinite(lo).all() else 0.5
    half = max(min(abs(a) for a in fov), 0.1)
    dist = max(radius / math.sin(min(half * 0.8, 1.4)), radius + 0.3, 0.5)
    fwd = -head[:3, 2]
    fwd = np.array([fwd[0], 0.0, fwd[2]])
    n = np.linalg.norm(fwd)
    fwd = fwd / n if n > 1e-6 else np.array([0.0, 0.0, -1.0])
    target = head[:3, 3] + fwd * dist
    yaw = math.atan2(-fwd[0], -fwd[2])
    c, s = math.cos(yaw), math.sin(yaw)
    m = np.eye(4)
    m[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    m[:3, 3] = target - m[:3, :3] @ centre
    return m


# ---------------------------------------------------------------------------------------------
# the viewer
# ---------------------------------------------------------------------------------------------


def _load_asset(asset_or_path: Asset | str | Path | None) -> Asset | None:
    if asset_or_path is None or isinstance(asset_or_path, Asset):
        return asset_or_path
    from studio.assets import io

    return io.load(asset_or_path)


def _read_fbo(fbo: Any, w: int, h: int) -> np.ndarray:
    data = fbo.read(viewport=(0, 0, w, h), components=4, dtype="f1")
    return np.frombuffer(data, np.uint8).reshape(h, w, 4)[::-1].copy()


def _warm_up(renderer: Any, asset: Asset | None, environment: Any) -> None:
    """Prefilter the IBL environment, compile and upload before the frame loop (seconds on a CPU)."""
    from .environment import default_environment

    renderer.environment(environment if environment is not None else default_environment())
    if asset is not None:
        cams = Cameras.look_at([[0.0, 0.0, 3.0]], [0.0, 0.0, 0.0], fov_y_deg=40.0, width=8, height=8)
        renderer.render(asset, cams, environment=environment, msaa=1)


def run_openxr_viewer(
    asset_or_path: Asset | str | Path | None,
    frames: int | None = None,
    stream_url: str | None = None,
    on_frame: Callable[[FrameInfo], Any] | None = None,
    *,
    capture: bool = False,
    msaa: int = 4,
    resolution_scale: float = 1.0,
    background: Any = DEFAULT_BACKGROUND,
    tone_mapping: str = "aces",
    exposure: float = 1.0,
    environment: Any = None,
    stream_token: str | None = None,
    ready_timeout_s: float = 30.0,
    binding: str = "auto",
) -> ViewerStats:
    """Show an asset (an Asset, a file path, or None to wait for the stream's snapshot) through the
    active OpenXR runtime until `frames` frames were rendered (None: until the runtime ends the
    session, `on_frame` returns False, or Ctrl-C), then end with request_exit_session.

    stream_url: the studio's scene stream (ws://host:port/v1/scene/ws); its snapshot replaces the
    asset and its deltas are applied between frames. capture=True reads both eyes back from the
    swapchain every rendered frame (for tests; costs a GPU→CPU copy per eye). background: None/
    "environment" or an sRGB colour (r, g, b) in [0, 1] (the layer is opaque: None means black).
    binding: "auto" (EGL when the runtime offers XR_MNDX_egl_enable, else desktop GLX), "egl", "glx".
    Raises XRRuntimeUnavailableError when no OpenXR runtime is active (message says how to install
    or select one), InvalidAssetError for an unreadable file.
    """
    from .openxr_session import probe_runtime
    from .raster import Renderer

    probe_runtime()  # no runtime: say so before parsing a possibly large file
    scene = ViewerScene()
    asset = _load_asset(asset_or_path)
    if asset is not None:
        scene.set_single(asset)
    if background is None:
        background = (0.0, 0.0, 0.0)
    stats = ViewerStats()
    interrupted = threading.Event()
    old_handler = None
    if threading.current_thread() is threading.main_thread():
        old_handler = signal.signal(signal.SIGINT, lambda *_: interrupted.set())
    stream = None
    try:
        with XRSession(msaa=msaa, resolution_scale=resolution_scale, binding=binding) as xs:
            stats.runtime = xs.runtime_name
            stats.binding = xs.binding
            stats.reference_space = xs.space_type
            stats.swapchain_size = (xs.eyes[0].width, xs.eyes[0].height)
            stats.swapchain_format = xs.swapchain_format
            renderer = Renderer(ctx=xs.ctx)
            if stream_url:
                stream = SceneStreamClient(stream_url, token=stream_token)
            _warm_up(renderer, scene.combined(), environment)  # so the first frames are on time
            placement: np.ndarray | None = None
            placed_layout = -1
            t_first = t_last = None
            try:
                xs.wait_running(ready_timeout_s, stop=interrupted.is_set)
                while not xs.should_exit:
                    xs.poll_events()
                    if interrupted.is_set() and not xs.exit_requested:
                        stats.exit_reason = stats.exit_reason or "interrupted"
                        xs.request_exit()
                    if xs.should_exit:
                        break
                    if not xs.running:
                        time.sleep(0.005)
                        continue
                    # stream deltas are applied between frames, never inside one
                    if stream is not None:
                        while True:
                            try:
                                msg = stream.messages.get_nowait()
                            except queue.Empty:
                                break
                            if scene.apply(msg):
                                stats.stream_updates += 1
                            else:
                                stream.resync()
                    current = scene.combined()
                    if current is not None and placed_layout != scene.layout_version:
                        placement = None  # (re)place on the next located views
                    env = environment
                    frame_bg = scene.background() or background
                    frame_exposure = float(scene.environment.get("exposure", exposure))
                    eye_cams: list[Cameras] = []
                    eye_imgs: list[np.ndarray] = []

                    def draw_eye(i: int, view: LocatedView, eye: EyeTarget, target: Any) -> None:
                        nonlocal placement, placed_layout
                        K, c2w = view_camera(view.position, view.orientation, view.fov, eye.width, eye.height)
                        if current is not None and placement is None:
                            head = pose_matrix(view.position, view.orientation)
                            placement = placement_in_front(current.bounds(), head, view.fov)
                            placed_layout = scene.layout_version
                            stats.placement = placement
                        c2w_scene = np.linalg.inv(placement) @ c2w if placement is not None else c2w
                        fbo = xs.ctx.fbo
                        if isinstance(frame_bg, str):
                            fbo.clear(0.0, 0.0, 0.0, 1.0, depth=1.0)
                        else:
                            c = [float(x) for x in frame_bg][:3]
                            fbo.clear(c[0], c[1], c[2], 1.0, depth=1.0)
                        if current is not None:
                            renderer.draw(
                                current, K, c2w_scene, eye.width, eye.height,
                                environment=env, tone_mapping=tone_mapping, exposure=frame_exposure,
                                background=frame_bg,
                            )
                        eye_cams.append(
                            Cameras(K=K[None], cam_to_world=c2w_scene[None], width=eye.width, height=eye.height)
                        )
                        if capture:
                            if eye.draw_fbo is not None:
                                xs.ctx.copy_framebuffer(target, eye.draw_fbo)
                            eye_imgs.append(_read_fbo(target, eye.width, eye.height))

                    t0 = time.perf_counter()
                    rendered = xs.frame(draw_eye)
                    t_last = time.perf_counter()
                    if t_first is None:
                        t_first = t0
                    stats.frames_submitted += 1
                    if not rendered:
                        continue
                    idx = stats.frames_rendered
                    stats.frames_rendered += 1
                    stats.eye_cameras = eye_cams
                    if capture:
                        stats.eye_images = eye_imgs
                    want_exit = False
                    if on_frame is not None:
                        info = FrameInfo(idx, xs.state.name, eye_cams, current, eye_imgs if capture else None, scene.seq)
                        if on_frame(info) is False:
                            want_exit = True
                            stats.exit_reason = stats.exit_reason or "on_frame"
                    if frames is not None and stats.frames_rendered >= frames:
                        want_exit = True
                        stats.exit_reason = stats.exit_reason or "frames"
                    if want_exit:
                        xs.request_exit()
                if not stats.exit_reason:
                    stats.exit_reason = "session lost" if xs.lost else "runtime ended the session"
            finally:
                stats.states = list(xs.states_seen)
                if t_first is not None and t_last is not None and t_last > t_first:
                    stats.wall_s = t_last - t_first
                    stats.fps = stats.frames_submitted / stats.wall_s
                stats.stream_seq = scene.seq
                renderer.release()
    finally:
        if stream is not None:
            stream.close()
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
    return stats


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def stream_url_for(server: str) -> str:
    """The scene-stream WebSocket URL of a studio: http(s)://host:port[/prefix] → ws(s)://…/v1/scene/ws;
    a ws(s):// URL is used as given."""
    p = urllib.parse.urlparse(server)
    if p.scheme in ("http", "https"):
        return urllib.parse.urlunparse(
            ("ws" if p.scheme == "http" else "wss", p.netloc, p.path.rstrip("/") + "/v1/scene/ws", "", "", "")
        )
    if p.scheme in ("ws", "wss"):
        return server
    raise InvalidAssetError(None, f"--server must be an http(s):// or ws(s):// URL, got {server!r}")


def cli_openxr(
    file: str | None, frames: int | None = None, server: str | None = None, msaa: int = 4, binding: str = "auto"
) -> ViewerStats:
    """`studio xr openxr [FILE] [--frames N] [--server URL] [--msaa N] [--binding auto|egl|glx]`: run
    the viewer and print its summary. With FILE it shows that file; with --server (or with no FILE:
    $STUDIO_URL or the local studio, http://127.0.0.1:7860) it follows that studio's scene stream
    (token: $STUDIO_TOKEN). StudioErrors propagate for the CLI to print (exit code from the error,
    no traceback)."""
    import os

    if file is None and not server:
        from studio.xr_push import default_server

        server = default_server()
    stream_url = stream_url_for(server) if server else None

    def announce(info: FrameInfo) -> None:
        if info.index == 0:
            print(f"OpenXR session {info.state}: showing {file or stream_url}; Ctrl-C ends it", flush=True)

    stats = run_openxr_viewer(
        file, frames=frames, stream_url=stream_url, msaa=msaa, binding=binding, on_frame=announce,
        stream_token=os.environ.get("STUDIO_TOKEN") or None,
    )
    print(stats.summary())
    return stats


def main(argv: list[str] | None = None) -> int:
    """`python -m studio.renderers.openxr FILE [--frames N] [--server URL]` (same as `studio xr openxr`)."""
    ap = argparse.ArgumentParser(prog="studio xr openxr", description="Show an asset through the active OpenXR runtime.")
    ap.add_argument("file", nargs="?")
    ap.add_argument("--frames", type=int, default=None, help="stop after N rendered frames")
    ap.add_argument("--server", default=None, help="follow this studio's scene stream (default with no FILE: $STUDIO_URL or http://127.0.0.1:7860)")
    ap.add_argument("--msaa", type=int, default=4, help="samples per pixel (1 = fastest)")
    ap.add_argument("--binding", choices=("auto", "egl", "glx"), default="auto")
    args = ap.parse_args(argv)
    try:
        cli_openxr(args.file, args.frames, args.server, args.msaa, args.binding)
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
