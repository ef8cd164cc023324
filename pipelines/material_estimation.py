"""Material estimation and delighting on views with diffusers' Marigold pipelines.

- `estimate_depth`: MarigoldDepthPipeline (registry "marigold-depth"): affine-invariant depth,
  (N,H,W) float32 in [0,1] (0 near, 1 far; scale and shift unknown).
- `estimate_normals`: MarigoldNormalsPipeline ("marigold-normals"): (N,H,W,3) float32 unit normals
  in Marigold's screen frame (x right, y up, z towards the viewer).
- `estimate_materials`: MarigoldIntrinsicsPipeline ("marigold-iid", the appearance model):
  albedo (N,H,W,3) float32 *linear* RGB, roughness and metallic (N,H,W) float32 in [0,1].
- `delight_views`: the same Views with images replaced by the estimated albedo, so textures baked
  from them carry no baked-in lighting.

Views images are linear RGB (studio convention); Marigold takes sRGB-encoded images, so the
conversion goes through `studio.assets.colour`. The intrinsics layout is read from the pipeline's
`target_properties` (appearance v1.1: targets ["albedo", "material"], albedo in sRGB, "material" a
stack of (roughness, metallicity, unused) linear channels). Views are processed one at a time:
progress is reported and cancellation checked between views (Marigold exposes no step callback).
Missing weights → ModelUnavailableError from the registry, never a placeholder.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from studio.assets.colour import linear_to_srgb, srgb_to_linear
from studio.assets.views import Views
from studio.errors import InvalidAssetError, ModelUnavailableError
from studio.models import PipelineCache, resolve

from .generation_common import Cancel, Progress, check_cancel, load_pipeline_class

PIPELINE_CLASSES = {"depth": "MarigoldDepthPipeline", "normals": "MarigoldNormalsPipeline",
                    "intrinsics": "MarigoldIntrinsicsPipeline"}


@dataclass(frozen=True)
class MarigoldParams:
    """steps / processing_resolution None: the model's defaults (model_index.json); ensemble_size > 1
    averages several predictions. seed makes the result reproducible (None: 0)."""

    steps: int | None = None
    ensemble_size: int = 1
    processing_resolution: int | None = None
    seed: int | None = 0
    model_path: str | None = None
    allow_network: bool = False


@dataclass(frozen=True)
class MaterialMaps:
    """albedo (N,H,W,3) float32 linear RGB in [0,1]; roughness, metallic (N,H,W) float32 in [0,1]."""

    albedo: np.ndarray
    roughness: np.ndarray
    metallic: np.ndarray


def load_marigold(task: str, model: str, params: MarigoldParams = MarigoldParams(),
                  cache: PipelineCache | None = None) -> Any:
    """Resolve `model` and load its Marigold pipeline for `task` ("depth", "normals", "intrinsics"), warm-cached."""
    folder = resolve(model, local_path=params.model_path, allow_network=params.allow_network)
    return load_pipeline_class(model, folder, PIPELINE_CLASSES[task], "Marigold", f"{task} estimation", cache)


def _run(pipe: Any, views: Views, params: MarigoldParams, progress: Progress | None, cancel: Cancel | None,
         label: str) -> list[np.ndarray]:
    import torch

    if len(views) == 0:
        raise InvalidAssetError(Path("<views>"), "no views to estimate from")
    srgb = np.clip(linear_to_srgb(np.clip(views.images, 0.0, 1.0)), 0.0, 1.0).astype(np.float32)
    outs = []
    seed = 0 if params.seed is None else int(params.seed)
    for i in range(len(views)):
        check_cancel(cancel)
        with torch.no_grad():
            out = pipe(srgb[i : i + 1], num_inference_steps=params.steps, ensemble_size=params.ensemble_size,
                       processing_resolution=params.processing_resolution, match_input_resolution=True,
                       generator=torch.Generator("cpu").manual_seed(seed + i), output_type="np")
        outs.append(np.asarray(out.prediction, dtype=np.float32))
        if progress is not None:
            progress((i + 1) / len(views), f"{label} view {i + 1}/{len(views)}")
    return outs


def estimate_depth(views: Views, model: str = "marigold-depth", params: MarigoldParams = MarigoldParams(),
                   progress: Progress | None = None, cancel: Cancel | None = None,
                   cache: PipelineCache | None = None) -> np.ndarray:
    """Affine-invariant depth per view: (N,H,W) float32 in [0,1]."""
    pipe = load_marigold("depth", model, params, cache)
    return np.clip(np.concatenate(_run(pipe, views, params, progress, cancel, "depth"))[..., 0], 0.0, 1.0)


def estimate_normals(views: Views, model: str = "marigold-normals", params: MarigoldParams = MarigoldParams(),
                     progress: Progress | None = None, cancel: Cancel | None = None,
                     cache: PipelineCache | None = None) -> np.ndarray:
    """Unit normals per pixel: (N,H,W,3) float32, x right, y up, z towards the camera."""
    pipe = load_marigold("normals", model, params, cache)
    n = np.concatenate(_run(pipe, views, params, progress, cancel, "normals"))
    return (n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-6)).astype(np.float32)


def _channel(props: dict, names: list[str], pred: np.ndarray, wanted: str) -> tuple[np.ndarray, str]:
    """(map, space) of target/sub-target `wanted` from one view's (T,H,W,3) prediction."""
    for ti, tname in enumerate(names):
        entry = props.get(tname, {}) or {}
        if tname == wanted:
            return pred[ti], entry.get("prediction_space", "srgb")
        if entry.get("prediction_space") == "stack":
            subs = entry.get("sub_target_names", [])
            if wanted in subs:
                sub = props.get(wanted, {}) or {}
                return pred[ti][..., subs.index(wanted)], sub.get("prediction_space", "linear")
    raise ModelUnavailableError(f"the intrinsics model predicts {names}, which has no {wanted!r}: "
                                "use an appearance model such as prs-eth/marigold-iid-appearance-v1-1")


