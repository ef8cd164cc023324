"""Depth maps → triangle mesh: TSDF fusion, clean-up and decimation (issue #6 item 3).

Stages, each a plain function on studio asset types:

- `tsdf_fuse(depths, cameras, colors, params)`: fuse metric depth maps (OpenCV z, 0 = no hit) seen by
  studio `Cameras` into open3d-cpu 0.19's `ScalableTSDFVolume`, extract the marching-cubes surface,
  clean it, keep the main component(s) and drop floaters, optionally fill small holes.
- `clean_mesh(mesh)`: drop NaN/Inf vertices, degenerate and duplicate faces, unreferenced vertices.
- `decimate(mesh, target_faces)`: quadric edge collapse (fast-simplification) keeping open borders.

Conventions: world units metres; cameras in the studio's OpenCV convention (x right, y down, z
forward, top-left pixel centre at (0.5, 0.5)); open3d's pinhole model puts pixel centres at integer
coordinates, so its principal point is K's minus 0.5. Vertex colours are linear RGBA float32.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from studio.assets.cameras import Cameras
from studio.assets.colour import linear_to_srgb, srgb_to_linear, to_uint8
from studio.assets.mesh import Mesh
from studio.errors import CancelledError, EmptyResultError

Progress = Callable[[float, str], None] | None
Cancel = Callable[[], bool] | None

STAGE_VERSION = "1"


@dataclass(frozen=True)
class TSDFParams:
    """Parameters of `tsdf_fuse`.

    voxel_size: metres; None → diagonal of the fusion bounds / `voxels_per_diagonal`.
    sdf_trunc: truncation distance in metres; None → `trunc_voxels` voxels.
    depth_trunc: depths beyond this (metres) are ignored; None → 1.01 × the largest valid depth.
    bounds: optional (2,3) world min/max corner; depth pixels outside it (+ sdf_trunc) are not
      fused and the surface is cropped to it. None → the bounding box of the back-projected depth
      points (used for the default voxel size only).
    min_component_fraction: connected components with fewer faces than this fraction of the
      total are floaters and dropped (the largest component is always kept).
    keep_largest_only: keep only the largest connected component.
    fill_holes: close boundary loops up to `max_hole_size` metres (open3d's VTK hole filler).
    max_depth_jump: drop pixels whose depth differs from a valid 4-neighbour's by more than this
      fraction of their depth (mixed foreground/background pixels at silhouettes, typical of
      splat depth renders); None keeps every pixel.
    """

    voxel_size: float | None = None
    sdf_trunc: float | None = None
    depth_trunc: float | None = None
    bounds: np.ndarray | tuple | None = None
    voxels_per_diagonal: int = 256
    trunc_voxels: float = 4.0
    min_component_fraction: float = 0.05
    keep_largest_only: bool = False
    fill_holes: bool = False
    max_hole_size: float | None = None  # metres; None → 10 voxels
    max_depth_jump: float | None = None


def _check_cancel(cancel: Cancel) -> None:
    if cancel is not None and cancel():
        raise CancelledError("cancelled during mesh extraction")


def _report(progress: Progress, frac: float, msg: str) -> None:
    if progress is not None:
        progress(float(frac), msg)


def drop_depth_edges(depths: np.ndarray, max_jump: float) -> np.ndarray:
    """Zero the pixels of depths (N,H,W) that differ from a valid (> 0) 4-neighbour by more than
    `max_jump` × their own depth. Returns a new float32 array."""
    d = np.asarray(depths, dtype=np.float32)
    bad = np.zeros(d.shape, bool)
    for axis in (1, 2):
        a = np.swapaxes(d, axis, -1)
        jump = np.abs(np.diff(a, axis=-1))
        both = (a[..., 1:] > 0) & (a[..., :-1] > 0)
        b = np.zeros(a.shape, bool)
        b[..., :-1] |= both & (jump > max_jump * a[..., :-1])
        b[..., 1:] |= both & (jump > max_jump * a[..., 1:])
        bad |= np.swapaxes(b, -1, axis)
    return np.where(bad, 0.0, d).astype(np.float32)


def _crop_depths(depths: np.ndarray, cameras: Cameras, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Zero the pixels whose back-projected point lies outside the box [lo, hi] (so backgrounds
    far from the object cost no TSDF blocks)."""
    n, h, w = depths.shape
    jj, ii = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    uv = np.stack([jj.ravel(), ii.ravel()], axis=1)
    out = depths.copy()
    for k in range(n):
        pw = cameras.unproject(k, uv, depths[k].ravel())
        inside = np.all((pw >= lo) & (pw <= hi), axis=1)
        out[k] = np.where(inside.reshape(h, w), depths[k], 0.0)
    return out


def backproject(depths: np.ndarray, cameras: Cameras, stride: int = 1) -> np.ndarray:
    """World points (P,3) float64 of every valid pixel (depth > 0, finite) of depths (N,H,W).

    Uses each pixel's centre (j + 0.5, i + 0.5) in the OpenCV convention; ignores lens distortion."""
    n, h, w = depths.shape
    jj, ii = np.meshgrid(np.arange(0, w, stride) + 0.5, np.arange(0, h, stride) + 0.5)
    out = []
    for k in range(n):
        d = depths[k, ::stride, ::stride]
        ok = np.isfinite(d) & (d > 0)
        if not ok.any():
            continue
        out.append(cameras.unproject(k, np.stack([jj[ok], ii[ok]], axis=1), d[ok]))
    return np.concatenate(out) if out else np.zeros((0, 3))


def tsdf_fuse(
    depths: np.ndarray,
    cameras: Cameras,
    colors: np.ndarray | None = None,
    params: TSDFParams = TSDFParams(),
    progress: Progress = None,
    cancel: Cancel = None,
) -> Mesh:
    """Fuse depth maps into a triangle mesh.

    depths: (N,H,W) float32 metric camera-z depths (OpenCV), 0 (or NaN) where nothing was hit.
    cameras: N studio Cameras of size W×H (distortion is ignored: undistort first).
    colors: optional (N,H,W,3) float32 linear RGB in [0,1]; fused into vertex colours.
    Returns a Mesh (vertices float64 metres, faces CCW seen from outside, vertex normals, and
    linear RGBA vertex colours when `colors` was given).
    Raises EmptyResultError when no valid depth exists or the fused surface is empty, ValueError
    for inconsistent shapes, CancelledError when `cancel()` turns true between views.
    """
    import open3d as o3d

    depths = np.asarray(depths, dtype=np.float32)
    if depths.ndim != 3:
        raise ValueError(f"depths must be (N,H,W), got {depths.shape}")
    n, h, w = depths.shape
    if len(cameras) != n or (cameras.width, cameras.height) != (w, h):
        raise ValueError(
            f"{n} depth maps of {w}x{h} but {len(cameras)} cameras of {cameras.width}x{cameras.height}"
        )
    if colors is not None:
        colors = np.asarray(colors, dtype=np.float32)
        if colors.shape != (n, h, w, 3):
            raise ValueError(f"colors must be {(n, h, w, 3)}, got {colors.shape}")
    depths = np.where(np.isfinite(depths) & (depths > 0), depths, 0.0).astype(np.float32)
    if params.max_depth_jump is not None:
        depths = drop_depth_edges(depths, params.max_depth_jump)
    if not (depths > 0).any():
        raise EmptyResultError("TSDF fusion: every depth map is empty (no pixel hit the scene); check the cameras face the object")

    bounds = None if params.bounds is None else np.asarray(params.bounds, dtype=np.float64).reshape(2, 3)
    if bounds is None or params.voxel_size is None:
        pts = backproject(depths, cameras, stride=max(1, min(h, w) // 64))
        if bounds is not None:
            pts = pts[np.all((pts >= bounds[0]) & (pts <= bounds[1]), axis=1)]
        if len(pts) == 0:
            raise EmptyResultError("TSDF fusion: no depth point lies inside the given bounds; widen TSDFParams.bounds")
        box = np.stack([pts.min(0), pts.max(0)]) if bounds is None else bounds
    else:
        box = bounds
    diag = float(np.linalg.norm(box[1] - box[0]))
    if diag <= 0:
        raise EmptyResultError("TSDF fusion: the depth points span zero volume")
    voxel = float(params.voxel_size) if params.voxel_size else diag / params.voxels_per_diagonal
    trunc = float(params.sdf_trunc) if params.sdf_trunc else params.trunc_voxels * voxel
    depth_trunc = float(params.depth_trunc) if params.depth_trunc else float(depths.max()) * 1.01 + trunc

    color_type = o3d.pipelines.integration.TSDFVolumeColorType
    if bounds is not None:
        depths = _crop_depths(depths, cameras, bounds[0] - trunc, bounds[1] + trunc)
    vol = o3d.pipelines.integration.ScalableTSDFVolume(
        voxel_length=voxel,
        sdf_trunc=trunc,
        color_type=color_type.RGB8 if colors is not None else color_type.NoColor,
    )
    w2c = cameras.world_to_cam
    blank = np.zeros((h, w, 3), dtype=np.uint8)
    for k in range(n):
        _check_cancel(cancel)
        kk = cameras.K[k]
        intr = o3d.camera.PinholeCameraIntrinsic(w, h, kk[0, 0], kk[1, 1], kk[0, 2] - 0.5, kk[1, 2] - 0.5)
        # Colours go in sRGB-encoded 8 bit (less banding in the darks), come back out linear.
        col = to_uint8(linear_to_srgb(colors[k])) if colors is not None else blank
        rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(np.ascontiguousarray(col)),
            o3d.geometry.Image(np.ascontiguousarray(depths[k])),
            depth_scale=1.0,
            depth_trunc=depth_trunc,
            convert_rgb_to_intensity=False,
        )
        vol.integrate(rgbd, intr, w2c[k])
        _report(progress, 0.7 * (k + 1) / n, f"fused view {k + 1}/{n}")

    _check_cancel(cancel)
    om = vol.extract_triangle_mesh()
    verts = np.asarray(om.vertices, dtype=np.float64)
    faces = np.asarray(om.triangles, dtype=np.int64)
    vcol = np.asarray(om.vertex_colors, dtype=np.float64) if colors is not None else None
    _report(progress, 0.8, f"marching cubes: {len(faces)} faces")
    if len(faces) == 0:
        raise EmptyResultError(
            "TSDF fusion produced an empty mesh: the depth maps do not agree on a surface; "
            "check camera poses / depth units or raise TSDFParams.sdf_trunc"
        )
    if bounds is not None:
        inside = np.all((verts >= bounds[0] - voxel) & (verts <= bounds[1] + voxel), axis=1)
        faces = faces[inside[faces].all(axis=1)]
    rgba = None
    if vcol is not None and len(vcol) == len(verts):
        rgba = np.concatenate([srgb_to_linear(np.clip(vcol, 0, 1)), np.ones((len(verts), 1))], axis=1).astype(np.float32)
    mesh = clean_mesh(Mesh.from_arrays(verts, faces, colors=rgba))
    mesh = remove_small_components(mesh, params.min_component_fraction, params.keep_largest_only)
    if params.fill_holes:
        _check_cancel(cancel)
        mesh = fill_holes(mesh, params.max_hole_size if params.max_hole_size else 10 * voxel)
    if len(mesh.faces) == 0:
        raise EmptyResultError("TSDF fusion: nothing is left after removing degenerate faces and floaters")
    mesh.normals = np.asarray(mesh.geometry.vertex_normals, dtype=np.float32)
    _report(progress, 1.0, f"mesh: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces")
    return mesh


def _subset(mesh: Mesh, faces: np.ndarray) -> Mesh:
    """A new Mesh with only `faces` (indices into mesh.vertices) and the vertices they use; attributes follow."""
    used = np.unique(faces)
    remap = np.full(len(mesh.vertices), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    pick = lambda a: None if a is None else a[used]  # noqa: E731
    return Mesh.from_arrays(
        mesh.vertices[used],
        remap[faces].reshape(-1, 3),
        material=mesh.material,
        normals=pick(mesh.normals),
        uvs=[uv[used] for uv in mesh.uvs],
        colors=pick(mesh.colors),
        tangents=pick(mesh.tangents),
        transform=mesh.transform.copy(),
        name=mesh.name,
    )


def clean_mesh(mesh: Mesh) -> Mesh:
    """Remove NaN/Inf vertices (and their faces), faces with repeated indices or zero area,
    duplicate faces (same vertex set, any order/winding: the first is kept) and unreferenced
    vertices. Attributes (normals, uvs, colours, tangents) follow their vertices."""
    v = mesh.vertices
    f = mesh.faces.reshape(-1, 3)
    if len(f):
        bad_v = ~np.isfinite(v).all(axis=1)
        ok = ~bad_v[f].any(axis=1)
        ok &= (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
        f = f[ok]
        tri = v[f]
        area2 = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
        scale = float(np.ptp(v[np.isfinite(v).all(axis=1)], axis=0).max()) if len(v) else 1.0
        f = f[area2 > (1e-12 * max(scale, 1e-9) ** 2)]
        _, first = np.unique(np.sort(f, axis=1), axis=0, return_index=True)
        f = f[np.sort(first)]
    return _subset(mesh, f)


def remove_small_components(mesh: Mesh, min_fraction: float = 0.05, keep_largest_only: bool = False) -> Mesh:
    """Keep the largest face-connected component and every other one holding ≥ `min_fraction` of
    all faces (or only the largest when `keep_largest_only`)."""
    import trimesh

    f = mesh.faces
    if len(f) == 0:
        return mesh
    labels = trimesh.graph.connected_component_labels(mesh.geometry.face_adjacency, node_count=len(f))
    counts = np.bincount(labels)
    largest = int(np.argmax(counts))
    keep = counts >= min_fraction * len(f)
    if keep_largest_only:
        keep[:] = False
    keep[largest] = True
    return _subset(mesh, f[keep[labels]])


def fill_holes(mesh: Mesh, max_hole_size: float) -> Mesh:
    """Close boundary loops whose size is below `max_hole_size` metres (open3d VTK hole filler).

    New vertices get no colour information beyond their nearest original vertex's."""
    import open3d as o3d
    from scipy.spatial import cKDTree

    tm = o3d.t.geometry.TriangleMesh()
    tm.vertex.positions = o3d.core.Tensor(mesh.vertices.astype(np.float64))
    tm.triangle.indices = o3d.core.Tensor(mesh.faces.astype(np.int64))
    filled = tm.fill_holes(hole_size=float(max_hole_size))
    v = filled.vertex.positions.numpy().astype(np.float64)
    f = filled.triangle.indices.numpy().astype(np.int64)
    colors = None
    if mesh.colors is not None:
        _, nn = cKDTree(mesh.vertices).query(v)
        colors = mesh.colors[nn]
    return clean_mesh(Mesh.from_arrays(v, f, material=mesh.material, colors=colors, transform=mesh.transform.copy(), name=mesh.name))


@dataclass(frozen=True)
class DecimateParams:
    """aggressiveness: fast-simplification's `agg` (lower = better quality, slower);
    preserve_border: never collapse an edge touching an open boundary."""

    aggressiveness: float = 7.0
    preserve_border: bool = True


def _decimate_closed(vertices: np.ndarray, faces: np.ndarray, target_faces: int):
    """open3d quadric decimation of a watertight mesh → (v, f), or (None, None) when the result
    is not watertight. (On the closed buddha head, 83k → 4k faces: open3d kept it closed,
    fast-simplification did not at agg 3–7.)"""
    import open3d as o3d
    import trimesh

    om = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(vertices.astype(np.float64)),
                                   o3d.utility.Vector3iVector(faces.astype(np.int32)))
    out = om.simplify_quadric_decimation(int(target_faces))
    cleaned = clean_mesh(Mesh.from_arrays(np.asarray(out.vertices), np.asarray(out.triangles)))  # as decimate() will
    v, f = cleaned.vertices, cleaned.faces
    if len(f) == 0 or not trimesh.Trimesh(v, f, process=False).is_watertight:
        return None, None
    return v, f


def decimate(
    mesh: Mesh,
    target_faces: int,
    params: DecimateParams = DecimateParams(),
    progress: Progress = None,
    cancel: Cancel = None,
) -> Mesh:
    """Quadric edge-collapse decimation to about `target_faces` triangles (fast-simplification).

    Open boundaries are preserved (when `params.preserve_border`); a watertight mesh stays watertight. Vertex colours are carried over
    from the nearest original vertex; normals are recomputed; UVs and tangents are dropped (unwrap
    after decimating). A mesh already at or below the target is returned cleaned but unchanged."""
    import fast_simplification
    from scipy.spatial import cKDTree

    if target_faces < 4:
        raise ValueError(f"target_faces must be at least 4, got {target_faces}")
    _check_cancel(cancel)
    raw = mesh
    closed = len(raw.faces) > 0 and raw.geometry.is_watertight  # before cleaning: dropping slivers opens it
    mesh = clean_mesh(mesh)
    if len(mesh.faces) == 0:
        raise EmptyResultError("decimate: the mesh has no faces")
    if len(mesh.faces) <= target_faces:
        return mesh
    _report(progress, 0.0, f"decimating {len(mesh.faces)} → {target_faces} faces")
    v = f = None
    if closed:  # keep closed meshes closed (fast-simplification can open them)
        v, f = _decimate_closed(raw.vertices, raw.faces, target_faces)
    if v is None:
        v, f = fast_simplification.simplify(
            mesh.vertices.astype(np.float64),
            mesh.faces.astype(np.int32),
            target_count=int(target_faces),
            agg=float(params.aggressiveness),
            preserve_border=bool(params.preserve_border),
        )
    _check_cancel(cancel)
    colors = None
    if mesh.colors is not None and len(v):
        _, nn = cKDTree(mesh.vertices).query(v)
        colors = mesh.colors[nn]
    out = clean_mesh(
        Mesh.from_arrays(v, f, material=mesh.material, colors=colors, transform=mesh.transform.copy(), name=mesh.name)
    )
    out.normals = np.asarray(out.geometry.vertex_normals, dtype=np.float32)
    _report(progress, 1.0, f"decimated to {len(out.faces)} faces")
    return out
