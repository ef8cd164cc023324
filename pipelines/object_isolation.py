"""Isolate an object captured standing on a support (table, floor, turntable) and close it.

A photo capture meshes the object together with the surface it stands on. `isolate_object`
finds that support as the dominant plane of the fused surface (RANSAC, open3d), keeps the
connected part above it on the cameras' side, caps the footprint where the object touched the
plane, and rebuilds a watertight surface from the oriented points by screened Poisson
reconstruction (open3d), voxelised by ray voting so the result is watertight whatever Poisson
leaves non-manifold: a closed, game-ready mesh of the object alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from studio.assets import Cameras, Mesh
from studio.errors import EmptyResultError


@dataclass(frozen=True)
class IsolateParams:
    """plane_distance: RANSAC inlier distance in voxels; min_plane_fraction: the plane must hold
    this fraction of the surface points to count as a support; clearance: points closer than
    this many voxels to the plane belong to the support; poisson_depth: octree depth."""

    plane_distance: float = 1.5
    min_plane_fraction: float = 0.1
    clearance: float = 2.0
    poisson_depth: int = 8


@dataclass(frozen=True)
class SupportPlane:
    """Plane n·x = d (unit n pointing to the cameras' side), and its inlier fraction."""

    normal: np.ndarray
    offset: float
    fraction: float

    def height(self, points: np.ndarray) -> np.ndarray:
        """Signed distance (P,) of points above the plane (positive on the cameras' side)."""
        return points @ self.normal - self.offset


def find_support_plane(points: np.ndarray, cameras: Cameras, distance: float, min_fraction: float = 0.1,
                       seed: int = 0, attempts: int = 4) -> SupportPlane | None:
    """The dominant plane of `points` (P,3) with most cameras and points above it, or None.

    Sequential RANSAC (open3d): up to `attempts` planes, each found among the points the previous
    ones did not explain; the first that passes is returned. A plane fails when it holds less than
    `min_fraction` of all points, the cameras are not mostly (80 %) on one side of it, less than
    20 % of the other points stand on it (an object's flat top), or its inliers do not fill their
    outline (a ring where a plane cuts a round object)."""
    import open3d as o3d

    points = np.asarray(points, np.float64)
    if len(points) < 50:
        return None
    o3d.utility.random.seed(seed)
    rest = np.arange(len(points))
    for _ in range(attempts):
        if len(rest) < min_fraction * len(points):
            return None
        pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points[rest]))
        (a, b, c, d), inliers = pc.segment_plane(distance_threshold=float(distance), ransac_n=3, num_iterations=1000)
        inliers = rest[np.asarray(inliers, dtype=np.int64)]
        plane = _support(points, inliers, np.array([a, b, c], np.float64), float(d), cameras, distance, min_fraction)
        if plane is not None:
            return plane
        rest = np.setdiff1d(rest, inliers)
    return None


def _support(points: np.ndarray, inliers: np.ndarray, n: np.ndarray, d: float, cameras: Cameras, distance: float,
             min_fraction: float) -> SupportPlane | None:
    """The plane n·x + d = 0 as a SupportPlane if it passes find_support_plane's checks."""
    norm = float(np.linalg.norm(n))
    if norm == 0 or len(inliers) < min_fraction * len(points):
        return None
    n, off = n / norm, -d / norm
    side = cameras.centers @ n - off
    if np.mean(side > 0) < 0.5:
        n, off, side = -n, -off, -side
    if np.mean(side > 0) < 0.8:  # cameras all round the plane: it is not a support under the object
        return None
    above = int(np.sum(points @ n - off > 3 * distance))
    if above < 0.2 * (len(points) - len(inliers)):
        return None  # (almost) nothing stands on it: an object's flat top, not a support
    if _fill_ratio(points[inliers], n, 2 * distance) < 0.3:
        return None  # a ring (a plane cutting through a round object), not a surface to stand on
    return SupportPlane(n, float(off), len(inliers) / len(points))


