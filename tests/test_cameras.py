"""Camera conventions: Cameras (OpenCV), COLMAP, transforms.json, OpenGL and glTF converters."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pycolmap
import pytest

from studio.assets.camera_formats import (
    ColmapModel,
    cam_to_world_to_gltf_node,
    camera_model_for,
    camera_to_gltf,
    cameras_from_transforms_json,
    cameras_to_transforms_json,
    gltf_node_to_cam_to_world,
    gltf_to_K,
    opencv_to_opengl_c2w,
    opengl_projection,
    opengl_view_matrix,
    read_colmap,
    write_colmap,
    write_transforms_json,
)
from studio.assets.cameras import Cameras
from studio.errors import InvalidAssetError, UnsafePathError, UnsupportedFormatError

CAPTURES = {"berlin": (3, 971, 0.670), "buddha": (13, 134, 0.383)}


@pytest.fixture(scope="module", params=sorted(CAPTURES))
def capture(request, testdata):
    name = request.param
    return name, testdata / "capture" / name / "sparse" / "0"


def _orbit(n: int = 5, dist=None) -> Cameras:
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    eyes = np.stack([3 * np.sin(ang), 1.0 + 0.3 * np.arange(n), 3 * np.cos(ang)], axis=1)
    c = Cameras.look_at(eyes, np.array([0.1, 0.2, -0.1]), fov_y_deg=50, width=320, height=240)
    k = c.K.copy()
    k[:, 0, 0] *= 1.0 + 0.01 * np.arange(n)  # fx != fy, different per camera
    k[:, 0, 2] += np.arange(n)  # off-centre principal points
    names = tuple(f"img_{i:03d}.png" for i in range(n))
    return Cameras(k, c.cam_to_world, c.width, c.height, names, dist)


# ------------------------------------------------------------------ Cameras


def test_look_at_is_opencv():
    eyes = np.array([[0.0, 0.0, 5.0], [4.0, 2.0, 1.0], [-3.0, 1.0, -3.0]])
    target = np.array([0.0, 0.5, 0.0])
    cams = Cameras.look_at(eyes, target, width=200, height=100)
    r = cams.cam_to_world[:, :3, :3]
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.einsum("nji,njk->nik", r, r), np.broadcast_to(np.eye(3), (3, 3, 3)), atol=1e-12)
    uv, z = cams.project(np.array([target, target + [0, 1.0, 0], target - [0, 1.0, 0]]))
    assert (z > 0).all()  # in front: positive depth
    np.testing.assert_allclose(uv[:, 0], [[100.0, 50.0]] * 3, atol=1e-9)  # target at the image centre
    assert (uv[:, 1, 1] < uv[:, 0, 1]).all()  # above the target → smaller v (image y points down)
    assert (uv[:, 2, 1] > uv[:, 0, 1]).all()
    np.testing.assert_allclose(uv[:, 1, 0], 100.0, atol=1e-9)  # world up stays vertical in the image
    # seen from +Z, world +X is to the right (larger u); the point behind the camera has z < 0
    uv0, z0 = cams[0].project(np.array([[1.0, 0.5, 0.0], [0.0, 0.5, 9.0]]))
    assert uv0[0, 0, 0] > 100.0 and z0[0, 0] > 0 and z0[0, 1] < 0


def test_distortion_fields_and_getitem():
    c = _orbit(4, dist=[0.1, -0.02, 0.001, 0.002])
    assert c.dist.shape == (4, 4) and c.dist.dtype == np.float64
    sub = c[[2, 0]]
    np.testing.assert_array_equal(sub.dist, c.dist[[2, 0]])
    assert sub.names == ("img_002.png", "img_000.png")
    np.testing.assert_array_equal(sub.K, c.K[[2, 0]])
    assert _orbit(2).dist is None and _orbit(2)[0].dist is None
    with pytest.raises(ValueError, match="dist"):
        _orbit(3, dist=np.zeros((3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        _orbit(3, dist=[np.nan, 0, 0, 0])


def test_projection_with_distortion_matches_colmap_opencv_model():
    d = np.array([0.12, -0.05, 0.003, -0.002])
    cams = _orbit(3, dist=d)
    rng = np.random.default_rng(0)
    pts = rng.uniform(-0.8, 0.8, (200, 3))
    uv, z = cams.project(pts)
    assert (z > 0).all()
    for i in range(len(cams)):
        k = cams.K[i]
        cam = pycolmap.Camera(model="OPENCV", width=320, height=240,
                              params=[k[0, 0], k[1, 1], k[0, 2], k[1, 2], *d])
        pc = (cams.world_to_cam[i, :3, :3] @ pts.T).T + cams.world_to_cam[i, :3, 3]
        ref = np.array([cam.img_from_cam(p) for p in pc])
        np.testing.assert_allclose(uv[i], ref, atol=1e-9)
    # zero distortion equals no distortion; nonzero distortion moves points
    np.testing.assert_allclose(_orbit(3, dist=np.zeros(4)).project(pts)[0], _orbit(3).project(pts)[0], atol=1e-12)
    assert np.abs(uv - _orbit(3).project(pts)[0]).max() > 1.0
    # undistort_points inverts it: back to where the ideal pinhole camera sees the points
    np.testing.assert_allclose(cams.undistort_points(uv), _orbit(3).project(pts)[0], atol=1e-9)
    np.testing.assert_array_equal(_orbit(3).undistort_points(uv), uv)
    with pytest.raises(ValueError, match="uv"):
        cams.undistort_points(uv[0])


# ------------------------------------------------------------------ COLMAP


def test_read_colmap_text(capture):
    name, folder = capture
    n_img, n_pts, _ = CAPTURES[name]
    m = read_colmap(folder)
    assert isinstance(m, ColmapModel)
    assert len(m.cameras) == n_img and m.points3d.shape == (n_pts, 3) and m.colors.dtype == np.uint8
    assert list(m.cameras.names) == sorted(m.cameras.names)
    assert len(m.observations) == n_img
    rec = pycolmap.Reconstruction(str(folder))
    cam = rec.cameras[1]
    if name == "berlin":
        assert (m.cameras.width, m.cameras.height) == (1600, 1200)
        np.testing.assert_array_equal(m.cameras.dist, np.tile([cam.params[3], 0, 0, 0], (3, 1)))
        np.testing.assert_array_equal(m.cameras.K[0], [[cam.params[0], 0, 800], [0, cam.params[0], 600], [0, 0, 1]])
    else:
        assert (m.cameras.width, m.cameras.height) == (800, 450) and m.cameras.dist is None
        np.testing.assert_array_equal(m.cameras.K[:, [0, 1, 0, 1], [0, 1, 2, 2]], np.tile(cam.params, (13, 1)))
    for i, nm in enumerate(m.cameras.names):
        im = rec.find_image_with_name(nm)
        np.testing.assert_allclose(m.cameras.world_to_cam[i, :3], im.cam_from_world().matrix(), atol=1e-12)
        np.testing.assert_array_equal(m.observations[i].xy, np.array([p.xy for p in im.points2D]))
    # the capture root is accepted too
    assert len(read_colmap(folder.parent.parent).cameras) == n_img


def test_reprojection_matches_colmap(capture):
    """Our projection (with distortion) reproduces COLMAP's observations and its reported error."""
    name, folder = capture
    m = read_colmap(folder)
    rec = pycolmap.Reconstruction(str(folder))
    ours = m.mean_reprojection_error()
    assert abs(ours - rec.compute_mean_reprojection_error()) < 1e-6
    assert abs(ours - CAPTURES[name][2]) < 0.005  # the README's figure
    np.testing.assert_allclose(m.point_errors(), m.errors, atol=1e-6)  # per point, as stored by COLMAP
    res = np.concatenate(m.reprojection_errors())
    assert len(res) == rec.compute_num_observations()
    assert res.max() < 4.0 and np.median(res) < 1.0  # COLMAP's default 4 px filter
    # without distortion, berlin's residuals blow up: the distortion really is applied
    if m.cameras.dist is not None:
        plain = ColmapModel(Cameras(m.cameras.K, m.cameras.cam_to_world, m.cameras.width, m.cameras.height),
                            m.points3d, m.colors, m.errors, m.point_ids, m.observations)
        assert plain.mean_reprojection_error() > ours + 1.0


