"""Feed-forward 3D (issue #10): TripoSR and InstantMesh at tiny sizes, random weights, saved in the
published checkpoint layouts into temp folders and loaded back through the model registry."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from studio.assets import Asset, AssetMetadata, Cameras, Mesh, Views
from studio.assets import io as asset_io
from studio.errors import CancelledError, EmptyResultError, InvalidAssetError, ModelUnavailableError
from studio.pipelines.feedforward import FeedForwardParams, load_model, lrm, single_image_to_asset, triposr
from studio.pipelines.feedforward import views_to_asset_feedforward
from studio.pipelines.feedforward.triplane import query_grid, surface_from_grid
from studio.pipelines.image_to_asset import image_to_asset, prepare_image


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No weights anywhere but where a test puts them; never the network; one torch thread."""
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STUDIO_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    from studio.models import PIPELINES

    PIPELINES.clear()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    PIPELINES.clear()


def _tiny_triposr(seed: int = 0) -> triposr.TSR:
    torch.manual_seed(seed)
    return triposr.TSR(triposr.tiny_config()).eval()


def _image(colour=(200, 40, 40)) -> np.ndarray:
    """(80,60,4) uint8: a coloured block with an alpha mask on a transparent background."""
    img = np.zeros((80, 60, 4), np.uint8)
    img[15:65, 12:48] = (*colour, 255)
    img[30:40, 20:30, :3] = 255 - np.array(colour, np.uint8)
    return img


def _threshold(model: triposr.TSR) -> float:
    """An iso-level the random field crosses (random weights never reach TripoSR's 25.0)."""
    with torch.no_grad():
        code = model(torch.full((1, 64, 64, 3), 0.5))[0]
        pts = torch.as_tensor(np.random.default_rng(0).uniform(-0.8, 0.8, (4000, 3)), dtype=torch.float32)
        d = model.query(code, pts)["density_act"][:, 0]
    return float(d.quantile(0.6))


FAST = dict(resolution=32, texture_size=128, target_faces=1500, device="cpu")


# ----------------------------------------------------------------------------- checkpoint layouts


TRIPOSR_DEEP_KEYS = [
    "image_tokenizer.model.embeddings.cls_token",
    "image_tokenizer.model.embeddings.position_embeddings",
    "image_tokenizer.model.embeddings.patch_embeddings.projection.weight",
    "image_tokenizer.model.encoder.layer.0.attention.attention.query.weight",
    "image_tokenizer.model.encoder.layer.0.attention.output.dense.weight",
    "image_tokenizer.model.encoder.layer.0.intermediate.dense.weight",
    "image_tokenizer.model.encoder.layer.0.output.dense.bias",
    "image_tokenizer.model.encoder.layer.0.layernorm_before.weight",
    "image_tokenizer.model.layernorm.weight",
    "image_tokenizer.model.pooler.dense.weight",
    "tokenizer.embeddings",
    "backbone.norm.weight",
    "backbone.proj_in.weight",
    "backbone.transformer_blocks.0.attn1.to_q.weight",
    "backbone.transformer_blocks.0.attn2.to_k.weight",
    "backbone.transformer_blocks.0.attn2.to_out.0.bias",
    "backbone.transformer_blocks.0.ff.net.0.proj.weight",
    "backbone.transformer_blocks.0.ff.net.2.weight",
    "backbone.transformer_blocks.0.norm3.bias",
    "backbone.proj_out.weight",
    "post_processor.upsample.weight",
    "decoder.layers.0.weight",
    "decoder.layers.4.bias",
]


