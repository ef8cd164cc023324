"""InstantMesh / LRM-class sparse-view reconstruction: posed views → triplane → SDF/colour → mesh.

Written in the project after TencentARC/InstantMesh (src/models/lrm_mesh.py, encoder/dino.py,
encoder/dino_wrapper.py, decoder/transformer.py, renderer/synthesizer_mesh.py) with the same module
tree, so the published `instant_mesh_large.ckpt` (a Lightning checkpoint whose `state_dict` keys
start with `lrm_generator.`) loads strictly without conversion:

    encoder.model.*                   DINO ViT-B/16 whose layers carry adaLN_modulation (SiLU, Linear
                                      → 4·D: shift/scale before attention and before the MLP), no pooler;
                                      transformers 4 names (encoder.layer.N.attention.attention.query …)
    encoder.camera_embedder.{0,2}     Linear(16→D), SiLU, Linear(D→D): the camera → adaLN input
    transformer.pos_embed             (1, 3·r², D) learned triplane tokens
    transformer.layers.N.*            norm1, cross_attn (nn.MultiheadAttention, kdim = image dim, no
                                      bias), norm2, self_attn, norm3, mlp.{0,3}
    transformer.norm, transformer.deconv
    synthesizer.decoder.net_{sdf,rgb,deformation,weight}.{0,2,4,6}   OSGDecoder MLPs

Camera input (16 numbers per view, as InstantMesh's `get_zero123plus_input_cameras`): the first
three rows of the OpenGL camera-to-world matrix (x right, y up, z back) in InstantMesh's world
(+Z up), then fx/W, fy/H, cx/W, cy/H. Studio cameras (OpenCV, +Y up, metres) are converted: the
object is recentred on the point the cameras look at and scaled so the mean camera distance is
`camera_radius` (4.0 in InstantMesh's rig), and the mesh is mapped back to metres afterwards.

Mesh extraction: marching cubes on net_sdf sampled on a (grid_res+1)³ lattice spanning
±grid_scale/2 (FlexiCubes' grid; its learned deformation and weights are not used — marching cubes
on the same SDF instead of FlexiCubes, documented as an approximation). Negative SDF = inside.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from studio.errors import InvalidAssetError, ModelUnavailableError

from .triplane import IMAGENET_MEAN, IMAGENET_STD, PLANES_EG3D, legacy_interpolate_pos_encoding, read_state_dict, sample_planes

MODEL_NAME = "instant-mesh"
REPO_ID = "TencentARC/InstantMesh"
WEIGHT_NAMES = ("instant_mesh_large.ckpt", "instant_mesh_base.ckpt", "model.safetensors", "model.ckpt")
CKPT_PREFIX = "lrm_generator."

# InstantMesh world: +Z up. studio (x, y, z) → InstantMesh (x, -z, y) (a proper rotation)
STUDIO_TO_MODEL = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass(frozen=True)
class LRMConfig:
    """InstantMesh's `model_config.params` (configs/instant-mesh-large.yaml) plus the ViT sizes
    (facebook/dino-vitb16 for the published models) and the inference conventions."""

    encoder_feat_dim: int = 768
    transformer_dim: int = 1024
    transformer_layers: int = 16
    transformer_heads: int = 16
    triplane_low_res: int = 32
    triplane_high_res: int = 64
    triplane_dim: int = 80
    rendering_samples_per_ray: int = 128
    grid_res: int = 128
    grid_scale: float = 2.1
    vit_layers: int = 12
    vit_heads: int = 12
    vit_mlp: int = 3072
    vit_image_size: int = 224
    patch_size: int = 16
    input_size: int = 320
    camera_radius: float = 4.0


PUBLISHED = {
    "instant-mesh-large": LRMConfig(),
    "instant-mesh-base": LRMConfig(transformer_layers=12, triplane_dim=40, rendering_samples_per_ray=96),
}


# ----------------------------------------------------------------------------- encoder: DINO ViT with adaLN


class _SelfAttention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        split = lambda t: t.reshape(b, n, self.heads, -1).transpose(1, 2)  # noqa: E731
        o = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)))
        return o.transpose(1, 2).reshape(b, n, d)


class _Dense(nn.Module):
    def __init__(self, i: int, o: int):
        super().__init__()
        self.dense = nn.Linear(i, o)


class _Attention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.attention = _SelfAttention(d, heads)
        self.output = _Dense(d, d)


class ViTLayer(nn.Module):
    """Pre-norm ViT block whose two LayerNorm outputs are modulated by the camera (adaLN)."""

    def __init__(self, d: int, heads: int, mlp: int, eps: float = 1e-12):
        super().__init__()
        self.attention = _Attention(d, heads)
        self.intermediate = _Dense(d, mlp)
        self.output = _Dense(mlp, d)
        self.layernorm_before = nn.LayerNorm(d, eps=eps)
        self.layernorm_after = nn.LayerNorm(d, eps=eps)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 4 * d))
        nn.init.zeros_(self.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.adaLN_modulation[-1].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift_msa, scale_msa, shift_mlp, scale_mlp = self.adaLN_modulation(cond).chunk(4, dim=1)
        h = self.layernorm_before(x) * (1 + scale_msa[:, None]) + shift_msa[:, None]
        x = x + self.attention.output.dense(self.attention.attention(h))
        h = self.layernorm_after(x) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
        return x + self.output.dense(F.gelu(self.intermediate.dense(h)))


class _PatchEmbeddings(nn.Module):
    def __init__(self, d: int, patch: int):
        super().__init__()
        self.projection = nn.Conv2d(3, d, kernel_size=patch, stride=patch)


class _Embeddings(nn.Module):
    def __init__(self, d: int, patch: int, image_size: int):
        super().__init__()
        self.patch_size = patch
        self.cls_token = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.patch_embeddings = _PatchEmbeddings(d, patch)
        self.position_embeddings = nn.Parameter(torch.randn(1, (image_size // patch) ** 2 + 1, d) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        e = self.patch_embeddings.projection(x).flatten(2).transpose(1, 2)
        e = torch.cat([self.cls_token.expand(b, -1, -1), e], dim=1)
        return e + legacy_interpolate_pos_encoding(self.position_embeddings, h, w, self.patch_size)


class _Encoder(nn.Module):
    def __init__(self, c: LRMConfig):
        super().__init__()
        self.layer = nn.ModuleList([ViTLayer(c.encoder_feat_dim, c.vit_heads, c.vit_mlp) for _ in range(c.vit_layers)])


class ModulatedViT(nn.Module):
    """InstantMesh's dino.ViTModel(add_pooling_layer=False): images (B,3,H,W) normalised, cond
    (B,D) → last_hidden_state (B, 1+HW/p², D)."""

    def __init__(self, c: LRMConfig):
        super().__init__()
        self.embeddings = _Embeddings(c.encoder_feat_dim, c.patch_size, c.vit_image_size)
        self.encoder = _Encoder(c)
        self.layernorm = nn.LayerNorm(c.encoder_feat_dim, eps=1e-12)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.embeddings(x)
        for layer in self.encoder.layer:
            h = layer(h, cond)
        return self.layernorm(h)


class DinoWrapper(nn.Module):
    def __init__(self, c: LRMConfig):
        super().__init__()
        d = c.encoder_feat_dim
        self.model = ModulatedViT(c)
        self.camera_embedder = nn.Sequential(nn.Linear(16, d), nn.SiLU(), nn.Linear(d, d))
        self.register_buffer("image_mean", torch.as_tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.as_tensor(IMAGENET_STD).reshape(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
        """images (B,V,3,H,W) in [0,1]; cameras (B,V,16) → ((B·V), L, D)."""
        x = (images.flatten(0, 1) - self.image_mean) / self.image_std
        return self.model(x, self.camera_embedder(cameras).flatten(0, 1))


# ----------------------------------------------------------------------------- triplane transformer


class BasicTransformerBlock(nn.Module):
    def __init__(self, inner_dim: int, cond_dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(inner_dim)
        self.cross_attn = nn.MultiheadAttention(inner_dim, num_heads, kdim=cond_dim, vdim=cond_dim, bias=False, batch_first=True)
        self.norm2 = nn.LayerNorm(inner_dim)
        self.self_attn = nn.MultiheadAttention(inner_dim, num_heads, bias=False, batch_first=True)
        self.norm3 = nn.LayerNorm(inner_dim)
        hidden = int(inner_dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(inner_dim, hidden), nn.GELU(), nn.Dropout(0.0), nn.Linear(hidden, inner_dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = x + self.cross_attn(self.norm1(x), cond, cond, need_weights=False)[0]
        h = self.norm2(x)
        x = x + self.self_attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm3(x))


class TriplaneTransformer(nn.Module):
    def __init__(self, c: LRMConfig):
        super().__init__()
        self.low = c.triplane_low_res
        d = c.transformer_dim
        self.pos_embed = nn.Parameter(torch.randn(1, 3 * self.low ** 2, d) * (1.0 / d) ** 0.5)
        self.layers = nn.ModuleList([BasicTransformerBlock(d, c.encoder_feat_dim, c.transformer_heads) for _ in range(c.transformer_layers)])
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.deconv = nn.ConvTranspose2d(d, c.triplane_dim, kernel_size=2, stride=2, padding=0)

    def forward(self, image_feats: torch.Tensor) -> torch.Tensor:
        """image_feats (N, L, Dimg) → planes (N, 3, C, 2r, 2r)."""
        n, r = image_feats.shape[0], self.low
        x = self.pos_embed.repeat(n, 1, 1)
        for layer in self.layers:
            x = layer(x, image_feats)
        x = self.norm(x).view(n, 3, r, r, -1).permute(1, 0, 4, 2, 3).reshape(3 * n, -1, r, r)
        x = self.deconv(x)
        return x.view(3, n, *x.shape[-3:]).permute(1, 0, 2, 3, 4).contiguous()


# ----------------------------------------------------------------------------- synthesizer


def _mlp(i: int, hidden: int, o: int, layers: int) -> nn.Sequential:
    mods = [nn.Linear(i, hidden), nn.ReLU(), *itertools.chain(*[[nn.Linear(hidden, hidden), nn.ReLU()] for _ in range(layers - 2)]),
            nn.Linear(hidden, o)]
    return nn.Sequential(*mods)


class OSGDecoder(nn.Module):
    def __init__(self, n_features: int, hidden_dim: int = 64, num_layers: int = 4):
        super().__init__()
        self.net_sdf = _mlp(3 * n_features, hidden_dim, 1, num_layers)
        self.net_rgb = _mlp(3 * n_features, hidden_dim, 3, num_layers)
        self.net_deformation = _mlp(3 * n_features, hidden_dim, 3, num_layers)
        self.net_weight = _mlp(8 * 3 * n_features, hidden_dim, 21, num_layers)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)


class TriplaneSynthesizer(nn.Module):
    box_warp = 2.0

    def __init__(self, c: LRMConfig):
        super().__init__()
        self.decoder = OSGDecoder(c.triplane_dim)

    def features(self, planes: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """planes (3,C,H,W), points (N,3) InstantMesh world → (N, 3C)."""
        return sample_planes(planes, points * (2.0 / self.box_warp), PLANES_EG3D, "concat")

    def sdf(self, planes: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        return self.decoder.net_sdf(self.features(planes, points))[:, 0]

    def rgb(self, planes: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder.net_rgb(self.features(planes, points))) * (1 + 2 * 0.001) - 0.001


class InstantMesh(nn.Module):
    def __init__(self, cfg: LRMConfig = LRMConfig()):
        super().__init__()
        self.cfg = cfg
        self.encoder = DinoWrapper(cfg)
        self.transformer = TriplaneTransformer(cfg)
        self.synthesizer = TriplaneSynthesizer(cfg)

    def forward_planes(self, images: torch.Tensor, cameras: torch.Tensor) -> torch.Tensor:
        """images (B,V,3,H,W) in [0,1], cameras (B,V,16) → planes (B,3,C,2r,2r)."""
        b = images.shape[0]
        feats = self.encoder(images, cameras)
        return self.transformer(feats.reshape(b, -1, feats.shape[-1]))


# ----------------------------------------------------------------------------- cameras


def normalisation(cameras, camera_radius: float) -> np.ndarray:
    """(4,4) studio world → InstantMesh world: centre on the point nearest to every camera's optical
    axis (least squares), scale so the mean camera distance is `camera_radius`, rotate +Y up → +Z up."""
    c2w = np.asarray(cameras.cam_to_world, dtype=np.float64)
    o, d = c2w[:, :3, 3], c2w[:, :3, 2]
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    a = np.zeros((3, 3))
    rhs = np.zeros(3)
    for oi, di in zip(o, d):
        p = np.eye(3) - np.outer(di, di)
        a += p
        rhs += p @ oi
    centre = np.linalg.lstsq(a, rhs, rcond=None)[0] if len(o) > 1 else o[0] + d[0] * camera_radius
    dist = float(np.linalg.norm(o - centre, axis=1).mean())
    if dist <= 0:
        raise ValueError("cameras coincide with their look-at point")
    s = camera_radius / dist
    t = np.eye(4)
    t[:3, 3] = -centre
    sc = np.diag([s, s, s, 1.0])
    return STUDIO_TO_MODEL @ sc @ t


def camera_vectors(cameras, norm: np.ndarray) -> np.ndarray:
    """(V,16) float32 InstantMesh camera vectors for studio `cameras` under `norm` (see module doc)."""
    out = []
    for k in range(len(cameras)):
        c2w = norm @ np.asarray(cameras.cam_to_world[k], dtype=np.float64) @ CV_TO_GL
        r = c2w[:3, :3]
        r = r / np.linalg.norm(r, axis=0, keepdims=True)  # undo the uniform scale on the rotation
        m = np.concatenate([r, c2w[:3, 3:4]], axis=1)
        K = cameras.K[k]
        out.append(np.concatenate([m.reshape(-1), [K[0, 0] / cameras.width, K[1, 1] / cameras.height,
                                                   K[0, 2] / cameras.width, K[1, 2] / cameras.height]]))
    return np.asarray(out, dtype=np.float32)


# ----------------------------------------------------------------------------- loading


def config_for(folder: Path, weights: Path) -> LRMConfig:
    """config.json (LRMConfig fields) or configs/instant-mesh-*.yaml style `model_config.params`
    in the folder; else the published config named after the weight file."""
    import yaml

    for name in ("config.json", "config.yaml", "instant-mesh-large.yaml", "instant-mesh-base.yaml"):
        p = folder / name
        if p.is_file():
            try:
                raw = json.loads(p.read_text()) if p.suffix == ".json" else yaml.safe_load(p.read_text())
            except Exception as e:  # noqa: BLE001
                raise InvalidAssetError(p, f"unreadable InstantMesh config: {e}") from e
            if isinstance(raw, dict) and "model_config" in raw:
                raw = raw["model_config"].get("params", {})
            known = set(LRMConfig.__dataclass_fields__)
            unknown = [k for k in raw if k not in known and k not in ("encoder_freeze", "encoder_model_name")]
            if unknown:
                raise InvalidAssetError(p, f"unknown InstantMesh config keys: {', '.join(unknown)}")
            return LRMConfig(**{k: v for k, v in raw.items() if k in known})
    return PUBLISHED["instant-mesh-base" if "base" in weights.name else "instant-mesh-large"]


def load(folder: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32) -> InstantMesh:
    """Build InstantMesh from `folder` (instant_mesh_large.ckpt as published, or model.safetensors
    + config.json) and load its weights strictly."""
    folder = Path(folder)
    if folder.is_file():
        weights, folder = folder, folder.parent
    else:
        weights = next((folder / n for n in WEIGHT_NAMES if (folder / n).is_file()), None)
    if weights is None:
        raise ModelUnavailableError(
            f"model {MODEL_NAME!r} ({REPO_ID}): {folder} holds none of {', '.join(WEIGHT_NAMES)}. "
            f"Run `hf download {REPO_ID} instant_mesh_large.ckpt --local-dir {folder}`.")
    model = InstantMesh(config_for(folder, weights))
    sd = read_state_dict(weights, prefix=CKPT_PREFIX)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise InvalidAssetError(weights, f"weights do not match the InstantMesh config: {e}") from e
    return model.to(device=device, dtype=dtype).eval()


def save(model: InstantMesh, folder: str | Path, lightning: bool = True) -> Path:
    """Write `model` in the published layout: a Lightning-style instant_mesh_large.ckpt
    ({"state_dict": {"lrm_generator.<key>": tensor}}) + config.json, or model.safetensors."""
    import io

    from studio.assets.atomic import write_bytes_atomic

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / "config.json", json.dumps(asdict(model.cfg), indent=1).encode())
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if lightning:
        buf = io.BytesIO()
        torch.save({"state_dict": {CKPT_PREFIX + k: v for k, v in sd.items()}}, buf)
        write_bytes_atomic(out / "instant_mesh_large.ckpt", buf.getvalue())
    else:
        from safetensors.torch import save as st_save

        write_bytes_atomic(out / "model.safetensors", st_save(sd))
    return out


def tiny_config() -> LRMConfig:
    """A small InstantMesh of the published structure (image and transformer widths differ, as
    published, so cross-attention keeps separate q/k/v projection weights)."""
    return LRMConfig(encoder_feat_dim=32, transformer_dim=48, transformer_layers=1, transformer_heads=2, triplane_low_res=4,
                     triplane_dim=8, grid_res=24, vit_layers=1, vit_heads=2, vit_mlp=64, vit_image_size=32,
                     input_size=64)
