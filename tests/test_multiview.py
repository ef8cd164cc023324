"""Image → multiview (Zero123 class) and text → asset on tiny random models of the real architecture,
built and saved by the test in the diffusers folder layout, loaded through the registry. Outputs
are noise: the tests check shapes, exact rig cameras, seeds, progress, cancellation and error paths.
text → asset runs text → image → multiview for real; only the splat fit on those noise views is
stubbed at its function boundary (`fit_fn`), where the test checks what it received."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import save_tiny_sd, single_thread  # noqa: E402

from studio.assets.asset import Asset  # noqa: E402
from studio.assets.mesh import Mesh  # noqa: E402
from studio.errors import CancelledError, ModelUnavailableError  # noqa: E402
from studio.models import PipelineCache, register  # noqa: E402
from studio.pipelines import multiview as mv  # noqa: E402

CACHE = PipelineCache()
RIG = mv.MultiviewRig(n=4, size=32)


def save_tiny_zero123(folder: Path, seed: int = 0) -> Path:
    """UNet2DConditionModel (in_channels 8) + tiny AutoencoderKL (4×) + 2-layer CLIP vision encoder with
    projection (32-d) + CLIPImageProcessor + DDIM + CCProjection(32 + 4 → 32)."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=8, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=16)
    vae = AutoencoderKL(block_out_channels=[16, 32, 32], in_channels=3, out_channels=3,
                        down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
                        latent_channels=4, norm_num_groups=8)
    enc = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32,
        patch_size=8, projection_dim=32))
    fe = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    cc = mv.CCProjection()(in_channel=36, out_channel=32)
    return mv.save_zero123({"unet": unet, "vae": vae, "image_encoder": enc, "feature_extractor": fe,
                            "scheduler": sched, "cc_projection": cc}, folder)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("tiny_mv")
    return {"zero123": save_tiny_zero123(root / "zero123"), "sd": save_tiny_sd(root / "sd")}


@pytest.fixture(autouse=True)
def studio_env(tmp_path, monkeypatch, tiny):
    import huggingface_hub.constants as hfc

    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STUDIO_MODELS", str(models))
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    monkeypatch.delenv("STUDIO_BLOCKLIST", raising=False)
    return models


def object_image() -> np.ndarray:
    """A red disc on a white background (64×64 uint8), off-centre."""
    yy, xx = np.mgrid[:64, :64]
    img = np.full((64, 64, 3), 255, np.uint8)
    img[(yy - 24) ** 2 + (xx - 40) ** 2 < 12**2] = (200, 30, 30)
    return img


def run(**kw):
    base = dict(model="tiny-z123", rig=RIG, steps=2, guidance=3.0, seed=1, cache=CACHE)
    return mv.image_to_multiview(object_image(), **(base | kw))


@pytest.fixture
def registered(tiny):
    register("tiny-z123", tiny["zero123"])


def test_views_shapes_and_exact_rig_cameras(registered):
    v = run()
    assert v.images.shape == (4, 32, 32, 3) and v.images.dtype == np.float32
    assert v.masks.shape == (4, 32, 32) and v.masks.dtype == np.float32
    assert np.isfinite(v.images).all() and v.images.min() >= 0 and v.images.max() <= 1
    az, el = np.radians([30, 120, 210, 300]), np.radians([20, -10, 20, -10])
    eyes = 2.0 * np.stack([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)], axis=1)
    np.testing.assert_allclose(v.cameras.centers, eyes, atol=1e-12)
    # every camera looks at the origin (OpenCV +Z forward) with image-up along world +Y's projection
    fwd = v.cameras.cam_to_world[:, :3, 2]
    np.testing.assert_allclose(fwd, -eyes / 2.0, atol=1e-12)
    assert (v.cameras.cam_to_world[:, 1, 1] < 0).all()  # OpenCV y points down: world +Y maps to -y
    uv, depth = v.cameras.project(np.zeros((1, 3)))
    np.testing.assert_allclose(uv.reshape(4, 2), 16.0, atol=1e-9)
    # Zero123's training camera: 35 mm lens on a 32 mm sensor → focal = 35/32 of the image side
    np.testing.assert_allclose(v.cameras.K[:, 0, 0], 35.0)
    np.testing.assert_allclose(v.cameras.K[:, 1, 1], 35.0)
    # a point above the origin projects above the image centre in every view (+Y up)
    uv_up, _ = v.cameras.project(np.array([[0.0, 0.1, 0.0]]))
    assert (uv_up[:, 0, 1] < 16.0).all()
    assert v.cameras.names[1] == "view_01_az120_el-10"


