"""OpenXR plumbing for the native viewer: runtime probe, an EGL-bound session with one GL swapchain
per eye wrapped as moderngl framebuffers, the session state machine, and the view maths.

Conventions: OpenXR poses are in OpenGL axes (x right, y up, z back, metres) in the chosen
reference space (STAGE when the runtime has it, else LOCAL); `view_camera` turns one located view
into the studio's OpenCV camera: K (3,3) float64 reproducing the view's asymmetric field of view on
a W×H image (row 0 at the top, pixel centres at +0.5) and cam_to_world (4,4) float64 with camera
x right, y down, z forward. The renderer's projection_from_K of that K is exactly the usual OpenXR
projection built from the four FOV angles (see `projection_from_fov`), so each eye is drawn with
the runtime's asymmetric frustum.

Swapchains are GL_SRGB8_ALPHA8 when offered: the renderer writes sRGB-encoded colour and
GL_FRAMEBUFFER_SRGB stays disabled, so the bytes land unchanged and the compositor reads them as
sRGB. Graphics bindings (`binding`):
- "egl": `XR_MNDX_egl_enable` + `XR_KHR_opengl_enable`, an offscreen EGL context (Mesa llvmpipe on
  CPU, the vendor driver on a GPU); works on headless runtimes such as Monado with its null compositor.
- "glx": `XR_KHR_opengl_enable` with the Xlib/GLX binding on a desktop (a hidden GLFW window's
  context), for runtimes without the EGL extension (SteamVR on Linux); needs $DISPLAY.
- "auto" (default): EGL when the runtime offers it, else GLX when a display is there.
"""
from __future__ import annotations

import ctypes
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from studio.assets.cameras import CV_TO_GL
from studio.errors import DisplayUnavailableError, XRRuntimeUnavailableError

log = logging.getLogger(__name__)

GL_EXTENSION = "XR_KHR_opengl_enable"
EGL_EXTENSION = "XR_MNDX_egl_enable"
BINDINGS = ("auto", "egl", "glx")
GL_SRGB8_ALPHA8 = 0x8C43
GL_RGBA8 = 0x8058

INSTALL_HINT = (
    "Install and select an OpenXR runtime, then try again:\n"
    "  - point XR_RUNTIME_JSON at a runtime manifest, e.g. "
    "XR_RUNTIME_JSON=/path/to/openxr_monado.json (or openxr_monado-dev.json of a Monado build);\n"
    "  - or make one the system default: /etc/xdg/openxr/1/active_runtime.json or "
    "~/.config/openxr/1/active_runtime.json (a symlink to the runtime's manifest);\n"
    "  - Monado (open source, https://monado.freedesktop.org; a headset, or no headset with "
    "SIMULATED_ENABLE=1 XRT_COMPOSITOR_NULL=1); SteamVR (Settings > OpenXR > Set SteamVR as "
    "OpenXR runtime); Meta Quest Link / Air Link on Windows (Oculus app > Settings > General > "
    "OpenXR runtime).\n"
    "The WebXR client needs no runtime: `studio serve` and open /xr/ in the headset's browser."
)


# ---------------------------------------------------------------------------------------------
# view maths (pure numpy, tested without a runtime)
# ---------------------------------------------------------------------------------------------


def fov_to_K(angle_left: float, angle_right: float, angle_up: float, angle_down: float, width: int, height: int) -> np.ndarray:
    """(3,3) float64 OpenCV intrinsics of an OpenXR field of view (radians; left/down usually
    negative) on a width×height image: x/z ∈ [tan(left), tan(right)] spans columns 0..W and
    -y/z ∈ [tan(down), tan(up)] spans rows H..0 (OpenCV y points down)."""
    tl, tr, tu, td = (float(np.tan(a)) for a in (angle_left, angle_right, angle_up, angle_down))
    if not (tr > tl and tu > td):
        raise ValueError(f"degenerate field of view l={angle_left} r={angle_right} u={angle_up} d={angle_down}")
    fx = width / (tr - tl)
    fy = height / (tu - td)
    return np.array([[fx, 0.0, -tl * fx], [0.0, fy, tu * fy], [0.0, 0.0, 1.0]])


