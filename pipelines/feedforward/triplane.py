"""Shared machinery of the feed-forward triplane models (TripoSR, InstantMesh/LRM).

- `sample_planes`: bilinear features of 3D points from a triplane (the two published plane
  layouts: TripoSR's xy/xz/yz and EG3D/InstantMesh's xy/xz/zy).
- `query_grid`: a scalar field evaluated on a res³ lattice in bounded chunks, with progress and a
  cancel check between chunks (peak memory ~ chunk × feature width, not res³ × width).
- `surface_from_grid`: marching cubes (scikit-image) → the largest component, consistent winding,
  normals out.
- `textured_asset`: decimate → UV unwrap (xatlas) → base colour baked by querying the model's
  colour field at every texel's surface point → glTF PBR material → `Asset`.
- checkpoint helpers: read `.safetensors` / torch `.ckpt` (Lightning `state_dict` and a prefix
  stripped), and translate the ViT names of transformers 4 checkpoints ↔ transformers 5 modules.

Conventions: model space is each model's own (documented in its module); `to_world` (4,4) maps
model space to the studio's world (metres, +Y up). Colours from the models are sRGB in [0,1].
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from studio.errors import CancelledError, EmptyResultError, InvalidAssetError

Progress = Callable[[float, str], None] | None
Cancel = Callable[[], bool] | None

# plane layouts: for each of the 3 planes, the point axes that give its (u, v) grid_sample coordinates
PLANES_TRIPOSR = ((0, 1), (0, 2), (1, 2))  # tsr nerf_renderer.query_triplane
PLANES_EG3D = ((0, 1), (0, 2), (2, 1))  # InstantMesh renderer.utils.generate_planes (EG3D bug-fixed axes)


def check_cancel(cancel: Cancel, what: str) -> None:
    if cancel is not None and cancel():
        raise CancelledError(f"cancelled during {what}")


def report(progress: Progress, frac: float, msg: str) -> None:
    if progress is not None:
        progress(float(frac), msg)


# ----------------------------------------------------------------------------- triplane sampling


def sample_planes(planes: torch.Tensor, points: torch.Tensor, layout=PLANES_TRIPOSR, reduction: str = "concat") -> torch.Tensor:
    """Bilinear triplane features at points.

    planes: (3, C, H, W) float; points: (N, 3) in the planes' normalised cube [-1, 1]³ (outside →
    zero features, grid_sample padding 'zeros', align_corners=False as both models train).
    Returns (N, 3C) for "concat" (plane-major: plane 0's C channels first) or (N, C) for "mean"."""
    idx = torch.stack([points[:, list(ax)] for ax in layout], dim=0)  # (3, N, 2)
    out = F.grid_sample(planes, idx[:, None].to(planes.dtype), align_corners=False, mode="bilinear")  # (3, C, 1, N)
    out = out[:, :, 0].permute(2, 0, 1)  # (N, 3, C)
    if reduction == "concat":
        return out.reshape(out.shape[0], -1)
    if reduction == "mean":
        return out.mean(1)
    raise ValueError(f"unknown feature reduction {reduction!r} (concat, mean)")


def grid_points(resolution: int, lo: float, hi: float) -> np.ndarray:
    """(R,) float32 lattice coordinates from lo to hi inclusive (the same along x, y and z)."""
    return np.linspace(lo, hi, int(resolution), dtype=np.float32)


def query_grid(
    field: Callable[[torch.Tensor], torch.Tensor],
    resolution: int,
    lo: float,
    hi: float,
    chunk: int = 65536,
    device: str | torch.device = "cpu",
    progress: Progress = None,
    cancel: Cancel = None,
) -> np.ndarray:
    """Evaluate `field` ((N,3) float32 points → (N,) values) on the R³ lattice spanning [lo, hi]³.

    Returns (R,R,R) float32 indexed [ix, iy, iz]. Points are generated per chunk (never all R³×3 at
    once) and results go straight into the float32 output, so peak extra memory is about
    chunk × (the field's feature width) floats. `cancel()` is checked before every chunk."""
    r = int(resolution)
    if r < 2:
        raise ValueError(f"grid resolution must be at least 2, got {r}")
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    axis = torch.from_numpy(grid_points(r, lo, hi))
    out = np.empty(r * r * r, dtype=np.float32)
    total = r * r * r
    n_chunks = (total + chunk - 1) // chunk
    for k, start in enumerate(range(0, total, chunk)):
        check_cancel(cancel, f"density grid query (chunk {k + 1}/{n_chunks})")
        flat = torch.arange(start, min(start + chunk, total), dtype=torch.int64)
        ix, rem = flat // (r * r), flat % (r * r)
        iy, iz = rem // r, rem % r
        pts = torch.stack([axis[ix], axis[iy], axis[iz]], dim=1).to(device)
        with torch.no_grad():
            vals = field(pts)
        out[start : start + len(flat)] = vals.reshape(-1).float().cpu().numpy()
        report(progress, (k + 1) / n_chunks, f"density grid {k + 1}/{n_chunks}")
    return out.reshape(r, r, r)


# ----------------------------------------------------------------------------- surface


def surface_from_grid(grid: np.ndarray, level: float, lo: float, hi: float, keep_largest: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Iso-surface of `grid` (R,R,R, larger = inside) at `level` over the lattice [lo, hi]³.

    Marching cubes (scikit-image, gradient 'descent': the object is where values exceed level) on
    the lattice padded by one 'outside' layer (so a surface cut by the box is capped: watertight),
    then: only the largest connected component (when `keep_largest`), consistent winding with
    normals pointing out (trimesh.fix_normals; checked by a positive signed volume).
    Returns vertices (V,3) float64 in model units, faces (F,3) int64.
    Raises EmptyResultError when the field never crosses `level`."""
    import trimesh
    from skimage.measure import marching_cubes

    g = np.asarray(grid, dtype=np.float32)
    if not np.isfinite(g).all():
        g = np.nan_to_num(g, nan=level - 1.0, posinf=level + 1.0, neginf=level - 1.0)
    if not (g.max() > level > g.min()):
        raise EmptyResultError(
            f"the model's field never crosses the iso-level {level:g} (range {g.min():.3g} … {g.max():.3g}): "
            "no surface; check the input image's foreground, or the weights")
    r = g.shape[0]
    step = (hi - lo) / (r - 1)
    # one layer of 'outside' around the lattice: a surface cut by the box is closed on its faces
    g = np.pad(g, 1, mode="constant", constant_values=min(float(g.min()), level) - 1.0)
    verts, faces, _, _ = marching_cubes(g, level=level, spacing=(step, step, step), gradient_direction="descent")
    verts = np.clip(verts.astype(np.float64) - step + lo, lo, hi)
    tm = trimesh.Trimesh(verts, faces.astype(np.int64), process=True)
    if keep_largest and len(tm.faces):
        parts = tm.split(only_watertight=False)
        if len(parts) > 1:
            tm = max(parts, key=lambda p: len(p.faces))
    trimesh.repair.fix_normals(tm)
    if tm.is_volume and tm.volume < 0:
        tm.invert()
    if len(tm.faces) == 0:
        raise EmptyResultError("marching cubes produced no faces")
    return np.asarray(tm.vertices, dtype=np.float64), np.asarray(tm.faces, dtype=np.int64)


def transform_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    return points @ m[:3, :3].T + m[:3, 3]


def textured_asset(
    vertices: np.ndarray,
    faces: np.ndarray,
    color_fn: Callable[[np.ndarray], np.ndarray],
    to_world: np.ndarray,
    *,
    target_faces: int = 20_000,
    texture_size: int = 512,
    texture: bool = True,
    roughness: float = 0.8,
    metallic: float = 0.0,
    name: str = "feedforward",
    progress: Progress = None,
    cancel: Cancel = None,
):
    """Mesh in model space → studio Asset (world = to_world · model).

    color_fn: (K,3) model-space points → (K,3) sRGB in [0,1] (the model's colour field).
    texture=True: decimate to `target_faces`, unwrap, and bake the colour field at every texel's
    surface point into a texture_size² sRGB base-colour texture (seams padded as bake does);
    texture=False: vertex colours (linear RGBA, COLOR_0). Returns (Asset, info dict)."""
    from studio.assets import Asset, AssetMetadata, Material, Mesh, Texture
    from studio.assets.colour import srgb_to_linear, to_uint8

    from ..bake import make_pbr_material, pad_atlas, texel_surface
    from ..mesh_extract import decimate
    from ..uv_unwrap import UVParams, unwrap

    world = transform_points(vertices, to_world)
    mesh = Mesh.from_arrays(world, faces, name=name)
    inv = np.linalg.inv(to_world)
    info: dict = {"faces_extracted": int(len(faces))}
    if len(faces) > target_faces:
        report(progress, 0.1, f"decimating {len(faces)} → {target_faces} faces")
        mesh = decimate(mesh, target_faces, cancel=cancel)
    mesh.normals = np.asarray(mesh.geometry.vertex_normals, dtype=np.float32)
    check_cancel(cancel, "mesh finishing")
    if not texture:
        rgb = np.clip(color_fn(transform_points(mesh.vertices, inv)), 0, 1)
        mesh.colors = np.concatenate([srgb_to_linear(rgb), np.ones((len(rgb), 1))], 1).astype(np.float32)
        mesh.material = Material(name=name, metallic_factor=metallic, roughness_factor=roughness)
        info["faces"] = int(len(mesh.faces))
        return Asset(meshes=[mesh], metadata=AssetMetadata(name=name)), info
    report(progress, 0.3, "UV unwrap (xatlas)")
    uv_mesh, stats = unwrap(mesh, UVParams(resolution=texture_size), cancel=cancel)
    check_cancel(cancel, "texture baking")
    report(progress, 0.6, "baking the colour field")
    surf = texel_surface(uv_mesh, texture_size)
    rgb = np.clip(color_fn(transform_points(surf.points, inv)), 0, 1)
    img = np.zeros((texture_size * texture_size, 3))
    img[surf.texel] = rgb
    valid = np.zeros(texture_size * texture_size, bool)
    valid[surf.texel] = True
    padded = pad_atlas(img.reshape(texture_size, texture_size, 3), valid.reshape(texture_size, texture_size), 4)
    base = Texture(image=to_uint8(np.clip(padded, 0, 1)), name="baseColor")  # the field is sRGB already
    uv_mesh.material = make_pbr_material(base, metallic=metallic, roughness=roughness, name=name)
    uv_mesh.colors = None
    uv_mesh.name = name
    info.update(faces=int(len(uv_mesh.faces)), charts=stats.charts, utilisation=stats.utilisation)
    report(progress, 1.0, f"textured mesh: {len(uv_mesh.faces)} faces")
    return Asset(meshes=[uv_mesh], metadata=AssetMetadata(name=name)), info


# ----------------------------------------------------------------------------- checkpoints


def read_state_dict(path: str | Path, prefix: str | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a weight file: `.safetensors`, or a torch pickle (`.ckpt`/`.pt`/`.pth`/`.bin`,
    read with weights_only=True — never arbitrary code). A Lightning checkpoint's `state_dict` is
    unwrapped; keys starting with `prefix` (e.g. "lrm_generator.") keep only the rest."""
    p = Path(path)
    if not p.is_file():
        raise InvalidAssetError(p, "weight file not found")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(p))
        else:
            sd = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt/truncated/hostile files all end here
        raise InvalidAssetError(p, f"cannot read weights: {type(e).__name__}: {e}") from e
    if isinstance(sd, Mapping) and "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
        sd = sd["state_dict"]
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise InvalidAssetError(p, "not a state dict of tensors")
    if prefix and any(k.startswith(prefix) for k in sd):
        sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    return dict(sd)


# transformers ≥ 5 renamed ViT's modules; published checkpoints (trained on transformers 4) keep the
# old names. Same pairs as transformers' own conversion_mapping for "ViTModel", applied in order.
_VIT_V4_TO_V5 = (
    (".encoder.layer.", ".layers."),
    (".attention.attention.query.", ".attention.q_proj."),
    (".attention.attention.key.", ".attention.k_proj."),
    (".attention.attention.value.", ".attention.v_proj."),
    (".attention.output.dense.", ".attention.o_proj."),
    (".intermediate.dense.", ".mlp.fc1."),
    (".output.dense.", ".mlp.fc2."),
)
_VIT_V5_TO_V4 = (
    (".layers.", ".encoder.layer."),
    (".attention.q_proj.", ".attention.attention.query."),
    (".attention.k_proj.", ".attention.attention.key."),
    (".attention.v_proj.", ".attention.attention.value."),
    (".attention.o_proj.", ".attention.output.dense."),
    (".mlp.fc1.", ".intermediate.dense."),
    (".mlp.fc2.", ".output.dense."),
)


def vit_key_v5_to_v4(key: str) -> str:
    for a, b in _VIT_V5_TO_V4:
        key = key.replace(a, b)
    return key


def vit_key_v4_to_v5(key: str) -> str:
    for a, b in _VIT_V4_TO_V5:
        key = key.replace(a, b)
    return key


def install_checkpoint_names(module: torch.nn.Module, vit_prefix: str) -> None:
    """Make `module.state_dict()` use the published (transformers 4) names for the ViT under
    `vit_prefix` (e.g. "image_tokenizer.model."), and let `load_state_dict` accept either naming.

    Only needed when transformers' ViTModel uses the new names (transformers ≥ 5); a no-op otherwise."""
    vit = module.get_submodule(vit_prefix.rstrip("."))
    if not any(k.startswith("layers.") for k in vit.state_dict()):
        return

    def save_hook(mod, state_dict, prefix, local_metadata):
        full = prefix + vit_prefix
        items = list(state_dict.items())  # rebuilt in place so the key order is kept
        state_dict.clear()
        for k, v in items:
            state_dict[full + vit_key_v5_to_v4("." + k[len(full):])[1:] if k.startswith(full) else k] = v
        return state_dict

    def load_hook(state_dict, prefix, *args):
        full = prefix + vit_prefix
        for k in [k for k in state_dict if k.startswith(full)]:
            new = full + vit_key_v4_to_v5("." + k[len(full):])[1:]
            if new != k:
                if new in state_dict:
                    raise InvalidAssetError(None, f"checkpoint holds both {k} and {new}")
                state_dict[new] = state_dict.pop(k)

    module._register_state_dict_hook(save_hook)
    module._register_load_state_dict_pre_hook(load_hook)


def legacy_interpolate_pos_encoding(position_embeddings: torch.Tensor, height: int, width: int, patch_size: int) -> torch.Tensor:
    """ViT position embeddings resampled for a height×width input the way DINO and transformers 4
    did (bicubic with scale_factor (h+0.1)/√N — TripoSR and InstantMesh were trained with this; the
    transformers 5 version resamples to an exact size, which samples slightly different points).
    position_embeddings (1, 1+N, D) → (1, 1+h·w, D)."""
    import math

    num_positions = position_embeddings.shape[1] - 1
    h0, w0 = height // patch_size, width // patch_size
    if h0 * w0 == num_positions and height == width:
        return position_embeddings
    side = int(math.sqrt(num_positions))
    cls, patch = position_embeddings[:, :1], position_embeddings[:, 1:]
    dim = position_embeddings.shape[-1]
    patch = patch.reshape(1, side, side, dim).permute(0, 3, 1, 2)
    patch = F.interpolate(patch, scale_factor=((h0 + 0.1) / side, (w0 + 0.1) / side), mode="bicubic", align_corners=False)
    if patch.shape[-2:] != (h0, w0):  # float rounding in scale_factor: fall back to the exact size
        patch = F.interpolate(patch, size=(h0, w0), mode="bicubic", align_corners=False)
    return torch.cat([cls, patch.permute(0, 2, 3, 1).reshape(1, -1, dim)], dim=1)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# facebook/dino-vitb16's config.json (the encoder both published models start from), so the real
# checkpoints build without network access; transformers 4 defaults for everything not listed.
DINO_VITB16 = {
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
    "initializer_range": 0.02, "layer_norm_eps": 1e-12, "image_size": 224, "patch_size": 16,
    "num_channels": 3, "qkv_bias": True,
}


def vit_config_dict(spec) -> dict:
    """ViT hyper-parameters from a config entry: a dict (used as is over DINO_VITB16), the name
    "facebook/dino-vitb16" (built in), or a path to a config.json."""
    import json

    if isinstance(spec, Mapping):
        return {**DINO_VITB16, **dict(spec)}
    if spec in (None, "facebook/dino-vitb16"):
        return dict(DINO_VITB16)
    p = Path(str(spec))
    if p.is_dir():
        p = p / "config.json"
    if p.is_file():
        return {**DINO_VITB16, **json.loads(p.read_text())}
    raise InvalidAssetError(p, "ViT config not found (expected facebook/dino-vitb16, a config.json or an inline dict)")