def _plane_axes(n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u = np.cross(n, [1.0, 0, 0] if abs(n[0]) < 0.9 else [0, 1.0, 0])
    u /= np.linalg.norm(u)
    return u, np.cross(n, u)


def _fill_ratio(inliers: np.ndarray, n: np.ndarray, cell: float) -> float:
    """Fraction of the cells (side `cell`) inside the convex hull of the inliers projected on
    the plane that hold an inlier: ~1 for a table top, ~0.2 for the ring where a plane cuts a sphere."""
    from scipy.spatial import ConvexHull, Delaunay

    u, v = _plane_axes(n)
    uv = np.stack([inliers @ u, inliers @ v], 1)
    try:
        hull = Delaunay(uv[ConvexHull(uv).vertices])
    except Exception:  # collinear inliers
        return 0.0
    occupied = np.unique(np.floor(uv / cell).astype(np.int64), axis=0)
    lo, hi = np.floor(uv.min(0) / cell).astype(np.int64), np.floor(uv.max(0) / cell).astype(np.int64)
    gi, gj = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
    centres = (np.stack([gi.ravel(), gj.ravel()], 1) + 0.5) * cell
    inside = int((hull.find_simplex(centres) >= 0).sum())
    return min(1.0, len(occupied) / max(inside, 1))


def depth_points(depths: np.ndarray, cameras: Cameras, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Oriented points of depth maps (N,H,W) (OpenCV z, 0 = none): world points (P,3) and unit
    normals (P,3) from the central differences of each map's back-projection, facing its camera.
    Pixels whose 4 neighbours are not all valid are skipped."""
    pts, nrm = [], []
    n, h, w = depths.shape
    v, u = np.mgrid[0:h, 0:w] + 0.5
    for k in range(n):
        d = depths[k]
        xyz = cameras.unproject(k, np.stack([u.ravel(), v.ravel()], 1), d.ravel()).reshape(h, w, 3)
        dx = xyz[1:-1, 2:] - xyz[1:-1, :-2]
        dy = xyz[2:, 1:-1] - xyz[:-2, 1:-1]
        nn = np.cross(dx, dy)
        ok = (d[1:-1, 1:-1] > 0) & (d[1:-1, 2:] > 0) & (d[1:-1, :-2] > 0) & (d[2:, 1:-1] > 0) & (d[:-2, 1:-1] > 0)
        ok &= np.linalg.norm(nn, axis=-1) > 0
        sel = np.zeros_like(ok)
        sel[::stride, ::stride] = ok[::stride, ::stride]
        p, q = xyz[1:-1, 1:-1][sel], nn[sel]
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        flip = ((cameras.centers[k] - p) * q).sum(1) < 0
        q[flip] *= -1
        pts.append(p)
        nrm.append(q)
    return np.concatenate(pts), np.concatenate(nrm)


def isolate_object(points: np.ndarray, normals: np.ndarray, cameras: Cameras, spacing: float,
                   params: IsolateParams = IsolateParams()) -> Mesh:
    """A watertight Mesh of the object that oriented `points` (P,3) / `normals` (P,3) (world
    metres, e.g. `depth_points` of fitted splat depth) show standing on a support plane.

    spacing: the sampling distance of the points (e.g. the TSDF voxel); the plane tolerance and
    clearance are multiples of it. Without a support plane the largest cluster is closed as is.
    Raises EmptyResultError when nothing is left above the plane."""
    import open3d as o3d
    import trimesh

    plane = find_support_plane(points, cameras, params.plane_distance * spacing, params.min_plane_fraction)
    keep = np.ones(len(points), bool) if plane is None else plane.height(points) > params.clearance * spacing
    if keep.sum() < 100:
        raise EmptyResultError("object isolation: nothing of the surface stands above the support plane")
    pts, nrm = points[keep], normals[keep]
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    labels = np.asarray(pc.cluster_dbscan(eps=3 * spacing, min_points=8))
    if (labels >= 0).any():  # the largest cluster: the object (clutter on the table is dropped)
        main = labels == np.argmax(np.bincount(labels[labels >= 0]))
        pts, nrm = pts[main], nrm[main]
    if plane is not None:  # cap the footprint (its lowest visible section) on the plane, facing down
        h = plane.height(pts)
        foot = pts[h < h.min() + 4 * spacing]
        if len(foot) >= 3:
            cap = _footprint_points(foot, plane, spacing)
            pts = np.concatenate([pts, cap])
            nrm = np.concatenate([nrm, np.tile(-plane.normal, (len(cap), 1))])
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    pc.normals = o3d.utility.Vector3dVector(nrm)
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        om, _ = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(pc, depth=params.poisson_depth)
    return _closed_surface(np.asarray(om.vertices), np.asarray(om.triangles), spacing / 2)


def _closed_surface(verts: np.ndarray, faces: np.ndarray, cell: float) -> Mesh:
    """The largest closed surface of a (possibly non-manifold) triangle soup: inside/outside on a
    grid of `cell` metres by multi-ray voting (open3d RaycastingScene.compute_occupancy),
    lightly smoothed, marching cubes at 0.5 → watertight by construction (the grid is padded)."""
    import open3d as o3d
    import trimesh
    from scipy.ndimage import gaussian_filter
    from skimage.measure import marching_cubes

    lo, hi = verts.min(0) - 3 * cell, verts.max(0) + 3 * cell
    dims = np.ceil((hi - lo) / cell).astype(int) + 1
    axes = [lo[i] + cell * np.arange(dims[i]) for i in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3).astype(np.float32)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(verts.astype(np.float32)), o3d.core.Tensor(faces.astype(np.uint32)))
    occ = scene.compute_occupancy(o3d.core.Tensor(grid), nsamples=5).numpy().reshape(*dims).astype(np.float32)
    occ[[0, -1]] = 0
    occ[:, [0, -1]] = 0
    occ[:, :, [0, -1]] = 0
    occ = gaussian_filter(occ, 0.8)
    if occ.max() <= 0.5:
        raise EmptyResultError("object isolation: the reconstructed surface encloses no volume")
    v, f, _, _ = marching_cubes(occ, 0.5, spacing=(cell,) * 3)
    # collapse marching cubes' zero-length edges so no sliver has to be deleted (that would open it)
    om = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(v + lo), o3d.utility.Vector3iVector(f.astype(np.int32)))
    om = om.merge_close_vertices(cell * 1e-3)
    om.remove_degenerate_triangles()
    om.remove_duplicated_triangles()
    om.remove_unreferenced_vertices()
    closed = trimesh.Trimesh(np.asarray(om.vertices), np.asarray(om.triangles), process=True)
    parts = [m for m in closed.split(only_watertight=False) if m.is_watertight] or [closed]
    best = max(parts, key=lambda m: abs(m.volume))
    if best.volume < 0:
        best.invert()
    mesh = Mesh.from_arrays(np.asarray(best.vertices), np.asarray(best.faces))
    mesh.normals = np.asarray(best.vertex_normals, dtype=np.float32)
    return mesh


def _footprint_points(foot: np.ndarray, plane: SupportPlane, spacing: float) -> np.ndarray:
    """Points on the plane filling the convex hull of `foot` projected onto it, `spacing` apart."""
    from scipy.spatial import ConvexHull, Delaunay

    n = plane.normal
    u, v = _plane_axes(n)
    uv = np.stack([foot @ u, foot @ v], 1)
    try:
        hull = ConvexHull(uv)
    except Exception:  # degenerate footprint (a line): no cap
        return np.zeros((0, 3))
    lo, hi = uv.min(0), uv.max(0)
    gu, gv = np.meshgrid(np.arange(lo[0], hi[0] + spacing, spacing), np.arange(lo[1], hi[1] + spacing, spacing))
    grid = np.stack([gu.ravel(), gv.ravel()], 1)
    inside = Delaunay(uv[hull.vertices]).find_simplex(grid) >= 0
    g = grid[inside]
    return g[:, :1] * u + g[:, 1:] * v + plane.offset * n
