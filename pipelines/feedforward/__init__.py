"""Feed-forward 3D: one network pass from views to a triplane, then mesh → UV → bake → Asset.

- `single_image_to_asset(image, model, params)`: TripoSR (stabilityai/TripoSR) on one prepared
  image (square, sRGB in [0,1], object centred on a grey background — `image_to_asset` prepares it).
- `views_to_asset_feedforward(views, model, params)`: InstantMesh (TencentARC/InstantMesh) on posed
  `Views` (exact cameras, e.g. the multiview stage's rig).
- `load_model(name, local_path)`: weights through the model registry (`studio.models.resolve`),
  kept warm in the registry's LRU; ModelUnavailableError naming the repo id when absent.

Device: CUDA with fp16 for the network when present (`studio.models.select_device`), the field
queries and marching cubes in float32; CPU float32 otherwise.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .triplane import query_grid, report, surface_from_grid, textured_asset

Progress = Callable[[float, str], None] | None
Cancel = Callable[[], bool] | None

LOADERS = {"tripo-sr": "triposr", "instant-mesh": "lrm"}


@dataclass(frozen=True)
class FeedForwardParams:
    """resolution: marching-cubes lattice points per axis (TripoSR: over ±radius; InstantMesh uses
    its own grid_res+1 unless `resolution` is given); chunk: points per field query (bounds memory);
    threshold: TripoSR density iso-level (25.0 as published); target_faces: decimation target;
    texture: bake a base-colour texture (else vertex colours); texture_size: atlas side in texels;
    size_m: TripoSR only — the object's largest extent in metres (one image has no metric scale);
    device: "cpu"/"cuda" or None for the registry's choice."""

    resolution: int = 256
    chunk: int = 65536
    threshold: float = 25.0
    target_faces: int = 20_000
    texture: bool = True
    texture_size: int = 1024
    size_m: float = 1.0
    roughness: float = 0.8
    device: str | None = None


def _device(params: FeedForwardParams) -> tuple[str, torch.dtype]:
    if params.device is not None:
        return params.device, (torch.float16 if params.device.startswith("cuda") else torch.float32)
    from studio.models import select_device

    cfg = select_device("float16")
    return cfg.device, cfg.torch_dtype


def load_model(name: str, local_path: str | Path | None = None, device: str = "cpu", dtype: torch.dtype = torch.float32,
               allow_network: bool = False):
    """The loaded model `name` ("tripo-sr" or "instant-mesh") from the registry's resolution order
    (explicit folder → $STUDIO_MODELS/<name> → HF cache → download only if allowed), warm-cached."""
    import importlib

    from studio.models import get_pipeline, resolve

    if name not in LOADERS:
        raise ValueError(f"unknown feed-forward model {name!r}; known: {', '.join(LOADERS)}")
    folder = resolve(name, local_path=local_path, allow_network=allow_network)
    mod = importlib.import_module(f"{__name__}.{LOADERS[name]}")
    key = (name, str(Path(folder).resolve()), device, str(dtype))
    return get_pipeline(key, lambda: mod.load(folder, device=device, dtype=dtype))


def _finish(vertices, faces, color_fn, to_world, params, name, progress, cancel):
    return textured_asset(vertices, faces, color_fn, to_world, target_faces=params.target_faces,
                          texture_size=params.texture_size, texture=params.texture, roughness=params.roughness,
                          name=name, progress=progress, cancel=cancel)


def _color_fn(query: Callable[[torch.Tensor], torch.Tensor], device: str, chunk: int):
    def fn(points: np.ndarray) -> np.ndarray:
        out = []
        with torch.no_grad():
            for s in range(0, len(points), chunk):
                p = torch.as_tensor(points[s : s + chunk], dtype=torch.float32, device=device)
                out.append(query(p).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 3), np.float32)

    return fn