def projection_from_fov(angle_left: float, angle_right: float, angle_up: float, angle_down: float, near: float, far: float) -> np.ndarray:
    """(4,4) float64 OpenGL clip-from-eye matrix of an asymmetric OpenXR FOV (eye space y up,
    looking along -z; depth to NDC [-1, 1]), as in the OpenXR SDK's XrMatrix4x4f_CreateProjectionFov."""
    tl, tr, tu, td = (float(np.tan(a)) for a in (angle_left, angle_right, angle_up, angle_down))
    w, h = tr - tl, tu - td
    return np.array(
        [
            [2.0 / w, 0.0, (tr + tl) / w, 0.0],
            [0.0, 2.0 / h, (tu + td) / h, 0.0],
            [0.0, 0.0, -(far + near) / (far - near), -2.0 * far * near / (far - near)],
            [0.0, 0.0, -1.0, 0.0],
        ]
    )


def quat_to_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """(3,3) float64 rotation of a (normalised here) xyzw quaternion."""
    q = np.array([x, y, z, w], np.float64)
    n = np.linalg.norm(q)
    x, y, z, w = q / (n if n > 0 else 1.0)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def pose_matrix(position: tuple[float, float, float], orientation: tuple[float, float, float, float]) -> np.ndarray:
    """(4,4) float64 space-from-eye matrix of an OpenXR pose (OpenGL eye axes)."""
    m = np.eye(4)
    m[:3, :3] = quat_to_matrix(*orientation)
    m[:3, 3] = position
    return m


def view_camera(
    position: tuple[float, float, float],
    orientation: tuple[float, float, float, float],
    fov: tuple[float, float, float, float],
    width: int,
    height: int,
) -> tuple[np.ndarray, np.ndarray]:
    """K (3,3) and OpenCV cam_to_world (4,4) (float64, in the XR reference space) of one view.
    fov = (left, right, up, down) radians."""
    return fov_to_K(*fov, width, height), pose_matrix(position, orientation) @ CV_TO_GL


# ---------------------------------------------------------------------------------------------
# runtime probe
# ---------------------------------------------------------------------------------------------


class _StderrCapture:
    """Capture fd 2 (where the OpenXR loader and the runtime print) into a temporary file."""

    def __enter__(self) -> "_StderrCapture":
        self.text = ""
        self._tmp = tempfile.TemporaryFile(mode="w+b")
        try:
            import sys

            sys.stderr.flush()
        except Exception:  # noqa: BLE001
            pass
        self._saved = os.dup(2)
        os.dup2(self._tmp.fileno(), 2)
        return self

    def __exit__(self, *exc) -> None:
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._tmp.seek(0)
        self.text = self._tmp.read().decode("utf-8", "replace")
        self._tmp.close()


