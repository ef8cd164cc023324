"""The realtime PBR rasteriser: moderngl, headless through EGL, glTF 2.0 metallic-roughness shading.

Cameras are the studio's OpenCV `Cameras`; `projection_from_K` builds a clip matrix that reproduces
K exactly (pixel centres at +0.5, row 0 at the top), so depth/mask/normal passes line up pixel for
pixel with `Cameras.project`. Shading follows three.js r187 MeshStandardMaterial (what the web app
and the WebXR client show): image-based lighting by split sum (GGX-prefiltered equirect mip chain +
DFG LUT, the same table three.js ships) with multi-scattering, SH9 diffuse irradiance, an optional
directional light. Colour is shaded in linear, tone mapped, encoded to sRGB in the shader and
blended/resolved in that encoded space (as three.js does for its canvas). Mesh shaders are compiled
per feature set, so a software rasteriser only runs what a material uses. Gaussian splats are drawn
in the same frame as sorted, alpha-blended EWA quads (display-sRGB SH colours, as 3DGS).

Usage:
    result = render(asset, cameras, passes=("rgb", "depth", "mask"))
or, for repeated frames without re-uploading:
    with Renderer() as r:
        for cams in ...: r.render(asset, cams)
"""
from __future__ import annotations

import warnings
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from studio.assets.asset import Asset
from studio.assets.cameras import Cameras
from studio.assets.material import (
    CLAMP_TO_EDGE,
    LINEAR,
    LINEAR_MIPMAP_LINEAR,
    MIRRORED_REPEAT,
    Material,
    Texture,
)
from studio.assets.mesh import Mesh
from studio.assets.tangents import compute_tangents
from studio.errors import DisplayUnavailableError

from .environment import Environment, brdf_lut, default_environment, irradiance_sh9

SHADER_DIR = Path(__file__).with_name("shaders")
PASSES = ("rgb", "alpha", "depth", "normals", "mask")
TONE_MAPPINGS = {"none": 0, "aces": 1, "neutral": 2}
DEBUG_VIEWS = {"none": 0, "normals": 2, "uv_checker": 3}
SLOTS = ("base_color_texture", "metallic_roughness_texture", "normal_texture", "occlusion_texture", "emissive_texture")
SRGB_SLOTS = {"base_color_texture", "emissive_texture"}
GL_SRGB8_ALPHA8 = 0x8C43
ENV_WIDTH = 512
ENV_LEVELS = 6
PREFILTER_SAMPLES = 256
VERTEX_FLOATS = 18  # pos 3, normal 3, tangent 4, uv0 2, uv1 2, colour 4
APT_HINT = "sudo apt-get install libegl1 libgl1-mesa-dri"


class RenderWarning(UserWarning):
    """Input the renderer could draw only after repairing it (dropped triangles, fallback textures)."""


@dataclass(frozen=True)
class DirectionalLight:
    """A sun-like light. direction: world vector the light travels along; colour linear RGB;
    intensity in the three.js sense (radiance scale, lux-like)."""

    direction: tuple[float, float, float] = (-0.4, -1.0, -0.6)
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    intensity: float = 3.0


@dataclass
class RenderResult:
    """Only the requested passes are filled (others None). N cameras, H×W pixels, row 0 at the top.

    rgb: (N,H,W,3) uint8 sRGB, straight (not premultiplied) colour; with a transparent background
      pixels outside the asset are 0.
    alpha: (N,H,W) float32 coverage of the asset in [0,1] (anti-aliased by MSAA), whatever the background.
    depth: (N,H,W) float32 metric OpenCV camera z of the nearest surface, 0 where empty.
    normals: (N,H,W,3) float32 unit world-space shading normals (normal maps applied, facing the
      viewer on double-sided back faces), 0 where empty.
    mask: (N,H,W) bool, True where a surface covers the pixel centre, or where Gaussian splats
      accumulate alpha > 0.5 (splats do not write depth or normals).
    """

    rgb: np.ndarray | None = None
    alpha: np.ndarray | None = None
    depth: np.ndarray | None = None
    normals: np.ndarray | None = None
    mask: np.ndarray | None = None

    def rgba(self) -> np.ndarray:
        """(N,H,W,4) uint8 straight RGBA (needs the rgb pass)."""
        a = np.clip(np.round(self.alpha * 255), 0, 255).astype(np.uint8)
        return np.concatenate([self.rgb, a[..., None]], axis=-1)


# ---------------------------------------------------------------------------------------------
# camera maths
# ---------------------------------------------------------------------------------------------


def projection_from_K(K: np.ndarray, width: int, height: int, near: float, far: float) -> np.ndarray:
    """(4,4) float64 clip-from-OpenCV-camera matrix.

    With GL's viewport transform, a camera point (x, y, z) lands at window x = fx·x/z + s·y/z + cx
    and at image row coordinate v = H - window_y = fy·y/z + cy: exactly K, pixel centres at +0.5,
    row 0 at the top after flipping the read-back rows. z = near → NDC -1, z = far → +1.
    """
    from studio.assets.camera_formats import opengl_projection
    from studio.assets.cameras import CV_TO_GL

    # opengl_projection acts on OpenGL eye space (y up, z back); CV_TO_GL takes OpenCV camera
    # coordinates there (a proper rotation, so triangle winding is kept).
    return opengl_projection(K, width, height, near, far) @ CV_TO_GL


def _near_far(bounds: np.ndarray, w2c: np.ndarray) -> tuple[float, float]:
    lo, hi = bounds
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    z = corners @ w2c[2, :3] + w2c[2, 3]
    zmax = float(z.max())
    if not np.isfinite(zmax) or zmax <= 1e-6:
        return 0.01, 100.0
    far = zmax * 1.05 + 1e-3
    near = max(float(z.min()) * 0.95, far * 1e-4)
    return near, far


# ---------------------------------------------------------------------------------------------
# CPU mesh preparation (robustness: NaNs, degenerate triangles, missing normals/tangents)
# ---------------------------------------------------------------------------------------------