def test_triposr_state_dict_follows_the_published_checkpoint():
    sd = _tiny_triposr().state_dict()
    assert {k.split(".")[0] for k in sd} == {"image_tokenizer", "tokenizer", "backbone", "post_processor", "decoder"}
    for k in TRIPOSR_DEEP_KEYS:
        assert k in sd, k
    # transformers 5 module names never leak into the saved layout; no bias on attention q/k/v
    assert not [k for k in sd if k.startswith("image_tokenizer") and (".layers." in k or "q_proj" in k or "mlp.fc" in k)]
    assert "backbone.transformer_blocks.0.attn1.to_q.bias" not in sd
    # the published config builds the published shapes (meta device: no memory)
    with torch.device("meta"):
        full = triposr.TSR(triposr.PUBLISHED_CONFIG)
    fsd = full.state_dict()
    expect = {
        "image_tokenizer.model.embeddings.position_embeddings": (1, 197, 768),
        "image_tokenizer.model.encoder.layer.11.attention.attention.query.weight": (768, 768),
        "tokenizer.embeddings": (3, 1024, 32, 32),
        "backbone.transformer_blocks.15.attn2.to_k.weight": (1024, 768),
        "backbone.transformer_blocks.15.ff.net.0.proj.weight": (8192, 1024),
        "post_processor.upsample.weight": (1024, 40, 2, 2),
        "decoder.layers.0.weight": (64, 120),
        "decoder.layers.18.weight": (4, 64),
    }
    for k, shape in expect.items():
        assert tuple(fsd[k].shape) == shape, k
    assert "decoder.layers.20.weight" not in fsd


def test_triposr_loads_ckpt_and_safetensors_through_the_registry(tmp_path):
    model = _tiny_triposr()
    ref = model.state_dict()
    triposr.save(model, tmp_path / "models" / "tripo-sr")  # $STUDIO_MODELS/tripo-sr: config.yaml + model.ckpt
    cfg_text = (tmp_path / "models" / "tripo-sr" / "config.yaml").read_text()
    assert "tsr.models.tokenizers.image.DINOSingleImageTokenizer" in cfg_text
    loaded = load_model("tripo-sr")
    assert list(loaded.state_dict()) == list(ref)
    assert all(torch.equal(loaded.state_dict()[k], ref[k]) for k in ref)
    assert load_model("tripo-sr") is loaded  # warm: no reload
    # safetensors through an explicit folder, and a torch .ckpt keyed with transformers-5 ViT names
    st = triposr.save(model, tmp_path / "st", fmt="safetensors")
    assert torch.equal(triposr.load(st).tokenizer.embeddings, model.tokenizer.embeddings)
    v5 = {k.replace("encoder.layer.", "layers.").replace("attention.attention.query", "attention.q_proj"): v for k, v in ref.items()}
    torch.save(v5, tmp_path / "st" / "model.ckpt")
    (tmp_path / "st" / "model.safetensors").unlink()
    assert torch.equal(triposr.load(tmp_path / "st").image_tokenizer.model.layers[0].attention.q_proj.weight,
                       ref["image_tokenizer.model.encoder.layer.0.attention.attention.query.weight"])
    # a checkpoint missing a tensor is refused, naming the file
    del v5["decoder.layers.0.weight"]
    torch.save(v5, tmp_path / "st" / "model.ckpt")
    with pytest.raises(InvalidAssetError, match="model.ckpt"):
        triposr.load(tmp_path / "st")


def test_instant_mesh_layout_and_lightning_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = lrm.InstantMesh(lrm.tiny_config())
    sd = model.state_dict()
    assert {k.split(".")[0] for k in sd} == {"encoder", "transformer", "synthesizer"}
    for k in ["encoder.model.embeddings.position_embeddings", "encoder.model.encoder.layer.0.attention.attention.query.weight",
              "encoder.model.encoder.layer.0.adaLN_modulation.1.weight", "encoder.model.layernorm.weight",
              "encoder.camera_embedder.0.weight", "encoder.camera_embedder.2.bias", "transformer.pos_embed",
              "transformer.layers.0.cross_attn.q_proj_weight", "transformer.layers.0.cross_attn.k_proj_weight",
              "transformer.layers.0.self_attn.in_proj_weight", "transformer.layers.0.cross_attn.out_proj.weight",
              "transformer.layers.0.mlp.3.weight", "transformer.deconv.weight", "synthesizer.decoder.net_sdf.6.weight",
              "synthesizer.decoder.net_weight.0.weight", "synthesizer.decoder.net_deformation.6.bias"]:
        assert k in sd, k
    assert not [k for k in sd if "pooler" in k or k.endswith("in_proj_bias")]
    with torch.device("meta"):
        full = lrm.InstantMesh(lrm.PUBLISHED["instant-mesh-large"]).state_dict()
    assert tuple(full["transformer.pos_embed"].shape) == (1, 3 * 32 * 32, 1024)
    assert tuple(full["transformer.layers.15.cross_attn.k_proj_weight"].shape) == (1024, 768)
    assert tuple(full["transformer.deconv.weight"].shape) == (1024, 80, 2, 2)
    assert tuple(full["synthesizer.decoder.net_weight.0.weight"].shape) == (64, 8 * 3 * 80)
    assert tuple(full["encoder.model.encoder.layer.11.adaLN_modulation.1.weight"].shape) == (4 * 768, 768)
    # Lightning checkpoint {"state_dict": {"lrm_generator.<key>": ...}} in $STUDIO_MODELS/instant-mesh
    lrm.save(model, tmp_path / "models" / "instant-mesh")
    raw = torch.load(tmp_path / "models" / "instant-mesh" / "instant_mesh_large.ckpt", weights_only=True)
    assert all(k.startswith("lrm_generator.") for k in raw["state_dict"])
    loaded = load_model("instant-mesh")
    assert all(torch.equal(loaded.state_dict()[k], sd[k]) for k in sd)


