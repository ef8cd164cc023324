"""Posed views → Gaussian splats → mesh → UV → baked PBR textures: the 3D core's stages.

Each stage is a plain function on asset types with a progress callback and a cancel check;
`views_to_asset` chains them for Python callers, and the `demo` / `views_to_asset` pipelines
wrap them as cached stages.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from studio.assets import Asset, AssetMetadata, Cameras, GaussianSplats, Mesh, Views
from studio.assets.colour import linear_to_srgb, srgb_to_linear
from studio.assets.tangents import compute_tangents
from studio.errors import EmptyResultError

from .splat_fit import FitParams, fit_splats, render_splats

Progress = Callable[[float, str], None] | None
Cancel = Callable[[], bool] | None


@dataclass(frozen=True)
class MeshingParams:
    """extra_views: additional depth views (two rings) rendered from the splats for fusion;
    voxels_per_diagonal: TSDF resolution; target_faces: decimation target; texture_size: atlas
    side in texels; roughness/metallic: material constants (no material estimation here)."""

    extra_views: int = 16
    voxels_per_diagonal: int = 160
    target_faces: int = 12_000
    texture_size: int = 1024
    roughness: float = 0.8
    metallic: float = 0.0
    ao_rays: int = 16
    min_alpha: float = 0.95  # fuse only depth pixels whose splat alpha exceeds this
    depth: Literal["median", "first_surface"] = "median"  # see splat_geometry.render_disc_depth
    depth_sharpen: float = 4.0  # "first_surface": centre depth weighted by transmittance T^k (render_splats)
    trunc_voxels: float = 4.0
    max_depth_jump: float | None = 0.05
    close_holes: bool = False  # fill every boundary loop (unobserved undersides) → a closed mesh
    isolate_object: bool = False  # keep the object standing on its support plane, closed (object_isolation)


def depth_init_points(views: Views, depths: np.ndarray, per_view: int = 1500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Back-project a random subset of valid depth pixels of every view → (P,3) world points and
    (P,3) sRGB colours: the 'SfM points' of rendered captures."""
    rng = np.random.default_rng(seed)
    pts, cols = [], []
    cams = views.cameras
    for i in range(len(views)):
        v, u = np.nonzero(depths[i] > 0)
        if len(v) == 0:
            continue
        sel = rng.choice(len(v), min(len(v), per_view), replace=False)
        v, u = v[sel], u[sel]
        pts.append(cams.unproject(i, np.stack([u + 0.5, v + 0.5], axis=1), depths[i][v, u]))
        cols.append(linear_to_srgb(views.images[i][v, u]))
    return np.concatenate(pts), np.concatenate(cols)