def compute_vertex_normals(positions: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V,3) float32 area-weighted unit vertex normals ((0,1,0) for unreferenced vertices)."""
    p = np.asarray(positions, np.float64)
    f = np.asarray(faces, np.int64)
    fn = np.cross(p[f[:, 1]] - p[f[:, 0]], p[f[:, 2]] - p[f[:, 0]])
    n = np.zeros_like(p)
    for k in range(3):
        np.add.at(n, f[:, k], fn)
    ln = np.linalg.norm(n, axis=1, keepdims=True)
    out = np.where(ln > 1e-20, n / np.maximum(ln, 1e-30), np.array([0.0, 1.0, 0.0]))
    return out.astype(np.float32)


def prepare_mesh(mesh: Mesh, need_tangents: bool = False) -> tuple[np.ndarray, np.ndarray] | None:
    """Interleaved vertex data (V, 18) float32 and indices (F*3,) uint32 for one mesh, after dropping
    triangles with non-finite or out-of-range vertices and zero-area triangles (each with a
    RenderWarning). None when nothing drawable is left."""
    name = mesh.name or "mesh"
    v = np.asarray(mesh.vertices, np.float64)
    f = np.asarray(mesh.faces, np.int64).reshape(-1, 3)
    nv = len(v)
    if nv == 0 or len(f) == 0:
        return None
    in_range = ((f >= 0) & (f < nv)).all(axis=1)
    if not in_range.all():
        warnings.warn(f"{name}: dropped {int((~in_range).sum())} triangles with out-of-range indices", RenderWarning, stacklevel=3)
        f = f[in_range]
    finite_v = np.isfinite(v).all(axis=1)
    ok = finite_v[f].all(axis=1)
    if not ok.all():
        warnings.warn(f"{name}: dropped {int((~ok).sum())} triangles with NaN/Inf vertices", RenderWarning, stacklevel=3)
        f = f[ok]
    vs = np.where(finite_v[:, None], v, 0.0)
    if len(f):
        area2 = np.linalg.norm(np.cross(vs[f[:, 1]] - vs[f[:, 0]], vs[f[:, 2]] - vs[f[:, 0]]), axis=1)
        ext = np.ptp(vs[np.unique(f)], axis=0).max() if len(f) else 0.0
        degenerate = area2 <= max(ext, 1e-30) ** 2 * 1e-12
        if degenerate.any():
            warnings.warn(f"{name}: dropped {int(degenerate.sum())} zero-area triangles", RenderWarning, stacklevel=3)
            f = f[~degenerate]
    if len(f) == 0:
        warnings.warn(f"{name}: no drawable triangles left", RenderWarning, stacklevel=3)
        return None

    normals = None
    if mesh.normals is not None:
        normals = np.asarray(mesh.normals, np.float64)
        bad = ~np.isfinite(normals).all(axis=1) | (np.linalg.norm(np.nan_to_num(normals), axis=1) < 1e-12)
        if bad.any():
            computed = compute_vertex_normals(vs, f)
            normals = np.where(bad[:, None], computed, normals)
        normals = normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-30)
    else:
        normals = compute_vertex_normals(vs, f)

    data = np.zeros((nv, VERTEX_FLOATS), np.float32)
    data[:, 0:3] = vs
    data[:, 3:6] = normals
    uvs = [np.nan_to_num(np.asarray(u, np.float32)) for u in mesh.uvs]
    if uvs:
        data[:, 10:12] = uvs[0]
        data[:, 12:14] = uvs[1] if len(uvs) > 1 else uvs[0]
    if mesh.tangents is not None and np.isfinite(mesh.tangents).all():
        data[:, 6:10] = mesh.tangents
    elif need_tangents and uvs:
        nt = mesh.material.normal_texture
        tc = 0 if nt is None else (nt.texcoord if nt.transform is None or nt.transform.texcoord is None else nt.transform.texcoord)
        slot_uv = uvs[min(int(tc), len(uvs) - 1)]
        data[:, 6:10] = compute_tangents(vs, normals, slot_uv, f)
    data[:, 14:18] = 1.0 if mesh.colors is None else np.nan_to_num(np.asarray(mesh.colors, np.float32), nan=1.0)
    return data, f.astype(np.uint32).ravel()


def fallback_texture_image(size: int = 64, cell: int = 8) -> np.ndarray:
    """(size,size,4) uint8 magenta/black checker shown where a texture is missing or corrupt."""
    yy, xx = np.mgrid[:size, :size]
    on = ((xx // cell) + (yy // cell)) % 2 == 0
    img = np.zeros((size, size, 4), np.uint8)
    img[on] = (255, 0, 255, 255)
    img[~on] = (0, 0, 0, 255)
    return img


def texture_rgba(tex: Texture, label: str = "texture") -> tuple[np.ndarray, bool]:
    """(H,W,4) uint8 pixels of a texture slot (grey → RGB, grey+alpha → RGBA, 16-bit/float scaled),
    and whether it is the fallback checker (then a RenderWarning was issued)."""
    try:
        img = np.asarray(tex.image)
        if img.ndim == 2:
            img = img[:, :, None]
        if img.ndim != 3 or img.shape[0] < 1 or img.shape[1] < 1 or img.shape[2] not in (1, 2, 3, 4):
            raise ValueError(f"image has shape {img.shape}")
        if img.dtype == np.uint16:
            img = (img.astype(np.uint32) * 255 + 32767) // 65535
        elif img.dtype.kind == "f":
            img = np.round(np.clip(np.nan_to_num(img), 0, 1) * 255)
        elif img.dtype != np.uint8:
            raise ValueError(f"image has dtype {img.dtype}")
        img = img.astype(np.uint8)
        c = img.shape[2]
        out = np.full(img.shape[:2] + (4,), 255, np.uint8)
        if c in (1, 2):
            out[..., :3] = img[..., :1]
            if c == 2:
                out[..., 3] = img[..., 1]
        else:
            out[..., :c] = img
        return np.ascontiguousarray(out), False
    except Exception as exc:  # noqa: BLE001 - any broken image gets the visible fallback
        name = getattr(tex, "name", "") or label
        warnings.warn(f"{name}: missing or corrupt texture ({exc}); drawing a magenta checker", RenderWarning, stacklevel=3)
        return fallback_texture_image(), True


# ---------------------------------------------------------------------------------------------
# GL context
# ---------------------------------------------------------------------------------------------


def create_headless_context():
    """A standalone moderngl context through EGL (Mesa llvmpipe on CPU, the vendor driver on GPU).

    Raises DisplayUnavailableError naming the Debian packages when EGL cannot start."""
    try:
        import moderngl
    except ImportError as exc:  # pragma: no cover - moderngl is a hard dependency
        raise DisplayUnavailableError(f"moderngl is not installed ({exc}); pip install moderngl==5.13.0") from exc
    try:
        ctx = moderngl.create_context(standalone=True, backend="egl", require=330)
    except Exception as exc:  # noqa: BLE001 - glcontext raises plain Exceptions
        raise DisplayUnavailableError(
            f"cannot create a headless OpenGL context through EGL ({exc}). Install the EGL loader and "
            f"Mesa drivers: {APT_HINT} (or the NVIDIA driver's EGL on a GPU machine)"
        ) from exc
    return ctx


def _load_shader(name: str) -> str:
    src = (SHADER_DIR / name).read_text()
    if "//#include common.glsl" in src:
        src = src.replace("//#include common.glsl", (SHADER_DIR / "common.glsl").read_text())
    return src


def _set(prog, name: str, value: Any) -> None:
    """Set a uniform if the program kept it (GLSL compilers drop unused ones)."""
    if name not in prog:
        return
    u = prog[name]
    if isinstance(value, np.ndarray):
        arr = value.astype(np.float32)
        if arr.ndim == 2 and arr.shape[0] == arr.shape[1]:
            arr = arr.T  # GLSL matrices are column-major
        n = max(1, int(getattr(u, "array_length", 1))) * max(1, int(getattr(u, "dimension", arr.size)))
        u.write(np.ascontiguousarray(arr).reshape(-1)[:n].tobytes())
    else:
        u.value = value


def _set_array(prog, name: str, values: np.ndarray, per_element: int) -> None:
    """Set a uniform array (int32 or float32 values, `per_element` scalars each), truncated to what
    the compiled program kept."""
    if name not in prog:
        return
    u = prog[name]
    n = max(1, int(getattr(u, "array_length", 1)))
    flat = np.ascontiguousarray(values).reshape(-1)[: n * per_element]
    u.write(flat.tobytes())


# ---------------------------------------------------------------------------------------------
# GPU resources
# ---------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _GpuPrimitive:
    mesh: Mesh
    vbo: Any
    ibo: Any
    textures: dict[str, tuple[Any, bool]]
    flip_winding: bool
    center_local: np.ndarray
    vaos: dict[tuple, Any] = field(default_factory=dict)  # one per shader variant it was drawn with

    def release(self) -> None:
        for obj in (*self.vaos.values(), self.vbo, self.ibo):
            obj.release()
        self.vaos.clear()


@dataclass(eq=False)
class _GpuAsset:
    prims: list[_GpuPrimitive] = field(default_factory=list)
    textures: list[Any] = field(default_factory=list)
    bounds: np.ndarray = field(default_factory=lambda: np.zeros((2, 3)))
    splats: Any = None

    def release(self) -> None:
        for p in self.prims:
            p.release()
        for t in self.textures:
            t.release()
        if self.splats is not None:
            self.splats.release()
            self.splats = None
        self.prims.clear()
        self.textures.clear()


@dataclass(eq=False)
class _GpuEnvironment:
    spec: Any
    sh: np.ndarray
    max_lod: float


class Renderer:
    """Holds a GL context, compiled programs and uploaded assets/environments, so repeated frames
    (turntables, the viewer, XR) draw without re-uploading. Not thread-safe.

    ctx: an existing moderngl context (e.g. a window's); None creates a headless EGL one.
    """

    def __init__(self, ctx=None, max_cached_assets: int = 4):
        import moderngl

        self._mgl = moderngl
        self.owns_context = ctx is None
        self.ctx = create_headless_context() if ctx is None else ctx
        ctx = self.ctx
        self._mesh_vs = _load_shader("mesh.vert")
        self._mesh_fs = _load_shader("mesh.frag")
        self._mesh_progs: dict[tuple, Any] = {}
        self.bg_prog = ctx.program(vertex_shader=_load_shader("fullscreen.vert"), fragment_shader=_load_shader("background.frag"))
        self.prefilter_prog = ctx.program(
            vertex_shader=_load_shader("fullscreen.vert"), fragment_shader=_load_shader("prefilter.frag")
        )
        self.splat_prog = ctx.program(vertex_shader=_load_shader("splat.vert"), fragment_shader=_load_shader("splat.frag"))
        self.empty_vao = ctx.vertex_array(self.bg_prog, [])
        self.prefilter_vao = ctx.vertex_array(self.prefilter_prog, [])
        self.white = ctx.texture((1, 1), 4, bytes([255, 255, 255, 255]))
        lut = brdf_lut()
        self.lut = ctx.texture((lut.shape[1], lut.shape[0]), 2, np.ascontiguousarray(lut).tobytes(), dtype="f4")
        self.lut.repeat_x = self.lut.repeat_y = False
        self.lut.filter = (moderngl.LINEAR, moderngl.LINEAR)
        self.corner_vbo = ctx.buffer(np.array([-1, -1, 1, -1, -1, 1, 1, 1], np.float32).tobytes())
        self._assets: OrderedDict[int, tuple[weakref.ref, _GpuAsset]] = OrderedDict()
        self._envs: OrderedDict[str, _GpuEnvironment] = OrderedDict()
        self._fbos: dict[tuple, Any] = {}
        self.max_cached_assets = max_cached_assets

    def mesh_program(
        self,
        mode: int,
        textures: tuple[bool, ...],
        alpha_mode: int,
        has_env: bool,
        has_light: bool,
        unlit: bool,
        double_sided: bool = False,
        tonemap: int = 0,
        vertex_colors: bool = True,
        uv1: bool = True,
    ):
        """The mesh program compiled for one feature set (cached): see the defines in mesh.frag."""
        textures = tuple(bool(t) for t in textures)
        vertex_sh = has_env and mode == 0 and not textures[2] and not double_sided
        key = (mode, textures, alpha_mode, bool(has_env), bool(has_light), bool(unlit), vertex_sh, int(tonemap),
               bool(vertex_colors), bool(uv1))
        prog = self._mesh_progs.get(key)
        if prog is None:
            defines = [f"#define MODE {mode}", f"#define ALPHA_MODE {alpha_mode}", f"#define HAS_ENV {int(has_env)}",
                       f"#define HAS_LIGHT {int(has_light)}", f"#define MAT_UNLIT {int(unlit)}",
                       f"#define VERTEX_SH {int(vertex_sh)}", f"#define TONEMAP {int(tonemap)}",
                       f"#define HAS_VCOLOR {int(vertex_colors)}", f"#define HAS_UV1 {int(uv1)}"]
            defines += [f"#define HAS_TEX{i} {int(t)}" for i, t in enumerate(textures)]
            head = "#version 330 core\n" + "\n".join(defines) + "\n"
            fs = self._mesh_fs.replace("#version 330 core\n", head, 1)
            vs = self._mesh_vs.replace("#version 330 core\n", head, 1)
            prog = self.ctx.program(vertex_shader=vs, fragment_shader=fs)
            for i in range(5):
                _set(prog, f"u_tex{i}", i)
            _set(prog, "u_env_spec", 5)
            _set(prog, "u_brdf_lut", 6)
            self._mesh_progs[key] = prog
        return key, prog

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> "Renderer":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        """Free every GPU resource (and the context when this renderer created it)."""
        for _, g in self._assets.values():
            g.release()
        self._assets.clear()
        for e in self._envs.values():
            e.spec.release()
        self._envs.clear()
        for fb in self._fbos.values():
            for obj in fb:
                obj.release()
        self._fbos.clear()
        for prog in self._mesh_progs.values():
            prog.release()
        self._mesh_progs.clear()
        if self.owns_context and self.ctx is not None:
            self.ctx.release()
            self.ctx = None

    def make_current(self) -> None:
        """Make this renderer's own context current on this thread. Other GL users in the process
        (an OpenXR session, a viewer window) switch the current EGL/GLX context; drawing without
        switching back would issue our calls into their context."""
        if self.owns_context and self.ctx is not None:
            self.ctx.__enter__()

    def forget(self, asset: Asset) -> None:
        """Drop the GPU copy of `asset` (call after editing its geometry or textures in place)."""
        entry = self._assets.pop(id(asset), None)
        if entry is not None:
            entry[1].release()

    # -- uploads ---------------------------------------------------------------------------
    def _texture(self, tex: Texture, slot: str) -> tuple[Any, bool]:
        mgl = self._mgl
        rgba, fallback = texture_rgba(tex, slot)
        h, w = rgba.shape[:2]
        t = self.ctx.texture(
            (w, h), 4, rgba.tobytes(), internal_format=GL_SRGB8_ALPHA8 if slot in SRGB_SLOTS else None
        )
        s = tex.sampler if not fallback else None
        wrap_s = getattr(s, "wrap_s", None)
        wrap_t = getattr(s, "wrap_t", None)
        t.repeat_x = wrap_s != CLAMP_TO_EDGE
        t.repeat_y = wrap_t != CLAMP_TO_EDGE
        min_f = getattr(s, "min_filter", None) or LINEAR_MIPMAP_LINEAR
        mag_f = getattr(s, "mag_filter", None) or LINEAR
        if fallback:
            min_f, mag_f = mgl.NEAREST, mgl.NEAREST
        if min_f >= 9984:  # any *_MIPMAP_* filter
            t.build_mipmaps()
        t.filter = (int(min_f), int(mag_f))
        return t, fallback

    def _upload(self, asset: Asset) -> _GpuAsset:
        key = id(asset)
        entry = self._assets.get(key)
        if entry is not None and entry[0]() is asset:
            self._assets.move_to_end(key)
            return entry[1]
        if entry is not None:
            entry[1].release()
            del self._assets[key]
        g = _GpuAsset(bounds=asset.bounds())
        texcache: dict[tuple[int, str], tuple[Any, bool]] = {}
        for mesh in asset.meshes:
            mat = mesh.material or Material()
            prepared = prepare_mesh(mesh, need_tangents=mat.normal_texture is not None)
            if prepared is None:
                continue
            data, idx = prepared
            vbo = self.ctx.buffer(data.tobytes())
            ibo = self.ctx.buffer(idx.tobytes())
            texs: dict[str, tuple[Any, bool]] = {}
            for slot in SLOTS:
                tex = getattr(mat, slot, None)
                if tex is None:
                    continue
                k = (id(tex), slot in SRGB_SLOTS)
                if k not in texcache:
                    texcache[k] = self._texture(tex, slot)
                    g.textures.append(texcache[k][0])
                texs[slot] = texcache[k]
            used = data[np.unique(idx), :3]
            g.prims.append(
                _GpuPrimitive(
                    mesh=mesh,
                    vbo=vbo,
                    ibo=ibo,
                    textures=texs,
                    flip_winding=bool(np.linalg.det(mesh.transform[:3, :3]) < 0),
                    center_local=(used.min(0) + used.max(0)) / 2,
                )
            )
        if asset.splats is not None and len(asset.splats):
            g.splats = _SplatDrawer(self, asset.splats)
            ext = float(np.exp(asset.splats.log_scales.max())) * 3.0
            g.bounds = np.stack([g.bounds[0] - ext, g.bounds[1] + ext])
        self._assets[key] = (weakref.ref(asset), g)
        while len(self._assets) > self.max_cached_assets:
            _, (_, old) = self._assets.popitem(last=False)
            old.release()
        return g

    def environment(self, env: Environment) -> _GpuEnvironment:
        """Upload `env` and prefilter it for IBL once (cached by content)."""
        key = env.digest
        if key in self._envs:
            self._envs.move_to_end(key)
            return self._envs[key]
        mgl = self._mgl
        ctx = self.ctx
        src_img = _resize_equirect(env.image, ENV_WIDTH)
        h, w = src_img.shape[:2]
        rgba = np.concatenate([src_img, np.ones((h, w, 1), np.float32)], axis=2)
        src = ctx.texture((w, h), 4, rgba.tobytes(), dtype="f4")
        src.repeat_x, src.repeat_y = True, False
        src.build_mipmaps()
        src.filter = (mgl.LINEAR_MIPMAP_LINEAR, mgl.LINEAR)
        spec = ctx.texture((w, h), 4, rgba.tobytes(), dtype="f4")
        spec.build_mipmaps(0, ENV_LEVELS - 1)
        prog = self.prefilter_prog
        _set(prog, "u_src", 0)
        _set(prog, "u_src_size", (float(w), float(h)))
        _set(prog, "u_samples", PREFILTER_SAMPLES)
        src.use(0)
        prev_fbo = ctx.fbo
        for level in range(1, ENV_LEVELS):
            lw, lh = max(1, w >> level), max(1, h >> level)
            tgt = ctx.texture((lw, lh), 4, dtype="f4")
            fbo = ctx.framebuffer(color_attachments=[tgt])
            fbo.use()
            ctx.disable(mgl.DEPTH_TEST | mgl.BLEND | mgl.CULL_FACE)
            _set(prog, "u_size", (float(lw), float(lh)))
            _set(prog, "u_roughness", level / (ENV_LEVELS - 1))
            self.prefilter_vao.render(mgl.TRIANGLES, vertices=3)
            spec.write(fbo.read(components=4, dtype="f4"), level=level)
            fbo.release()
            tgt.release()
        if prev_fbo is not None:
            prev_fbo.use()
        src.release()
        spec.repeat_x, spec.repeat_y = True, False
        spec.filter = (mgl.LINEAR_MIPMAP_LINEAR, mgl.LINEAR)
        genv = _GpuEnvironment(spec=spec, sh=irradiance_sh9(env.image), max_lod=float(ENV_LEVELS - 1))
        self._envs[key] = genv
        while len(self._envs) > 4:
            _, old = self._envs.popitem(last=False)
            old.spec.release()
        return genv

    # -- framebuffers ----------------------------------------------------------------------
    def _color_fbo(self, w: int, h: int, samples: int):
        key = ("color", w, h, samples)
        if key not in self._fbos:
            ctx = self.ctx
            resolve_tex = ctx.texture((w, h), 4)
            resolve_depth = ctx.depth_renderbuffer((w, h))
            resolve = ctx.framebuffer(color_attachments=[resolve_tex], depth_attachment=resolve_depth)
            objs = [resolve, resolve_tex, resolve_depth]
            if samples > 1:
                ms_col = ctx.renderbuffer((w, h), 4, samples=samples)
                ms_depth = ctx.depth_renderbuffer((w, h), samples=samples)
                ms = ctx.framebuffer(color_attachments=[ms_col], depth_attachment=ms_depth)
                objs = [ms, ms_col, ms_depth] + objs
            self._fbos[key] = tuple(objs)
        objs = self._fbos[key]
        return objs[0], objs[-3]  # draw target, resolve target

    def _geom_fbo(self, w: int, h: int):
        key = ("geom", w, h)
        if key not in self._fbos:
            ctx = self.ctx
            col = ctx.texture((w, h), 4)
            nrm = ctx.texture((w, h), 4, dtype="f4")
            dep = ctx.texture((w, h), 1, dtype="f4")
            db = ctx.depth_renderbuffer((w, h))
            fbo = ctx.framebuffer(color_attachments=[col, nrm, dep], depth_attachment=db)
            self._fbos[key] = (fbo, col, nrm, dep, db)
        return self._fbos[key]

    # -- drawing ---------------------------------------------------------------------------
    def draw(
        self,
        asset: Asset,
        K: np.ndarray,
        cam_to_world: np.ndarray,
        width: int,
        height: int,
        *,
        environment: Environment | None = None,
        lighting: str = "ibl",
        tone_mapping: str = "none",
        exposure: float = 1.0,
        directional_light: DirectionalLight | None = None,
        background: Any = None,
        debug_view: str = "none",
        wireframe: bool = False,
        geometry_pass: bool = False,
        background_alpha: float = 1.0,
    ) -> None:
        """Draw one view into the currently bound framebuffer (viewport already set). The caller
        clears it; `background` "environment" draws the environment first (writing
        `background_alpha`). geometry_pass=True draws without blending for the normal/depth/mask
        attachments."""
        mgl = self._mgl
        ctx = self.ctx
        if lighting not in ("ibl", "unlit"):
            raise ValueError(f"lighting must be 'ibl' or 'unlit', got {lighting!r}")
        if tone_mapping not in TONE_MAPPINGS:
            raise ValueError(f"tone_mapping must be one of {tuple(TONE_MAPPINGS)}, got {tone_mapping!r}")
        if debug_view not in DEBUG_VIEWS:
            raise ValueError(f"debug_view must be one of {tuple(DEBUG_VIEWS)}, got {debug_view!r}")
        g = self._upload(asset)
        c2w = np.asarray(cam_to_world, np.float64)
        w2c = np.linalg.inv(c2w)
        near, far = _near_far(g.bounds, w2c)
        proj = projection_from_K(K, width, height, near, far)
        env = environment if environment is not None else default_environment()
        need_env = (lighting == "ibl" and not geometry_pass) or (isinstance(background, str) and background == "environment")
        genv = self.environment(env) if need_env else None
        env_rot = _rot_y(-env.rotation)

        if genv is not None and isinstance(background, str) and background == "environment" and not geometry_pass:
            bp = self.bg_prog
            ctx.disable(mgl.DEPTH_TEST | mgl.CULL_FACE | mgl.BLEND)
            _set(bp, "u_ray", c2w[:3, :3] @ np.linalg.inv(np.asarray(K, np.float64)))
            _set(bp, "u_height", float(height))
            _set(bp, "u_env_spec", 5)
            _set(bp, "u_lod", 0.0)
            _set(bp, "u_env_intensity", float(env.intensity))
            _set(bp, "u_env_rot", env_rot)
            _set(bp, "u_tonemap", TONE_MAPPINGS[tone_mapping])
            _set(bp, "u_exposure", float(exposure))
            _set(bp, "u_alpha", float(background_alpha))
            genv.spec.use(5)
            self.empty_vao.render(mgl.TRIANGLES, vertices=3)

        mode = 4 if geometry_pass else (DEBUG_VIEWS[debug_view] or (1 if lighting == "unlit" else 0))
        light = directional_light if lighting == "ibl" and not geometry_pass else None
        frame: dict[str, Any] = {
            "u_tonemap": TONE_MAPPINGS[tone_mapping],
            "u_exposure": float(exposure),
            "u_camera_pos": tuple(float(x) for x in c2w[:3, 3]),
            "u_proj": proj,
        }
        has_env = genv is not None and mode == 0
        if has_env:
            genv.spec.use(5)
            self.lut.use(6)
            frame.update(u_sh=genv.sh, u_env_intensity=float(env.intensity), u_env_rot=env_rot, u_env_max_lod=genv.max_lod)
        else:
            self.lut.use(6)
        if light is not None:
            frame["u_light_dir"] = tuple(float(x) for x in light.direction)
            frame["u_light_radiance"] = tuple(float(c) * float(light.intensity) for c in light.color)
        features = (mode, has_env, light is not None, TONE_MAPPINGS[tone_mapping])

        ctx.enable(mgl.DEPTH_TEST)
        ctx.depth_func = "<"
        ctx.wireframe = bool(wireframe)
        opaque, blended = [], []
        for prim in g.prims:
            (blended if prim.mesh.material.alpha_mode == "BLEND" else opaque).append(prim)
        if blended:
            depth_of = lambda pr: float((w2c @ pr.mesh.transform @ np.append(pr.center_local, 1.0))[2])  # noqa: E731
            blended.sort(key=depth_of, reverse=True)
        ctx.disable(mgl.BLEND)
        for prim in opaque:
            self._draw_prim(prim, w2c, frame, features)
        if blended:
            if not geometry_pass:
                ctx.enable(mgl.BLEND)
                ctx.blend_func = (mgl.SRC_ALPHA, mgl.ONE_MINUS_SRC_ALPHA, mgl.ONE, mgl.ONE_MINUS_SRC_ALPHA)
            for prim in blended:
                self._draw_prim(prim, w2c, frame, features)
        if g.splats is not None and not geometry_pass:
            g.splats.draw(K, c2w, width, height, near, far, TONE_MAPPINGS[tone_mapping], float(exposure))
        ctx.wireframe = False
        ctx.disable(mgl.BLEND | mgl.CULL_FACE)
        ctx.front_face = "ccw"

    def _draw_prim(self, prim: _GpuPrimitive, w2c: np.ndarray, frame: dict[str, Any], features: tuple) -> None:
        mgl = self._mgl
        ctx = self.ctx
        mat = prim.mesh.material
        mode, has_env, has_light, tonemap = features
        has, texcoord, uvmat, mirror = [], [], [], []
        for i, slot in enumerate(SLOTS):
            tex = getattr(mat, slot, None)
            gl = prim.textures.get(slot)
            if tex is None or gl is None:
                self.white.use(i)
                has.append(False)
                texcoord.append(0)
                uvmat.append(np.eye(3))
                mirror.append((0.0, 0.0))
                continue
            gl[0].use(i)
            has.append(True)
            tt = tex.transform
            tc = tex.texcoord if tt is None or tt.texcoord is None else tt.texcoord
            texcoord.append(int(tc))
            uvmat.append(np.eye(3) if tt is None or gl[1] else tt.matrix())
            s = tex.sampler
            mirror.append(
                (0.0, 0.0) if gl[1] else (float(s.wrap_s == MIRRORED_REPEAT), float(s.wrap_t == MIRRORED_REPEAT))
            )
        alpha_mode = {"OPAQUE": 0, "MASK": 1, "BLEND": 2}[mat.alpha_mode]
        key, p = self.mesh_program(mode, tuple(has), alpha_mode, has_env, has_light, bool(mat.unlit), bool(mat.double_sided), tonemap,
            prim.mesh.colors is not None, any(t == 1 for t in texcoord))
        for name, value in frame.items():
            _set(p, name, value)
        model = prim.mesh.transform
        _set(p, "u_model", model)
        _set(p, "u_view_model", w2c @ model)
        _set(p, "u_normal_matrix", np.linalg.inv(model[:3, :3]).T)
        _set(p, "u_base_color_factor", tuple(float(x) for x in mat.base_color_factor))
        _set(p, "u_metallic_factor", float(mat.metallic_factor))
        _set(p, "u_roughness_factor", float(mat.roughness_factor))
        _set(p, "u_emissive", tuple(float(x) * float(mat.emissive_strength) for x in mat.emissive_factor))
        _set(p, "u_normal_scale", float(mat.normal_scale))
        _set(p, "u_occlusion_strength", float(mat.occlusion_strength))
        _set(p, "u_alpha_cutoff", float(mat.alpha_cutoff))
        _set_array(p, "u_texcoord", np.array(texcoord, np.int32), 1)
        _set_array(p, "u_uvmat", np.stack([m.T for m in uvmat]).astype(np.float32), 9)
        _set_array(p, "u_mirror", np.array(mirror, np.float32), 2)
        if mat.double_sided:
            ctx.disable(mgl.CULL_FACE)
        else:
            ctx.enable(mgl.CULL_FACE)
            ctx.cull_face = "back"
        ctx.front_face = "cw" if prim.flip_winding else "ccw"
        vao = prim.vaos.get(key)
        if vao is None:
            vao = ctx.vertex_array(
                p,
                [(prim.vbo, "3f 3f 4f 2f 2f 4f", "in_pos", "in_normal", "in_tangent", "in_uv0", "in_uv1", "in_color")],
                index_buffer=prim.ibo,
                index_element_size=4,
                skip_errors=True,
            )
            prim.vaos[key] = vao
        vao.render(mgl.TRIANGLES)

    def render(
        self,
        asset: Asset,
        cameras: Cameras,
        *,
        environment: Environment | None = None,
        passes: Sequence[str] = ("rgb",),
        lighting: str = "ibl",
        tone_mapping: str = "none",
        exposure: float = 1.0,
        directional_light: DirectionalLight | None = None,
        background: Any = None,
        msaa: int = 4,
        unlit: bool = False,
        debug_view: str = "none",
        wireframe: bool = False,
    ) -> RenderResult:
        """Render every camera. See the module-level `render` for the arguments."""
        mgl = self._mgl
        self.make_current()
        passes = tuple(passes)
        unknown = set(passes) - set(PASSES)
        if unknown:
            raise ValueError(f"unknown render passes {sorted(unknown)}; choose from {PASSES}")
        if unlit:
            lighting = "unlit"
        w, h, n = cameras.width, cameras.height, len(cameras)
        ctx = self.ctx
        res = RenderResult()
        has_splats = asset.splats is not None and len(asset.splats) > 0
        # splats have no single surface: they join the mask through their accumulated alpha (> 0.5)
        want_color = "rgb" in passes or "alpha" in passes or ("mask" in passes and has_splats)
        want_geom = any(x in passes for x in ("depth", "normals", "mask"))
        splat_alpha = np.zeros((h, w), np.float32)
        if "rgb" in passes:
            res.rgb = np.zeros((n, h, w, 3), np.uint8)
        if "rgb" in passes or "alpha" in passes:
            res.alpha = np.zeros((n, h, w), np.float32)
        if "depth" in passes:
            res.depth = np.zeros((n, h, w), np.float32)
        if "normals" in passes:
            res.normals = np.zeros((n, h, w, 3), np.float32)
        if "mask" in passes:
            res.mask = np.zeros((n, h, w), bool)
        samples = max(1, min(int(msaa), int(ctx.max_samples)))
        bg_rgb = _background_rgb(background)
        opts = dict(
            environment=environment,
            lighting=lighting,
            tone_mapping=tone_mapping,
            exposure=exposure,
            directional_light=directional_light,
            debug_view=debug_view,
            wireframe=wireframe,
        )
        for i in range(n):
            K, c2w = cameras.K[i], cameras.cam_to_world[i]
            if want_color:
                draw_fbo, resolve = self._color_fbo(w, h, samples)
                draw_fbo.use()
                ctx.viewport = (0, 0, w, h)
                if bg_rgb is not None:  # alpha stays 0: the alpha pass is coverage whatever the background
                    draw_fbo.clear(*bg_rgb, 0.0, depth=1.0)
                else:
                    draw_fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
                self.draw(asset, K, c2w, w, h, background=background, background_alpha=0.0, **opts)
                if draw_fbo is not resolve:
                    ctx.copy_framebuffer(resolve, draw_fbo)
                rgba = np.frombuffer(resolve.read(components=4, dtype="f1"), np.uint8).reshape(h, w, 4)[::-1]
                a = rgba[..., 3].astype(np.float32) / 255.0
                splat_alpha = a
                if res.alpha is not None:
                    res.alpha[i] = a
                if res.rgb is not None:
                    res.rgb[i] = rgba[..., :3]
                    if bg_rgb is None and not (isinstance(background, str) and background == "environment"):
                        # un-premultiply where coverage is partial (opaque and empty pixels are exact already)
                        a8 = rgba[..., 3]
                        part = (a8 > 0) & (a8 < 255)
                        if part.any():
                            c = rgba[..., :3][part].astype(np.float32) * (255.0 / a8[part, None].astype(np.float32))
                            res.rgb[i][part] = np.clip(np.round(c), 0, 255).astype(np.uint8)
            if want_geom:
                fbo, _col, nrm, dep, _db = self._geom_fbo(w, h)
                fbo.use()
                ctx.viewport = (0, 0, w, h)
                fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
                self.draw(asset, K, c2w, w, h, background=None, geometry_pass=True, **opts)
                if res.depth is not None:
                    res.depth[i] = np.frombuffer(dep.read(), np.float32).reshape(h, w)[::-1]
                if res.normals is not None or res.mask is not None:
                    nn = np.frombuffer(nrm.read(), np.float32).reshape(h, w, 4)[::-1]
                    if res.normals is not None:
                        res.normals[i] = nn[..., :3]
                    if res.mask is not None:
                        res.mask[i] = nn[..., 3] > 0.5
                        if has_splats:
                            res.mask[i] |= splat_alpha > 0.5
        return res


def _rot_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _background_rgb(background: Any) -> tuple[float, float, float] | None:
    if background is None or (isinstance(background, str) and background in ("environment", "transparent")):
        return None
    if isinstance(background, str):
        raise ValueError(f"background must be None, 'environment' or an sRGB colour tuple, got {background!r}")
    c = tuple(float(x) for x in background)
    if len(c) not in (3, 4):
        raise ValueError(f"background colour must have 3 components (sRGB in [0,1]), got {background!r}")
    if max(c) > 1.0:  # allow 0-255 integers
        c = tuple(x / 255.0 for x in c)
    return c[:3]


def _resize_equirect(img: np.ndarray, width: int) -> np.ndarray:
    """(H,W,3) float32 → (width/2, width, 3) by box/bilinear filtering per channel (PIL 'F' mode)."""
    from PIL import Image

    h2, w2 = width // 2, width
    if img.shape[:2] == (h2, w2):
        return np.ascontiguousarray(img, np.float32)
    chans = []
    for c in range(3):
        im = Image.fromarray(np.ascontiguousarray(img[:, :, c], np.float32), mode="F")
        resample = Image.Resampling.BOX if img.shape[1] > w2 else Image.Resampling.BILINEAR
        chans.append(np.asarray(im.resize((w2, h2), resample=resample), np.float32))
    return np.stack(chans, axis=-1)


_DEFAULT: Renderer | None = None


def default_renderer() -> Renderer:
    """The process-wide headless renderer used by `render` (created on first use)."""
    global _DEFAULT
    if _DEFAULT is None or _DEFAULT.ctx is None:
        _DEFAULT = Renderer()
    return _DEFAULT


def render(
    asset: Asset,
    cameras: Cameras,
    *,
    environment: Environment | None = None,
    passes: Sequence[str] = ("rgb",),
    lighting: str = "ibl",
    tone_mapping: str = "none",
    exposure: float = 1.0,
    directional_light: DirectionalLight | None = None,
    background: Any = None,
    msaa: int = 4,
    unlit: bool = False,
) -> RenderResult:
    """Render `asset` from every camera (OpenCV `Cameras`) with the default headless renderer.

    environment: IBL environment (default: built-in "studio"). passes: any of
    "rgb", "alpha", "depth", "normals", "mask" (see RenderResult). lighting: "ibl" or "unlit"
    (base colour only; also `unlit=True`). tone_mapping: "none", "aces" (three.js ACESFilmic) or
    "neutral" (Khronos PBR Neutral); exposure multiplies linear radiance first. background: None
    (transparent: alpha = coverage), "environment", or an sRGB colour (r, g, b) in [0,1].
    msaa: samples for the colour pass (depth/normals/mask are sampled at pixel centres).
    """
    return default_renderer().render(
        asset,
        cameras,
        environment=environment,
        passes=passes,
        lighting=lighting,
        tone_mapping=tone_mapping,
        exposure=exposure,
        directional_light=directional_light,
        background=background,
        msaa=msaa,
        unlit=unlit,
    )


# ---------------------------------------------------------------------------------------------
# Gaussian splats: sorted, alpha-blended screen-space quads (EWA-projected 2D covariance)
# ---------------------------------------------------------------------------------------------

SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def eval_sh_colors(sh: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """(N,K,3) SH coefficients (3DGS convention, degree ≤ 3 used) seen along unit `dirs` (N,3)
    (from the camera to the splat) → (N,3) display sRGB colour, clamped ≥ 0 (3DGS: SH + 0.5)."""
    k = sh.shape[1]
    c = 0.28209479177387814 * sh[:, 0]
    if k >= 4:
        x, y, z = dirs[:, 0:1], dirs[:, 1:2], dirs[:, 2:3]
        c = c - SH_C1 * y * sh[:, 1] + SH_C1 * z * sh[:, 2] - SH_C1 * x * sh[:, 3]
        if k >= 9:
            xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
            c = (
                c
                + SH_C2[0] * xy * sh[:, 4]
                + SH_C2[1] * yz * sh[:, 5]
                + SH_C2[2] * (2 * zz - xx - yy) * sh[:, 6]
                + SH_C2[3] * xz * sh[:, 7]
                + SH_C2[4] * (xx - yy) * sh[:, 8]
            )
            if k >= 16:
                c = (
                    c
                    + SH_C3[0] * y * (3 * xx - yy) * sh[:, 9]
                    + SH_C3[1] * xy * z * sh[:, 10]
                    + SH_C3[2] * y * (4 * zz - xx - yy) * sh[:, 11]
                    + SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * sh[:, 12]
                    + SH_C3[4] * x * (4 * zz - xx - yy) * sh[:, 13]
                    + SH_C3[5] * z * (xx - yy) * sh[:, 14]
                    + SH_C3[6] * x * (xx - 3 * yy) * sh[:, 15]
                )
    return np.maximum(c + 0.5, 0.0)


def project_splats(splats, K: np.ndarray, c2w: np.ndarray, width: int, height: int, near: float = 1e-3):
    """EWA projection of 3D Gaussians into one OpenCV camera (the 3DGS/gsplat formulation).

    Returns a dict of arrays for the visible splats sorted back to front: center (M,2) pixels,
    depth (M,), conic (M,3) inverse 2D covariance (a, b, c), radius (M,) pixels (3 sigma),
    rgba (M,4) colour (SH evaluated for this view) and opacity."""
    K = np.asarray(K, np.float64)
    w2c = np.linalg.inv(np.asarray(c2w, np.float64))
    means = splats.means.astype(np.float64)
    pc = means @ w2c[:3, :3].T + w2c[:3, 3]
    z = pc[:, 2]
    vis = z > near
    q = splats.normalized_quats().astype(np.float64)
    w_, x_, y_, z_ = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    R = np.stack(
        [
            1 - 2 * (y_ * y_ + z_ * z_), 2 * (x_ * y_ - w_ * z_), 2 * (x_ * z_ + w_ * y_),
            2 * (x_ * y_ + w_ * z_), 1 - 2 * (x_ * x_ + z_ * z_), 2 * (y_ * z_ - w_ * x_),
            2 * (x_ * z_ - w_ * y_), 2 * (y_ * z_ + w_ * x_), 1 - 2 * (x_ * x_ + y_ * y_),
        ],
        axis=1,
    ).reshape(-1, 3, 3)
    s = np.exp(splats.log_scales.astype(np.float64))
    M = R * s[:, None, :]
    cov3 = M @ np.transpose(M, (0, 2, 1))
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    zz = np.where(vis, z, 1.0)
    # clamp x/z, y/z to 1.3× the field of view as 3DGS does, for stable Jacobians at the borders
    lim_x = 1.3 * 0.5 * width / fx
    lim_y = 1.3 * 0.5 * height / fy
    tx = np.clip(pc[:, 0] / zz, -lim_x - cx / fx + 0.5 * width / fx, lim_x + 0.5 * width / fx - cx / fx) * zz
    ty = np.clip(pc[:, 1] / zz, -lim_y - cy / fy + 0.5 * height / fy, lim_y + 0.5 * height / fy - cy / fy) * zz
    J = np.zeros((len(means), 2, 3))
    J[:, 0, 0] = fx / zz
    J[:, 0, 2] = -fx * tx / zz**2
    J[:, 1, 1] = fy / zz
    J[:, 1, 2] = -fy * ty / zz**2
    T = J @ w2c[:3, :3]
    cov2 = T @ cov3 @ np.transpose(T, (0, 2, 1))
    a = cov2[:, 0, 0] + 0.3
    b = cov2[:, 0, 1]
    c = cov2[:, 1, 1] + 0.3
    det = a * c - b * b
    vis &= det > 0
    det = np.where(det > 0, det, 1.0)
    conic = np.stack([c / det, -b / det, a / det], axis=1)
    mid = 0.5 * (a + c)
    lam = mid + np.sqrt(np.maximum(mid * mid - det, 0.1))
    radius = 3.0 * np.sqrt(lam)
    center = np.stack([fx * pc[:, 0] / zz + K[0, 1] * pc[:, 1] / zz + cx, fy * pc[:, 1] / zz + cy], axis=1)
    vis &= (center[:, 0] + radius > 0) & (center[:, 0] - radius < width) & (center[:, 1] + radius > 0) & (center[:, 1] - radius < height)
    dirs = means - np.asarray(c2w)[:3, 3]
    dirs /= np.maximum(np.linalg.norm(dirs, axis=1, keepdims=True), 1e-12)
    idx = np.nonzero(vis)[0]
    idx = idx[np.argsort(-z[idx], kind="stable")]
    rgb = eval_sh_colors(splats.sh[idx].astype(np.float64), dirs[idx])
    rgba = np.concatenate([rgb, splats.opacities[idx, None].astype(np.float64)], axis=1)
    return {
        "center": center[idx],
        "depth": z[idx],
        "conic": conic[idx],
        "radius": radius[idx],
        "rgba": rgba,
    }


class _SplatDrawer:
    """Per-view CPU projection + sort, then one instanced draw of quads."""

    def __init__(self, renderer: Renderer, splats) -> None:
        self.r = renderer
        self.splats = splats
        self.inst = None
        self.vao = None
        self.capacity = 0

    def draw(self, K, c2w, width, height, near, far, tonemap: int, exposure: float) -> None:
        mgl = self.r._mgl
        ctx = self.r.ctx
        pr = project_splats(self.splats, K, c2w, width, height, near=max(near, 1e-4))
        m = len(pr["depth"])
        if m == 0:
            return
        data = np.concatenate(
            [pr["center"], pr["depth"][:, None], pr["conic"], pr["radius"][:, None], pr["rgba"]], axis=1
        ).astype(np.float32)
        if self.inst is None or m > self.capacity:
            if self.vao is not None:
                self.vao.release()
                self.inst.release()
            self.capacity = max(m, 1024)
            self.inst = ctx.buffer(reserve=self.capacity * data.shape[1] * 4)
            self.vao = ctx.vertex_array(
                self.r.splat_prog,
                [
                    (self.r.corner_vbo, "2f", "in_corner"),
                    (self.inst, "2f 1f 3f 1f 4f/i", "in_center", "in_depth", "in_conic", "in_radius", "in_rgba"),
                ],
            )
        self.inst.write(data.tobytes())
        p = self.r.splat_prog
        _set(p, "u_size", (float(width), float(height)))
        _set(p, "u_near", float(near))
        _set(p, "u_far", float(far))
        _set(p, "u_tonemap", tonemap)
        _set(p, "u_exposure", exposure)
        ctx.enable(mgl.BLEND | mgl.DEPTH_TEST)
        ctx.disable(mgl.CULL_FACE)
        ctx.blend_func = (mgl.SRC_ALPHA, mgl.ONE_MINUS_SRC_ALPHA, mgl.ONE, mgl.ONE_MINUS_SRC_ALPHA)
        ctx.depth_mask = False
        self.vao.render(mgl.TRIANGLE_STRIP, vertices=4, instances=m)
        ctx.depth_mask = True

    def release(self) -> None:
        if self.vao is not None:
            self.vao.release()
            self.inst.release()
