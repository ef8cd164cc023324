"""TripoSR (stabilityai/TripoSR, MIT): one image → triplane → density/colour field → mesh.

Written in the project after the published architecture (tsr/system.py and tsr/models/ of
VAST-AI-Research/TripoSR) with the same module tree, so the published `model.ckpt` loads with
`load_state_dict(strict=True)` and no conversion script:

    image_tokenizer.model.*      DINO ViT-B/16 (transformers ViTModel, with pooler)
    tokenizer.embeddings         (3, C, P, P) learned triplane tokens (Triplane1DTokenizer)
    backbone.*                   Transformer1D: norm (GroupNorm), proj_in, transformer_blocks.N.
                                 {norm1, attn1.to_q/k/v/to_out.0, norm2, attn2.*, norm3,
                                 ff.net.0.proj (GEGLU), ff.net.2}, proj_out
    post_processor.upsample      ConvTranspose2d ×2 (TriplaneUpsampleNetwork)
    decoder.layers.N             NeRFMLP: Linear/act … → 4 outputs (density, 3 colour features)
    renderer                     TriplaneNeRFRenderer (no parameters)

The ViT keys are the transformers 4 names the checkpoint was saved with
(`encoder.layer.N.attention.attention.query`, …); with transformers ≥ 5 the module's state-dict
hooks translate them both ways (`triplane.install_checkpoint_names`).

Model space (TripoSR's): +Z up, the input view looks from +X towards the origin, image right is
+Y; the object lies in the cube [-radius, radius]³ (radius 0.87). `MODEL_TO_STUDIO` rotates it to
the studio's +Y up with the input view looking from +Z (glTF front).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MethodType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from studio.errors import InvalidAssetError, ModelUnavailableError

from .triplane import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PLANES_TRIPOSR,
    install_checkpoint_names,
    legacy_interpolate_pos_encoding,
    read_state_dict,
    sample_planes,
    vit_config_dict,
)

MODEL_NAME = "tripo-sr"
REPO_ID = "stabilityai/TripoSR"
CONFIG_NAMES = ("config.yaml", "config.json")
WEIGHT_NAMES = ("model.ckpt", "model.safetensors")

# x_s = y_t, y_s = z_t, z_s = x_t (a proper rotation)
MODEL_TO_STUDIO = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)

# stabilityai/TripoSR config.yaml (class paths dropped; the `_cls` entries are checked when present)
PUBLISHED_CONFIG: dict[str, Any] = {
    "cond_image_size": 512,
    "image_tokenizer": {"pretrained_model_name_or_path": "facebook/dino-vitb16"},
    "tokenizer": {"plane_size": 32, "num_channels": 1024},
    "backbone": {"in_channels": 1024, "num_attention_heads": 16, "attention_head_dim": 64, "num_layers": 16,
                 "cross_attention_dim": 768},
    "post_processor": {"in_channels": 1024, "out_channels": 40},
    "decoder": {"in_channels": 120, "n_neurons": 64, "n_hidden_layers": 9, "activation": "silu"},
    "renderer": {"radius": 0.87, "feature_reduction": "concat", "density_activation": "exp", "density_bias": -1.0,
                 "num_samples_per_ray": 128},
}

KNOWN_CLASSES = {
    "image_tokenizer_cls": "tsr.models.tokenizers.image.DINOSingleImageTokenizer",
    "tokenizer_cls": "tsr.models.tokenizers.triplane.Triplane1DTokenizer",
    "backbone_cls": "tsr.models.transformer.transformer_1d.Transformer1D",
    "post_processor_cls": "tsr.models.network_utils.TriplaneUpsampleNetwork",
    "decoder_cls": "tsr.models.network_utils.NeRFMLP",
    "renderer_cls": "tsr.models.nerf_renderer.TriplaneNeRFRenderer",
}


# ----------------------------------------------------------------------------- modules


class DINOSingleImageTokenizer(nn.Module):
    """images (B,3,H,W) float in [0,1] → local tokens (B, C, Nt) of a DINO ViT (CLS + patches)."""

    def __init__(self, cfg: dict):
        super().__init__()
        from transformers import ViTConfig, ViTModel

        vc = vit_config_dict(cfg.get("config", cfg.get("pretrained_model_name_or_path")))
        self.model = ViTModel(ViTConfig(**vc))
        emb = self.model.embeddings
        patch = int(vc["patch_size"])
        emb.interpolate_pos_encoding = MethodType(
            lambda self_, e, h, w: legacy_interpolate_pos_encoding(self_.position_embeddings, h, w, patch), emb)
        self.register_buffer("image_mean", torch.as_tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.as_tensor(IMAGENET_STD).reshape(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.image_mean) / self.image_std
        out = self.model(pixel_values=x, interpolate_pos_encoding=True)
        return out.last_hidden_state.permute(0, 2, 1)


class Triplane1DTokenizer(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.plane_size = int(cfg["plane_size"])
        self.num_channels = int(cfg["num_channels"])
        self.embeddings = nn.Parameter(
            torch.randn(3, self.num_channels, self.plane_size, self.plane_size) / math.sqrt(self.num_channels))

    def forward(self, batch_size: int) -> torch.Tensor:
        """(B, C, 3·P·P) tokens."""
        e = self.embeddings.reshape(3, self.num_channels, -1).permute(1, 0, 2).reshape(self.num_channels, -1)
        return e.unsqueeze(0).expand(batch_size, -1, -1)

    def detokenize(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, C, 3·P·P) → (B, 3, C, P, P)."""
        b, c, n = tokens.shape
        p = self.plane_size
        if n != 3 * p * p or c != self.num_channels:
            raise ValueError(f"tokens {tuple(tokens.shape)} do not match planes of {c}×{p}×{p}")
        return tokens.reshape(b, c, 3, p, p).permute(0, 2, 1, 3, 4)


