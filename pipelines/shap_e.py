"""Text → 3D and image → 3D with diffusers' Shap-E (ShapEPipeline / ShapEImg2ImgPipeline) to a mesh Asset.

The prior runs through the pipeline with `output_type="latent"`; the latent is then decoded by the
pipeline's own `ShapERenderer.decode_to_mesh` (the STF SDF on a grid_size³ grid + marching cubes,
what `output_type="mesh"` does with grid 128), so the grid resolution is a parameter.
`mesh_output_to_asset` turns a diffusers `MeshDecoderOutput` into a studio Asset:
Shap-E's frame is +Z up in a [-1,1]³ box → rotated −90° about X to the studio's +Y up (metres,
scaled by `scale`); triangles are wound outwards (flipped when the enclosed signed volume is
negative); its R/G/B vertex channels are linear (diffusers converts them) → COLOR_0.

Progress and cancellation: the pipeline exposes no step callback, so a per-call shallow copy of the
warm pipeline gets a `progress_bar` that reports after each prior step and raises CancelledError
before the next one. Missing weights → ModelUnavailableError from the registry (repos openai/shap-e,
openai/shap-e-img2img).
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from studio.assets.asset import Asset, AssetMetadata
from studio.assets.material import Material
from studio.assets.mesh import Mesh
from studio.errors import InvalidAssetError
from studio.models import PipelineCache, resolve

from .generation_common import Cancel, Progress, check_cancel, check_prompt, load_pipeline_class, resolve_seed

# Shap-E (+Z up) → studio (+Y up): −90° about X, (x, y, z) → (x, z, −y)
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


@dataclass(frozen=True)
class ShapEParams:
    """steps: prior denoising steps (Heun, 64 in the model card); guidance_scale: CFG (15 text, 3 image);
    grid_size: SDF grid for marching cubes (128 as diffusers; lower is faster and coarser);
    scale: metres per Shap-E unit (its objects span about [-1,1])."""

    steps: int = 64
    guidance_scale: float = 15.0
    grid_size: int = 128
    scale: float = 0.5
    seed: int | None = None
    model_path: str | None = None
    allow_network: bool = False


def mesh_output_to_asset(out: Any, scale: float = 0.5, name: str = "shap-e",
                         metadata: AssetMetadata | None = None) -> Asset:
    """diffusers MeshDecoderOutput (verts (V,3), faces (F,3), vertex_channels {"R","G","B"} (V,) linear)
    → Asset with one vertex-coloured mesh, +Y up, metres. InvalidAssetError when the mesh is empty."""
    verts = np.asarray(_np(out.verts), dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(_np(out.faces), dtype=np.int64).reshape(-1, 3)
    if len(verts) == 0 or len(faces) == 0:
        raise InvalidAssetError(Path(name), "Shap-E decoded an empty mesh (the SDF has no zero crossing)")
    if faces.min() < 0 or faces.max() >= len(verts):
        raise InvalidAssetError(Path(name), f"face indices out of range for {len(verts)} vertices")
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    faces = faces[keep]
    verts = verts @ Z_UP_TO_Y_UP.T * scale
    import trimesh

    if trimesh.Trimesh(verts, faces, process=False, validate=False).volume < 0:  # inward winding → outward
        faces = faces[:, ::-1].copy()
    ch = getattr(out, "vertex_channels", None) or {}
    colors = None
    if all(k in ch for k in "RGB"):
        rgb = np.stack([np.asarray(_np(ch[k]), dtype=np.float32).reshape(-1) for k in "RGB"], axis=1)
        colors = np.concatenate([np.clip(rgb, 0, 1), np.ones((len(rgb), 1), np.float32)], axis=1).astype(np.float32)
    mesh = Mesh.from_arrays(verts, faces, colors=colors, material=Material(name=f"{name}-material", metallic_factor=0.0, roughness_factor=0.8), name=name)
    mesh.normals = np.asarray(mesh.geometry.vertex_normals, dtype=np.float32)
    meta = metadata or AssetMetadata(name=name)
    return Asset(meshes=[mesh], metadata=meta)


def _np(x: Any) -> np.ndarray:
    return x.detach().float().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def load_shap_e(model: str, cls_name: str, params: ShapEParams, cache: PipelineCache | None = None) -> Any:
    """Resolve `model` and load its Shap-E pipeline (`cls_name`), warm-cached."""
    folder = resolve(model, local_path=params.model_path, allow_network=params.allow_network)
    return load_pipeline_class(model, folder, cls_name, "Shap-E", "this route", cache)


def _job_copy(pipe: Any, steps: int, progress: Progress | None, cancel: Cancel | None) -> Any:
    """A shallow copy of the warm pipeline whose step loop reports progress and honours cancel."""
    job = copy.copy(pipe)

    def progress_bar(iterable: Iterable | None = None, total: int | None = None, **_: Any) -> Iterator:
        items = list(iterable) if iterable is not None else list(range(total or 0))
        for i, item in enumerate(items):
            check_cancel(cancel)
            yield item
            if progress is not None:
                progress(0.9 * (i + 1) / max(1, len(items)), f"Shap-E prior step {i + 1}/{len(items)}")

    object.__setattr__(job, "progress_bar", progress_bar)
    return job


def _decode(pipe: Any, latents: Any, params: ShapEParams, progress: Progress | None, cancel: Cancel | None,
            meta: AssetMetadata) -> Asset:
    import torch

    check_cancel(cancel)
    with torch.no_grad():
        out = pipe.shap_e_renderer.decode_to_mesh(latents[:1], pipe._execution_device, grid_size=params.grid_size)
    asset = mesh_output_to_asset(out, params.scale, meta.name or "shap-e", meta)
    if progress is not None:
        progress(1.0, "Shap-E mesh decoded")
    return asset


def shap_e_text_to_3d(prompt: str, model: str = "shap-e", params: ShapEParams = ShapEParams(),
                      progress: Progress | None = None, cancel: Cancel | None = None,
                      cache: PipelineCache | None = None) -> Asset:
    """Prompt → vertex-coloured mesh Asset (+Y up, metres); seed, prompt and model in its metadata."""
    import torch

    check_prompt(prompt)
    seed = resolve_seed(params.seed)
    pipe = load_shap_e(model, "ShapEPipeline", params, cache)
    job = _job_copy(pipe, params.steps, progress, cancel)
    with torch.no_grad():
        lat = job(prompt, num_inference_steps=params.steps, guidance_scale=params.guidance_scale,
                  generator=torch.Generator("cpu").manual_seed(seed), output_type="latent").images
    meta = AssetMetadata(name="shap-e", prompt=prompt, seed=seed, pipeline="text_to_3d", method="shap-e", model=model,
                         extras={"steps": params.steps, "guidance_scale": params.guidance_scale,
                                 "grid_size": params.grid_size})
    return _decode(pipe, lat, params, progress, cancel, meta)


def shap_e_image_to_3d(image: np.ndarray, model: str = "shap-e-img2img",
                       params: ShapEParams = ShapEParams(guidance_scale=3.0),
                       progress: Progress | None = None, cancel: Cancel | None = None,
                       cache: PipelineCache | None = None) -> Asset:
    """(H,W,3) uint8 sRGB image → vertex-coloured mesh Asset (+Y up, metres)."""
    import torch
    from PIL import Image

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or img.dtype != np.uint8:
        raise InvalidAssetError(Path("<image>"), f"expected an (H,W,3) uint8 sRGB image, got {img.shape} {img.dtype}")
    seed = resolve_seed(params.seed)
    pipe = load_shap_e(model, "ShapEImg2ImgPipeline", params, cache)
    job = _job_copy(pipe, params.steps, progress, cancel)
    with torch.no_grad():
        lat = job(Image.fromarray(img[..., :3]), num_inference_steps=params.steps,
                  guidance_scale=params.guidance_scale, generator=torch.Generator("cpu").manual_seed(seed),
                  output_type="latent").images
    meta = AssetMetadata(name="shap-e", seed=seed, pipeline="image_to_3d", method="shap-e", model=model,
                         extras={"steps": params.steps, "guidance_scale": params.guidance_scale,
                                 "grid_size": params.grid_size})
    return _decode(pipe, lat, params, progress, cancel, meta)