def test_pose_vectors_follow_zero123():
    p = mv.pose_vectors(mv.MultiviewRig(n=2, elevations=(30.0,), azimuths=(90.0, 180.0), radius=2.5))
    np.testing.assert_allclose(p, [[-np.pi / 6, 1, 0, 0.5], [-np.pi / 6, 0, -1, 0.5]], atol=1e-6)
    s = mv.pose_vectors(mv.MultiviewRig(n=1, elevations=(0.0,), input_elevation=10.0), "stable-zero123")
    np.testing.assert_allclose(s[0, [0, 3]], [np.radians(10), np.radians(80)], atol=1e-6)


def test_seed_determinism_and_warm_cache(registered):
    a, b, c = run(), run(), run(seed=2)
    np.testing.assert_array_equal(a.images, b.images)
    assert np.abs(a.images - c.images).max() > 1e-3
    assert sum(CACHE.loads.values()) == 1  # the second and third jobs reuse the loaded model


def test_pose_and_input_condition_the_output(registered):
    a = run()
    other = mv.MultiviewRig(n=4, size=32, elevations=(40.0, 0.0))
    assert np.abs(a.images - run(rig=other).images).max() > 1e-4
    img = object_image()
    img[img[..., 0] == 200] = (20, 200, 30)
    g = mv.image_to_multiview(img, model="tiny-z123", rig=RIG, steps=2, seed=1, cache=CACHE)
    assert np.abs(a.images - g.images).max() > 1e-4


def test_progress_per_step_and_cancel_between_steps(registered):
    seen = []
    run(steps=3, progress=lambda f, m: seen.append(f))
    assert seen[0] == 0.0 and seen[1:] == pytest.approx([1 / 3, 2 / 3, 1.0])
    steps = []

    def progress(f, m):
        steps.append(f)

    with pytest.raises(CancelledError):
        run(steps=5, progress=progress, cancel=lambda: len(steps) >= 3)
    assert len(steps) == 3  # loading + 2 steps, then stopped before the third


def test_euler_scheduler_runs_and_differs(registered):
    a, e = run(), run(scheduler="euler")
    assert e.images.shape == a.images.shape and np.abs(a.images - e.images).max() > 1e-4


def test_missing_model_names_repo_id():
    with pytest.raises(ModelUnavailableError, match="stabilityai/stable-zero123") as ei:
        mv.image_to_multiview(object_image(), rig=RIG, steps=1)
    assert "hf download" in str(ei.value)


def test_not_a_zero123_folder_is_refused(tmp_path, tiny):
    with pytest.raises(ModelUnavailableError, match="cc_projection"):
        mv.load_zero123(tiny["sd"])


# ---- text → asset -----------------------------------------------------------------------------------


def fake_fit(record):
    def fit(views, progress=None, cancel=None):
        record["views"] = views
        if progress:
            progress(1.0, "fit (stub)")
        import trimesh

        return Asset(meshes=[Mesh(geometry=trimesh.creation.box())])

    return fit


