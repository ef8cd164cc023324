"""TSDF fusion, clean-up and decimation on depth maps ray cast from known meshes."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

from studio.assets.cameras import Cameras
from studio.assets.mesh import Mesh
from studio.errors import CancelledError, EmptyResultError
from studio.pipelines.bake import raycast_views
from studio.pipelines.mesh_extract import (
    TSDFParams,
    backproject,
    clean_mesh,
    decimate,
    fill_holes,
    remove_small_components,
    tsdf_fuse,
)
from studio.pipelines.metrics import chamfer

RES = 96
FAST = TSDFParams(voxels_per_diagonal=128)


def ring_cameras(n: int = 16, dist: float = 1.2, res: int = RES, target=(0.0, 0.0, 0.0)) -> Cameras:
    """n cameras on a Fibonacci sphere around `target`, looking at it."""
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    th = np.pi * (1 + 5**0.5) * i
    eyes = dist * np.stack([np.cos(th) * np.sin(phi), np.cos(phi), np.sin(th) * np.sin(phi)], 1) + np.asarray(target)
    return Cameras.look_at(eyes, np.asarray(target), fov_y_deg=40, width=res, height=res)


def as_mesh(tm: trimesh.Trimesh) -> Mesh:
    return Mesh.from_arrays(tm.vertices, tm.faces)


@pytest.fixture(scope="module")
def sphere_scene():
    sph = trimesh.creation.icosphere(5, radius=0.3)
    cams = ring_cameras()
    return sph, cams, raycast_views(as_mesh(sph), cams).depth


def test_raycast_depth_matches_analytic_sphere(sphere_scene):
    """The test renderer itself: camera-z depth of a sphere equals the analytic ray/sphere hit."""
    _, cams, depth = sphere_scene
    k = 3
    c = cams.centers[k]
    jj, ii = np.meshgrid(np.arange(RES) + 0.5, np.arange(RES) + 0.5)
    d_cam = np.linalg.inv(cams.K[k]) @ np.stack([jj.ravel(), ii.ravel(), np.ones(RES * RES)])
    d = (cams.cam_to_world[k, :3, :3] @ (d_cam / np.linalg.norm(d_cam, axis=0))).T
    b = d @ c
    disc = b**2 - (c @ c - 0.3**2)
    hit = disc > 0
    t = -b - np.sqrt(np.where(hit, disc, 0))
    z = (t * d_cam[2] / np.linalg.norm(d_cam, axis=0)).reshape(RES, RES)
    got = depth[k]
    inner = hit.reshape(RES, RES) & (disc.reshape(RES, RES) > 0.005)  # away from the silhouette
    assert np.abs(got[inner] - z[inner]).max() < 2e-3  # icosphere facets vs true sphere
    assert (got[~hit.reshape(RES, RES)] == 0).all()
    # back-projecting the depth gives points on the sphere
    p = backproject(depth[k : k + 1], cams[k])
    assert np.abs(np.linalg.norm(p, axis=1) - 0.3).max() < 2e-3


def test_tsdf_sphere_within_chamfer_bound(sphere_scene):
    sph, cams, depth = sphere_scene
    fractions = []
    mesh = tsdf_fuse(depth, cams, params=FAST, progress=lambda f, m: fractions.append(f))
    r = chamfer(mesh, sph, n=30_000)
    assert r.chamfer <= 0.01 * r.diagonal * 0.5, r
    assert r.fscore >= 0.9 and r.normal_consistency > 0.95, r
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    # faces wind counter-clockwise seen from outside; normals point outwards
    fn = mesh.geometry.face_normals
    assert (np.einsum("ij,ij->i", fn, mesh.vertices[mesh.faces].mean(1)) > 0).mean() > 0.99
    assert mesh.normals is not None and mesh.normals.shape == mesh.vertices.shape


def test_tsdf_box_within_chamfer_bound():
    box = trimesh.creation.box((0.5, 0.3, 0.4))
    box.apply_transform(trimesh.transformations.rotation_matrix(0.5, [1, 1, 0]))
    box.apply_translation([0.1, -0.05, 0.02])
    cams = ring_cameras(dist=1.5, target=(0.1, -0.05, 0.02))
    depth = raycast_views(as_mesh(box), cams).depth
    mesh = tsdf_fuse(depth, cams, params=FAST)
    r = chamfer(mesh, box, n=30_000)
    assert r.chamfer <= 0.01 * r.diagonal * 0.5, r
    assert r.fscore >= 0.9, r


def test_tsdf_fuses_vertex_colours(sphere_scene):
    sph, cams, depth = sphere_scene
    hits = raycast_views(as_mesh(sph), cams)
    pts = np.einsum("nhwj,nhwjc->nhwc", hits.bary, sph.vertices[sph.faces[np.maximum(hits.face, 0)]])
    colour = lambda p: np.clip(0.5 + 0.45 * p / 0.3, 0, 1)  # noqa: E731  smooth, linear RGB
    colors = np.where((hits.face >= 0)[..., None], colour(pts), 0).astype(np.float32)
    mesh = tsdf_fuse(depth, cams, colors, params=FAST)
    assert mesh.colors is not None and mesh.colors.shape == (len(mesh.vertices), 4)
    err = np.abs(mesh.colors[:, :3] - colour(mesh.vertices))
    assert np.median(err) < 0.02 and err.mean() < 0.04
    assert np.all(mesh.colors[:, 3] == 1.0)


def test_floaters_are_removed():
    main = trimesh.creation.icosphere(4, radius=0.3)
    floater = trimesh.creation.icosphere(2, radius=0.04)
    floater.apply_translation([0.45, 0.2, 0.0])
    scene = trimesh.util.concatenate([main, floater])
    cams = ring_cameras(dist=1.5)
    depth = raycast_views(as_mesh(scene), cams).depth
    kept = tsdf_fuse(depth, cams, params=TSDFParams(voxels_per_diagonal=128, min_component_fraction=0.0))
    cleaned = tsdf_fuse(depth, cams, params=FAST)
    far = lambda m: (np.linalg.norm(m.vertices - [0.45, 0.2, 0.0], axis=1) < 0.06).sum()  # noqa: E731
    assert far(kept) > 0 and far(cleaned) == 0
    assert chamfer(cleaned, main, n=20_000).fscore >= 0.9
    # two parts of similar size both survive the floater filter, only one with keep_largest_only
    two = trimesh.util.concatenate([main, main.copy().apply_translation([0.7, 0, 0])])
    m = remove_small_components(as_mesh(two), 0.05)
    assert len(m.faces) == len(two.faces)
    assert len(remove_small_components(as_mesh(two), 0.05, keep_largest_only=True).faces) == len(main.faces)


def test_empty_scene_raises_specific_error(sphere_scene):
    _, cams, depth = sphere_scene
    with pytest.raises(EmptyResultError, match="empty"):
        tsdf_fuse(np.zeros_like(depth), cams, params=FAST)
    with pytest.raises(EmptyResultError, match="bounds"):
        tsdf_fuse(depth, cams, params=TSDFParams(bounds=[[5, 5, 5], [6, 6, 6]]))
    with pytest.raises(ValueError):
        tsdf_fuse(depth[:3], cams, params=FAST)


def test_cancel_between_views(sphere_scene):
    _, cams, depth = sphere_scene
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(CancelledError):
        tsdf_fuse(depth, cams, params=FAST, cancel=cancel)
    assert len(calls) == 3


def test_bounds_crop_and_voxel_size(sphere_scene):
    sph, cams, depth = sphere_scene
    bounds = np.array([[-0.4, 0.0, -0.4], [0.4, 0.4, 0.4]])  # upper half only
    mesh = tsdf_fuse(depth, cams, params=TSDFParams(bounds=bounds, voxel_size=0.01))
    assert mesh.vertices[:, 1].min() > -0.02
    assert 0.25 < mesh.vertices[:, 1].max() < 0.32


def test_clean_mesh_removes_bad_faces_and_vertices():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [np.nan, 0, 0], [5, 5, 5], [2, 0, 0]], float)
    f = np.array(
        [
            [0, 1, 2],  # good
            [1, 3, 2],  # good
            [2, 1, 0],  # duplicate of the first (other winding)
            [0, 1, 4],  # uses the NaN vertex
            [0, 0, 1],  # repeated index
            [0, 1, 6],  # zero area (collinear)
        ]
    )
    colors = np.arange(len(v) * 4, dtype=np.float32).reshape(-1, 4)
    m = clean_mesh(Mesh.from_arrays(v, f, colors=colors))
    assert len(m.faces) == 2
    assert len(m.vertices) == 4  # NaN, unreferenced (5,5,5) and collinear-only vertex dropped
    assert np.isfinite(m.vertices).all()
    # attributes follow their vertices
    for i, p in enumerate(m.vertices):
        j = int(np.nonzero((v == p).all(1))[0][0])
        assert np.array_equal(m.colors[i], colors[j])
    np.testing.assert_array_equal(m.vertices[m.faces[0]], v[[0, 1, 2]])


def test_decimate_hits_target_and_keeps_shape(sphere_scene):
    sph, cams, depth = sphere_scene
    dense = tsdf_fuse(depth, cams, params=FAST)
    for target in (500, 2000):
        low = decimate(dense, target)
        assert abs(len(low.faces) - target) <= 0.05 * target
        r = chamfer(low, sph, n=20_000)
        assert r.chamfer <= 0.005 * r.diagonal and r.fscore >= 0.9, r
        assert low.normals is not None
    # already small enough: returned as is (cleaned)
    assert len(decimate(dense, 10 * len(dense.faces)).faces) == len(dense.faces)
    with pytest.raises(ValueError):
        decimate(dense, 2)


def test_decimate_preserves_open_boundary():
    grid = trimesh.creation.icosphere(4, radius=0.3)
    keep = grid.triangles_center[:, 1] > 0.05  # an open cap with a circular border
    cap = trimesh.Trimesh(grid.vertices, grid.faces[keep], process=True)
    edges = cap.edges_sorted[trimesh.grouping.group_rows(cap.edges_sorted, require_count=1)]
    low = decimate(as_mesh(cap), len(cap.faces) // 4)
    tm = low.geometry
    lb = tm.edges_sorted[trimesh.grouping.group_rows(tm.edges_sorted, require_count=1)]
    # every border vertex survives in place, so the border keeps its length exactly
    length = lambda v, e: np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1).sum()  # noqa: E731
    assert length(tm.vertices, lb) == pytest.approx(length(cap.vertices, edges), rel=1e-6)
    assert len(np.unique(edges)) == len(np.unique(lb)) > 20
    np.testing.assert_allclose(
        np.sort(cap.vertices[np.unique(edges)], axis=0), np.sort(tm.vertices[np.unique(lb)], axis=0), atol=1e-12
    )
    assert abs(len(low.faces) - len(cap.faces) // 4) <= 0.05 * len(cap.faces) // 4


def test_fill_holes_closes_small_hole():
    s = trimesh.creation.icosphere(3, radius=0.3)
    top = np.argsort(-s.triangles_center[:, 1])[:6]  # punch a small hole at the north pole
    holed = Mesh.from_arrays(s.vertices, np.delete(s.faces, top, axis=0))
    assert not holed.geometry.is_watertight
    closed = fill_holes(clean_mesh(holed), max_hole_size=0.2)
    assert closed.geometry.is_watertight
    assert len(closed.faces) >= len(holed.faces) + 3


def test_depth_edge_filter_removes_mixed_silhouette_pixels():
    """Splat-style depth: silhouette pixels blend the sphere with a far wall. Without the filter
    they fuse into a skirt between the two; `max_depth_jump` drops them."""
    from studio.pipelines.mesh_extract import drop_depth_edges

    sph = trimesh.creation.icosphere(4, radius=0.3)
    cams = ring_cameras(n=12, dist=1.2)
    depth = raycast_views(as_mesh(sph), cams).depth
    far = 2.0
    wall = np.where(depth > 0, depth, far)  # an infinite backdrop at z = 2 m
    hit = depth > 0
    edge = hit & ~(np.roll(hit, 1, 1) & np.roll(hit, -1, 1) & np.roll(hit, 1, 2) & np.roll(hit, -1, 2))
    mixed = wall.copy()
    mixed[edge] = 0.7 * depth[edge] + 0.3 * far  # mostly sphere, partly wall
    # the backdrop itself is not what we measure: keep only what lies near the sphere
    bounds = np.array([[-0.45, -0.45, -0.45], [0.45, 0.45, 0.45]])  # the wall plane stays outside
    skirt = lambda m: ((np.linalg.norm(m.vertices, axis=1) > 0.36)).sum()  # noqa: E731
    raw = tsdf_fuse(mixed, cams, params=TSDFParams(voxel_size=0.01, bounds=bounds, min_component_fraction=0.0))
    clean = tsdf_fuse(mixed, cams, params=TSDFParams(voxel_size=0.01, bounds=bounds, min_component_fraction=0.0, max_depth_jump=0.1))
    assert skirt(raw) > 200
    assert skirt(clean) == 0
    assert chamfer(clean, sph, n=20_000).fscore >= 0.9
    # the filter itself: only pixels next to a jump go, zeros (no hit) do not count as neighbours
    d = np.zeros((1, 4, 6), np.float32)
    d[0, :, :3] = 1.0
    d[0, :, 3:5] = 2.0
    out = drop_depth_edges(d, 0.1)
    assert (out[0, :, [2, 3]] == 0).all() and (out[0, :, [0, 1, 4]] > 0).all() and (out[0, :, 5] == 0).all()


def test_decimate_keeps_a_closed_marching_cubes_mesh_closed() -> None:
    """Marching cubes of a lumpy blob: the decimated mesh is still watertight and keeps its orientation."""
    import trimesh
    from skimage.measure import marching_cubes

    from studio.pipelines.mesh_extract import decimate

    g = np.linspace(-1, 1, 72)
    x, y, z = np.meshgrid(g, g, g, indexing="ij")
    r = np.sqrt(x**2 + y**2 + z**2)
    field = r - 0.7 - 0.08 * np.sin(7 * x) * np.sin(5 * y) * np.sin(6 * z)
    v, f, _, _ = marching_cubes(field, 0.0, spacing=(g[1] - g[0],) * 3)
    closed = trimesh.Trimesh(v, f, process=True)
    if closed.volume < 0:
        closed.invert()
    assert closed.is_watertight
    mesh = Mesh.from_arrays(np.asarray(closed.vertices), np.asarray(closed.faces))
    low = decimate(mesh, 1500)
    assert 1000 <= len(low.faces) <= 1500 and low.geometry.is_watertight and low.geometry.volume > 0
