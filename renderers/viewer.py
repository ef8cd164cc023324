"""Desktop realtime viewer: a GLFW window drawing an Asset with the same Renderer as the headless path.

Mouse: left-drag orbits, right- or middle-drag (or shift + left) pans, the wheel zooms.
Keys: E next environment, W wireframe, N normals view, U UV-checker view, B base-colour (unlit)
view, L lit view, F re-frame, R reset, S save a screenshot PNG beside the file, Q/Esc quit.
The file is reloaded when it changes on disk (a failed reload keeps the last good asset).

Without a display (no DISPLAY / WAYLAND_DISPLAY, or GLFW cannot open one) `Viewer` raises
DisplayUnavailableError that points to the headless outputs (`studio view FILE --out x.png`,
`--turntable x.mp4`).
"""
from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

import numpy as np

from studio.assets.asset import Asset
from studio.assets.cameras import Cameras
from studio.errors import DisplayUnavailableError, StudioError

from .environment import BUILTINS, Environment, builtin_environment, resolve_environment
from .raster import Renderer
from .thumbnails import framing

log = logging.getLogger(__name__)

HEADLESS_HINT = "render without a window instead: `studio view FILE --out x.png` or `studio view FILE --turntable x.mp4`"


class OrbitCamera:
    """Orbit around `target`: yaw about +Y (radians, 0 looks from +Z), pitch above the horizon,
    distance in metres; pan moves the target in the view plane."""

    def __init__(self, target: np.ndarray, distance: float, yaw: float = math.radians(30), pitch: float = math.radians(20), fov_y_deg: float = 40.0):
        self.target = np.asarray(target, np.float64).copy()
        self.distance = float(distance)
        self.yaw = float(yaw)
        self.pitch = float(pitch)
        self.fov_y_deg = fov_y_deg

    @property
    def eye(self) -> np.ndarray:
        cp = math.cos(self.pitch)
        d = np.array([cp * math.sin(self.yaw), math.sin(self.pitch), cp * math.cos(self.yaw)])
        return self.target + self.distance * d

    def orbit(self, dx: float, dy: float) -> None:
        """dx, dy in pixels of mouse motion."""
        self.yaw -= dx * 0.01
        self.pitch = float(np.clip(self.pitch + dy * 0.01, -1.5, 1.5))

    def pan(self, dx: float, dy: float, height_px: int) -> None:
        cams = self.cameras(2, max(height_px, 2))
        r = cams.cam_to_world[0, :3, :3]
        scale = 2 * self.distance * math.tan(math.radians(self.fov_y_deg) / 2) / max(height_px, 1)
        self.target += (-dx * r[:, 0] - dy * r[:, 1]) * scale

    def zoom(self, steps: float) -> None:
        self.distance = float(np.clip(self.distance * (0.9**steps), 1e-4, 1e6))

    def cameras(self, width: int, height: int) -> Cameras:
        return Cameras.look_at([self.eye], self.target, fov_y_deg=self.fov_y_deg, width=width, height=height)


