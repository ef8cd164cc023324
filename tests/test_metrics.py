"""Metrics: PSNR/SSIM against known values, Chamfer / F-score against known geometry, report files."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import trimesh

from studio.assets.mesh import Mesh
from studio.pipelines.metrics import ChamferResult, chamfer, psnr, ssim, write_metrics


def test_psnr_known_values():
    a = np.zeros((8, 8, 3))
    assert psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-9)  # MSE 0.01
    assert psnr(a, a + 0.01) == pytest.approx(40.0, abs=1e-9)
    assert psnr(a, a) == math.inf
    assert psnr(a, a + 0.5, data_range=255.0) == pytest.approx(10 * math.log10(255.0**2 / 0.25))


def test_psnr_mask_selects_pixels():
    a = np.zeros((4, 4, 3))
    b = a.copy()
    b[:2] = 1.0  # wrong everywhere in the top half
    b[2:] = 0.1
    mask = np.zeros((4, 4), bool)
    mask[2:] = True
    assert psnr(a, b, mask=mask) == pytest.approx(20.0)
    assert psnr(a, b) < 5.0
    with pytest.raises(ValueError):
        psnr(a, b, mask=np.zeros((4, 4), bool))
    with pytest.raises(ValueError):
        psnr(a, b[:3])


def test_ssim_values():
    rng = np.random.default_rng(0)
    img = rng.random((32, 32, 3))
    assert ssim(img, img) == pytest.approx(1.0)
    noisy = np.clip(img + rng.normal(0, 0.05, img.shape), 0, 1)
    noisier = np.clip(img + rng.normal(0, 0.2, img.shape), 0, 1)
    s1, s2 = ssim(noisy, img), ssim(noisier, img)
    assert 0.0 < s2 < s1 < 1.0
    assert ssim(img, noisy) == pytest.approx(s1)  # symmetric
    # constant images differing by c: SSIM = luminance term (2·μa·μb + C1) / (μa² + μb² + C1)
    c1 = (0.01 * 1.0) ** 2
    a, b = np.full((16, 16), 0.5), np.full((16, 16), 0.3)
    assert ssim(a, b) == pytest.approx((2 * 0.5 * 0.3 + c1) / (0.25 + 0.09 + c1), rel=1e-6)
    assert ssim(img[:5, :5], img[:5, :5]) == pytest.approx(1.0)  # small images use a smaller window


def _sphere(radius=0.3, subdiv=4) -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdiv, radius=radius)


def test_chamfer_identical_meshes_is_zero():
    s = _sphere()
    r = chamfer(Mesh.from_arrays(s.vertices, s.faces), s, n=20_000)
    assert isinstance(r, ChamferResult)
    assert r.chamfer < 1e-6
    assert r.fscore == 1.0 and r.precision == 1.0 and r.recall == 1.0
    assert r.normal_consistency > 0.9999
    assert r.tau == pytest.approx(0.01 * np.linalg.norm(s.bounds[1] - s.bounds[0]))


def test_chamfer_offset_surface_gives_expected_distance():
    s = _sphere()
    big = s.copy()
    big.vertices *= 1.05  # every point moves 0.015 m outwards
    r = chamfer(big, s, n=20_000)
    assert r.accuracy == pytest.approx(0.015, rel=0.05)
    assert r.completeness == pytest.approx(0.015, rel=0.05)
    assert r.chamfer == pytest.approx(0.015, rel=0.05)
    assert r.normal_consistency > 0.999
    # tau (1 % of diagonal ≈ 0.0104) is below the offset: nothing matches
    assert r.fscore == 0.0
    assert chamfer(big, s, n=20_000, tau=0.02).fscore == 1.0
    # the classic sample-to-sample Chamfer agrees within its sampling floor
    rp = chamfer(big, s, n=20_000, method="points")
    assert rp.chamfer == pytest.approx(0.015, abs=0.004)


def test_chamfer_translation_and_partial_reconstruction():
    # a unit square vs the same square shifted along its normal by 0.02 m
    plane = trimesh.creation.box((1.0, 1.0, 1e-4))
    shifted = plane.copy()
    shifted.apply_translation([0, 0, 0.02])
    r = chamfer(shifted, plane, n=20_000)
    assert r.chamfer == pytest.approx(0.02, rel=0.02)
    # half of the reference missing: precision stays 1, recall drops to about one half
    s = _sphere()
    keep = s.triangles_center[:, 1] > 0
    top = trimesh.Trimesh(s.vertices, s.faces[keep], process=False)
    r = chamfer(top, s, n=20_000)
    assert r.precision == 1.0
    assert 0.45 < r.recall < 0.6
    assert r.fscore == pytest.approx(2 * r.precision * r.recall / (r.precision + r.recall))


def test_chamfer_deterministic_and_transform_applied():
    s = _sphere(subdiv=3)
    m = Mesh.from_arrays(s.vertices, s.faces, transform=trimesh.transformations.translation_matrix([0.1, 0, 0]))
    r1 = chamfer(m, s, n=5000, seed=3)
    r2 = chamfer(m, s, n=5000, seed=3)
    assert r1 == r2
    assert r1.chamfer > 0.02  # the 0.1 m translation is seen


def test_write_metrics(tmp_path):
    s = _sphere(subdiv=2)
    results = {
        "psnr_heldout": 31.5,
        "ssim_heldout": 0.93,
        "psnr_per_view": [30.0, 32.0, 31.0],
        "mesh": chamfer(s, s, n=2000),
        "identical": math.inf,
        "label": "demo",
    }
    jp, hp = write_metrics(results, tmp_path / "out")
    data = json.loads(jp.read_text())
    assert data["psnr_heldout"] == 31.5
    assert data["mesh"]["fscore"] == 1.0
    assert data["psnr_per_view"] == [30.0, 32.0, 31.0]
    assert data["identical"] == "inf"
    page = hp.read_text()
    assert "<svg" in page and "</html>" in page
    assert "mesh.fscore" in page and "psnr_per_view" in page
    assert not list((tmp_path / "out").glob("*.part*"))  # atomic: no temporaries left