def test_missing_weights_raise_with_repo_ids():
    img = _image()
    with pytest.raises(ModelUnavailableError, match="stabilityai/TripoSR"):
        image_to_asset(img, method="feedforward")
    with pytest.raises(ModelUnavailableError) as e:
        image_to_asset(img, method="auto")
    assert "stabilityai/TripoSR" in str(e.value) and "stabilityai/stable-zero123" in str(e.value)
    with pytest.raises(ModelUnavailableError, match="TencentARC/InstantMesh"):
        load_model("instant-mesh")
    with pytest.raises(ModelUnavailableError, match="stabilityai/stable-zero123"):
        image_to_asset(img, method="fit")
    with pytest.raises(ValueError, match="unknown method"):
        image_to_asset(img, method="magic")


def test_published_style_config_yaml_is_read_and_foreign_classes_refused(tmp_path):
    import yaml

    model = _tiny_triposr()
    folder = triposr.save(model, tmp_path / "w")
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    cfg["backbone"]["in_channels"] = "${tokenizer.num_channels}"  # OmegaConf interpolation, as published
    cfg["post_processor"]["in_channels"] = "${tokenizer.num_channels}"
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert triposr.load(folder).backbone.proj_in.in_features == cfg["tokenizer"]["num_channels"]
    cfg["decoder_cls"] = "os.system"
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(InvalidAssetError, match="decoder_cls"):
        triposr.load(folder)


def test_auto_picks_fit_when_feedforward_weights_are_absent(tmp_path):
    (tmp_path / "models" / "stable-zero123").mkdir(parents=True)
    (tmp_path / "models" / "stable-zero123" / "model_index.json").write_text("{}")
    calls = {}

    def multiview(image, progress=None, cancel=None):
        calls["image"] = image.shape
        cams = _rig(6, 32)
        return Views(np.full((6, 32, 32, 3), 0.5, np.float32), cams)

    def fit(views, progress=None, cancel=None):
        calls["views"] = len(views)
        return Asset(meshes=[Mesh.from_arrays(np.eye(3), [[0, 1, 2]])], metadata=AssetMetadata())

    asset = image_to_asset(_image(), method="auto", multiview_fn=multiview, fit_fn=fit)
    assert calls == {"image": (320, 320, 3), "views": 6}
    assert asset.metadata.method == "fit" and asset.metadata.model == "stable-zero123"
    assert "fell back" in asset.metadata.extras["route"] and "stabilityai/TripoSR" in asset.metadata.extras["route"]


# ----------------------------------------------------------------------------- single image end to end


