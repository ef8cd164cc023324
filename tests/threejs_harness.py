"""three.js reference renderer, driven from Python: headless Debian Chromium + playwright-core.

`ThreeJSHarness` serves tests/threejs/ (page, harness.mjs, node_modules/three) and the model and
environment files over a local http.server on 127.0.0.1 (random port), starts Chromium once
(through `node tests/threejs/driver.mjs`, which speaks JSON lines on stdin/stdout) and renders any
glTF/GLB from studio `Cameras` (OpenCV convention) with three.js's GLTFLoader.

Modes: "unlit" replaces every material by a MeshBasicMaterial with the same base-colour map,
factor, vertex colours and alpha settings (the unlit base-colour pass); "lit" keeps GLTFLoader's
MeshStandardMaterial/MeshPhysicalMaterial and lights it with an equirectangular .hdr environment
through PMREMGenerator. Tone mapping: "none" | "aces" | "neutral"; output sRGB; transparent
background.

Needs: `chromium` (Debian), node, and `npm ci --prefix tests/threejs`.
Used by tests/test_render_vs_threejs.py and bench/bench_threejs_fps.py (which load this file by path).
"""
from __future__ import annotations

import base64
import hashlib
import http.server
import itertools
import json
import os
import queue
import shutil
import subprocess
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from studio.assets.cameras import CV_TO_GL, Cameras
from studio.errors import ToolUnavailableError
from studio.paths import safe_child

HARNESS_DIR = Path(__file__).resolve().parent / "threejs"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
TONE_MAPPINGS = ("none", "aces", "neutral")
MODES = ("unlit", "lit")


def opengl_projection(cameras: Cameras, near: float, far: float) -> np.ndarray:
    """(N,4,4) float64 OpenGL clip-from-camera matrices reproducing each camera's K exactly
    (studio.assets.camera_formats.opengl_projection: NDC +y = image top, depth [near, far] → [-1, 1])."""
    from studio.assets.camera_formats import opengl_projection as one

    return np.stack([one(k, cameras.width, cameras.height, near, far) for k in cameras.K])


def threejs_views(cameras: Cameras, near: float, far: float) -> list[dict[str, list]]:
    """Per camera {"projection": 4x4, "matrixWorld": 4x4} row-major lists for harness.mjs.

    matrixWorld = cam_to_world @ diag(1,-1,-1,1): the OpenCV camera turned into an OpenGL/three.js
    camera (x right, y up, looking down -z). Lens distortion cannot be drawn by a pinhole
    rasteriser, so cameras with non-zero `dist` are refused."""
    if getattr(cameras, "dist", None) is not None and np.any(cameras.dist != 0):
        raise ValueError("three.js draws pinhole cameras only; undistort first (cameras.dist is non-zero)")
    proj = opengl_projection(cameras, near, far)
    world = cameras.cam_to_world @ CV_TO_GL
    return [{"projection": proj[i].tolist(), "matrixWorld": world[i].tolist()} for i in range(len(cameras))]


@dataclass
class ThreeJSRender:
    """Pixels three.js drew, one image per camera.

    rgb: (N,H,W,3) uint8 sRGB-encoded colour *premultiplied* by alpha (the WebGL drawing buffer as is);
    alpha: (N,H,W) uint8 coverage (0 = background). Rows run top to bottom like the camera's v.
    """

    rgb: np.ndarray
    alpha: np.ndarray
    revision: str
    materials: list[dict[str, Any]] = field(default_factory=list)

    def composite(self, background: tuple[float, float, float] = (0.5, 0.5, 0.5)) -> np.ndarray:
        """(N,H,W,3) float64 in [0,1]: the image over a flat sRGB background (premultiplied 'over')."""
        a = self.alpha.astype(np.float64)[..., None] / 255.0
        return np.clip(self.rgb / 255.0 + (1.0 - a) * np.asarray(background, dtype=np.float64), 0.0, 1.0)

    def straight_rgb(self) -> np.ndarray:
        """(N,H,W,3) uint8 colour divided by alpha (0 where alpha is 0), like a PNG stores it."""
        a = self.alpha.astype(np.float64)[..., None]
        with np.errstate(divide="ignore", invalid="ignore"):
            c = np.where(a > 0, self.rgb * 255.0 / np.maximum(a, 1), 0.0)
        return np.clip(np.round(c), 0, 255).astype(np.uint8)


def _file_digest(path: str | Path) -> str:
    """sha1 of a file's bytes: the page's PMREM cache key, so a rewritten .hdr is filtered again."""
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


