"""PBR texture baking onto a UV-unwrapped mesh (issue #6 item 4).

- `bake_base_color`: project posed views onto the atlas — each texel's surface point is projected
  into every view, kept where the view's depth agrees (visibility), weighted by cos(view angle).
- `bake_normal_map`: tangent-space normal map of a dense mesh onto a low-poly one, by ray casting
  from the low-poly surface along its normal both ways (open3d RaycastingScene).
- `bake_ambient_occlusion`: cosine-weighted hemisphere ray casting per texel.
- `make_pbr_material`: a glTF metallic-roughness Material from the baked maps.

Every bake finishes with seam padding: `padding` texels of iterative dilation around the charts,
then push-pull fills the rest of the atlas, so mip-mapping never pulls in unrelated colours.

Conventions: world units metres; a Mesh's `transform` is applied (cameras are in world space);
cameras OpenCV (top-left pixel centre (0.5, 0.5)); UVs glTF (v down, texel (x, y) has centre
((x + 0.5)/W, (y + 0.5)/H)); tangent space glTF: +X = +u, +Y = up the image (-v), +Z = the
surface normal, tangents from `studio.assets.tangents` (T = ∂P/∂u, bitangent = cross(N, T)·w).
Images in are float32 linear; base colour out is sRGB uint8, normal and occlusion maps are
linear uint8 (as glTF stores them).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from studio.assets.cameras import Cameras
from studio.assets.colour import linear_to_srgb, to_uint8
from studio.assets.material import Material, Texture
from studio.assets.mesh import Mesh
from studio.assets.tangents import compute_tangents
from studio.errors import CancelledError, EmptyResultError

from .uv_unwrap import rasterize_uv

Progress = Callable[[float, str], None] | None
Cancel = Callable[[], bool] | None

STAGE_VERSION = "1"


def _check_cancel(cancel: Cancel, what: str) -> None:
    if cancel is not None and cancel():
        raise CancelledError(f"cancelled during {what}")


def _report(progress: Progress, frac: float, msg: str) -> None:
    if progress is not None:
        progress(float(frac), msg)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-30)


# ----------------------------------------------------------------------------- ray casting


def raycasting_scene(mesh: Mesh):
    """An open3d RaycastingScene of the mesh's world-space triangles (geometry id 0)."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.ascontiguousarray(mesh.world_vertices(), dtype=np.float32)),
        o3d.core.Tensor(np.ascontiguousarray(mesh.faces, dtype=np.uint32)),
    )
    return scene