def test_single_image_to_validated_glb_and_usdz(tmp_path):
    model = _tiny_triposr()
    folder = triposr.save(model, tmp_path / "w")
    thr = _threshold(model)
    progress = []
    asset = image_to_asset(_image(), method="auto", params=FeedForwardParams(threshold=thr, **FAST), local_path=folder,
                           progress=lambda f, m: progress.append(f))
    assert asset.metadata.method == "feedforward" and asset.metadata.model == "tripo-sr"
    assert asset.metadata.extras["repo_id"] == "stabilityai/TripoSR" and asset.metadata.extras["foreground"] == "alpha"
    (mesh,) = asset.meshes
    assert mesh.uvs and mesh.uvs[0].shape == (len(mesh.vertices), 2)
    tex = mesh.material.base_color_texture
    assert tex is not None and tex.image.shape == (128, 128, 3) and tex.image.dtype == np.uint8
    ext = asset.bounds()[1] - asset.bounds()[0]
    assert ext.max() == pytest.approx(1.0, abs=1e-6)  # size_m
    assert np.allclose(asset.bounds().sum(0), 0, atol=1e-6)  # centred
    assert progress[-1] == pytest.approx(1.0) and progress == sorted(progress)
    for suffix in (".glb", ".usdz"):
        out = asset_io.save(asset, tmp_path / f"a{suffix}", validate=True)
        assert out.stat().st_size > 0
    back = asset_io.load(tmp_path / "a.glb")
    assert back.triangle_count == asset.triangle_count


def test_same_model_and_image_give_identical_meshes(tmp_path):
    model = _tiny_triposr(3)
    thr = _threshold(model)
    params = FeedForwardParams(threshold=thr, texture=False, **{k: v for k, v in FAST.items() if k != "texture_size"})
    a = single_image_to_asset(prepare_image(_image(), 64).image, model, params)
    b = single_image_to_asset(prepare_image(_image(), 64).image, _tiny_triposr(3), params)
    c = single_image_to_asset(prepare_image(_image((30, 200, 90)), 64).image, model, params)
    assert np.array_equal(a.meshes[0].vertices, b.meshes[0].vertices)
    assert np.array_equal(a.meshes[0].faces, b.meshes[0].faces)
    assert np.array_equal(a.meshes[0].colors, b.meshes[0].colors)
    assert a.meshes[0].colors.shape == (len(a.meshes[0].vertices), 4)
    assert not (len(a.meshes[0].vertices) == len(c.meshes[0].vertices) and np.array_equal(a.meshes[0].colors, c.meshes[0].colors))


def test_cancel_stops_between_density_chunks():
    seen = []

    def field(p):
        seen.append(len(p))
        return p.norm(dim=1)

    with pytest.raises(CancelledError, match="chunk 4/"):
        query_grid(field, 40, -1, 1, chunk=4096, cancel=lambda: len(seen) >= 3)
    assert seen == [4096, 4096, 4096]
    model = _tiny_triposr()
    with pytest.raises(CancelledError):
        single_image_to_asset(np.full((64, 64, 3), 0.5, np.float32), model, FeedForwardParams(**FAST), cancel=lambda: True)


# ----------------------------------------------------------------------------- field → surface


def test_density_grid_has_the_configured_resolution_and_values():
    f = lambda p: p[:, 0] * 100 + p[:, 1] * 10 + p[:, 2]  # noqa: E731
    g = query_grid(f, 17, -0.5, 0.5, chunk=100)
    assert g.shape == (17, 17, 17) and g.dtype == np.float32
    ax = np.linspace(-0.5, 0.5, 17, dtype=np.float32)
    for i, j, k in [(0, 0, 0), (16, 3, 9), (5, 16, 0)]:
        assert g[i, j, k] == pytest.approx(ax[i] * 100 + ax[j] * 10 + ax[k], abs=1e-4)
    with pytest.raises(EmptyResultError):
        surface_from_grid(np.zeros((8, 8, 8)), 0.5, -1, 1)


