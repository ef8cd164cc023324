"""The `studio` command line end to end: demo, info, export, validate, view, exit codes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from studio.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def studio_home(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))


def test_demo_writes_validated_glb_usdz_splats_thumbnail_and_turntable(tmp_path):
    out = tmp_path / "demo"
    r = runner.invoke(app, ["demo", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["state"] == "succeeded"
    reports = {Path(v["path"]).name: v for v in result["validation"]}
    assert set(reports) == {"sample.glb", "sample.usdz", "sample_splats.ply", "reconstruction.glb",
                            "reconstruction.usdz", "reconstruction_splats.ply"}
    assert all(v["errors"] == 0 for v in reports.values())
    assert reports["sample.glb"]["tool"].startswith("gltf-validator") and reports["sample.glb"]["warnings"] == 0
    assert "UsdValidation" in reports["sample.usdz"]["tool"]
    from PIL import Image

    # The reconstruction of the procedural sample is measured against its true geometry.
    m = json.loads((out / "metrics.json").read_text())
    assert m["splats"]["psnr"] > 26.0 and m["surface"]["chamfer_fraction"] < 0.015 and m["surface"]["fscore"] > 0.8, m
    thumb = np.asarray(Image.open(out / "thumbnail.png"))
    assert thumb.shape == (512, 512, 4) and (thumb[..., 3] > 0).mean() > 0.1, "the asset fills the thumbnail"
    import av

    with av.open(str(out / "turntable.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 48
    # Re-running is cache hits for the cached stage.
    r2 = runner.invoke(app, ["demo", "-o", str(out), "--json"])
    assert r2.exit_code == 0
    log = json.loads(r2.stdout)["log"]
    assert "fit: skipped" in log or "fit: cache hit" in log, log
    assert "bake: cache hit" in log, log


def test_info_summarises_a_real_sample(testdata):
    r = runner.invoke(app, ["info", str(testdata / "gltf/WaterBottle/WaterBottle.gltf"), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["triangles"] == 4510 and s["vertices"] == 2549 and s["materials"] == 1
    assert {t["slot"] for t in s["textures"]} >= {"base_color_texture", "normal_texture", "emissive_texture"}
    assert s["validation"]["errors"] == 0
    r = runner.invoke(app, ["info", str(testdata / "gltf/RiggedSimple/RiggedSimple.glb")])
    assert r.exit_code == 0 and "dropped" in r.stdout


def test_export_converts_and_validates(testdata, tmp_path):
    src = testdata / "gltf/CesiumMilkTruck/CesiumMilkTruck.glb"
    for ext in ("usdz", "glb", "obj", "ply"):
        r = runner.invoke(app, ["export", str(src), str(tmp_path / f"truck.{ext}")])
        assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["validate", str(tmp_path / "truck.usdz"), str(tmp_path / "truck.glb"), "--json"])
    assert r.exit_code == 0 and all(x["ok"] for x in json.loads(r.stdout))


def test_bad_input_gets_specific_exit_codes(testdata, tmp_path):
    r = runner.invoke(app, ["info", str(testdata / "gltf-invalid/wrong_magic.glb")])
    assert r.exit_code == 3 and "wrong_magic.glb" in r.output
    r = runner.invoke(app, ["export", str(testdata / "gltf-invalid/truncated_half.glb"), str(tmp_path / "x.glb")])
    assert r.exit_code == 3 and not (tmp_path / "x.glb").exists()
    r = runner.invoke(app, ["export", str(testdata / "gltf/Box/Box.glb"), str(tmp_path / "x.fbx")])
    assert r.exit_code == 2 and ".fbx" in r.output
    (tmp_path / "empty.usdz").write_bytes(b"")
    assert runner.invoke(app, ["info", str(tmp_path / "empty.usdz")]).exit_code == 3


def test_view_writes_png_turntable_and_contact_sheet(testdata, tmp_path):
    r = runner.invoke(app, ["view", str(testdata / "gltf/Box/Box.glb"), "--out", str(tmp_path / "box.png"),
                            "--turntable", str(tmp_path / "box.mp4"), "--frames", "6", "--size", "96",
                            "--contact-sheet", str(tmp_path / "sheet.png")])
    assert r.exit_code == 0, r.output
    from PIL import Image

    img = np.asarray(Image.open(tmp_path / "box.png"))
    assert img.shape == (96, 96, 4) and img[..., 3].max() == 255
    assert Image.open(tmp_path / "sheet.png").size == (4 * 64, 2 * 64)
    assert (tmp_path / "box.mp4").stat().st_size > 1000


def test_view_without_display_says_what_to_do(testdata, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    r = runner.invoke(app, ["view", str(testdata / "gltf/Box/Box.glb")])
    assert r.exit_code == 7 and "--out" in r.output and "--turntable" in r.output


def test_models_listing_and_missing_model_exit_code(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r = runner.invoke(app, ["models", "--json"])
    assert r.exit_code == 0
    names = {m["name"]: m for m in json.loads(r.stdout)}
    assert {"sd15", "blip-base", "tripo-sr"} <= set(names) and not names["sd15"]["present"]
    r = runner.invoke(app, ["generate", "image", "a chair", "--steps", "2", "-o", str(tmp_path / "img")])
    assert r.exit_code == 6 and "stable-diffusion-v1-5/stable-diffusion-v1-5" in r.output
    assert not (tmp_path / "img").exists() or not any((tmp_path / "img").iterdir()), "no placeholder image"


def test_reconstruct_a_real_capture_end_to_end(testdata, tmp_path):
    """`studio reconstruct` on the buddha capture (13 real photos, shipped COLMAP poses): every
    output validates and the posed views are exported for nerfstudio. Small settings keep it quick;
    quality on this capture is measured in tests/test_capture.py and bench/."""
    out = tmp_path / "buddha"
    r = runner.invoke(app, ["reconstruct", str(testdata / "capture/buddha"), "-o", str(out), "--max-size", "128",
                            "--iterations", "40", "--target-faces", "2000", "--json"])
    assert r.exit_code == 0, r.output
    job = json.loads(r.stdout)
    assert job["state"] == "succeeded" and all(v["errors"] == 0 for v in job["validation"])
    ns = json.loads((out / "nerfstudio" / "transforms.json").read_text())
    assert len(ns["frames"]) == 13
    # stood upright: the photos look down on the head from above (in COLMAP's frame their heights
    # scatter around the subject, +Y meaning nothing there), and the subject is at the origin
    heights = np.array([f["transform_matrix"][1][3] for f in ns["frames"]])
    assert (heights > 0).sum() >= 11, heights
    r = runner.invoke(app, ["run", "capture_to_asset", "-p", "photos=/nonexistent/folder"])
    assert r.exit_code != 0


def test_pipelines_list_marks_missing_models(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    r = runner.invoke(app, ["pipelines", "--json"])
    rows = {p["name"]: p for p in json.loads(r.stdout)}
    assert rows["demo"]["available"] and rows["capture_to_asset"]["available"]
    assert not rows["text_to_image"]["available"] and "hf download" in rows["text_to_image"]["reason"]



def test_view_writes_png_and_turntable_of_every_shared_sample(testdata, tmp_path):
    """`studio view --out --turntable` on every glTF sample of ../shared/testdata: the asset is on
    screen in the thumbnail and the MP4 decodes to the asked frames."""
    import av
    from PIL import Image

    manifest = json.loads((testdata / "gltf" / "manifest.json").read_text())
    for entry in manifest:
        src = testdata / "gltf" / entry["path"]
        png, mp4 = tmp_path / f"{entry['name']}.png", tmp_path / f"{entry['name']}.mp4"
        r = runner.invoke(app, ["view", str(src), "--out", str(png), "--turntable", str(mp4), "--frames", "4", "--size", "64"])
        assert r.exit_code == 0, (entry["name"], r.output)
        alpha = np.asarray(Image.open(png))[..., 3]
        assert (alpha > 0).mean() > 0.02, f"{entry['name']} is not on screen"
        with av.open(str(mp4)) as c:
            assert sum(1 for _ in c.decode(video=0)) == 4