def subject_bounds(splats: GaussianSplats, cameras: Cameras, q: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Robust (lo, hi) world corners of the splats that make up the subject: the q-th and
    (100−q)-th percentiles of the means inside the cameras' subject sphere (all means when fewer
    than 100 lie there). Keeps a photo capture's far background splats (room, sky shell) out of
    the meshing volume."""
    centre, radius = cameras.subject_sphere()
    means = splats.means
    near = np.linalg.norm(means - centre, axis=1) < radius
    if near.sum() >= 100:
        means = means[near]
    return np.percentile(means, q, axis=0), np.percentile(means, 100 - q, axis=0)


def depth_rig(splats: GaussianSplats, cameras: Cameras, n: int) -> Cameras:
    """The training cameras plus `n` cameras on rings around the splats' robust bounds, at
    elevations (about +Y) inside the band the training cameras cover: views from outside it see
    regions no training view constrained, whose splat depth is wrong and would corrupt the fusion."""
    if n <= 0:
        return cameras
    from .views_render import view_rig

    lo, hi = subject_bounds(splats, cameras, 2.0)
    centre = 0.5 * (lo + hi)
    rel = cameras.centers - centre
    el = np.degrees(np.arcsin(np.clip(rel[:, 1] / np.linalg.norm(rel, axis=1), -1, 1)))
    e0, e1 = float(el.min()), float(el.max())
    elevations = (e0, e1) if e1 - e0 > 5 else (0.5 * (e0 + e1),)
    proxy = Asset(splats=GaussianSplats(np.stack([lo, hi]), np.tile([1, 0, 0, 0], (2, 1)), np.zeros((2, 3)), np.zeros(2), np.zeros((2, 1, 3))))
    fov = float(np.degrees(2 * np.arctan(cameras.height / (2 * cameras.K[0, 1, 1]))))
    extra = view_rig(proxy, n, cameras.width, elevations=elevations, start_azimuth_deg=22.5, fov_y_deg=fov)
    if (extra.width, extra.height) != (cameras.width, cameras.height):
        extra = Cameras(extra.K, extra.cam_to_world, cameras.width, cameras.height)
    return Cameras(np.concatenate([cameras.K, extra.K]), np.concatenate([cameras.cam_to_world, extra.cam_to_world]),
                   cameras.width, cameras.height)


def mesh_from_splats(splats: GaussianSplats, cameras: Cameras, p: MeshingParams, progress: Progress = None,
                     cancel: Cancel = None) -> tuple[Mesh, Mesh]:
    """Render splat depth from `cameras` + extra views → TSDF → main component → decimate.
    Depth is the median ray–disc depth (2DGS-style; F-score@1 % on the shared glTF samples rose
    from 0.62–0.81 with first-surface centre depth to 0.91–0.99, bench/bench_fit.py).
    Returns (dense mesh, decimated mesh)."""
    from .mesh_extract import DecimateParams, TSDFParams, decimate, tsdf_fuse

    rig = depth_rig(splats, cameras, 0 if p.isolate_object else p.extra_views)
    report = progress or (lambda f, m: None)
    report(0.0, f"rendering {len(rig)} splat depth maps")
    depth, colors = _splat_depth(splats, rig, p)
    if cancel is not None and cancel():
        from studio.errors import CancelledError

        raise CancelledError("meshing cancelled")
    lo, hi = _meshing_box(splats, cameras)
    if p.isolate_object:
        dense = _isolated(depth[: len(cameras)], cameras, lo, hi, p)
    else:
        report(0.4, "TSDF fusion")
        dense = tsdf_fuse(depth, rig, colors, TSDFParams(voxels_per_diagonal=p.voxels_per_diagonal, bounds=np.stack([lo, hi]),
                                                        keep_largest_only=True, max_depth_jump=p.max_depth_jump,
                                                        trunc_voxels=p.trunc_voxels, fill_holes=p.close_holes,
                                                        max_hole_size=float(np.linalg.norm(hi - lo)) * 2 if p.close_holes else None), cancel=cancel)
    report(0.8, f"decimating {len(dense.faces)} → {p.target_faces} faces")
    low = decimate(dense, p.target_faces, DecimateParams(), cancel=cancel)
    report(1.0, f"mesh: {len(low.faces)} faces")
    return dense, low


def _meshing_box(splats: GaussianSplats, cameras: Cameras) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) of the volume meshed: the subject's robust bounds padded by 5 % of their size."""
    lo, hi = subject_bounds(splats, cameras, 1.0)
    pad = 0.05 * (hi - lo)
    return lo - pad, hi + pad


def _splat_depth(splats: GaussianSplats, cameras: Cameras, p: MeshingParams) -> tuple[np.ndarray, np.ndarray | None]:
    """Depth maps (N,H,W) float32 (0 where splat alpha ≤ p.min_alpha) for meshing, and linear
    colours (N,H,W,3) when the first-surface path rendered them (None for median depth)."""
    from studio.renderers.splat_cpu import kernel_library

    from .splat_geometry import render_disc_depth

    colors = None
    if p.depth == "median" and kernel_library() is not None:
        depth, alpha = render_disc_depth(splats, cameras, median=True)
    else:  # no C++ kernel: centre depth toward the first surface
        rgb, depth, alpha = render_splats(splats, cameras, mode="RGB+ED", depth_sharpen=p.depth_sharpen)
        colors = srgb_to_linear(rgb).astype(np.float32)
    return np.where(alpha > p.min_alpha, depth, 0.0).astype(np.float32), colors


def _isolated(depth: np.ndarray, cameras: Cameras, lo: np.ndarray, hi: np.ndarray, p: MeshingParams) -> Mesh:
    """The object on its support plane from the training views' depth, closed (watertight)."""
    from .object_isolation import isolate_object

    pts, nrm, spacing = _object_points(depth, cameras, lo, hi, p)
    return isolate_object(pts, nrm, cameras, spacing)


