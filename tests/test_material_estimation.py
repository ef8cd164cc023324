"""Marigold depth / normals / intrinsics on views with tiny random Marigold-architecture pipelines built
and saved by the test (UNet2DConditionModel whose input concatenates the image latent with the target
latent(s): 8 channels for depth/normals, 12 in / 8 out for the appearance IID model with the
target_properties of prs-eth/marigold-iid-appearance-v1-1), loaded through the registry. Outputs are
noise: the tests check shapes, dtypes, ranges, determinism, delighting, progress/cancel and errors."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import build_sd_components, single_thread, write_clip_tokenizer  # noqa: E402

from studio.assets.cameras import Cameras  # noqa: E402
from studio.assets.views import Views  # noqa: E402
from studio.errors import CancelledError, ModelUnavailableError  # noqa: E402
from studio.models import PipelineCache  # noqa: E402
from studio.pipelines.material_estimation import (MarigoldParams, delight_views, estimate_depth,  # noqa: E402
                                                  estimate_materials, estimate_normals)

CACHE = PipelineCache()
IID_PROPS = {
    "target_names": ["albedo", "material"],
    "albedo": {"prediction_space": "srgb"},
    "material": {"prediction_space": "stack", "sub_target_names": ["roughness", "metallicity", None]},
    "roughness": {"prediction_space": "linear", "up_to_scale": False},
    "metallicity": {"prediction_space": "linear", "up_to_scale": False},
}


def save_tiny_marigold(folder: Path, task: str, seed: int = 0) -> Path:
    import diffusers
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTokenizer

    _, vae, text_encoder, _ = build_sd_components(seed)
    n_t = 2 if task == "intrinsics" else 1
    torch.manual_seed(seed + 10)
    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=8,
                                in_channels=4 * (1 + n_t), out_channels=4 * n_t,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                norm_num_groups=16)
    sched = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                          set_alpha_to_one=False, prediction_type="v_prediction", timestep_spacing="trailing")
    tok = CLIPTokenizer.from_pretrained(write_clip_tokenizer(folder / "_tok"))
    kw = dict(unet=unet, vae=vae, scheduler=sched, text_encoder=text_encoder, tokenizer=tok,
              default_denoising_steps=2, default_processing_resolution=32)
    if task == "depth":
        pipe = diffusers.MarigoldDepthPipeline(prediction_type="depth", scale_invariant=True, shift_invariant=True, **kw)
    elif task == "normals":
        pipe = diffusers.MarigoldNormalsPipeline(prediction_type="normals", use_full_z_range=True, **kw)
    else:
        pipe = diffusers.MarigoldIntrinsicsPipeline(prediction_type="intrinsics", target_properties=IID_PROPS, **kw)
    pipe.save_pretrained(folder)
    for p in (folder / "_tok").iterdir():
        p.unlink()
    (folder / "_tok").rmdir()
    return folder


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def models(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("marigold")
    return {t: save_tiny_marigold(root / t, t) for t in ("depth", "normals", "intrinsics")}


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch, models):
    """The tiny models sit in $STUDIO_MODELS under the built-in names, as real weights would."""
    import huggingface_hub.constants as hfc

    d = tmp_path / "models"
    d.mkdir()
    for task, name in (("depth", "marigold-depth"), ("normals", "marigold-normals"), ("intrinsics", "marigold-iid")):
        (d / name).symlink_to(models[task], target_is_directory=True)
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STUDIO_MODELS", str(d))
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")


def views(n: int = 2, h: int = 24, w: int = 32, seed: int = 0) -> Views:
    rng = np.random.default_rng(seed)
    cams = Cameras.look_at(rng.normal(size=(n, 3)) * 2 + np.array([0, 0, 3.0]), np.zeros(3), width=w, height=h)
    return Views(rng.uniform(0, 1, size=(n, h, w, 3)).astype(np.float32), cams, masks=np.ones((n, h, w), np.float32))


def test_depth_shape_range_determinism_progress():
    v = views()
    seen: list[float] = []
    d = estimate_depth(v, cache=CACHE, progress=lambda f, m: seen.append(f))
    assert d.shape == (2, 24, 32) and d.dtype == np.float32
    assert d.min() >= 0 and d.max() <= 1 and d.std() > 0
    assert np.array_equal(d, estimate_depth(v, cache=CACHE))
    assert not np.array_equal(d, estimate_depth(v, params=MarigoldParams(seed=5), cache=CACHE))
    assert seen == [0.5, 1.0]


def test_normals_unit_vectors():
    n = estimate_normals(views(n=1), cache=CACHE)
    assert n.shape == (1, 24, 32, 3) and n.dtype == np.float32
    assert np.allclose(np.linalg.norm(n, axis=-1), 1.0, atol=1e-4)


def test_materials_and_delight():
    v = views()
    maps = estimate_materials(v, cache=CACHE)
    assert maps.albedo.shape == (2, 24, 32, 3) and maps.roughness.shape == (2, 24, 32) == maps.metallic.shape
    for a in (maps.albedo, maps.roughness, maps.metallic):
        assert a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1 and a.std() > 0
    assert not np.array_equal(maps.roughness, maps.metallic)  # two different channels of the material stack
    delit, maps2 = delight_views(v, cache=CACHE)
    assert np.array_equal(delit.images, maps.albedo) and np.array_equal(maps2.roughness, maps.roughness)
    assert delit.cameras is v.cameras and np.array_equal(delit.masks, v.masks)


def test_cancel_between_views():
    with pytest.raises(CancelledError):
        estimate_depth(views(), cache=CACHE, cancel=lambda: True)


def test_wrong_model_kind_and_missing_model(tmp_path, monkeypatch, models):
    with pytest.raises(ModelUnavailableError, match="MarigoldIntrinsicsPipeline"):
        estimate_materials(views(n=1), model="marigold-depth", cache=CACHE)
    monkeypatch.setenv("STUDIO_MODELS", str(tmp_path / "empty"))
    with pytest.raises(ModelUnavailableError, match="prs-eth/marigold-normals-v1-1"):
        estimate_normals(views(n=1), cache=PipelineCache())


def test_material_files_for_one_photo_through_the_cli(tmp_path):
    """`studio generate materials PHOTO`: depth (16-bit), normals, albedo, roughness and metallic PNGs."""
    from PIL import Image
    from typer.testing import CliRunner

    from studio.cli import app

    photo = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((24, 32, 3)) * 255).astype(np.uint8)).save(photo)
    r = CliRunner().invoke(app, ["generate", "materials", str(photo), "-o", str(tmp_path / "maps")])
    assert r.exit_code == 0, r.output
    names = {p.name for p in (tmp_path / "maps").iterdir()}
    assert names == {"depth.png", "normals.png", "albedo.png", "roughness.png", "metallic.png"}
    depth = np.asarray(Image.open(tmp_path / "maps" / "depth.png"))
    assert depth.shape == (24, 32) and depth.dtype == np.uint16
    assert np.asarray(Image.open(tmp_path / "maps" / "albedo.png")).shape == (24, 32, 3)