def _have_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class Viewer:
    """A window showing one asset (from a file, reloaded on change, or an in-memory Asset).

    Drive it with `run()` (blocking) or, for tests and embedding, `step()` per frame; the input
    handlers (`on_mouse_button`, `on_cursor`, `on_scroll`, `on_key`) are what GLFW calls and can
    be called directly to simulate input.
    """

    def __init__(
        self,
        source: str | Path | Asset,
        size: tuple[int, int] = (960, 720),
        environment: str | Environment = "studio",
        title: str | None = None,
        visible: bool = True,
    ):
        if not _have_display():
            raise DisplayUnavailableError(f"no display found (DISPLAY is not set); {HEADLESS_HINT}")
        try:
            import glfw
        except Exception as exc:  # noqa: BLE001 - missing wheel or missing libglfw
            raise DisplayUnavailableError(f"GLFW is not available ({exc}); pip install glfw, or {HEADLESS_HINT}") from exc
        self._glfw = glfw
        if not (isinstance(environment, str) and environment in BUILTINS):
            resolve_environment(environment)  # a bad environment path fails before a window opens
        if not glfw.init():
            raise DisplayUnavailableError(f"cannot open the display {os.environ.get('DISPLAY', '')!r}; {HEADLESS_HINT}")
        glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, 3)
        glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, 3)
        glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
        glfw.window_hint(glfw.OPENGL_FORWARD_COMPAT, True)
        glfw.window_hint(glfw.SAMPLES, 4)
        glfw.window_hint(glfw.VISIBLE, bool(visible))
        self.path = None if isinstance(source, Asset) else Path(source)
        self.window = glfw.create_window(int(size[0]), int(size[1]), title or f"studio view — {self._name(source)}", None, None)
        if not self.window:
            glfw.terminate()
            raise DisplayUnavailableError(f"cannot create an OpenGL 3.3 window on this display; {HEADLESS_HINT}")
        glfw.make_context_current(self.window)
        glfw.swap_interval(1)
        import moderngl

        self.ctx = moderngl.create_context()
        self.renderer = Renderer(self.ctx)
        self.asset = self._load(source)
        self._mtime = self._stat()
        self.env_names: list[str] = list(BUILTINS)
        builtin = isinstance(environment, str) and environment in BUILTINS
        self.custom_env = None if builtin else resolve_environment(environment)
        self.env_index = self.env_names.index(environment) if builtin else 0
        self.wireframe = False
        self.debug_view = "none"
        self.lighting = "ibl"
        self.orbit_cam = self._framed_camera()
        self._buttons: set[int] = set()
        self._shift = False
        self._last_cursor: tuple[float, float] | None = None
        self.frames = 0
        glfw.set_mouse_button_callback(self.window, lambda w, b, a, m: self.on_mouse_button(b, a, m))
        glfw.set_cursor_pos_callback(self.window, lambda w, x, y: self.on_cursor(x, y))
        glfw.set_scroll_callback(self.window, lambda w, dx, dy: self.on_scroll(dy))
        glfw.set_key_callback(self.window, lambda w, k, s, a, m: self.on_key(k, a, m))

    # -- asset -----------------------------------------------------------------------------
    @staticmethod
    def _name(source) -> str:
        return source.metadata.name or "asset" if isinstance(source, Asset) else Path(source).name

    def _load(self, source) -> Asset:
        if isinstance(source, Asset):
            return source
        from studio.assets.io import load

        return load(source)

    def _stat(self) -> float | None:
        try:
            return self.path.stat().st_mtime_ns if self.path is not None else None
        except OSError:
            return None

    def check_reload(self) -> bool:
        """Reload the file if its modification time changed; True when a new asset was loaded."""
        if self.path is None:
            return False
        m = self._stat()
        if m is None or m == self._mtime:
            return False
        self._mtime = m
        try:
            new = self._load(self.path)
        except StudioError as exc:
            log.warning("reload of %s failed, keeping the last good version: %s", self.path.name, exc)
            return False
        self.renderer.forget(self.asset)
        self.asset = new
        return True

    def _framed_camera(self) -> OrbitCamera:
        try:
            centre, dist = framing(self.asset)
        except ValueError:
            centre, dist = np.zeros(3), 3.0
        return OrbitCamera(centre, dist)

    @property
    def environment(self) -> Environment:
        if self.custom_env is not None:
            return self.custom_env
        return builtin_environment(self.env_names[self.env_index])

    # -- input -----------------------------------------------------------------------------
    def on_mouse_button(self, button: int, action: int, mods: int = 0) -> None:
        glfw = self._glfw
        self._shift = bool(mods & glfw.MOD_SHIFT)
        if action == glfw.PRESS:
            self._buttons.add(button)
        elif action == glfw.RELEASE:
            self._buttons.discard(button)
            if not self._buttons:
                self._last_cursor = None

    def on_cursor(self, x: float, y: float) -> None:
        glfw = self._glfw
        if self._last_cursor is not None and self._buttons:
            dx, dy = x - self._last_cursor[0], y - self._last_cursor[1]
            if glfw.MOUSE_BUTTON_LEFT in self._buttons and not self._shift:
                self.orbit_cam.orbit(dx, dy)
            else:
                self.orbit_cam.pan(dx, dy, self.framebuffer_size()[1])
        self._last_cursor = (x, y)

    def on_scroll(self, dy: float) -> None:
        self.orbit_cam.zoom(dy)

    def on_key(self, key: int, action: int, mods: int = 0) -> None:
        glfw = self._glfw
        if action not in (glfw.PRESS, glfw.REPEAT):
            return
        if key in (glfw.KEY_ESCAPE, glfw.KEY_Q):
            glfw.set_window_should_close(self.window, True)
        elif key == glfw.KEY_E:
            self.custom_env = None
            self.env_index = (self.env_index + 1) % len(self.env_names)
        elif key == glfw.KEY_W:
            self.wireframe = not self.wireframe
        elif key == glfw.KEY_N:
            self.debug_view = "none" if self.debug_view == "normals" else "normals"
        elif key == glfw.KEY_U:
            self.debug_view = "none" if self.debug_view == "uv_checker" else "uv_checker"
        elif key == glfw.KEY_B:
            self.lighting, self.debug_view = "unlit", "none"
        elif key == glfw.KEY_L:
            self.lighting, self.debug_view = "ibl", "none"
        elif key in (glfw.KEY_F, glfw.KEY_R):
            self.orbit_cam = self._framed_camera()
        elif key == glfw.KEY_S and self.path is not None:
            from PIL import Image

            out = self.path.with_name(f"{self.path.stem}_view_{int(time.time())}.png")
            Image.fromarray(self.screenshot()).save(out)
            log.info("saved %s", out)

    # -- frames ----------------------------------------------------------------------------
    def framebuffer_size(self) -> tuple[int, int]:
        w, h = self._glfw.get_framebuffer_size(self.window)
        return max(int(w), 1), max(int(h), 1)

    def draw(self) -> None:
        """Draw one frame into the window's back buffer."""
        self._glfw.make_context_current(self.window)
        w, h = self.framebuffer_size()
        screen = self.ctx.screen
        screen.use()
        self.ctx.viewport = (0, 0, w, h)
        screen.clear(0.18, 0.18, 0.2, 1.0, depth=1.0)
        cam = self.orbit_cam.cameras(w, h)
        self.renderer.draw(
            self.asset,
            cam.K[0],
            cam.cam_to_world[0],
            w,
            h,
            environment=self.environment,
            lighting=self.lighting,
            tone_mapping="aces",
            background="environment" if self.debug_view == "none" else None,
            debug_view=self.debug_view,
            wireframe=self.wireframe,
        )
        self.frames += 1

    def screenshot(self) -> np.ndarray:
        """(H,W,3) uint8 of the last drawn frame (back buffer, row 0 at the top)."""
        w, h = self.framebuffer_size()
        data = self.ctx.screen.read(viewport=(0, 0, w, h), components=3, alignment=1)
        return np.frombuffer(data, np.uint8).reshape(h, w, 3)[::-1].copy()

    def step(self) -> bool:
        """Poll input, reload if the file changed, draw and present one frame. False once closed."""
        glfw = self._glfw
        glfw.poll_events()
        if glfw.window_should_close(self.window):
            return False
        if self.frames % 15 == 0:
            self.check_reload()
        self.draw()
        glfw.swap_buffers(self.window)
        return True

    def run(self) -> None:
        """Blocking loop until the window is closed."""
        try:
            while self.step():
                pass
        finally:
            self.close()

    def close(self) -> None:
        if getattr(self, "window", None) is not None:
            self.renderer.release()
            self._glfw.destroy_window(self.window)
            self.window = None
            self._glfw.terminate()


def open_viewer(path: str | Path, environment: str | Environment = "studio", size: tuple[int, int] = (960, 720)) -> None:
    """`studio view FILE` with a display: open the window and block until it is closed.
    environment: a built-in name (studio, sky, white) or an equirect HDR/EXR/PNG path."""
    Viewer(path, size=size, environment=environment).run()