def test_text_to_asset_runs_image_and_multiview_stages(registered, tiny):
    from studio.pipelines.text_to_asset import text_to_asset

    register("tiny-sd", tiny["sd"])
    rec: dict = {}
    fr = []
    asset = text_to_asset("a red chair", image_model="tiny-sd", multiview_model="tiny-z123", steps=2,
                          multiview_steps=2, width=64, height=64, seed=7, rig=RIG, fit_fn=fake_fit(rec),
                          progress=lambda f, m: fr.append(f), cache=CACHE)
    v = rec["views"]
    assert v.images.shape == (4, 32, 32, 3)
    np.testing.assert_allclose(v.cameras.cam_to_world, RIG.cameras().cam_to_world)
    md = asset.metadata
    assert (md.prompt, md.seed, md.pipeline, md.method) == ("a red chair", 7, "text_to_asset", "fit")
    assert md.extras["image_model"] == "tiny-sd" and md.extras["multiview_model"] == "tiny-z123"
    assert md.model == "tiny-sd+tiny-z123"
    assert fr == sorted(fr) and fr[-1] == 1.0
    rec2: dict = {}
    text_to_asset("a red chair", image_model="tiny-sd", multiview_model="tiny-z123", steps=2, multiview_steps=2,
                  width=64, height=64, seed=7, rig=RIG, fit_fn=fake_fit(rec2), cache=CACHE)
    np.testing.assert_array_equal(rec2["views"].images, v.images)


def test_text_to_asset_missing_models_are_all_named():
    from studio.pipelines.text_to_asset import text_to_asset

    with pytest.raises(ModelUnavailableError) as ei:
        text_to_asset("a red chair")
    msg = str(ei.value)
    for repo in ("stable-diffusion-v1-5/stable-diffusion-v1-5", "stabilityai/TripoSR", "stabilityai/stable-zero123"):
        assert repo in msg
    with pytest.raises(ModelUnavailableError, match="stabilityai/TripoSR"):
        text_to_asset("a red chair", method="feedforward")


def test_input_is_masked_recentred_and_padded(registered):
    """The same object off-centre on white, centred on white, and centred with an alpha channel over
    a black background all give the same conditioning image, hence identical views."""
    a = run()
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 32) ** 2 + (xx - 32) ** 2 < 12**2
    centred = np.full((64, 64, 3), 255, np.uint8)
    centred[disc] = (200, 30, 30)
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[disc] = (200, 30, 30, 255)
    for img in (centred, rgba):
        v = mv.image_to_multiview(img, model="tiny-z123", rig=RIG, steps=2, guidance=3.0, seed=1, cache=CACHE)
        np.testing.assert_array_equal(v.images, a.images)


def test_multiview_files_write_views_and_cameras(registered, tmp_path):
    import json

    from PIL import Image

    paths = mv.multiview_files(object_image(), tmp_path / "out", model="tiny-z123", n=3, size=32, steps=1, seed=3)
    assert [p.name for p in paths] == ["view_0.png", "view_1.png", "view_2.png", "cameras.json"]
    assert np.asarray(Image.open(paths[0])).shape == (32, 32, 3)
    cams = json.loads(paths[-1].read_text())
    rig = mv.MultiviewRig(n=3, size=32)
    np.testing.assert_allclose(cams["cam_to_world"], rig.cameras().cam_to_world)
    np.testing.assert_allclose(cams["K"], rig.cameras().K)


def test_cc_projection_loads_community_layout(tiny, tmp_path):
    """The community Zero1to3 CCProjection saves no sizes in its config; bare Linear keys load too."""
    import shutil

    import torch
    from safetensors.torch import save_file

    folder = tmp_path / "z"
    shutil.copytree(tiny["zero123"], folder)
    ref = mv.load_zero123(tiny["zero123"]).cc_projection.projection
    sub = folder / "cc_projection"
    for f in sub.iterdir():
        f.unlink()
    (sub / "config.json").write_text('{"_class_name": "CCProjection", "_diffusers_version": "0.21.0"}')
    save_file({"weight": ref.weight.detach().clone(), "bias": ref.bias.detach().clone()}, str(sub / "diffusion_pytorch_model.safetensors"))
    got = mv.load_zero123(folder).cc_projection.projection
    assert got.in_features == 36 and got.out_features == 32
    assert torch.equal(got.weight, ref.weight)