def test_marching_cubes_on_an_analytic_sphere_is_watertight_and_close():
    import trimesh

    r, res = 0.6, 64
    g = query_grid(lambda p: r - p.norm(dim=1), res, -1, 1)
    v, f = surface_from_grid(g, 0.0, -1, 1)
    tm = trimesh.Trimesh(v, f, process=False)
    assert tm.is_watertight and tm.volume > 0  # closed, normals out
    voxel = 2 / (res - 1)
    assert np.abs(np.linalg.norm(v, axis=1) - r).max() < 0.5 * voxel
    # Chamfer distance to the true sphere (surface samples both ways)
    pts = tm.sample(4000, seed=0) if "seed" in tm.sample.__code__.co_varnames else tm.sample(4000)
    assert np.abs(np.linalg.norm(pts, axis=1) - r).mean() < 0.1 * voxel
    assert tm.volume == pytest.approx(4 / 3 * np.pi * r**3, rel=0.02)
    # a field cut by the box still gives a closed surface
    v2, f2 = surface_from_grid(query_grid(lambda p: 1.2 - p.norm(dim=1), 24, -1, 1), 0.0, -1, 1)
    assert trimesh.Trimesh(v2, f2, process=False).is_watertight


def test_chunked_query_keeps_memory_bounded_at_256():
    code = textwrap.dedent("""
        import resource, json, torch
        torch.set_num_threads(1)
        from studio.pipelines.feedforward.triplane import query_grid
        f = lambda p: 0.5 - p.norm(dim=1)
        query_grid(f, 16, -1, 1, chunk=4096)  # warm up allocator and imports
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        g = query_grid(f, 256, -1, 1, chunk=65536)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"extra_mb": (peak - base) / 1024, "shape": g.shape, "inside": int((g > 0).sum())}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["shape"] == [256, 256, 256]
    # the float32 result alone is 64 MiB; unchunked points + features would add > 200 MiB
    assert res["extra_mb"] < 64 + 48, res
    assert res["inside"] > 0


# ----------------------------------------------------------------------------- sparse views


def _look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, -1.0, 0.0])
    x /= np.linalg.norm(x)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, np.cross(z, x), z, eye
    return m


def _rig(n: int, size: int, centre=(0.0, 0.0, 0.0), radius: float = 2.0) -> Cameras:
    """n OpenCV cameras on alternating +20/-10 degree rings (zero123++'s rig) around `centre`."""
    c = np.asarray(centre, float)
    c2w = []
    for i in range(n):
        az, el = np.radians(30 + 60 * i), np.radians(20 if i % 2 == 0 else -10)
        c2w.append(_look_at(c + radius * np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)]), c))
    K = np.tile(np.array([[size * 1.8, 0, size / 2], [0, size * 1.8, size / 2], [0, 0, 1.0]]), (n, 1, 1))
    return Cameras(K, np.stack(c2w), size, size)


def test_camera_normalisation_matches_instant_mesh_rig():
    cams = _rig(6, 32, centre=(0.3, 1.0, -0.2), radius=1.5)
    norm = lrm.normalisation(cams, 4.0)
    vec = lrm.camera_vectors(cams, norm)
    assert vec.shape == (6, 16) and vec.dtype == np.float32
    t = vec[:, [3, 7, 11]]
    assert np.allclose(np.linalg.norm(t, axis=1), 4.0, atol=1e-4)  # InstantMesh's radius
    # elevations +20 / -10 show up on InstantMesh's +Z up axis
    assert np.allclose(np.degrees(np.arcsin(t[:, 2] / 4.0)), [20, -10] * 3, atol=1e-3)
    r = vec[:, :12].reshape(6, 3, 4)[:, :, :3]
    assert np.allclose(r @ r.transpose(0, 2, 1), np.eye(3), atol=1e-5)
    # OpenGL: the camera's -z axis (3rd column) looks at the origin
    assert np.allclose(r[:, :, 2], t / 4.0, atol=1e-5)
    assert np.allclose(vec[:, 12:], [1.8, 1.8, 0.5, 0.5])