def estimate_materials(views: Views, model: str = "marigold-iid", params: MarigoldParams = MarigoldParams(),
                       progress: Progress | None = None, cancel: Cancel | None = None,
                       cache: PipelineCache | None = None) -> MaterialMaps:
    """Albedo (linear), roughness and metallic maps per view from a Marigold appearance IID model."""
    pipe = load_marigold("intrinsics", model, params, cache)
    props = dict(pipe.target_properties or {})
    names = list(props.get("target_names", []))
    if not names:
        raise ModelUnavailableError(f"model {model!r} has no target_properties.target_names in its model_index.json")
    albedo, rough, metal = [], [], []
    for pred in _run(pipe, views, params, progress, cancel, "materials"):  # each (T,H,W,3)
        a, space = _channel(props, names, pred, "albedo")
        albedo.append(srgb_to_linear(np.clip(a, 0, 1)) if space == "srgb" else a)
        r, _ = _channel(props, names, pred, "roughness")
        m, _ = _channel(props, names, pred, "metallicity")
        rough.append(r)
        metal.append(m)
    f = lambda xs: np.clip(np.stack(xs), 0.0, 1.0).astype(np.float32)  # noqa: E731
    return MaterialMaps(f(albedo), f(rough), f(metal))


def delight_views(views: Views, model: str = "marigold-iid", params: MarigoldParams = MarigoldParams(),
                  progress: Progress | None = None, cancel: Cancel | None = None,
                  cache: PipelineCache | None = None) -> tuple[Views, MaterialMaps]:
    """Views whose images are the estimated (linear) albedo — same cameras and masks — plus the maps."""
    maps = estimate_materials(views, model, params, progress, cancel, cache)
    return replace(views, images=maps.albedo), maps


def image_views(image: Any) -> Views:
    """One photo as a single-view Views (linear RGB; a nominal 50° pinhole camera at the origin,
    since Marigold needs no pose)."""
    from studio.assets import Cameras

    from .generation_common import load_rgb

    rgb = load_rgb(image)
    h, w = rgb.shape[:2]
    f = 0.5 * h / np.tan(np.radians(25.0))
    cams = Cameras(np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]]), np.eye(4), w, h)
    return Views(srgb_to_linear(rgb.astype(np.float32) / 255.0)[None], cams)


def material_files(image: Any, out_dir: str | Path, which: tuple[str, ...] = ("depth", "normals", "materials"),
                   params: MarigoldParams = MarigoldParams(), progress: Progress | None = None) -> list[Path]:
    """`studio generate materials IMAGE`: write depth.png (16-bit, near = dark), normals.png
    (0.5·n + 0.5), albedo.png (sRGB), roughness.png and metallic.png for one photo."""
    from PIL import Image

    from studio.assets.atomic import atomic_path
    from studio.assets.colour import to_uint8

    views = image_views(image)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images: dict[str, Any] = {}
    if "depth" in which:
        d = estimate_depth(views, params=params, progress=progress)[0]
        images["depth.png"] = Image.fromarray(np.round(np.clip(d, 0, 1) * 65535).astype(np.uint16))
    if "normals" in which:
        images["normals.png"] = Image.fromarray(to_uint8(estimate_normals(views, params=params, progress=progress)[0] * 0.5 + 0.5))
    if "materials" in which:
        m = estimate_materials(views, params=params, progress=progress)
        images["albedo.png"] = Image.fromarray(to_uint8(linear_to_srgb(m.albedo[0])))
        images["roughness.png"] = Image.fromarray(to_uint8(m.roughness[0]))
        images["metallic.png"] = Image.fromarray(to_uint8(m.metallic[0]))
    paths = []
    for name, im in images.items():
        with atomic_path(out / name) as tmp:
            im.save(tmp, format="PNG")
        paths.append(out / name)
    return paths