def cast(scene, origins: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cast rays (origins (R,3), unit directions (R,3)). Returns t_hit (R,) float64 (inf on miss),
    face id (R,) int64 (-1 on miss), barycentrics (R,3) float64 of the hit in that face."""
    import open3d as o3d

    rays = np.concatenate([origins, directions], axis=1).astype(np.float32)
    ans = scene.cast_rays(o3d.core.Tensor(np.ascontiguousarray(rays)))
    t = ans["t_hit"].numpy().astype(np.float64)
    fid = ans["primitive_ids"].numpy().astype(np.int64)
    uv = ans["primitive_uvs"].numpy().astype(np.float64)
    miss = ~np.isfinite(t)
    fid[miss] = -1
    bary = np.stack([1.0 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], axis=1)
    return t, fid, bary


@dataclass(frozen=True)
class RayHits:
    """Per-pixel ray casting result of N views: depth (N,H,W) float32 OpenCV camera z (0 = miss),
    face (N,H,W) int64 hit triangle (-1 = miss), bary (N,H,W,3) float32 barycentrics in that face."""

    depth: np.ndarray
    face: np.ndarray
    bary: np.ndarray


def raycast_views(mesh: Mesh, cameras: Cameras, cancel: Cancel = None) -> RayHits:
    """Cast one ray through every pixel centre of every camera (lens distortion ignored) against
    the mesh in world space: a depth/visibility render that needs no rasteriser."""
    scene = raycasting_scene(mesh)
    h, w = cameras.height, cameras.width
    jj, ii = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    pix = np.stack([jj.ravel(), ii.ravel(), np.ones(h * w)])
    depth = np.zeros((len(cameras), h, w), np.float32)
    face = np.full((len(cameras), h, w), -1, np.int64)
    bary = np.zeros((len(cameras), h, w, 3), np.float32)
    for k in range(len(cameras)):
        _check_cancel(cancel, "ray casting views")
        d_cam = np.linalg.inv(cameras.K[k]) @ pix
        norm = np.linalg.norm(d_cam, axis=0)
        d_world = (cameras.cam_to_world[k, :3, :3] @ (d_cam / norm)).T
        org = np.broadcast_to(cameras.cam_to_world[k, :3, 3], d_world.shape)
        t, fid, b = cast(scene, org, d_world)
        z = t * d_cam[2] / norm
        z[fid < 0] = 0.0
        depth[k] = z.reshape(h, w)
        face[k] = fid.reshape(h, w)
        bary[k] = b.reshape(h, w, 3)
    return RayHits(depth, face, bary)


# ----------------------------------------------------------------------------- texel geometry


@dataclass(frozen=True)
class TexelSurface:
    """The surface behind every covered texel of a W×H atlas.

    texel: (K,) int64 flat index y·W + x; face: (K,) int64; bary: (K,3) float64;
    points: (K,3) float64 world positions; normals: (K,3) float64 unit interpolated world vertex
    normals; face_normals: (K,3) float64 unit geometric world normals."""

    texel: np.ndarray
    face: np.ndarray
    bary: np.ndarray
    points: np.ndarray
    normals: np.ndarray
    face_normals: np.ndarray
    width: int
    height: int


def _world_normals(mesh: Mesh, normals: np.ndarray) -> np.ndarray:
    m = mesh.transform[:3, :3]
    return _unit(normals.astype(np.float64) @ np.linalg.inv(m))  # n' = M^-T n, row-vector form


def texel_surface(mesh: Mesh, width: int, height: int | None = None, uv_set: int = 0) -> TexelSurface:
    """Rasterise `mesh.uvs[uv_set]` at width×height and interpolate world position and normal at
    every covered texel centre. Raises EmptyResultError when the mesh has no UVs or covers no texel."""
    height = width if height is None else height
    if len(mesh.uvs) <= uv_set:
        raise EmptyResultError(f"baking needs UVs (TEXCOORD_{uv_set}); unwrap the mesh first")
    fid, bary = rasterize_uv(mesh.uvs[uv_set], mesh.faces, width, height)
    texel = np.nonzero(fid.ravel() >= 0)[0]
    if len(texel) == 0:
        raise EmptyResultError(f"the UV triangles cover no texel of a {width}x{height} atlas")
    face = fid.ravel()[texel]
    b = bary.reshape(-1, 3)[texel]
    f = mesh.faces[face]
    wv = mesh.world_vertices()
    pts = np.einsum("kj,kjc->kc", b, wv[f])
    nv = _world_normals(mesh, mesh.vertex_normals())
    nrm = _unit(np.einsum("kj,kjc->kc", b, nv[f]))
    tri = wv[f]
    fn = _unit(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]))
    return TexelSurface(texel, face, b, pts, nrm, fn, width, height)


# ----------------------------------------------------------------------------- padding


def dilate(image: np.ndarray, valid: np.ndarray, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Grow the valid region by `iterations` texels: each invalid texel with valid 8-neighbours
    takes their mean. image (H,W,C) float, valid (H,W) bool → (image, valid) new arrays."""
    img = np.where(valid[..., None], image, 0.0).astype(np.float64)
    val = valid.astype(bool).copy()
    h, w = val.shape
    for _ in range(int(iterations)):
        if val.all():
            break
        pi = np.pad(img, ((1, 1), (1, 1), (0, 0)))
        pv = np.pad(val, 1).astype(np.float64)
        acc = np.zeros_like(img)
        cnt = np.zeros((h, w))
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy == 0 and dx == 0:
                    continue
                acc += pi[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
                cnt += pv[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        grow = ~val & (cnt > 0)
        img[grow] = acc[grow] / cnt[grow, None]
        val = val | grow
    return img, val


def push_pull(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Fill every invalid texel from a coverage-weighted image pyramid (push: 2×2 weighted means
    down to 1×1; pull: coarse values fill the holes of each finer level). (H,W,C) → (H,W,C) float64;
    valid texels keep their values exactly."""
    img = np.where(valid[..., None], image, 0.0).astype(np.float64)
    wgt = valid.astype(np.float64)
    if wgt.sum() == 0:
        return img
    levels = [(img * wgt[..., None], wgt)]
    while max(levels[-1][1].shape) > 1:
        c, w = levels[-1]
        h2, w2 = (c.shape[0] + 1) // 2, (c.shape[1] + 1) // 2
        cp = np.pad(c, ((0, 2 * h2 - c.shape[0]), (0, 2 * w2 - c.shape[1]), (0, 0)))
        wp = np.pad(w, ((0, 2 * h2 - w.shape[0]), (0, 2 * w2 - w.shape[1])))
        cs = cp.reshape(h2, 2, w2, 2, -1).sum((1, 3))
        ws = wp.reshape(h2, 2, w2, 2).sum((1, 3))
        # keep premultiplied colour, clamp weights at 1 so coverage saturates
        scale = np.where(ws > 1, 1.0 / np.maximum(ws, 1e-30), 1.0)
        levels.append((cs * scale[..., None], ws * scale))
    c, w = levels[-1]
    cur = c / np.maximum(w, 1e-30)[..., None]
    for c, w in reversed(levels[:-1]):
        up = np.repeat(np.repeat(cur, 2, axis=0), 2, axis=1)[: c.shape[0], : c.shape[1]]
        own = c / np.maximum(w, 1e-30)[..., None]
        cur = own * w[..., None] + up * (1.0 - w[..., None])
    return np.where(valid[..., None], img, cur)


def pad_atlas(image: np.ndarray, valid: np.ndarray, padding: int) -> np.ndarray:
    """Seam padding: dilate by `padding` texels (exact neighbour colours around each chart), then
    push-pull fills the rest of the atlas. image (H,W,C) float, valid (H,W) bool → (H,W,C) float64."""
    img, val = dilate(image, valid, padding)
    return push_pull(img, val)


# ----------------------------------------------------------------------------- base colour


@dataclass(frozen=True)
class BakeParams:
    """resolution: atlas size (square) in texels; padding: seam dilation in texels;
    depth_tolerance: metres a texel point may lie behind/in front of a view's depth and still be
    visible (None → 0.5 % of the mesh's bbox diagonal; pixel footprint is added per view);
    angle_power: weight = cos(view angle)^angle_power; min_cos: views more grazing are ignored."""

    resolution: int = 1024
    padding: int = 4
    depth_tolerance: float | None = None
    angle_power: float = 1.0
    min_cos: float = 0.1


def _bilinear_taps(uv: np.ndarray, w: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel coordinates uv (K,2) (OpenCV, centre at +0.5) → 4 taps: x (K,4), y (K,4) clamped ints,
    weights (K,4)."""
    x = uv[:, 0] - 0.5
    y = uv[:, 1] - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    xs = np.stack([x0, x0 + 1, x0, x0 + 1], 1)
    ys = np.stack([y0, y0, y0 + 1, y0 + 1], 1)
    ws = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], 1)
    return np.clip(xs, 0, w - 1).astype(np.int64), np.clip(ys, 0, h - 1).astype(np.int64), ws


def bake_base_color(
    mesh: Mesh,
    images: np.ndarray,
    cameras: Cameras,
    depths: np.ndarray | None = None,
    params: BakeParams = BakeParams(),
    progress: Progress = None,
    cancel: Cancel = None,
) -> Texture:
    """Project views onto the mesh's UV atlas.

    mesh: with uvs[0] (glTF); images: (N,H,W,3) float32 linear RGB in [0,1]; cameras: N studio
    Cameras of W×H; depths: optional (N,H,W) float32 OpenCV z (0 = no hit) for the visibility test —
    None ray casts the mesh itself. Each covered texel averages the bilinear colour of every view in
    which it is visible (depth agrees within tolerance; taps that fall on other surfaces are dropped)
    weighted by cos(angle between its normal and the view ray)^angle_power. Texels no view sees and
    the gutters between charts are filled by `pad_atlas`. Returns an sRGB uint8 RGB Texture
    (res×res×3) named "baseColor"."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"images must be (N,H,W,3), got {images.shape}")
    n, h, w = images.shape[:3]
    if len(cameras) != n or (cameras.width, cameras.height) != (w, h):
        raise ValueError(f"{n} images of {w}x{h} but {len(cameras)} cameras of {cameras.width}x{cameras.height}")
    res = int(params.resolution)
    surf = texel_surface(mesh, res)
    _report(progress, 0.05, f"{len(surf.texel)} texels to bake")
    if depths is None:
        depths = raycast_views(mesh, cameras, cancel).depth
    depths = np.asarray(depths, dtype=np.float32)
    if depths.shape != (n, h, w):
        raise ValueError(f"depths must be {(n, h, w)}, got {depths.shape}")
    bounds = mesh.world_bounds()
    tol0 = params.depth_tolerance if params.depth_tolerance is not None else 0.005 * float(np.linalg.norm(bounds[1] - bounds[0]))
    acc = np.zeros((len(surf.texel), 3))
    wsum = np.zeros(len(surf.texel))
    centers = cameras.centers
    for k in range(n):
        _check_cancel(cancel, "base colour baking")
        view = centers[k] - surf.points
        cos = np.einsum("ij,ij->i", surf.normals, view) / np.linalg.norm(view, axis=1)
        front = np.nonzero(cos > params.min_cos)[0]  # back-facing texels are never projected
        uv, z = cameras[k].project(surf.points[front])
        uv, z = uv[0], z[0]
        ok = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
        idx, uv, z, c = front[ok], uv[ok], z[ok], cos[front[ok]]
        if len(idx) == 0:
            continue
        xs, ys, tw = _bilinear_taps(uv, w, h)
        d = depths[k][ys, xs]  # (K,4)
        # tolerance grows with the pixel footprint on the surface (grazing views)
        tol = tol0 + 2.0 * z / cameras.K[k, 0, 0] / np.maximum(c, 0.2)
        tw = tw * ((d > 0) & (np.abs(d - z[:, None]) <= tol[:, None]))
        tws = tw.sum(1)
        good = tws > 1e-6
        taps = images[k][ys[good], xs[good]]  # (K,4,3)
        col = (taps * tw[good][:, :, None]).sum(1) / tws[good, None]
        wt = c[good] ** params.angle_power
        acc[idx[good]] += col * wt[:, None]
        wsum[idx[good]] += wt
        _report(progress, 0.05 + 0.85 * (k + 1) / n, f"projected view {k + 1}/{n}")
    seen = wsum > 0
    if not seen.any():
        raise EmptyResultError("bake_base_color: no texel is visible in any view; check cameras and depths")
    img = np.zeros((res * res, 3))
    img[surf.texel[seen]] = acc[seen] / wsum[seen, None]
    valid = np.zeros(res * res, bool)
    valid[surf.texel[seen]] = True
    out = pad_atlas(img.reshape(res, res, 3), valid.reshape(res, res), params.padding)
    _report(progress, 1.0, f"baked base colour: {100 * seen.mean():.1f}% of the surface texels seen")
    return Texture(image=to_uint8(linear_to_srgb(np.clip(out, 0, 1))), name="baseColor")


# ----------------------------------------------------------------------------- normal map


@dataclass(frozen=True)
class NormalBakeParams:
    """max_distance: metres searched along ±normal from the low-poly surface (None → 3 % of the
    low-poly bbox diagonal); padding: seam dilation in texels."""

    max_distance: float | None = None
    padding: int = 4


@dataclass(frozen=True)
class TangentFrame:
    """Per-texel tangent frame: t, b, n (K,3) float64 orthonormal world vectors (b = cross(n,t)·w)."""

    t: np.ndarray
    b: np.ndarray
    n: np.ndarray


def texel_tangent_frames(mesh: Mesh, surf: TexelSurface, tangents: np.ndarray | None = None) -> TangentFrame:
    """The glTF tangent frame at every texel of `surf`: vertex tangents (mesh.tangents, else
    computed by studio.assets.tangents) and normals interpolated, t orthogonalised against n,
    b = cross(n, t) · w — what a glTF viewer reconstructs in its shader."""
    if tangents is None:
        tangents = mesh.tangents
    if tangents is None:
        tangents = compute_tangents(mesh.vertices, mesh.vertex_normals(), mesh.uvs[0], mesh.faces)
    tangents = np.asarray(tangents, dtype=np.float64)
    f = mesh.faces[surf.face]
    m = mesh.transform[:3, :3]
    t_v = tangents[:, :3] @ m.T
    t = np.einsum("kj,kjc->kc", surf.bary, t_v[f])
    sign = np.where(np.einsum("kj,kj->k", surf.bary, tangents[f, 3]) < 0, -1.0, 1.0)
    if np.linalg.det(m) < 0:
        sign = -sign
    n = surf.normals
    t = _unit(t - n * np.einsum("kc,kc->k", t, n)[:, None])
    b = np.cross(n, t) * sign[:, None]
    return TangentFrame(t, b, n)


def bake_normal_map(
    dense_mesh: Mesh,
    lowpoly_mesh: Mesh,
    resolution: int = 1024,
    params: NormalBakeParams = NormalBakeParams(),
    progress: Progress = None,
    cancel: Cancel = None,
) -> Texture:
    """Tangent-space normal map of `dense_mesh` on `lowpoly_mesh`'s UV atlas (glTF convention).

    For every texel of the low-poly atlas, rays from its surface point go along +n and -n; the
    nearer hit on the dense mesh (within max_distance) gives the dense interpolated vertex normal,
    written in the low-poly's tangent frame (x = T = +u, y = B = up the image, z = N) and encoded
    rgb = 0.5·n + 0.5 as linear uint8 (res×res×3). Texels with no hit get (0,0,1); dense normals
    facing away from the low-poly normal are flipped (winding-agnostic). Set
    `lowpoly_mesh.tangents = compute_tangents(...)` when exporting, so viewers use the same frame."""
    res = int(resolution)
    surf = texel_surface(lowpoly_mesh, res)
    frame = texel_tangent_frames(lowpoly_mesh, surf)
    bounds = lowpoly_mesh.world_bounds()
    maxd = params.max_distance if params.max_distance is not None else 0.03 * float(np.linalg.norm(bounds[1] - bounds[0]))
    scene = raycasting_scene(dense_mesh)
    dense_n = _world_normals(dense_mesh, dense_mesh.vertex_normals())
    dense_f = dense_mesh.faces
    enc = np.tile(np.array([0.0, 0.0, 1.0]), (len(surf.texel), 1))
    chunk = 262_144
    for s in range(0, len(surf.texel), chunk):
        _check_cancel(cancel, "normal map baking")
        sl = slice(s, s + chunk)
        p, n = surf.points[sl], frame.n[sl]
        t_out, f_out, b_out = cast(scene, p, n)
        t_in, f_in, b_in = cast(scene, p, -n)
        use_in = t_in < t_out
        t_hit = np.where(use_in, t_in, t_out)
        fid = np.where(use_in, f_in, f_out)
        bary = np.where(use_in[:, None], b_in, b_out)
        hit = (fid >= 0) & (t_hit <= maxd)
        nd = _unit(np.einsum("kj,kjc->kc", bary[hit], dense_n[dense_f[fid[hit]]]))
        # a dense mesh wound the other way (normals inwards) still gives outward detail
        nd = np.where(np.einsum("kc,kc->k", nd, n[hit])[:, None] < 0, -nd, nd)
        loc = np.stack(
            [
                np.einsum("kc,kc->k", nd, frame.t[sl][hit]),
                np.einsum("kc,kc->k", nd, frame.b[sl][hit]),
                np.einsum("kc,kc->k", nd, n[hit]),
            ],
            axis=1,
        )
        block = enc[sl]
        block[hit] = _unit(loc)
        enc[sl] = block
        _report(progress, min(1.0, (s + chunk) / len(surf.texel)) * 0.9, "ray casting normals")
    img = np.zeros((res * res, 3))
    img[surf.texel] = enc * 0.5 + 0.5
    valid = np.zeros(res * res, bool)
    valid[surf.texel] = True
    out = pad_atlas(img.reshape(res, res, 3), valid.reshape(res, res), params.padding)
    _report(progress, 1.0, "baked normal map")
    return Texture(image=to_uint8(np.clip(out, 0, 1)), name="normal")


def decode_normal_map(texture: Texture | np.ndarray, mesh: Mesh, surf: TexelSurface | None = None) -> tuple[np.ndarray, TexelSurface]:
    """World-space normals (K,3) that a glTF viewer reconstructs from a tangent-space normal map at
    every covered texel of `mesh`'s atlas (normal scale 1). Returns (normals, the TexelSurface)."""
    img = texture.image if isinstance(texture, Texture) else np.asarray(texture)
    res_y, res_x = img.shape[:2]
    surf = surf if surf is not None else texel_surface(mesh, res_x, res_y)
    frame = texel_tangent_frames(mesh, surf)
    v = img.reshape(-1, img.shape[2])[surf.texel, :3].astype(np.float64) / 255.0 * 2.0 - 1.0
    nw = v[:, :1] * frame.t + v[:, 1:2] * frame.b + v[:, 2:3] * frame.n
    return _unit(nw), surf


# ----------------------------------------------------------------------------- ambient occlusion


@dataclass(frozen=True)
class AOParams:
    """max_distance: occluders farther than this (metres) do not count (None → 50 % of the bbox
    diagonal); padding: seam dilation in texels; seed: ray directions are deterministic under it."""

    max_distance: float | None = None
    padding: int = 4
    seed: int = 0


def _cosine_hemisphere(k: int, rays: int, rng: np.random.Generator) -> np.ndarray:
    """(k, rays, 3) cosine-weighted directions around +z (stratified in the azimuth)."""
    u1 = rng.random((k, rays))
    u2 = (np.arange(rays)[None, :] + rng.random((k, rays))) / rays
    r = np.sqrt(u1)
    phi = 2 * np.pi * u2
    return np.stack([r * np.cos(phi), r * np.sin(phi), np.sqrt(np.maximum(0.0, 1 - u1))], axis=-1)


def bake_ambient_occlusion(
    mesh: Mesh,
    resolution: int = 1024,
    rays: int = 32,
    params: AOParams = AOParams(),
    progress: Progress = None,
    cancel: Cancel = None,
) -> Texture:
    """Ambient occlusion on the mesh's UV atlas: for each texel, `rays` cosine-weighted rays over
    the hemisphere of its normal; AO = fraction that escape within max_distance (1 = open, 0 =
    fully occluded), i.e. the cosine-weighted visibility. Returns a linear uint8 RGB Texture
    (res×res×3, R = G = B = AO; glTF reads occlusion from R)."""
    res = int(resolution)
    surf = texel_surface(mesh, res)
    bounds = mesh.world_bounds()
    diag = float(np.linalg.norm(bounds[1] - bounds[0]))
    maxd = params.max_distance if params.max_distance is not None else 0.5 * diag
    eps = 1e-4 * diag
    scene = raycasting_scene(mesh)
    rng = np.random.default_rng(params.seed)
    n = surf.normals
    helper = np.where(np.abs(n[:, :1]) < 0.9, np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]]))
    t1 = _unit(np.cross(n, helper))
    t2 = np.cross(n, t1)
    ao = np.zeros(len(surf.texel))
    chunk = max(1, 1_000_000 // rays)
    for s in range(0, len(surf.texel), chunk):
        _check_cancel(cancel, "ambient occlusion baking")
        sl = slice(s, s + chunk)
        k = len(ao[sl])
        local = _cosine_hemisphere(k, rays, rng)
        dirs = local[..., :1] * t1[sl, None] + local[..., 1:2] * t2[sl, None] + local[..., 2:3] * n[sl, None]
        # start just off the flat triangle (its geometric normal), so no ray hits its own face
        fn = surf.face_normals[sl]
        fn = np.where(np.einsum("kc,kc->k", fn, n[sl])[:, None] < 0, -fn, fn)
        org = surf.points[sl] + eps * fn
        org = np.repeat(org, rays, axis=0)
        t, _, _ = cast(scene, org, dirs.reshape(-1, 3))
        blocked = (t <= maxd).reshape(k, rays)
        ao[sl] = 1.0 - blocked.mean(1)
        _report(progress, 0.9 * min(1.0, (s + chunk) / len(surf.texel)), "ray casting occlusion")
    img = np.zeros((res * res, 1))
    img[surf.texel, 0] = ao
    valid = np.zeros(res * res, bool)
    valid[surf.texel] = True
    out = pad_atlas(img.reshape(res, res, 1), valid.reshape(res, res), params.padding)
    _report(progress, 1.0, f"baked ambient occlusion (mean {ao.mean():.2f})")
    return Texture(image=to_uint8(np.repeat(np.clip(out, 0, 1), 3, axis=2)), name="occlusion")


# ----------------------------------------------------------------------------- material


def make_pbr_material(
    base: Texture | None,
    normal: Texture | None = None,
    ao: Texture | None = None,
    metallic: float = 0.0,
    roughness: float = 0.8,
    name: str = "baked",
) -> Material:
    """A glTF metallic-roughness Material from baked maps.

    With an AO map, occlusion and metallic-roughness share one packed ORM texture (R = occlusion,
    G = roughness, B = metallic, linear, the constants written into G and B) referenced by both
    `occlusion_texture` and `metallic_roughness_texture`, factors 1.0 — the glTF-recommended
    packing. Without one, metallic/roughness are plain factors and no texture is made."""
    if not (0.0 <= metallic <= 1.0 and 0.0 <= roughness <= 1.0):
        raise ValueError(f"metallic {metallic} and roughness {roughness} must lie in [0, 1]")
    mat = Material(name=name, base_color_texture=base, normal_texture=normal, metallic_factor=metallic, roughness_factor=roughness)
    if ao is not None:
        occ = ao.image[:, :, 0]
        orm = np.stack(
            [occ, np.full_like(occ, to_uint8(np.float64(roughness))), np.full_like(occ, to_uint8(np.float64(metallic)))], axis=2
        )
        tex = Texture(image=orm, name="occlusionRoughnessMetallic")
        mat = mat.replace(occlusion_texture=tex, metallic_roughness_texture=tex, metallic_factor=1.0, roughness_factor=1.0)
    return mat