def single_image_to_asset(image: np.ndarray, model, params: FeedForwardParams = FeedForwardParams(),
                          model_name: str = "tripo-sr", progress: Progress = None, cancel: Cancel = None):
    """TripoSR: image (S,S,3) float32 sRGB in [0,1] (object centred, grey 0.5 background) → Asset.

    The mesh is the density iso-surface at `params.threshold` on a resolution³ lattice over
    ±radius, recentred on its bounding box and scaled so its largest extent is `size_m` metres,
    +Y up, the input view looking from +Z. metadata: method "feedforward", model, extras (repo id,
    grid, threshold, bounds, seconds per step)."""
    from . import triposr

    t0 = time.perf_counter()
    report(progress, 0.0, "TripoSR forward pass")
    p = next(model.parameters())
    img = torch.as_tensor(np.asarray(image, dtype=np.float32))[None].to(device=p.device, dtype=p.dtype)
    with torch.no_grad():
        code = model(img)[0].float()
    t_net = time.perf_counter() - t0
    dec = model.decoder
    dec_dtype = next(dec.parameters()).dtype

    def density(x: torch.Tensor) -> torch.Tensor:
        feats_code = code.to(dec_dtype)
        return model.query(feats_code, x.to(dec_dtype))["density_act"][:, 0].float()

    r = model.radius
    grid = query_grid(density, params.resolution, -r, r, params.chunk, device=p.device,
                      progress=lambda f, m: report(progress, 0.05 + 0.5 * f, m), cancel=cancel)
    verts, faces = surface_from_grid(grid, params.threshold, -r, r)
    n_extracted = len(faces)
    if len(faces) > params.target_faces:  # decimate before measuring, so size_m holds for the final mesh
        from studio.assets import Mesh

        from ..mesh_extract import decimate

        low = decimate(Mesh.from_arrays(verts, faces), params.target_faces, cancel=cancel)
        verts, faces = low.vertices, low.faces
    t_mesh = time.perf_counter() - t0 - t_net
    rot = triposr.MODEL_TO_STUDIO
    w = verts @ rot[:3, :3].T
    lo, hi = w.min(0), w.max(0)
    s = params.size_m / max(float((hi - lo).max()), 1e-9)
    to_world = np.diag([s, s, s, 1.0]) @ rot
    to_world[:3, 3] = -s * (lo + hi) / 2
    color = _color_fn(lambda x: model.query(code.to(dec_dtype), x.to(dec_dtype))["color"], p.device, params.chunk)
    asset, info = _finish(verts, faces, color, to_world, params, "tripo-sr",
                          lambda f, m: report(progress, 0.55 + 0.45 * f, m), cancel)
    md = asset.metadata
    md.pipeline, md.method, md.model = "image_to_asset", "feedforward", model_name
    md.extras.update(repo_id=triposr.REPO_ID, grid=params.resolution, threshold=params.threshold,
                     bounds_m=asset.bounds().round(6).tolist(), seconds={"network": round(t_net, 4), "mesh": round(t_mesh, 4),
                                                                          "total": round(time.perf_counter() - t0, 4)},
                     **{**info, "faces_extracted": n_extracted})
    return asset


def views_to_asset_feedforward(views, model, params: FeedForwardParams = FeedForwardParams(resolution=0),
                               model_name: str = "instant-mesh", progress: Progress = None, cancel: Cancel = None):
    """InstantMesh: posed `Views` (images linear RGB, exact studio cameras) → Asset in the views'
    world frame and metres. Images are converted to sRGB, composited on white where masks are
    given (the model's training background), and resized to the model's input size.
    params.resolution 0 → the model's grid_res + 1 lattice points."""
    import torch.nn.functional as F

    from studio.assets.colour import linear_to_srgb

    from . import lrm

    t0 = time.perf_counter()
    cfg = model.cfg
    p = next(model.parameters())
    imgs = np.clip(linear_to_srgb(np.asarray(views.images, dtype=np.float64)), 0, 1)
    if views.masks is not None:
        m = views.masks[..., None]
        imgs = imgs * m + (1 - m)
    x = torch.as_tensor(imgs, dtype=torch.float32).permute(0, 3, 1, 2)
    if x.shape[-2:] != (cfg.input_size, cfg.input_size):
        x = F.interpolate(x, (cfg.input_size, cfg.input_size), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    norm = lrm.normalisation(views.cameras, cfg.camera_radius)
    cams = torch.as_tensor(lrm.camera_vectors(views.cameras, norm))
    report(progress, 0.0, f"InstantMesh forward pass on {len(views)} views")
    with torch.no_grad():
        planes = model.forward_planes(x[None].to(p.device, p.dtype), cams[None].to(p.device, p.dtype))[0].float()
    t_net = time.perf_counter() - t0
    syn = model.synthesizer
    dt = next(syn.parameters()).dtype
    half = cfg.grid_scale / 2
    res = params.resolution or cfg.grid_res + 1
    grid = query_grid(lambda q: -syn.sdf(planes.to(dt), q.to(dt)).float(), res, -half, half, params.chunk, device=p.device,
                      progress=lambda f, m: report(progress, 0.05 + 0.5 * f, m), cancel=cancel)
    verts, faces = surface_from_grid(grid, 0.0, -half, half)
    t_mesh = time.perf_counter() - t0 - t_net
    to_world = np.linalg.inv(norm)
    color = _color_fn(lambda q: syn.rgb(planes.to(dt), q.to(dt)), p.device, params.chunk)
    asset, info = _finish(verts, faces, color, to_world, params, "instant-mesh",
                          lambda f, m: report(progress, 0.55 + 0.45 * f, m), cancel)
    md = asset.metadata
    md.pipeline, md.method, md.model = "views_to_asset", "feedforward", model_name
    md.extras.update(repo_id=lrm.REPO_ID, grid=res, views=len(views), bounds_m=asset.bounds().round(6).tolist(),
                     seconds={"network": round(t_net, 4), "mesh": round(t_mesh, 4), "total": round(time.perf_counter() - t0, 4)},
                     **info)
    return asset