class Attention(nn.Module):
    """diffusers-style attention (to_q/to_k/to_v without bias, to_out.0 with bias)."""

    def __init__(self, query_dim: int, heads: int, dim_head: int, cross_attention_dim: int | None = None, bias: bool = False):
        super().__init__()
        inner = heads * dim_head
        kv = cross_attention_dim or query_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=bias)
        self.to_k = nn.Linear(kv, inner, bias=bias)
        self.to_v = nn.Linear(kv, inner, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        ctx = x if context is None else context
        b, n, _ = x.shape
        q, k, v = self.to_q(x), self.to_k(ctx), self.to_v(ctx)
        split = lambda t: t.reshape(b, t.shape[1], self.heads, -1).transpose(1, 2)  # noqa: E731
        o = F.scaled_dot_product_attention(split(q), split(k), split(v))
        return self.to_out[0](o.transpose(1, 2).reshape(b, n, -1))


class GEGLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, gate = self.proj(x).chunk(2, dim=-1)
        return h * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.net:
            x = m(x)
        return x


class BasicTransformerBlock(nn.Module):
    """Pre-norm self-attention → cross-attention to the image tokens → GEGLU feed-forward."""

    def __init__(self, dim: int, heads: int, dim_head: int, cross_attention_dim: int, attention_bias: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, dim_head, bias=attention_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, dim_head, cross_attention_dim=cross_attention_dim, bias=attention_bias)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class Transformer1D(nn.Module):
    """tokens (B, C, N) + image tokens (B, L, Cimg) → (B, C, N) (residual around the whole stack)."""

    def __init__(self, cfg: dict):
        super().__init__()
        c = int(cfg["in_channels"])
        heads, dh = int(cfg.get("num_attention_heads", 16)), int(cfg.get("attention_head_dim", 88))
        inner = heads * dh
        self.norm = nn.GroupNorm(int(cfg.get("norm_num_groups", 32)), c, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(c, inner)
        self.transformer_blocks = nn.ModuleList([
            BasicTransformerBlock(inner, heads, dh, int(cfg["cross_attention_dim"]), bool(cfg.get("attention_bias", False)))
            for _ in range(int(cfg.get("num_layers", 1)))])
        self.proj_out = nn.Linear(inner, c)

    def forward(self, tokens: torch.Tensor, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        h = self.proj_in(self.norm(tokens).permute(0, 2, 1))
        for blk in self.transformer_blocks:
            h = blk(h, encoder_hidden_states)
        return self.proj_out(h).permute(0, 2, 1) + tokens


class TriplaneUpsampleNetwork(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.upsample = nn.ConvTranspose2d(int(cfg["in_channels"]), int(cfg["out_channels"]), kernel_size=2, stride=2)

    def forward(self, planes: torch.Tensor) -> torch.Tensor:
        """(B, 3, Ci, P, P) → (B, 3, Co, 2P, 2P)."""
        b = planes.shape[0]
        up = self.upsample(planes.flatten(0, 1))
        return up.reshape(b, 3, *up.shape[1:])


class NeRFMLP(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        act = {"relu": nn.ReLU, "silu": nn.SiLU}[cfg.get("activation", "relu")]
        n, w = int(cfg["n_hidden_layers"]), int(cfg["n_neurons"])
        layers: list[nn.Module] = [nn.Linear(int(cfg["in_channels"]), w, bias=cfg.get("bias", True)), act()]
        for _ in range(n - 1):
            layers += [nn.Linear(w, w, bias=cfg.get("bias", True)), act()]
        layers.append(nn.Linear(w, 4, bias=cfg.get("bias", True)))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.layers(x)
        return {"density": f[..., 0:1], "features": f[..., 1:4]}


_ACT = {"exp": torch.exp, "trunc_exp": torch.exp, "sigmoid": torch.sigmoid, "softplus": F.softplus,
        "none": lambda x: x, "relu": F.relu}


class TriplaneNeRFRenderer(nn.Module):
    """Queries of the decoder at 3D points (no parameters)."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.radius = float(cfg["radius"])
        self.feature_reduction = cfg.get("feature_reduction", "concat")
        self.density_activation = _ACT[cfg.get("density_activation", "trunc_exp")]
        self.density_bias = float(cfg.get("density_bias", -1.0))
        self.color_activation = _ACT[cfg.get("color_activation", "sigmoid")]

    def query_triplane(self, decoder: nn.Module, positions: torch.Tensor, triplane: torch.Tensor) -> dict[str, torch.Tensor]:
        """positions (N,3) model units in [-radius, radius]³; triplane (3,C,H,W) →
        density_act (N,1), color (N,3) sRGB in [0,1]."""
        feats = sample_planes(triplane, positions / self.radius, PLANES_TRIPOSR, self.feature_reduction)
        out = decoder(feats)
        return {"density_act": self.density_activation(out["density"] + self.density_bias),
                "color": self.color_activation(out["features"])}


class TSR(nn.Module):
    """The TripoSR system: image (B,H,W,3) float sRGB in [0,1] on a grey background → scene codes
    (B, 3, C, 2P, 2P) triplanes; `query` decodes density and colour at points."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.cfg = cfg
        self.cond_image_size = int(cfg["cond_image_size"])
        self.image_tokenizer = DINOSingleImageTokenizer(cfg["image_tokenizer"])
        self.tokenizer = Triplane1DTokenizer(cfg["tokenizer"])
        self.backbone = Transformer1D(cfg["backbone"])
        self.post_processor = TriplaneUpsampleNetwork(cfg["post_processor"])
        self.decoder = NeRFMLP(cfg["decoder"])
        self.renderer = TriplaneNeRFRenderer(cfg["renderer"])
        install_checkpoint_names(self, "image_tokenizer.model.")

    @property
    def radius(self) -> float:
        return self.renderer.radius

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2)
        s = self.cond_image_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, (s, s), mode="bilinear", align_corners=False, antialias=True)
        image_tokens = self.image_tokenizer(x).permute(0, 2, 1)  # (B, Nt, Cimg)
        tokens = self.backbone(self.tokenizer(images.shape[0]), encoder_hidden_states=image_tokens)
        return self.post_processor(self.tokenizer.detokenize(tokens))

    def query(self, scene_code: torch.Tensor, positions: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.renderer.query_triplane(self.decoder, positions, scene_code)


# ----------------------------------------------------------------------------- config + loading


def _interpolate(cfg: dict) -> dict:
    """Resolve OmegaConf-style `${a.b}` references (the published config uses them)."""
    pat = re.compile(r"^\$\{([A-Za-z0-9_.]+)\}$")

    def look(path: str):
        node: Any = cfg
        for part in path.split("."):
            node = node[part]
        return node

    def walk(node):
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, str) and (m := pat.match(node.strip())):
            return walk(look(m.group(1)))
        return node

    return walk(cfg)


def read_config(path: str | Path) -> dict:
    """A TripoSR config (config.yaml as published, or JSON): the module hyper-parameters, with class
    paths checked against the published ones (an unknown class is refused, never imported)."""
    import yaml

    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text()) if p.suffix in (".yaml", ".yml") else json.loads(p.read_text())
    except Exception as e:  # noqa: BLE001
        raise InvalidAssetError(p, f"unreadable TripoSR config: {e}") from e
    if not isinstance(raw, dict):
        raise InvalidAssetError(p, "a TripoSR config must be a mapping")
    for key, cls in KNOWN_CLASSES.items():
        if key in raw and raw[key] != cls:
            raise InvalidAssetError(p, f"{key} is {raw[key]!r}; this implementation builds {cls}")
    cfg = _interpolate({k: v for k, v in raw.items() if not k.endswith("_cls")})
    missing = [k for k in PUBLISHED_CONFIG if k not in cfg]
    if missing:
        raise InvalidAssetError(p, f"TripoSR config lacks {', '.join(missing)}")
    return cfg


def find_files(folder: Path) -> tuple[Path, Path]:
    """(config, weights) inside a TripoSR folder; ModelUnavailableError naming what is missing."""
    if folder.is_file():
        folder = folder.parent
    conf = next((folder / n for n in CONFIG_NAMES if (folder / n).is_file()), None)
    weights = next((folder / n for n in WEIGHT_NAMES if (folder / n).is_file()), None)
    if conf is None or weights is None:
        raise ModelUnavailableError(
            f"model {MODEL_NAME!r} ({REPO_ID}): {folder} must hold config.yaml and model.ckpt (or model.safetensors); "
            f"found {sorted(q.name for q in folder.iterdir()) if folder.is_dir() else 'nothing'}. "
            f"Run `hf download {REPO_ID} --local-dir {folder}`.")
    return conf, weights


def load(folder: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32) -> TSR:
    """Build TripoSR from `folder` (config.yaml + model.ckpt / model.safetensors) and load the
    weights strictly (every parameter present, no unknown key)."""
    conf, weights = find_files(Path(folder))
    model = TSR(read_config(conf))
    sd = read_state_dict(weights)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise InvalidAssetError(weights, f"weights do not match the TripoSR config: {e}") from e
    return model.to(device=device, dtype=dtype).eval()


def save(model: TSR, folder: str | Path, fmt: str = "ckpt") -> Path:
    """Write `model` in the published layout: config.yaml + model.ckpt (torch) or model.safetensors."""
    import yaml

    from studio.assets.atomic import write_bytes_atomic

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    cfg = {**{k: v for k, v in KNOWN_CLASSES.items()}, **model.cfg}
    write_bytes_atomic(out / "config.yaml", yaml.safe_dump(cfg, sort_keys=False).encode())
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if fmt == "safetensors":
        from safetensors.torch import save

        write_bytes_atomic(out / "model.safetensors", save(sd))
    else:
        import io

        buf = io.BytesIO()
        torch.save(sd, buf)
        write_bytes_atomic(out / "model.ckpt", buf.getvalue())
    return out


@dataclass(frozen=True)
class TinyConfig:
    """Sizes for a test/bench model of the real architecture."""

    vit_hidden: int = 32
    vit_layers: int = 1
    vit_heads: int = 2
    image_size: int = 32
    patch_size: int = 16
    cond_image_size: int = 64
    plane_size: int = 4
    channels: int = 32
    heads: int = 2
    head_dim: int = 16
    layers: int = 1
    plane_out: int = 8
    mlp_width: int = 16
    mlp_layers: int = 2
    extra: dict = field(default_factory=dict)


def tiny_config(t: TinyConfig = TinyConfig()) -> dict:
    """A TripoSR config dict of the published structure at small sizes."""
    return {
        "cond_image_size": t.cond_image_size,
        "image_tokenizer": {"config": {"hidden_size": t.vit_hidden, "num_hidden_layers": t.vit_layers,
                                       "num_attention_heads": t.vit_heads, "intermediate_size": 2 * t.vit_hidden,
                                       "image_size": t.image_size, "patch_size": t.patch_size}},
        "tokenizer": {"plane_size": t.plane_size, "num_channels": t.channels},
        "backbone": {"in_channels": t.channels, "num_attention_heads": t.heads, "attention_head_dim": t.head_dim,
                     "num_layers": t.layers, "cross_attention_dim": t.vit_hidden, "norm_num_groups": min(32, t.channels)},
        "post_processor": {"in_channels": t.channels, "out_channels": t.plane_out},
        "decoder": {"in_channels": 3 * t.plane_out, "n_neurons": t.mlp_width, "n_hidden_layers": t.mlp_layers,
                    "activation": "silu"},
        "renderer": {"radius": 0.87, "feature_reduction": "concat", "density_activation": "exp", "density_bias": -1.0},
        **t.extra,
    }
