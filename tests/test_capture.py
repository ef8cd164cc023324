"""Photo captures → posed views: pycolmap SfM on the real berlin photos, the buddha capture's shipped
poses, transforms.json round trip, and the bad-input errors."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.assets import Cameras, Views
from studio.assets.colmap_io import read_colmap
from studio.errors import CaptureError, InvalidAssetError
from studio.pipelines.capture import SfMParams, capture_to_views, export_transforms_json, undistort_image

FAST_SFM = SfMParams(sfm_max_size=800, max_features=4096)


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) minimising |s R src + t - dst|² (Umeyama 1991)."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, d, vt = np.linalg.svd(b.T @ a / len(src))
    e = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        e[2, 2] = -1
    r = u @ e @ vt
    s = float(np.trace(np.diag(d) @ e) / (a**2).sum(1).mean())
    return s, r, md - s * r @ ms


def test_berlin_sfm_registers_all_and_matches_shipped_poses(testdata: Path) -> None:
    root = testdata / "capture" / "berlin"
    views, pts, cols, rep = capture_to_views(root / "images", max_size=256, sfm=FAST_SFM)
    assert rep.source == "photos" and rep.images_found == 3 and rep.images_registered == 3
    assert rep.unregistered == [] and rep.points > 50 and rep.mean_reprojection_error < 2.0
    assert views.images.shape == (3, 192, 256, 3) and pts.shape == (rep.points, 3) and cols.max() <= 1.0
    assert rep.undistorted and views.cameras.dist is None  # SIMPLE_RADIAL undistorted to pinhole
    ref = read_colmap(root / "sparse" / "0")
    ours = {Path(n).stem: c for n, c in zip(views.cameras.names, views.cameras.centers)}
    theirs = {Path(n).stem: c for n, c in zip(ref.cameras.names, ref.cameras.centers)}
    keys = sorted(theirs)
    assert sorted(ours) == keys
    src = np.stack([ours[k] for k in keys])
    dst = np.stack([theirs[k] for k in keys])
    s, r, t = umeyama(src, dst)
    resid = np.linalg.norm(src @ (s * r).T + t - dst, axis=1)
    spread = np.linalg.norm(dst - dst.mean(0), axis=1).max()
    assert resid.max() < 0.05 * spread, (resid, spread)
    # relative rotations between the cameras agree (independent of the alignment)
    ref_idx = [[Path(n).stem for n in ref.cameras.names].index(k) for k in keys]
    our_idx = [[Path(n).stem for n in views.cameras.names].index(k) for k in keys]
    ro, rr = views.cameras.cam_to_world[our_idx, :3, :3], ref.cameras.cam_to_world[ref_idx, :3, :3]
    for a in range(3):
        for b in range(a + 1, 3):
            d = (ro[a].T @ ro[b]).T @ (rr[a].T @ rr[b])
            assert np.degrees(np.arccos(np.clip((np.trace(d) - 1) / 2, -1, 1))) < 1.0


def test_buddha_colmap_model_loads_shipped_poses(testdata: Path) -> None:
    root = testdata / "capture" / "buddha"
    views, pts, cols, rep = capture_to_views(root, max_size=200)
    assert rep.source == "colmap" and rep.images_registered == 13 and rep.points == 134
    assert views.images.shape == (13, 112, 200, 3) and views.masks is None and not rep.undistorted
    ref = read_colmap(root)
    np.testing.assert_allclose(views.cameras.cam_to_world, ref.cameras.cam_to_world)
    np.testing.assert_allclose(views.cameras.K[0, 0, 0], 544.1219 * 200 / 800, rtol=1e-5)
    # SfM points project inside the downscaled images in most views (poses + K consistent)
    uv, z = views.cameras.project(pts)
    inside = (z > 0) & (uv[..., 0] >= 0) & (uv[..., 0] < 200) & (uv[..., 1] >= 0) & (uv[..., 1] < 112)
    assert inside.mean() > 0.8


def test_transforms_json_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cams = Cameras.look_at(rng.normal(size=(3, 3)) * 2, np.zeros(3), width=48, height=32)
    imgs = rng.uniform(0, 1, (3, 32, 48, 3)).astype(np.float32)
    masks = (rng.uniform(size=(3, 32, 48)) > 0.5).astype(np.float32)
    path = export_transforms_json(Views(imgs, cams, masks), tmp_path / "ns")
    assert path.name == "transforms.json" and (tmp_path / "ns" / "images" / "frame_00003.png").is_file()
    with Image.open(tmp_path / "ns" / "images" / "frame_00001.png") as im:
        assert im.mode == "RGBA" and im.size == (48, 32)
    views, pts, cols, rep = capture_to_views(tmp_path / "ns", max_size=None)
    assert rep.source == "transforms" and pts is None and len(views) == 3
    np.testing.assert_allclose(views.cameras.cam_to_world, cams.cam_to_world, atol=1e-9)
    np.testing.assert_allclose(views.cameras.K, cams.K)
    assert np.abs(views.images - imgs).max() < 0.01  # 8-bit sRGB quantisation


def test_undistort_image_inverts_distortion() -> None:
    # a smooth pattern seen through barrel distortion, undistorted, matches the ideal pinhole image
    K = np.array([[60.0, 0, 32], [0, 60.0, 32], [0, 0, 1]])
    dist = np.array([-0.2, 0.05, 0.001, -0.001])
    u, v = np.meshgrid(np.arange(64) + 0.5, np.arange(64) + 0.5)
    from studio.assets.cameras import undistort_normalized

    xy = undistort_normalized(np.stack([(u - 32) / 60, (v - 32) / 60], -1), dist)
    pattern = lambda x, y: (0.5 + 0.25 * np.sin(6 * x) + 0.25 * np.cos(5 * y)).astype(np.float32)  # noqa: E731
    distorted = pattern(xy[..., 0], xy[..., 1])[..., None]
    out, valid = undistort_image(distorted, K, dist)
    ideal = pattern((u - 32) / 60, (v - 32) / 60)
    inner = (np.abs(u - 32) < 24) & (np.abs(v - 32) < 24)
    err = np.abs(out[..., 0] - ideal)[inner]
    before = np.abs(distorted[..., 0] - ideal)[inner]
    assert valid[inner].all() and err.max() < 0.01 and before.max() > 10 * err.max()


def _photo(path: Path, size=(64, 48), seed=0) -> None:
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), np.uint8)).save(path)


def test_too_few_images(tmp_path: Path) -> None:
    _photo(tmp_path / "a.jpg")
    _photo(tmp_path / "b.jpg")
    with pytest.raises(CaptureError, match="found 2 image"):
        capture_to_views(tmp_path)


def test_mixed_sizes(tmp_path: Path) -> None:
    for i, s in enumerate([(64, 48), (64, 48), (48, 64)]):
        _photo(tmp_path / f"{i}.png", s, i)
    with pytest.raises(CaptureError, match="mixed sizes"):
        capture_to_views(tmp_path)


def test_unreadable_image(tmp_path: Path) -> None:
    for i in range(3):
        _photo(tmp_path / f"{i}.jpg", seed=i)
    (tmp_path / "3.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(InvalidAssetError, match="3.jpg"):
        capture_to_views(tmp_path)


def test_sfm_registering_too_few_images(tmp_path: Path) -> None:
    # unrelated noise photos: nothing matches, SfM registers < 2 images
    for i in range(3):
        _photo(tmp_path / f"{i}.png", (160, 120), seed=10 + i)
    with pytest.raises(CaptureError, match="SfM registered [01] of 3"):
        capture_to_views(tmp_path, sfm=SfMParams(sfm_max_size=160))


def test_missing_images_for_model(tmp_path: Path, testdata: Path) -> None:
    shutil.copytree(testdata / "capture" / "buddha" / "sparse", tmp_path / "sparse")
    (tmp_path / "images").mkdir()
    with pytest.raises(CaptureError, match="not in"):
        capture_to_views(tmp_path)


def test_buddha_fits_from_shipped_poses(testdata: Path) -> None:
    """13 real photos with the dataset's poses (plain SfM registers only 2 of them, see its README):
    fit on 11 at 160x90, hold out 2 — the two whose nearest other camera is closest (16° and 20°),
    as held-out protocols keep test views inside the training coverage (the most isolated views
    are 50° from any other). Init as the capture pipeline does it: the 134 SfM points, uniform
    points around the subject, and a far shell for the room. Measured: held-out 19.1 dB over the
    whole frame, a flat mean-colour guess 15.5 dB. (Holding out views 3 and 9, 38° and 50° from
    their neighbours, gave ≈ 14 dB: with 11 photos round a full circle they are not predictable.)"""
    from studio.assets.colour import linear_to_srgb
    from studio.pipelines.metrics import psnr
    from studio.pipelines.reconstruct import MeshingParams, mesh_from_splats
    from studio.pipelines.splat_fit import FitParams, fit_splats, render_splats

    views, pts, cols, rep = capture_to_views(testdata / "capture" / "buddha", max_size=160)
    hold = [4, 8]
    train = [i for i in range(len(views)) if i not in hold]
    tv = Views(views.images[train], views.cameras[train])
    hv_img = linear_to_srgb(views.images[hold])
    fit = FitParams(iterations=300, refine_start=50, refine_stop=225, refine_every=25, background=(0, 0, 0),
                    init_random=20_000, init_shell=5_000)
    splats, stats = fit_splats(tv, fit, pts, cols)
    rgb, _, alpha = render_splats(splats, views.cameras[hold], background=(0, 0, 0))
    held = psnr(rgb, hv_img)
    flat = psnr(np.broadcast_to(linear_to_srgb(tv.images).mean((0, 1, 2)), hv_img.shape), hv_img)
    train_psnr = psnr(render_splats(splats, tv.cameras, background=(0, 0, 0))[0], linear_to_srgb(tv.images))
    print(f"buddha: held-out PSNR {held:.2f} dB (flat colour {flat:.2f}), train {train_psnr:.2f} dB, {len(splats)} splats")
    assert held >= 18.0 and held >= flat + 2.5 and train_psnr >= 21.0
    # the head alone, closed: the table is found as the support plane and cut away, the footprint capped
    dense, low = mesh_from_splats(splats, tv.cameras, MeshingParams(target_faces=4000, isolate_object=True))
    scene, _ = mesh_from_splats(splats, tv.cameras, MeshingParams(target_faces=4000, extra_views=0))  # head + table
    box = lambda m: float(np.prod(np.ptp(m.vertices, axis=0)))  # noqa: E731
    print(f"head: {len(low.faces)} faces, extent {np.ptp(low.vertices, axis=0).round(2)}, volume {low.geometry.volume:.4f}; "
          f"bbox {box(low) / box(scene):.2f} of the fused scene's")
    for m in (dense, low):
        assert m.geometry.is_watertight and m.geometry.volume > 0
    assert 0 < len(low.faces) <= 4400
    assert box(low) < 0.75 * box(scene)  # the table is cut away (measured 0.48)
    centre, radius = tv.cameras.subject_sphere()
    assert np.linalg.norm(low.vertices - centre, axis=1).max() < 1.25 * radius  # what the cameras look at (measured 1.17)
