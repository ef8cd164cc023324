"""Standing captures upright (pipelines/capture_frame.py): up from the cameras, levelling on the
table, and the transforms that move cameras, splats (SH bands included) and assets into the
new frame without changing what any camera sees."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from studio.assets import Asset, Cameras, GaussianSplats, Mesh, Views
from studio.pipelines.capture_frame import ground_transform, up_direction, upright
from studio.pipelines.object_isolation import depth_points, find_support_plane
from studio.pipelines.splat_fit import render_splats
from studio.pipelines.views_render import render_views, view_rig


def _rigid(seed: int) -> np.ndarray:
    """A random rotation plus translation: an SfM frame with gravity anywhere."""
    m = np.eye(4)
    m[:3, :3] = Rotation.random(random_state=seed).as_matrix()
    m[:3, 3] = np.random.default_rng(seed).normal(size=3)
    return m


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))))


def _orbit(elevations, n: int) -> Cameras:
    """Cameras round a unit-ish object at the origin, world +Y up (look_at keeps them upright)."""
    box = Asset(meshes=[Mesh.from_arrays(trimesh.creation.box().vertices, trimesh.creation.box().faces)])
    return view_rig(box, n, 64, elevations=elevations)


@pytest.mark.parametrize("elevations", [(20.0,), (-20.0, 10.0, 40.0, 70.0), (55.0, 75.0)],
                         ids=["level-ring", "helix-like", "top-down"])
def test_up_is_recovered_from_cameras_in_any_frame(elevations) -> None:
    cams = _orbit(elevations, 12)
    for seed in range(3):
        m = _rigid(seed)
        up = up_direction(cams.transformed(m))
        assert _angle(up, m[:3, :3] @ [0.0, 1.0, 0.0]) < 2.0


def test_upright_moves_views_and_points_consistently() -> None:
    cams = _orbit((15.0, 45.0), 10)
    m = _rigid(7)
    pts = np.random.default_rng(0).uniform(-0.5, 0.5, (50, 3))
    src = Views(np.zeros((10, 64, 64, 3), np.float32), cams.transformed(m))
    views, moved, frame = upright(src, pts @ m[:3, :3].T + m[:3, 3])
    # every camera sees the points where it saw them before (pixels and depths unchanged)
    uv0, z0 = src.cameras.project(pts @ m[:3, :3].T + m[:3, 3])
    uv1, z1 = views.cameras.project(moved)
    np.testing.assert_allclose(uv1, uv0, atol=1e-8)
    np.testing.assert_allclose(z1, z0, atol=1e-10)
    # +Y up again, the subject at the origin, the first camera in front (+Z side)
    assert _angle(frame[:3, :3] @ m[:3, :3] @ [0.0, 1.0, 0.0], np.array([0.0, 1.0, 0.0])) < 2.0
    centre, _ = views.cameras.subject_sphere()
    assert np.linalg.norm(centre) < 1e-9
    c0 = views.cameras.centers[0]
    assert abs(c0[0]) < 1e-9 and c0[2] > 0


def test_transforms_need_a_similarity() -> None:
    shear = np.eye(4)
    shear[0, 1] = 0.5
    with pytest.raises(ValueError, match="uniform scale"):
        _orbit((20.0,), 4).transformed(shear)


def test_moved_splats_render_the_same_from_moved_cameras() -> None:
    """Means, rotations, scales and the view-dependent SH bands (degree 3) move together."""
    rng = np.random.default_rng(0)
    n = 300
    splats = GaussianSplats(rng.uniform(-0.4, 0.4, (n, 3)), rng.normal(size=(n, 4)), np.log(rng.uniform(0.03, 0.08, (n, 3))),
                            rng.normal(1.0, 1.0, n), rng.normal(0.0, 0.6, (n, 16, 3)))
    cams = _orbit((10.0, 50.0), 4)
    m = _rigid(3)
    m[:3, :3] *= 1.7  # and a uniform scale
    before, _, _ = render_splats(splats, cams)
    after, _, _ = render_splats(splats.transformed(m), cams.transformed(m))
    assert np.abs(after - before).max() < 2e-3
    # rotating only the means and rotations (SH left as is) would not: the test can fail
    from dataclasses import replace
    stale = replace(splats.transformed(m), sh=splats.sh)
    assert np.abs(render_splats(stale, cams.transformed(m))[0] - before).max() > 0.05
    asset = Asset(meshes=[Mesh.from_arrays(np.eye(3), [[0, 1, 2]])], splats=splats, cameras=cams).transformed(m)
    np.testing.assert_allclose(asset.meshes[0].transform, m)
    np.testing.assert_allclose(asset.cameras.cam_to_world, cams.transformed(m).cam_to_world)


def test_object_is_stood_on_its_table_at_y0() -> None:
    """A cylinder on a table slab, captured in a tilted frame: the support plane gives the exact up,
    the table top lands on y = 0 and the cylinder's footprint is centred."""
    obj = trimesh.creation.cylinder(radius=0.2, height=0.5, sections=64)
    obj.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, (1, 0, 0)))
    obj.apply_translation((0.3, -obj.bounds[0][1], -0.2))  # base on y = 0, off-centre
    slab = trimesh.creation.box(extents=(2.0, 0.05, 2.0))
    slab.apply_translation((0.0, -0.025, 0.0))
    m = _rigid(11)
    meshes = [Mesh.from_arrays(g.vertices @ m[:3, :3].T + m[:3, 3], g.faces) for g in (obj, slab)]
    cams = view_rig(Asset(meshes=meshes[:1]), 10, 128, elevations=(20.0, 50.0), margin=1.6)  # orbit about world Y
    cams = Cameras.look_at(cams.centers @ m[:3, :3].T + m[:3, 3], meshes[0].vertices.mean(0), up=m[:3, :3] @ [0, 1, 0],
                           width=128, height=128)
    _, depth = render_views(Asset(meshes=meshes), cams)
    pts, _ = depth_points(depth, cams, stride=2)
    plane = find_support_plane(pts[np.linalg.norm(pts - meshes[0].vertices.mean(0), axis=1) < 0.9], cams, 0.01)
    assert plane is not None
    g = ground_transform(plane.normal, plane.offset, meshes[0].vertices)
    v = meshes[0].vertices @ g[:3, :3].T + g[:3, 3]
    assert _angle(g[:3, :3] @ m[:3, :3] @ [0.0, 1.0, 0.0], np.array([0.0, 1.0, 0.0])) < 1.0
    assert abs(v[:, 1].min()) < 0.005 and abs(v[:, 1].max() - 0.5) < 0.01  # standing on y = 0, 0.5 m tall
    assert np.abs((v.min(0) + v.max(0))[[0, 2]] / 2).max() < 1e-9  # footprint centred