class _Mounts:
    """URL prefix → folder table for the local server (thread-safe enough: dict writes are atomic)."""

    def __init__(self) -> None:
        self.table: dict[str, Path] = {}

    def resolve(self, url_path: str) -> Path | None:
        parts = urllib.parse.unquote(urllib.parse.urlsplit(url_path).path).lstrip("/").split("/", 1)
        if len(parts) != 2 or parts[0] not in self.table or not parts[1]:
            return None
        try:
            return safe_child(self.table[parts[0]], parts[1])
        except Exception:
            return None


class _Handler(http.server.SimpleHTTPRequestHandler):
    mounts: _Mounts

    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".gltf": "model/gltf+json",
        ".glb": "model/gltf-binary",
        ".hdr": "application/octet-stream",
    }

    def translate_path(self, path: str) -> str:  # noqa: D401 - http.server hook
        p = self.mounts.resolve(path)
        return str(p) if p is not None else "/nonexistent-studio-path"

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass


class ThreeJSHarness:
    """One headless Chromium + local server; render many models through it, then close().

    Use as a context manager. Raises ToolUnavailableError naming what is missing (chromium, node,
    tests/threejs/node_modules) when it cannot start.
    """

    def __init__(self, chromium: str | None = None, node: str | None = None, timeout: float = 180.0) -> None:
        self.timeout = timeout
        self.chromium = chromium or os.environ.get("STUDIO_CHROMIUM") or next(
            (c for c in CHROMIUM_CANDIDATES if Path(c).exists()), shutil.which("chromium") or ""
        )
        if not self.chromium or not Path(self.chromium).exists():
            raise ToolUnavailableError("Chromium not found: install Debian's `chromium` (apt-get install chromium) "
                                       "or set STUDIO_CHROMIUM to its executable")
        self.node = node or shutil.which("node") or ""
        if not self.node:
            raise ToolUnavailableError("node not found: install Debian's `nodejs` and `npm`")
        for pkg in ("three", "playwright-core"):
            if not (HARNESS_DIR / "node_modules" / pkg / "package.json").exists():
                raise ToolUnavailableError(f"{HARNESS_DIR}/node_modules/{pkg} missing: run `npm ci --prefix tests/threejs`")
        self._mounts = _Mounts()
        self._mounts.table["harness"] = HARNESS_DIR
        handler = type("Handler", (_Handler,), {"mounts": self._mounts})
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._server_thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._server_thread.start()
        self._ids = itertools.count(1)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.stderr_lines: list[str] = []
        page = f"http://127.0.0.1:{self.port}/harness/index.html"
        self._proc = subprocess.Popen(
            [self.node, str(HARNESS_DIR / "driver.mjs"), self.chromium, page],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
            cwd=HARNESS_DIR,
        )
        threading.Thread(target=self._pump, args=(self._proc.stdout, self._lines), daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()
        try:
            hello = self._read_line()
        except Exception:
            self.close()
            raise
        self.revision = str(hello.get("revision"))
        self.browser = hello.get("browser")

    # -- process plumbing -------------------------------------------------------------------------
    @staticmethod
    def _pump(stream, q: queue.Queue) -> None:
        for line in stream:
            q.put(line)
        q.put(None)

    def _pump_err(self) -> None:
        for line in self._proc.stderr:
            self.stderr_lines.append(line.rstrip())
            del self.stderr_lines[:-200]

    def _read_line(self) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=self.timeout)
        except queue.Empty:
            raise ToolUnavailableError(f"three.js harness gave no answer in {self.timeout:.0f} s; "
                                       f"Chromium stderr: {' | '.join(self.stderr_lines[-10:])}") from None
        if line is None:
            self._proc.wait(timeout=10)
            raise ToolUnavailableError(f"three.js harness (node driver.mjs, {self.chromium}) exited with "
                                       f"{self._proc.returncode}: {' | '.join(self.stderr_lines[-10:])}")
        return json.loads(line)

    def _call(self, fn: str, spec: dict[str, Any]) -> dict[str, Any]:
        rid = next(self._ids)
        self._proc.stdin.write(json.dumps({"id": rid, "fn": fn, "spec": spec}) + "\n")
        self._proc.stdin.flush()
        try:
            reply = self._read_line()
        except ToolUnavailableError:
            self.close()  # a late answer would pair with the wrong request: this harness is done
            raise
        if reply.get("id") != rid:
            raise RuntimeError(f"three.js harness answered request {reply.get('id')}, expected {rid}")
        if not reply.get("ok"):
            raise RuntimeError(f"three.js failed: {reply.get('error')}\n" + "\n".join(self.stderr_lines[-10:]))
        return reply["result"]

    def _url(self, path: Path) -> str:
        """Serve `path`'s folder (so .gltf files find their .bin/.png) and return the file's URL."""
        path = Path(path).resolve()
        if not path.is_file():
            raise FileNotFoundError(path)
        key = f"f{len(self._mounts.table)}"
        for k, v in self._mounts.table.items():
            if v == path.parent:
                key = k
                break
        self._mounts.table[key] = path.parent
        return f"http://127.0.0.1:{self.port}/{key}/{urllib.parse.quote(path.name)}"

    def _spec(self, model, cameras, mode, environment, tone_mappings, exposure, near, far, antialias) -> dict:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        for t in tone_mappings:
            if t not in TONE_MAPPINGS:
                raise ValueError(f"tone_mapping must be one of {TONE_MAPPINGS}, got {t!r}")
        if mode == "lit" and environment is None:
            raise ValueError("lit mode needs an environment .hdr (three.js lights only with IBL here)")
        return {
            "model": self._url(model),
            "environment": None if environment is None else self._url(environment),
            "environmentKey": None if environment is None else _file_digest(environment),
            "mode": mode,
            "toneMappings": list(tone_mappings),
            "exposure": float(exposure),
            "width": cameras.width,
            "height": cameras.height,
            "antialias": bool(antialias),
            "views": threejs_views(cameras, near, far),
        }

    # -- public API -------------------------------------------------------------------------------
    def render(
        self,
        model: str | Path,
        cameras: Cameras,
        *,
        mode: str = "unlit",
        environment: str | Path | None = None,
        tone_mapping: str = "none",
        exposure: float = 1.0,
        near: float = 0.01,
        far: float = 100.0,
        antialias: bool = True,
    ) -> ThreeJSRender:
        """Render glTF/GLB `model` from every camera in one page load.

        model: .glb or .gltf (its folder is served, so external buffers/images resolve).
        cameras: studio Cameras (OpenCV); near/far: clip planes in metres.
        environment: equirectangular Radiance .hdr for mode="lit" (PMREM-filtered by three.js).
        tone_mapping: "none" | "aces" (ACESFilmicToneMapping) | "neutral" (NeutralToneMapping).
        """
        return self.render_tone_mappings(model, cameras, (tone_mapping,), mode=mode, environment=environment,
                                         exposure=exposure, near=near, far=far, antialias=antialias)[tone_mapping]

    def render_tone_mappings(
        self,
        model: str | Path,
        cameras: Cameras,
        tone_mappings: tuple[str, ...] = TONE_MAPPINGS,
        *,
        mode: str = "lit",
        environment: str | Path | None = None,
        exposure: float = 1.0,
        near: float = 0.01,
        far: float = 100.0,
        antialias: bool = True,
    ) -> dict[str, ThreeJSRender]:
        """Like `render`, for several tone mappings from one load (one PMREM): {tone mapping: render}."""
        spec = self._spec(model, cameras, mode, environment, tuple(tone_mappings), exposure, near, far, antialias)
        res = self._call("studioRender", spec)
        h, w = cameras.height, cameras.width
        out = {}
        for t, views in res["pixels"].items():
            px = np.stack([np.frombuffer(base64.b64decode(p), dtype=np.uint8).reshape(h, w, 4) for p in views])
            out[t] = ThreeJSRender(rgb=px[..., :3].copy(), alpha=px[..., 3].copy(), revision=str(res["revision"]),
                                   materials=res.get("materials", []))
        return out

    def bench(
        self,
        model: str | Path,
        cameras: Cameras,
        *,
        frames: int = 60,
        warmup: int = 3,
        mode: str = "lit",
        environment: str | Path | None = None,
        tone_mapping: str = "aces",
        near: float = 0.01,
        far: float = 100.0,
        antialias: bool = True,
    ) -> dict[str, Any]:
        """Frames per second of three.js drawing `model` through `cameras` in turn (gl.finish + readPixels
        per frame). Returns {"fps", "frames", "seconds", "triangles", "revision", "renderer"}."""
        spec = self._spec(model, cameras, mode, environment, (tone_mapping,), 1.0, near, far, antialias)
        spec.update(frames=int(frames), warmup=int(warmup))
        return self._call("studioBench", spec)

    def close(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            try:
                proc.stdin.write(json.dumps({"fn": "quit"}) + "\n")
                proc.stdin.flush()
                proc.stdin.close()
                proc.wait(timeout=20)
            except Exception:
                proc.kill()
                proc.wait(timeout=10)
        server = getattr(self, "_server", None)
        if server is not None:
            server.shutdown()
            server.server_close()
            self._server = None

    def __enter__(self) -> "ThreeJSHarness":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
