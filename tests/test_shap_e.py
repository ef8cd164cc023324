"""Shap-E text → 3D and image → 3D with tiny random ShapEPipeline / ShapEImg2ImgPipeline (1-layer PriorTransformer, 2-layer CLIP text encoder,
8-wide ShapERenderer) built and saved by the test, loaded through the registry, decoded to a mesh on
a 24³ grid and exported as a validated GLB. The renderer's marching-cubes lookup buffers (constants
shipped in the real checkpoint, zeros in a fresh module) are derived here from scikit-image's
Lorensen marching cubes, one 2×2×2 cube per case. The mesh conversion is also checked exactly on a
synthetic diffusers MeshDecoderOutput (an SDF sphere)."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import CLIP_VOCAB_SIZE, single_thread, write_clip_tokenizer  # noqa: E402

from studio.assets.io import load, save  # noqa: E402
from studio.assets.validate import validate  # noqa: E402
from studio.errors import CancelledError, InvalidAssetError, ModelUnavailableError  # noqa: E402
from studio.models import PipelineCache  # noqa: E402
from studio.pipelines.shap_e import (ShapEParams, mesh_output_to_asset, shap_e_image_to_3d,  # noqa: E402
                                     shap_e_text_to_3d)

CACHE = PipelineCache()


def marching_cubes_table() -> tuple[torch.Tensor, torch.Tensor]:
    """(256,5,3) edge triplets + (256,5) masks in diffusers' MeshDecoder convention: corner k of a cube is
    (k&1, k>>1&1, k>>2&1) and sets bit k when the field is > 0; edges 0-3 span x at (y,z) = (0,0),(1,0),
    (0,1),(1,1), 4-7 span y at (x,z), 8-11 span z at (x,y)."""
    from skimage.measure import marching_cubes

    cases = torch.zeros(256, 5, 3, dtype=torch.long)
    masks = torch.zeros(256, 5, dtype=torch.bool)
    for c in range(1, 255):
        vol = np.full((2, 2, 2), -1.0)
        for k in range(8):
            if c >> k & 1:
                vol[k & 1, k >> 1 & 1, k >> 2 & 1] = 1.0
        verts, faces, _, _ = marching_cubes(vol, 0.0, method="lorensen")
        edge = []
        for v in verts:
            ax = int(np.argmin(np.abs(v - 0.5)))
            o = [int(round(v[i])) for i in range(3) if i != ax]
            edge.append(4 * ax + o[0] + 2 * o[1])
        for j, f in enumerate(faces):
            cases[c, j] = torch.tensor([edge[i] for i in f])
            masks[c, j] = True
    return cases, masks


def save_tiny_shap_e(folder: Path, seed: int = 0) -> Path:
    """openai/shap-e layout: prior, text_encoder, tokenizer, scheduler, shap_e_renderer."""
    from diffusers import HeunDiscreteScheduler, PriorTransformer, ShapEPipeline
    from diffusers.pipelines.shap_e import ShapERenderer
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(seed)
    prior = PriorTransformer(num_attention_heads=2, attention_head_dim=16, embedding_dim=16, num_embeddings=32,
                             embedding_proj_dim=16, time_embed_dim=64, num_layers=1, clip_embed_dim=32,
                             additional_embeddings=0, time_embed_act_fn="gelu", norm_in_type="layer",
                             encoder_hid_proj_type=None, added_emb_type=None)
    te = CLIPTextModelWithProjection(CLIPTextConfig(
        bos_token_id=0, eos_token_id=2, hidden_size=16, projection_dim=16, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, pad_token_id=1, vocab_size=CLIP_VOCAB_SIZE))
    renderer = ShapERenderer(param_shapes=((8, 93), (8, 8), (8, 8), (8, 8)), d_latent=16, d_hidden=8, n_output=12,
                             background=(0.1, 0.1, 0.1))
    cases, masks = marching_cubes_table()
    renderer.mesh_decoder.cases.copy_(cases)
    renderer.mesh_decoder.masks.copy_(masks)
    sched = HeunDiscreteScheduler(beta_schedule="exp", num_train_timesteps=1024, prediction_type="sample",
                                  use_karras_sigmas=True, clip_sample=True, clip_sample_range=1.0)
    tok = CLIPTokenizer.from_pretrained(write_clip_tokenizer(folder / "_tok"))
    ShapEPipeline(prior=prior, text_encoder=te, tokenizer=tok, scheduler=sched,
                  shap_e_renderer=renderer).save_pretrained(folder)
    for p in (folder / "_tok").iterdir():
        p.unlink()
    (folder / "_tok").rmdir()
    return folder


def save_tiny_shap_e_img2img(folder: Path, seed: int = 0) -> Path:
    """openai/shap-e-img2img layout: prior (image-embedding projection), image_encoder (2-layer CLIPVisionModel,
    32 px, 8 px patches), image_processor, scheduler, shap_e_renderer."""
    from diffusers import HeunDiscreteScheduler, PriorTransformer, ShapEImg2ImgPipeline
    from diffusers.pipelines.shap_e import ShapERenderer
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    prior = PriorTransformer(num_attention_heads=2, attention_head_dim=16, embedding_dim=16, num_embeddings=32,
                             embedding_proj_dim=16, time_embed_dim=64, num_layers=1, clip_embed_dim=32,
                             additional_embeddings=0, time_embed_act_fn="gelu", norm_in_type="layer",
                             embedding_proj_norm_type="layer", encoder_hid_proj_type=None, added_emb_type=None)
    enc = CLIPVisionModel(CLIPVisionConfig(hidden_size=16, image_size=32, projection_dim=16, intermediate_size=24,
                                           num_attention_heads=2, num_hidden_layers=2, patch_size=8))
    renderer = ShapERenderer(param_shapes=((8, 93), (8, 8), (8, 8), (8, 8)), d_latent=16, d_hidden=8, n_output=12,
                             background=(0.1, 0.1, 0.1))
    cases, masks = marching_cubes_table()
    renderer.mesh_decoder.cases.copy_(cases)
    renderer.mesh_decoder.masks.copy_(masks)
    sched = HeunDiscreteScheduler(beta_schedule="exp", num_train_timesteps=1024, prediction_type="sample",
                                  use_karras_sigmas=True, clip_sample=True, clip_sample_range=1.0)
    proc = CLIPImageProcessor(crop_size=32, size=32, resample=3, image_mean=[0.48145466, 0.4578275, 0.40821073],
                              image_std=[0.26862954, 0.26130258, 0.27577711])
    ShapEImg2ImgPipeline(prior=prior, image_encoder=enc, image_processor=proc, scheduler=sched,
                         shap_e_renderer=renderer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def shap_e_folder(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("shap_e")
    return save_tiny_shap_e(root / "shap-e"), save_tiny_shap_e_img2img(root / "shap-e-img2img")


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch, shap_e_folder):
    import huggingface_hub.constants as hfc

    d = tmp_path / "models"
    d.mkdir()
    (d / "shap-e").symlink_to(shap_e_folder[0], target_is_directory=True)  # the built-in names
    (d / "shap-e-img2img").symlink_to(shap_e_folder[1], target_is_directory=True)
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STUDIO_MODELS", str(d))
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    monkeypatch.delenv("STUDIO_BLOCKLIST", raising=False)


P = ShapEParams(steps=2, guidance_scale=3.0, grid_size=24, seed=0)


def test_text_to_3d_exports_validated_glb(tmp_path):
    seen: list[float] = []
    asset = shap_e_text_to_3d("a red chair", params=P, cache=CACHE, progress=lambda f, m: seen.append(f))
    assert len(asset.meshes) == 1 and asset.triangle_count > 0
    m = asset.meshes[0]
    assert m.colors is not None and m.colors.shape == (len(m.vertices), 4) and m.colors.dtype == np.float32
    assert m.colors.min() >= 0 and m.colors.max() <= 1
    assert np.abs(m.vertices).max() <= 0.5 + 1e-6  # Shap-E's [-1,1] box × scale 0.5
    assert asset.metadata.prompt == "a red chair" and asset.metadata.seed == 0 and asset.metadata.method == "shap-e"
    assert seen[-1] == 1.0 and len(seen) >= 3 and seen == sorted(seen)
    out = save(asset, tmp_path / "chair.glb", validate=True)
    report = validate(out)
    assert report.ok, report
    back = load(out)
    assert back.triangle_count == asset.triangle_count


def test_text_to_3d_deterministic_under_seed():
    a = shap_e_text_to_3d("a red chair", params=P, cache=CACHE)
    b = shap_e_text_to_3d("a red chair", params=P, cache=CACHE)
    c = shap_e_text_to_3d("a red chair", params=ShapEParams(steps=2, guidance_scale=3.0, grid_size=24, seed=1), cache=CACHE)
    assert np.array_equal(a.meshes[0].vertices, b.meshes[0].vertices)
    assert np.array_equal(a.meshes[0].faces, b.meshes[0].faces)
    assert a.meshes[0].vertices.shape != c.meshes[0].vertices.shape or not np.array_equal(
        a.meshes[0].vertices, c.meshes[0].vertices)


def test_image_to_3d_exports_validated_glb(tmp_path):
    rng = np.random.default_rng(0)
    img = (rng.uniform(size=(40, 48, 3)) * 255).astype(np.uint8)
    a = shap_e_image_to_3d(img, params=P, cache=CACHE)
    assert a.triangle_count > 0 and a.metadata.pipeline == "image_to_3d"
    assert save(a, tmp_path / "a.glb", validate=True).is_file()
    again = shap_e_image_to_3d(img, params=P, cache=CACHE)
    other = shap_e_image_to_3d(img[::-1].copy(), params=P, cache=CACHE)
    assert np.array_equal(a.meshes[0].vertices, again.meshes[0].vertices)
    va, vo = a.meshes[0].vertices, other.meshes[0].vertices
    assert va.shape != vo.shape or not np.array_equal(va, vo)  # the image conditions the prior
    with pytest.raises(InvalidAssetError, match="uint8"):
        shap_e_image_to_3d(img.astype(np.float32), params=P, cache=CACHE)


def test_cancel_between_prior_steps():
    with pytest.raises(CancelledError):
        shap_e_text_to_3d("a red chair", params=P, cache=CACHE, cancel=lambda: True)


def test_missing_and_wrong_models(tmp_path, monkeypatch):
    with pytest.raises(ModelUnavailableError, match="ShapEImg2ImgPipeline"):
        shap_e_image_to_3d(np.zeros((32, 32, 3), np.uint8), model="shap-e", params=P, cache=CACHE)
    monkeypatch.setenv("STUDIO_MODELS", str(tmp_path / "empty"))
    with pytest.raises(ModelUnavailableError, match="openai/shap-e"):
        shap_e_text_to_3d("a red chair", params=P, cache=PipelineCache())


def test_mesh_output_conversion_exact():
    """An SDF sphere of radius 0.6 (Shap-E units, +Z up) through diffusers' own MeshDecoder."""
    from diffusers.pipelines.shap_e.renderer import MeshDecoder, MeshDecoderOutput

    dec = MeshDecoder()
    cases, masks = marching_cubes_table()
    dec.cases.copy_(cases)
    dec.masks.copy_(masks)
    x = torch.linspace(-1, 1, 20)
    X, Y, Z = torch.meshgrid(x, x, x, indexing="ij")
    raw = dec(0.6 - (X**2 + Y**2 + Z**2).sqrt(), torch.tensor([-1.0, -1, -1]), torch.tensor([2.0, 2, 2]))
    v = raw.verts
    out = MeshDecoderOutput(verts=v, faces=raw.faces, vertex_channels={"R": (v[:, 2] > 0).float(),
                                                                       "G": torch.zeros(len(v)), "B": torch.ones(len(v))})
    asset = mesh_output_to_asset(out, scale=0.5)
    m = asset.meshes[0]
    assert np.allclose(m.vertices, v.numpy()[:, [0, 2, 1]] * [0.5, 0.5, -0.5], atol=1e-6)  # (x,y,z) → (x,z,−y)
    assert m.geometry.is_watertight and m.geometry.volume > 0  # wound outwards
    assert abs(m.geometry.volume - 4 / 3 * np.pi * 0.3**3) < 0.1 * 4 / 3 * np.pi * 0.3**3
    top = m.vertices[:, 1] > 0.05  # Shap-E +Z (red) is studio +Y
    assert np.all(m.colors[top, 0] == 1.0) and np.all(m.colors[:, 2] == 1.0) and np.all(m.colors[:, 3] == 1.0)
    with pytest.raises(InvalidAssetError, match="empty mesh"):
        mesh_output_to_asset(MeshDecoderOutput(verts=torch.zeros(0, 3), faces=torch.zeros(0, 3, dtype=torch.long),
                                               vertex_channels={}))