def _loader_gist(text: str, limit: int = 3) -> str:
    """The loader's error lines without their `Error [GENERAL | fn | OpenXR-Loader] :` prefix."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if "] :" in line:
            line = line.split("] :", 1)[1].strip()
        if line not in out:
            out.append(line)
    return "; ".join(out[:limit])


def runtime_unavailable_message(detail: str = "") -> str:
    """The user-facing text for 'no OpenXR runtime' (what XR_RUNTIME_JSON says, how to fix it)."""
    env = os.environ.get("XR_RUNTIME_JSON")
    where = (
        f"XR_RUNTIME_JSON={env} does not name a usable runtime manifest"
        if env
        else "XR_RUNTIME_JSON is not set and no active_runtime.json is installed"
    )
    msg = f"No OpenXR runtime is active: {where}."
    if detail:
        msg += f" (OpenXR loader: {detail})"
    return msg + "\n" + INSTALL_HINT


def probe_runtime() -> list[str]:
    """The instance extensions of the active OpenXR runtime. Raises XRRuntimeUnavailableError (with
    how to install/select one) when the loader finds no runtime; the loader's own stderr lines are
    folded into the message instead of being printed."""
    try:
        import xr
    except ImportError as exc:
        raise XRRuntimeUnavailableError(
            f"pyopenxr is not installed ({exc}): pip install 'pyopenxr==1.1.6501' PyOpenGL "
            "(the studio's `openxr` extra)"
        ) from None
    cap = _StderrCapture()
    try:
        with cap:
            props = xr.enumerate_instance_extension_properties()
    except xr.exception.RuntimeUnavailableError:
        raise XRRuntimeUnavailableError(runtime_unavailable_message(_loader_gist(cap.text))) from None
    except (xr.exception.XrException, OSError) as exc:
        raise XRRuntimeUnavailableError(
            runtime_unavailable_message(f"{type(exc).__name__}: {exc}; {_loader_gist(cap.text)}")
        ) from None
    if cap.text.strip():
        log.info("OpenXR loader/runtime: %s", cap.text.strip())
    names = []
    for p in props:
        n = p.extension_name
        names.append(n.decode() if isinstance(n, bytes) else str(n))
    return names


# ---------------------------------------------------------------------------------------------
# the session
# ---------------------------------------------------------------------------------------------


@dataclass
class EyeTarget:
    """One eye's swapchain: W×H GL textures wrapped as moderngl framebuffers (`targets`, one per
    swapchain image) and, with MSAA, a multisampled framebuffer to draw into and resolve from."""

    swapchain: Any
    width: int
    height: int
    images: list[Any]
    targets: list[Any]
    draw_fbo: Any | None
    gl_objects: list[Any] = field(default_factory=list)


@dataclass
class LocatedView:
    """One located view: pose (OpenGL axes, reference space) and FOV angles (radians)."""

    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float]
    fov: tuple[float, float, float, float]
    raw: Any = None


class XRSession:
    """An OpenXR instance + OpenGL (EGL or GLX) session + stereo swapchains + reference space, with the
    session state machine (`poll_events`). Single-threaded: create, drive and close it on one thread
    (the EGL context is current there). Use as a context manager.

    msaa: samples of the intermediate colour target (1 draws straight into the swapchain image).
    resolution_scale: multiplies the runtime's recommended per-eye size (clamped to its maximum).
    binding: "auto", "egl" or "glx" (see the module docstring).
    """

    def __init__(self, app_name: str = "studio", msaa: int = 4, resolution_scale: float = 1.0, binding: str = "auto") -> None:
        if binding not in BINDINGS:
            raise ValueError(f"binding must be one of {BINDINGS}, got {binding!r}")
        os.environ.setdefault("EGL_PLATFORM", "surfaceless")
        os.environ.setdefault("PYOPENGL_PLATFORM", "egl")  # PyOpenGL is only used for EGL
        self.extensions = probe_runtime()
        import xr

        self._xr = xr
        self.instance = self.session = self.space = None
        self.egl = None
        self._glfw = self._window = None
        self.ctx = None
        self.eyes: list[EyeTarget] = []
        self.state = xr.SessionState.UNKNOWN
        self.states_seen: list[str] = []
        self.running = False
        self.exit_requested = False
        self.lost = False
        self._local_exit = False
        self.runtime_name = ""
        self.space_type = ""
        self.binding = self._choose_binding(binding)
        try:
            self._open(app_name, max(1, int(msaa)), float(resolution_scale))
        except BaseException:
            self.close()
            raise

    # -- set-up -------------------------------------------------------------------------------
    def _choose_binding(self, binding: str) -> str:
        ext = set(self.extensions)
        have_display = bool(os.environ.get("DISPLAY"))
        if GL_EXTENSION not in ext:
            raise XRRuntimeUnavailableError(
                f"The active OpenXR runtime lacks {GL_EXTENSION}; the studio's OpenXR viewer renders with OpenGL. "
                "Use a runtime with OpenGL support (Monado, SteamVR), or preview in the headset's browser with "
                "`studio serve` and /xr/ (WebXR)."
            )
        if binding == "auto":
            binding = "egl" if EGL_EXTENSION in ext else "glx"
        if binding == "egl" and EGL_EXTENSION not in ext:
            raise XRRuntimeUnavailableError(
                f"The active OpenXR runtime lacks {EGL_EXTENSION} (offscreen EGL rendering, offered by Monado); "
                "run on a desktop with $DISPLAY set to use its GLX binding instead."
            )
        if binding == "glx" and not have_display:
            raise DisplayUnavailableError(
                f"The active OpenXR runtime has no {EGL_EXTENSION}, so the viewer needs a desktop OpenGL (GLX) "
                "context, and no X display is set ($DISPLAY). Run it from the desktop session the runtime uses, "
                "or use Monado (EGL, works headless), or preview over WebXR: `studio serve` and /xr/."
            )
        return binding

    def _make_egl_context(self) -> Any:
        try:
            from xr.utils.gl.egl_util import EGLGraphicsBinding, EGLOffscreenContextProvider
        except Exception as exc:  # noqa: BLE001 - PyOpenGL missing or no libEGL
            raise DisplayUnavailableError(
                f"cannot load EGL through PyOpenGL ({exc}); pip install PyOpenGL and "
                "sudo apt-get install libegl1 libgl1-mesa-dri"
            ) from None
        try:
            self.egl = EGLOffscreenContextProvider()
            self.egl.make_current()
        except Exception as exc:  # noqa: BLE001
            raise DisplayUnavailableError(
                f"cannot create an offscreen EGL context ({exc}); sudo apt-get install libegl1 libgl1-mesa-dri"
            ) from None
        def pointer() -> Any:
            self._egl_binding = EGLGraphicsBinding(self.egl)  # keep alive for the session's lifetime
            return self._egl_binding.pointer

        return pointer

    def _make_glx_context(self) -> Any:
        xr = self._xr
        try:
            import glfw
        except Exception as exc:  # noqa: BLE001
            raise DisplayUnavailableError(f"GLFW is not available ({exc}); pip install glfw") from None
        if not glfw.init():
            raise DisplayUnavailableError(f"GLFW cannot open the X display {os.environ.get('DISPLAY')!r}")
        self._glfw = glfw
        glfw.window_hint(glfw.VISIBLE, False)
        self._window = glfw.create_window(64, 64, "studio OpenXR", None, None)
        if not self._window:
            raise DisplayUnavailableError("GLFW could not create an OpenGL context on the X display")
        glfw.make_context_current(self._window)

        def addr(v: Any) -> int:
            return v if isinstance(v, int) else ctypes.cast(v, ctypes.c_void_p).value

        def pointer() -> Any:
            f = dict(xr.GraphicsBindingOpenGLXlibKHR._fields_)
            b = xr.GraphicsBindingOpenGLXlibKHR()
            b.x_display = ctypes.cast(addr(glfw.get_x11_display()), f["x_display"])
            b.glx_drawable = addr(glfw.get_glx_window(self._window))
            b.glx_context = ctypes.cast(addr(glfw.get_glx_context(self._window)), f["glx_context"])
            self._glx_binding = b  # keep alive for the session's lifetime
            return ctypes.cast(ctypes.pointer(b), ctypes.c_void_p)

        return pointer

    def _open(self, app_name: str, msaa: int, scale: float) -> None:
        xr = self._xr
        make_binding = self._make_egl_context() if self.binding == "egl" else self._make_glx_context()
        import moderngl

        moderngl.init_context()  # attaches to the current EGL context (eglGetProcAddress loader)
        self.ctx = moderngl.get_context()

        cap = _StderrCapture()
        try:
            with cap:
                self.instance = xr.create_instance(
                    xr.InstanceCreateInfo(
                        application_info=xr.ApplicationInfo(application_name=app_name[:127], engine_name="studio"),
                        enabled_extension_names=[GL_EXTENSION] + ([EGL_EXTENSION] if self.binding == "egl" else []),
                    )
                )
        except xr.exception.XrException as exc:
            raise XRRuntimeUnavailableError(
                runtime_unavailable_message(f"xrCreateInstance failed: {type(exc).__name__}: {exc}; {_loader_gist(cap.text)}")
            ) from None
        if cap.text.strip():
            log.debug("OpenXR runtime at instance creation:\n%s", cap.text.strip())
        props = xr.get_instance_properties(self.instance)
        name = props.runtime_name
        self.runtime_name = name.decode() if isinstance(name, bytes) else str(name)
        try:
            self.system_id = xr.get_system(self.instance, xr.SystemGetInfo(form_factor=xr.FormFactor.HEAD_MOUNTED_DISPLAY))
        except xr.exception.FormFactorUnavailableError:
            raise XRRuntimeUnavailableError(
                f"The OpenXR runtime {self.runtime_name!r} is active but no headset is connected or awake "
                "(XR_ERROR_FORM_FACTOR_UNAVAILABLE). Connect and wake the headset (or start SteamVR / the "
                "runtime's service), then try again."
            ) from None
        self.view_type = xr.ViewConfigurationType.PRIMARY_STEREO
        cfg_views = xr.enumerate_view_configuration_views(self.instance, self.system_id, self.view_type)
        xr.get_opengl_graphics_requirements_khr(self.instance, self.system_id)  # required before the session
        self.session = xr.create_session(
            self.instance, xr.SessionCreateInfo(system_id=self.system_id, next=make_binding())
        )
        spaces = list(xr.enumerate_reference_spaces(self.session))
        stype = xr.ReferenceSpaceType.STAGE if xr.ReferenceSpaceType.STAGE in spaces else xr.ReferenceSpaceType.LOCAL
        self.space_type = stype.name
        self.space = xr.create_reference_space(self.session, xr.ReferenceSpaceCreateInfo(reference_space_type=stype))

        formats = list(xr.enumerate_swapchain_formats(self.session))
        fmt = next((f for f in (GL_SRGB8_ALPHA8, GL_RGBA8) if f in formats), formats[0])
        self.swapchain_format = int(fmt)
        samples = max(1, min(msaa, int(self.ctx.max_samples)))
        for v in cfg_views:
            w = int(min(v.max_image_rect_width, max(16, round(v.recommended_image_rect_width * scale))))
            h = int(min(v.max_image_rect_height, max(16, round(v.recommended_image_rect_height * scale))))
            sc = xr.create_swapchain(
                self.session,
                xr.SwapchainCreateInfo(
                    usage_flags=xr.SwapchainUsageFlags.COLOR_ATTACHMENT_BIT | xr.SwapchainUsageFlags.TRANSFER_DST_BIT,
                    format=fmt,
                    sample_count=1,
                    width=w,
                    height=h,
                    face_count=1,
                    array_size=1,
                    mip_count=1,
                ),
            )
            images = list(xr.enumerate_swapchain_images(sc, xr.SwapchainImageOpenGLKHR))
            eye = EyeTarget(swapchain=sc, width=w, height=h, images=images, targets=[], draw_fbo=None)
            ctx = self.ctx
            if samples > 1:
                col = ctx.renderbuffer((w, h), 4, samples=samples)
                dep = ctx.depth_renderbuffer((w, h), samples=samples)
                eye.draw_fbo = ctx.framebuffer(color_attachments=[col], depth_attachment=dep)
                eye.gl_objects += [eye.draw_fbo, col, dep]
                depth_for_targets = None
            else:
                depth_for_targets = ctx.depth_renderbuffer((w, h))
                eye.gl_objects.append(depth_for_targets)
            for img in images:
                tex = ctx.external_texture(int(img.image), (w, h), 4, 0, "f1")
                fbo = ctx.framebuffer(color_attachments=[tex], depth_attachment=depth_for_targets)
                eye.targets.append(fbo)
                eye.gl_objects.append(fbo)  # the external texture belongs to the runtime
            self.eyes.append(eye)

    # -- state machine ------------------------------------------------------------------------
    def poll_events(self) -> None:
        """Drain the event queue and drive the state machine: READY → begin_session, STOPPING →
        end_session, EXITING / LOSS_PENDING / instance loss → `should_exit`."""
        xr = self._xr
        while True:
            try:
                buf = xr.poll_event(self.instance)
            except xr.EventUnavailable:
                return
            et = xr.StructureType(buf.type)
            if et == xr.StructureType.EVENT_DATA_SESSION_STATE_CHANGED:
                ev = ctypes.cast(ctypes.byref(buf), ctypes.POINTER(xr.EventDataSessionStateChanged)).contents
                self.state = xr.SessionState(ev.state)
                self.states_seen.append(self.state.name)
                log.debug("OpenXR session state -> %s", self.state.name)
                if self.state == xr.SessionState.READY:
                    xr.begin_session(self.session, xr.SessionBeginInfo(primary_view_configuration_type=self.view_type))
                    self.running = True
                elif self.state == xr.SessionState.STOPPING:
                    xr.end_session(self.session)
                    self.running = False
                elif self.state == xr.SessionState.LOSS_PENDING:
                    self.lost = True
            elif et == xr.StructureType.EVENT_DATA_INSTANCE_LOSS_PENDING:
                self.lost = True
                self.states_seen.append("INSTANCE_LOSS_PENDING")
            elif et == xr.StructureType.EVENT_DATA_EVENTS_LOST:
                log.warning("OpenXR runtime dropped events")
            else:
                log.debug("OpenXR event %s", et.name)

    @property
    def should_exit(self) -> bool:
        xr = self._xr
        return self.lost or self._local_exit or self.state in (xr.SessionState.EXITING, xr.SessionState.LOSS_PENDING)

    @property
    def focused(self) -> bool:
        return self.state == self._xr.SessionState.FOCUSED

    def request_exit(self) -> None:
        """Ask the runtime to end the session (it then goes STOPPING → IDLE → EXITING); frames keep
        being submitted until then. Idempotent."""
        if self.exit_requested or self.session is None:
            return
        self.exit_requested = True
        if self.running:
            self._xr.request_exit_session(self.session)
        else:  # never began: nothing for the runtime to stop, leave without waiting for it
            self._local_exit = True

    # -- one frame ----------------------------------------------------------------------------
    def frame(self, draw_eye: Callable[[int, LocatedView, EyeTarget, Any], None]) -> bool:
        """wait_frame → begin_frame → (if the runtime wants pixels) locate both views, call
        draw_eye(eye_index, view, eye, fbo) with the acquired image's framebuffer bound and viewport
        set, resolve MSAA, release → end_frame with one projection layer. The frame is always ended,
        even when draw_eye raises. Returns whether a projection layer was submitted."""
        xr = self._xr
        fs = xr.wait_frame(self.session, xr.FrameWaitInfo())
        xr.begin_frame(self.session, xr.FrameBeginInfo())
        layers = []
        submitted = False
        try:
            if fs.should_render:
                _, views = xr.locate_views(
                    self.session,
                    xr.ViewLocateInfo(
                        view_configuration_type=self.view_type, display_time=fs.predicted_display_time, space=self.space
                    ),
                )
                pviews = (xr.CompositionLayerProjectionView * len(views))()
                for i, v in enumerate(views):
                    eye = self.eyes[i]
                    idx = xr.acquire_swapchain_image(eye.swapchain, xr.SwapchainImageAcquireInfo())
                    xr.wait_swapchain_image(eye.swapchain, xr.SwapchainImageWaitInfo(timeout=xr.INFINITE_DURATION))
                    try:
                        target = eye.targets[idx]
                        fbo = eye.draw_fbo if eye.draw_fbo is not None else target
                        fbo.use()
                        self.ctx.viewport = (0, 0, eye.width, eye.height)
                        p, o, f = v.pose.position, v.pose.orientation, v.fov
                        lv = LocatedView(
                            position=(p.x, p.y, p.z),
                            orientation=(o.x, o.y, o.z, o.w),
                            fov=(f.angle_left, f.angle_right, f.angle_up, f.angle_down),
                            raw=v,
                        )
                        draw_eye(i, lv, eye, target)
                        if eye.draw_fbo is not None:
                            self.ctx.copy_framebuffer(target, eye.draw_fbo)
                    finally:
                        xr.release_swapchain_image(eye.swapchain, xr.SwapchainImageReleaseInfo())
                    pv = pviews[i]
                    pv.type = xr.StructureType.COMPOSITION_LAYER_PROJECTION_VIEW
                    pv.pose = v.pose
                    pv.fov = v.fov
                    pv.sub_image.swapchain = eye.swapchain
                    pv.sub_image.image_rect.offset[:] = [0, 0]
                    pv.sub_image.image_rect.extent[:] = [eye.width, eye.height]
                layer = xr.CompositionLayerProjection(space=self.space, views=pviews)
                layers = [ctypes.byref(layer)]
                submitted = True
        finally:
            xr.end_frame(
                self.session,
                xr.FrameEndInfo(
                    display_time=fs.predicted_display_time,
                    environment_blend_mode=xr.EnvironmentBlendMode.OPAQUE,
                    layers=layers,
                ),
            )
        return submitted

    def wait_running(self, timeout_s: float, stop: Callable[[], bool] | None = None) -> None:
        """Poll until the runtime makes the session READY (begun) or ends it, or `stop()` says so
        (then `request_exit`). Raises XRRuntimeUnavailableError when nothing happens within timeout_s."""
        t0 = time.monotonic()
        while not self.running and not self.should_exit:
            self.poll_events()
            if self.running or self.should_exit:
                break
            if stop is not None and stop():
                self.request_exit()
                break
            if time.monotonic() - t0 > timeout_s:
                raise XRRuntimeUnavailableError(
                    f"The OpenXR runtime {self.runtime_name!r} did not make the session ready within {timeout_s:.0f} s "
                    f"(states seen: {' -> '.join(self.states_seen) or 'none'}); is the headset on and the runtime's "
                    "compositor running?"
                )
            time.sleep(0.005)

    # -- tear-down ----------------------------------------------------------------------------
    def close(self) -> None:
        """Destroy swapchains, space, session and instance, then the EGL context (idempotent)."""
        xr = self._xr if hasattr(self, "_xr") else None
        for eye in self.eyes:
            for obj in eye.gl_objects:
                try:
                    obj.release()
                except Exception:  # noqa: BLE001
                    pass
            if xr is not None:
                xr.destroy_swapchain(eye.swapchain)
        self.eyes = []
        if xr is not None:
            if self.space is not None:
                xr.destroy_space(self.space)
                self.space = None
            if self.session is not None:
                xr.destroy_session(self.session)
                self.session = None
            if self.instance is not None:
                xr.destroy_instance(self.instance)
                self.instance = None
        self.ctx = None
        if self._window is not None:
            self._glfw.destroy_window(self._window)
            self._window = None
        if self.egl is not None:
            try:
                self.egl.destroy()
            except Exception:  # noqa: BLE001
                pass
            self.egl = None

    def __enter__(self) -> "XRSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
