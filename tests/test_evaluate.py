"""evaluate(): image metrics on held-out views and surface metrics against a ground-truth mesh."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh

from studio.assets import Asset, Mesh, Views
from studio.pipelines.evaluate import evaluate
from studio.pipelines.procedural import SampleParams, sample_asset, surface_splats
from studio.pipelines.views_render import render_views, view_rig


@pytest.fixture(scope="module")
def scene():
    a = sample_asset(SampleParams(texture_size=128))
    views, _ = render_views(a, view_rig(a, 3, 64, elevations=(30.0,)))
    return a, views


def test_ground_truth_scores_perfectly(scene, tmp_path: Path) -> None:
    a, views = scene
    m = evaluate(a, views, gt_mesh=a, out_dir=tmp_path, samples=20_000)
    assert m["mesh"]["psnr"] > 40 and m["mesh"]["ssim"] > 0.98 and len(m["mesh"]["psnr_per_view"]) == 3
    s = m["surface"]
    assert s["chamfer"] < 1e-5 and s["fscore"] == 1.0 and s["normal_consistency"] > 0.999
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["surface"]["fscore"] == 1.0 and (tmp_path / "metrics.html").read_text().count("<svg") == 1


def test_worse_reconstructions_score_worse(scene) -> None:
    a, views = scene
    gt = a.meshes[0]
    shrunk = Mesh(trimesh.Trimesh((gt.vertices - [0, 0.3, 0]) * 0.95 + [0, 0.3, 0], gt.faces, process=False))
    m = evaluate(shrunk, gt_mesh=gt, samples=20_000)["surface"]
    # a sphere of radius 0.3 shrunk by 5 % sits 1.5 cm inside: Chamfer ≈ 1.5 cm, none within 1 % (0.94 cm)
    assert m["chamfer"] == pytest.approx(0.015, rel=0.05) and m["fscore"] < 0.01
    assert m["chamfer_fraction"] == pytest.approx(m["chamfer"] / m["diagonal"])
    splats = surface_splats(a, 20_000)
    good = evaluate(splats, views)["splats"]["psnr"]
    dimmed = Views(views.images * 0.7, views.cameras, views.masks)
    assert good > 20 and evaluate(splats, dimmed)["splats"]["psnr"] < good - 1.5


def test_nothing_to_evaluate(scene) -> None:
    a, _ = scene
    with pytest.raises(ValueError, match="held-out views"):
        evaluate(a)
    with pytest.raises(ValueError, match="no mesh"):
        evaluate(Asset(splats=surface_splats(a, 100)), gt_mesh=a)