def test_colmap_binary_writer_read_by_pycolmap(capture, tmp_path):
    name, folder = capture
    m = read_colmap(folder)
    src = pycolmap.Reconstruction(str(folder))
    out = write_colmap(m, tmp_path / "bin", binary=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{s}.bin" for s in ("cameras", "images", "points3D", "rigs", "frames"))
    rec = pycolmap.Reconstruction(str(out))
    assert rec.num_reg_images() == len(m.cameras) and rec.num_points3D() == len(m.points3d)
    assert rec.compute_num_observations() == src.compute_num_observations()
    assert abs(rec.compute_mean_reprojection_error() - src.compute_mean_reprojection_error()) < 1e-9
    assert [c.model.name for c in rec.cameras.values()] == [c.model.name for c in src.cameras.values()]
    np.testing.assert_array_equal(rec.cameras[1].params, src.cameras[1].params)
    for im in src.images.values():
        im2 = rec.find_image_with_name(im.name)
        np.testing.assert_allclose(im2.cam_from_world().matrix(), im.cam_from_world().matrix(), atol=1e-12)
        assert [p.point3D_id for p in im2.points2D] == [p.point3D_id for p in im.points2D]
    for pid, p in src.points3D.items():
        q = rec.points3D[pid]
        np.testing.assert_array_equal(q.xyz, p.xyz)
        np.testing.assert_array_equal(q.color, p.color)
        assert q.error == p.error
        assert sorted((e.image_id, e.point2D_idx) for e in q.track.elements) == sorted(
            (e.image_id, e.point2D_idx) for e in p.track.elements)
    # and back through our reader; then as text, replacing the binary files
    m2 = read_colmap(out)
    np.testing.assert_allclose(m2.cameras.cam_to_world, m.cameras.cam_to_world, atol=1e-12)
    np.testing.assert_array_equal(m2.points3d, m.points3d)
    write_colmap(m2, out, binary=False)
    assert sorted(p.suffix for p in out.iterdir()) == [".txt"] * 5
    m3 = read_colmap(out)
    np.testing.assert_array_equal(m3.cameras.K, m.cameras.K)
    np.testing.assert_allclose(m3.cameras.cam_to_world, m.cameras.cam_to_world, atol=1e-12)
    assert all(np.array_equal(a.point3d_ids, b.point3d_ids) for a, b in zip(m3.observations, m.observations))


@pytest.mark.parametrize("binary", [True, False])
def test_write_colmap_from_cameras_opencv_model(tmp_path, binary):
    d = np.array([[0.1, -0.02, 0.001, 0.002], [0.1, -0.02, 0.001, 0.002], [0.05, 0, 0, 0]])
    cams = _orbit(3)
    cams = Cameras(np.stack([cams.K[0], cams.K[0], cams.K[1]]), cams.cam_to_world[:3], 320, 240, cams.names[:3], d)
    write_colmap(cams, tmp_path, binary=binary)
    rec = pycolmap.Reconstruction(str(tmp_path))
    assert rec.num_cameras() == 2  # identical K and distortion share one COLMAP camera
    assert sorted(c.model.name for c in rec.cameras.values()) == ["OPENCV", "OPENCV"]
    back = read_colmap(tmp_path).cameras
    np.testing.assert_array_equal(back.K, cams.K)
    np.testing.assert_array_equal(back.dist, cams.dist)
    np.testing.assert_allclose(back.cam_to_world, cams.cam_to_world, atol=1e-12)
    assert back.names == cams.names


def test_camera_model_choice():
    k = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    k2 = np.array([[500.0, 0, 320], [0, 510.0, 240], [0, 0, 1]])
    assert camera_model_for(k, None) == ("SIMPLE_PINHOLE", [500.0, 320.0, 240.0])
    assert camera_model_for(k2, None)[0] == "PINHOLE"
    assert camera_model_for(k, [0.1, 0, 0, 0]) == ("SIMPLE_RADIAL", [500.0, 320.0, 240.0, 0.1])
    assert camera_model_for(k, [0.1, 0.2, 0, 0])[0] == "RADIAL"
    assert camera_model_for(k, [0.1, 0, 0.01, 0])[0] == "OPENCV"
    assert camera_model_for(k2, [0.1, 0, 0, 0])[0] == "OPENCV"
    skew = k.copy()
    skew[0, 1] = 1.0
    with pytest.raises(ValueError, match="skew"):
        camera_model_for(skew, None)


def test_read_colmap_errors(tmp_path, testdata):
    src = testdata / "capture" / "berlin" / "sparse" / "0"
    with pytest.raises(InvalidAssetError, match="no COLMAP model"):
        read_colmap(tmp_path)
    bad = tmp_path / "trunc"
    shutil.copytree(src, bad)
    txt = (bad / "images.txt").read_text()
    (bad / "images.txt").chmod(0o644)
    (bad / "images.txt").write_text(txt[: len(txt) // 2])
    with pytest.raises(InvalidAssetError, match="trunc"):
        read_colmap(bad)
    binf = write_colmap(read_colmap(src), tmp_path / "bin", binary=True) / "images.bin"
    binf.write_bytes(binf.read_bytes()[:5000])
    with pytest.raises(InvalidAssetError, match="bin"):
        read_colmap(binf.parent)
    fish = tmp_path / "fish"
    fish.mkdir()
    write_colmap(read_colmap(src), fish, binary=False)
    (fish / "cameras.txt").write_text("1 OPENCV_FISHEYE 1600 1200 1477 1477 800 600 0.1 0 0 0\n")
    with pytest.raises(UnsupportedFormatError, match="OPENCV_FISHEYE"):
        read_colmap(fish)


# ------------------------------------------------------------------ transforms.json


def test_transforms_json_round_trip_colmap(capture, tmp_path):
    _, folder = capture
    cams = read_colmap(folder).cameras
    paths = [f"images/{n}" for n in cams.names]
    out = write_transforms_json(cams, tmp_path / "transforms.json", paths)
    data = json.loads(out.read_text())
    assert data["w"] == cams.width and data["h"] == cams.height and "fl_x" in data  # shared intrinsics
    assert data["camera_model"] == ("PINHOLE" if cams.dist is None else "OPENCV")
    # OpenGL axes: the camera looks down its -z, so column 2 of transform_matrix is minus the view direction
    m0 = np.array(data["frames"][0]["transform_matrix"])
    np.testing.assert_allclose(m0[:3, 2], -cams.cam_to_world[0, :3, 2], atol=0)
    np.testing.assert_allclose(m0[:3, 1], -cams.cam_to_world[0, :3, 1], atol=0)
    back, files = cameras_from_transforms_json(out)
    np.testing.assert_array_equal(back.K, cams.K)
    np.testing.assert_allclose(back.cam_to_world, cams.cam_to_world, rtol=0, atol=1e-9)
    if cams.dist is None:
        assert back.dist is None
    else:
        np.testing.assert_array_equal(back.dist, cams.dist)
    assert back.names == tuple(paths) and (back.width, back.height) == (cams.width, cams.height)
    assert files == [str((tmp_path / p).resolve()) for p in paths]
    # back to COLMAP: the same projection of the same points
    m = read_colmap(folder)
    again = ColmapModel(back, m.points3d, m.colors, m.errors, m.point_ids, m.observations)
    assert abs(again.mean_reprojection_error() - m.mean_reprojection_error()) < 1e-9


def test_transforms_json_per_frame_intrinsics_and_names():
    cams = _orbit(4, dist=np.array([[0.1, 0, 0, 0], [0.2, 0.01, 0, 0], [0, 0, 0.001, 0], [0, 0, 0, 0]]))
    data = cameras_to_transforms_json(cams)
    assert "fl_x" not in data and all("fl_x" in f and "k1" in f for f in data["frames"])
    assert [f["file_path"] for f in data["frames"]] == list(cams.names)
    back, files = cameras_from_transforms_json(json.loads(json.dumps(data)))
    assert files == list(cams.names)
    np.testing.assert_array_equal(back.K, cams.K)
    np.testing.assert_array_equal(back.dist, cams.dist)
    np.testing.assert_allclose(back.cam_to_world, cams.cam_to_world, atol=1e-12)
    unnamed = Cameras(cams.K, cams.cam_to_world, cams.width, cams.height)
    assert cameras_to_transforms_json(unnamed)["frames"][1]["file_path"] == "images/frame_00002.png"
    assert cameras_to_transforms_json(_orbit(2))["camera_model"] == "PINHOLE"


def test_transforms_json_blender_and_applied_transform(tmp_path):
    from PIL import Image

    (tmp_path / "train").mkdir()
    Image.new("RGB", (40, 30)).save(tmp_path / "train" / "r_0.png")
    c2w_gl = opencv_to_opengl_c2w(_orbit(1).cam_to_world[0])
    blender = {"camera_angle_x": 0.6911112070083618,
               "frames": [{"file_path": "./train/r_0", "rotation": 0.0, "transform_matrix": c2w_gl.tolist()}]}
    p = tmp_path / "transforms_train.json"
    p.write_text(json.dumps(blender))
    cams, files = cameras_from_transforms_json(p)
    assert (cams.width, cams.height) == (40, 30) and cams.dist is None
    f = 20.0 / np.tan(0.6911112070083618 / 2)
    np.testing.assert_allclose(cams.K[0], [[f, 0, 20], [0, f, 15], [0, 0, 1]], rtol=1e-12)
    assert files == [str(tmp_path / "train" / "r_0")]
    # nerfstudio's ns-process-data re-orients the world and records it as applied_transform
    a = np.array([[0.0, 1, 0, 0], [1, 0, 0, 0], [0, 0, -1, 0]])
    src = _orbit(3)
    data = cameras_to_transforms_json(src)
    a4 = np.vstack([a, [0, 0, 0, 1]])
    for fr in data["frames"]:
        fr["transform_matrix"] = (a4 @ np.array(fr["transform_matrix"])).tolist()
    data["applied_transform"] = a.tolist()
    undone, _ = cameras_from_transforms_json(data, undo_applied_transform=True)
    np.testing.assert_allclose(undone.cam_to_world, src.cam_to_world, atol=1e-12)
    kept, _ = cameras_from_transforms_json(data)
    assert np.abs(kept.cam_to_world - src.cam_to_world).max() > 0.5


def test_transforms_json_errors(tmp_path):
    good = cameras_to_transforms_json(_orbit(2))
    p = tmp_path / "t.json"
    p.write_text("{not json")
    with pytest.raises(InvalidAssetError, match="t.json"):
        cameras_from_transforms_json(p)
    with pytest.raises(InvalidAssetError, match="frames"):
        cameras_from_transforms_json({"frames": []})
    bad = json.loads(json.dumps(good))
    bad["frames"][0]["transform_matrix"] = [[1, 0], [0, 1]]
    with pytest.raises(InvalidAssetError, match="transform_matrix"):
        cameras_from_transforms_json(bad)
    bad["frames"][0]["transform_matrix"] = (2 * np.eye(4)).tolist()
    with pytest.raises(InvalidAssetError, match="rotation"):
        cameras_from_transforms_json(bad)
    bad = json.loads(json.dumps(good))
    bad["frames"][1]["fl_x"] = "wide"
    with pytest.raises(InvalidAssetError, match="wide"):
        cameras_from_transforms_json(bad)
    bad = json.loads(json.dumps(good))
    bad["camera_model"] = "OPENCV_FISHEYE"
    with pytest.raises(UnsupportedFormatError, match="OPENCV_FISHEYE"):
        cameras_from_transforms_json(bad)
    bad = json.loads(json.dumps(good))
    bad["frames"][1]["w"] = 100
    with pytest.raises(UnsupportedFormatError, match="sizes"):
        cameras_from_transforms_json(bad)
    bad = json.loads(json.dumps(good))
    bad["frames"][0]["file_path"] = "../../etc/passwd"
    p.write_text(json.dumps(bad))
    with pytest.raises(UnsafePathError):
        cameras_from_transforms_json(p)


# ------------------------------------------------------------------ OpenGL and glTF


@pytest.mark.parametrize("y_down", [False, True])
def test_opengl_projection_matches_K(y_down):
    w, h, near, far = 640, 360, 0.05, 50.0
    k = np.array([[520.0, 1.5, 330.7], [0.0, 515.0, 170.2], [0.0, 0.0, 1.0]])  # skew, off-centre
    cams = Cameras(k, Cameras.look_at([[1.0, 2.0, 6.0]], [0, 0, 0]).cam_to_world, w, h)
    pts = np.random.default_rng(1).uniform(-2, 2, (500, 3))
    uv, depth = cams.project(pts)
    view = opengl_view_matrix(cams.cam_to_world[0])
    proj = opengl_projection(k, w, h, near, far, y_down=y_down)
    clip = (proj @ view @ np.c_[pts, np.ones(len(pts))].T).T
    np.testing.assert_allclose(clip[:, 3], depth[0], rtol=1e-12)  # w_clip = OpenCV depth
    ndc = clip[:, :3] / clip[:, 3:]
    win_x = (ndc[:, 0] + 1) * w / 2
    win_y = (ndc[:, 1] + 1) * h / 2
    np.testing.assert_allclose(win_x, uv[0, :, 0], atol=1e-9)
    np.testing.assert_allclose(win_y if y_down else h - win_y, uv[0, :, 1], atol=1e-9)
    # GL eye space looks down -z; near and far planes go to NDC -1 and +1
    eye = (view @ np.c_[pts, np.ones(len(pts))].T).T
    np.testing.assert_allclose(eye[:, 2], -depth[0], rtol=1e-12)
    for zd, expect in ((near, -1.0), (far, 1.0)):
        c = proj @ np.array([0.3, -0.2, -zd, 1.0])
        assert abs(c[2] / c[3] - expect) < 1e-12
    np.testing.assert_array_equal(opencv_to_opengl_c2w(opencv_to_opengl_c2w(cams.cam_to_world)), cams.cam_to_world)


def test_gltf_camera_round_trip():
    w, h = 800, 450
    k = np.array([[544.1, 0, 400.0], [0, 543.7, 225.0], [0, 0, 1.0]])
    yfov, aspect, znear = camera_to_gltf(k, w, h, znear=0.05)
    assert abs(yfov - 2 * np.arctan(225 / 543.7)) < 1e-15 and znear == 0.05
    np.testing.assert_allclose(gltf_to_K(yfov, aspect, w, h), k, rtol=1e-12)
    # aspect None = image aspect: square pixels
    k_sq = gltf_to_K(yfov, None, w, h)
    assert abs(k_sq[0, 0] - k_sq[1, 1]) < 1e-9
    cams = _orbit(3)
    node = cam_to_world_to_gltf_node(cams.cam_to_world)
    # glTF cameras look down local -Z with +Y up
    np.testing.assert_allclose(node[:, :3, :3] @ [0, 0, -1.0], cams.cam_to_world[:, :3, 2], atol=1e-12)
    np.testing.assert_allclose(node[:, :3, :3] @ [0, 1.0, 0], -cams.cam_to_world[:, :3, 1], atol=1e-12)
    scaled = node @ np.diag([2.0, 2.0, 2.0, 1.0])  # a node scale is ignored for cameras
    np.testing.assert_allclose(gltf_node_to_cam_to_world(scaled), cams.cam_to_world, atol=1e-12)


def test_subject_sphere_and_bounds_ignore_far_background() -> None:
    """Cameras on a ring looking at an object at (1,2,3): the subject sphere is centred there;
    splats on a far shell (a photo capture's room) stay out of the meshing bounds."""
    from studio.assets import Asset, GaussianSplats
    from studio.pipelines.reconstruct import subject_bounds
    from studio.renderers.thumbnails import orbit_cameras

    def splats(means: np.ndarray) -> GaussianSplats:
        n = len(means)
        return GaussianSplats(means, np.tile([1.0, 0, 0, 0], (n, 1)), np.full((n, 3), 0.01), np.full(n, 0.5), np.zeros((n, 1, 3)))

    centre = np.array([1.0, 2.0, 3.0])
    rng = np.random.default_rng(0)
    obj = centre + rng.uniform(-0.5, 0.5, (2000, 3))
    cams = orbit_cameras(Asset(splats=splats(obj)), 8, 64, elevation_deg=20.0)
    c, r = cams.subject_sphere()
    assert np.linalg.norm(c - centre) < 0.05
    assert 0.4 * np.linalg.norm(cams.centers - centre, axis=1).min() < r
    v = rng.normal(size=(1000, 3))
    shell = centre + 30.0 * v / np.linalg.norm(v, axis=1, keepdims=True)
    lo, hi = subject_bounds(splats(np.concatenate([obj, shell])), cams)
    assert np.all(lo > centre - 0.6) and np.all(hi < centre + 0.6)