def _object_points(depth: np.ndarray, cameras: Cameras, lo: np.ndarray, hi: np.ndarray,
                   p: MeshingParams) -> tuple[np.ndarray, np.ndarray, float]:
    """Oriented depth points (P,3), normals (P,3) inside the box (lo, hi) and their spacing (m)."""
    from .mesh_extract import drop_depth_edges
    from .object_isolation import depth_points

    if p.max_depth_jump is not None:
        depth = drop_depth_edges(depth, p.max_depth_jump)
    pts, nrm = depth_points(depth, cameras, stride=2)
    inside = np.all((pts > lo) & (pts < hi), axis=1)
    if inside.sum() < 100:
        raise EmptyResultError("object isolation: fewer than 100 depth points inside the subject's bounds")
    return pts[inside], nrm[inside], float(np.linalg.norm(hi - lo)) / p.voxels_per_diagonal


def ground_plane(splats: GaussianSplats, cameras: Cameras, p: MeshingParams):
    """The support plane (object_isolation.SupportPlane) the subject stands on, as `isolate_object`
    finds it from the splats' median depth in `cameras`, or None when there is none."""
    from .object_isolation import IsolateParams, find_support_plane

    depth, _ = _splat_depth(splats, cameras, p)
    pts, _, spacing = _object_points(depth, cameras, *_meshing_box(splats, cameras), p)
    ip = IsolateParams()
    return find_support_plane(pts, cameras, ip.plane_distance * spacing, ip.min_plane_fraction)


def bake_asset(dense: Mesh, low: Mesh, views: Views, splats: GaussianSplats | None, p: MeshingParams,
               progress: Progress = None, cancel: Cancel = None) -> tuple[Asset, dict]:
    """Unwrap the low-poly mesh, bake base colour from the views (visibility by ray casting),
    a normal map from the dense mesh and ambient occlusion; returns (Asset, UV stats)."""
    from .bake import BakeParams, bake_ambient_occlusion, bake_base_color, bake_normal_map, make_pbr_material
    from .uv_unwrap import UVParams, unwrap

    report = progress or (lambda f, m: None)
    report(0.0, "UV unwrap (xatlas)")
    uv_mesh, stats = unwrap(low, UVParams(resolution=p.texture_size), cancel=cancel)
    report(0.2, "baking base colour")
    base = bake_base_color(uv_mesh, views.images, views.cameras, None, BakeParams(resolution=p.texture_size), cancel=cancel)
    report(0.5, "baking normal map")
    normal = bake_normal_map(dense, uv_mesh, resolution=p.texture_size, cancel=cancel)
    report(0.75, "baking ambient occlusion")
    ao = bake_ambient_occlusion(uv_mesh, resolution=max(64, p.texture_size // 2), rays=p.ao_rays, cancel=cancel)
    if ao.image.shape[:2] != base.image.shape[:2]:
        from PIL import Image

        from studio.assets import Texture

        ao = Texture(np.asarray(Image.fromarray(ao.image).resize(base.size, Image.BILINEAR)), name="ao")
    mat = make_pbr_material(base, normal, ao, metallic=p.metallic, roughness=p.roughness, name="reconstructed")
    uv_mesh.material = mat
    uv_mesh.tangents = compute_tangents(uv_mesh.vertices, uv_mesh.vertex_normals(), uv_mesh.uvs[0], uv_mesh.faces)
    uv_mesh.colors = None
    uv_mesh.name = "reconstruction"
    report(1.0, "baked")
    uvs = {"charts": stats.charts, "utilisation": stats.utilisation, "texels_per_metre": stats.texels_per_metre}
    return Asset(meshes=[uv_mesh], splats=splats, metadata=AssetMetadata(pipeline="views_to_asset", method="fit")), uvs


def views_to_asset(views: Views, fit: FitParams = FitParams(), meshing: MeshingParams = MeshingParams(),
                   init_points: np.ndarray | None = None, init_colors: np.ndarray | None = None,
                   progress: Progress = None, cancel: Cancel = None) -> Asset:
    """The whole route for Python callers: fit → mesh → unwrap → bake → Asset (mesh + splats)."""
    report = progress or (lambda f, m: None)
    splats, _ = fit_splats(views, fit, init_points, init_colors, progress=lambda f, m: report(0.6 * f, m), cancel=cancel)
    dense, low = mesh_from_splats(splats, views.cameras, meshing, lambda f, m: report(0.6 + 0.2 * f, m), cancel)
    asset, _ = bake_asset(dense, low, views, splats, meshing, lambda f, m: report(0.8 + 0.2 * f, m), cancel)
    return asset