def test_sparse_views_to_validated_glb_in_world_frame(tmp_path):
    torch.manual_seed(0)
    model = lrm.InstantMesh(lrm.tiny_config())
    lrm.save(model, tmp_path / "models" / "instant-mesh", lightning=False)
    loaded = load_model("instant-mesh")
    centre = np.array([0.3, 1.0, -0.2])
    cams = _rig(6, 48, centre=centre, radius=1.5)
    rng = np.random.default_rng(0)
    views = Views(rng.random((6, 48, 48, 3)).astype(np.float32), cams, masks=np.ones((6, 48, 48), np.float32))
    asset = views_to_asset_feedforward(views, loaded, FeedForwardParams(resolution=0, texture_size=128, target_faces=1500))
    assert asset.metadata.method == "feedforward" and asset.metadata.model == "instant-mesh"
    assert asset.metadata.extras["grid"] == lrm.tiny_config().grid_res + 1
    lo, hi = asset.bounds()
    half = lrm.tiny_config().grid_scale / 2 * 1.5 / 4.0  # the model's cube mapped back to metres
    tol = 0.02 * half  # decimation may place a vertex a little outside the lattice
    assert np.all(lo >= centre - half - tol) and np.all(hi <= centre + half + tol)
    assert (hi - lo).max() > half  # not a speck: the surface spans the cube mapped back to metres
    assert asset_io.save(asset, tmp_path / "v.glb", validate=True).stat().st_size > 0
    again = views_to_asset_feedforward(views, loaded, FeedForwardParams(resolution=0, texture_size=128, target_faces=1500))
    assert np.array_equal(asset.meshes[0].vertices, again.meshes[0].vertices)


# ----------------------------------------------------------------------------- background removal


def test_prepare_image_keys_the_border_colour_and_recentres():
    img = np.full((100, 160, 3), 255, np.uint8)  # white background, object off-centre
    img[10:50, 100:140] = (20, 120, 200)
    prep = prepare_image(img, size=200, foreground_ratio=0.8)
    assert prep.source == "border-key" and prep.image.shape == (200, 200, 3) and prep.image.dtype == np.float32
    ys, xs = np.nonzero(prep.mask > 0.5)
    assert (ys.max() - ys.min() + 1) == pytest.approx(160, abs=3)  # 80 % of the side
    assert (ys.min() + ys.max()) / 2 == pytest.approx(99.5, abs=2) and (xs.min() + xs.max()) / 2 == pytest.approx(99.5, abs=2)
    assert np.allclose(prep.image[2, 2], 0.5, atol=1 / 255)  # grey background
    assert np.allclose(prep.image[100, 100], np.array([20, 120, 200]) / 255, atol=2 / 255)
    alpha = prepare_image(_image(), size=64)
    assert alpha.source == "alpha"
    with pytest.raises(InvalidAssetError):
        prepare_image(np.zeros((20, 20, 4), np.uint8))


class _AnalyticTSR(torch.nn.Module):
    """TripoSR with its field replaced at the function boundary by an ellipsoid in TripoSR's frame:
    semi-axes 0.6 along +X (towards the input camera), 0.3 along +Y (image right), 0.45 along +Z
    (up); density crosses 25 on the surface; colour red in front (x > 0), blue behind."""

    radius = 0.87

    def __init__(self):
        super().__init__()
        self.decoder = torch.nn.Linear(1, 1)

    def forward(self, images):
        return torch.zeros(images.shape[0], 3, 1, 2, 2)

    def query(self, code, x):
        q = (x[:, 0] / 0.6) ** 2 + (x[:, 1] / 0.3) ** 2 + (x[:, 2] / 0.45) ** 2
        front = (x[:, 0] > 0).float()[:, None]
        col = front * torch.tensor([1.0, 0, 0]) + (1 - front) * torch.tensor([0, 0, 1.0])
        return {"density_act": (25 + 50 * (1 - q))[:, None], "color": col}


def test_triposr_frame_maps_to_studio_axes_and_metres():
    params = FeedForwardParams(resolution=64, texture=False, target_faces=4000, size_m=2.0, device="cpu")
    asset = single_image_to_asset(np.full((8, 8, 3), 0.5, np.float32), _AnalyticTSR(), params)
    lo, hi = asset.bounds()
    ext = hi - lo
    # studio X = TripoSR y (0.6), Y = z (0.9, up), Z = x (1.2, towards the viewer); largest → 2 m
    assert ext == pytest.approx([1.0, 1.5, 2.0], abs=0.04)
    mesh = asset.meshes[0]
    v = mesh.world_vertices()
    front, back = v[:, 2] > 0.2, v[:, 2] < -0.2
    assert np.all(mesh.colors[front, 0] > 0.99) and np.all(mesh.colors[front, 2] < 0.01)  # red faces +Z
    assert np.all(mesh.colors[back, 2] > 0.99)
