"""Prompt → Asset: text → image (`text_to_image`) → `image_to_asset` (feed-forward TripoSR when its
weights are present, else the Zero123-class multiview stage + splat fit; see image_to_asset).

Every model the chosen route needs is resolved before anything runs, so a missing one fails at once
with a ModelUnavailableError naming *all* missing models, their repo ids and how to provide them.
The prompt, seed (used for both the image and the multiview noise), models, method and the image
generation record go into `asset.metadata` (extras: image_model, multiview_model, image_record).
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.errors import ModelUnavailableError
from studio.models import PipelineCache, resolve
from studio.pipeline import Pipeline, Stage, StageContext, param

from .feedforward import FeedForwardParams
from .generation_common import Cancel, Progress, check_cancel, check_prompt, resolve_seed
from .image_to_asset import METHODS, MULTIVIEW_RECON_MODEL, SINGLE_IMAGE_MODEL
from .multiview import DEFAULT_MODEL as DEFAULT_MULTIVIEW_MODEL
from .multiview import MultiviewRig, image_to_multiview


def _missing(name: str, allow_network: bool, local_path: str | Path | None = None) -> str | None:
    try:
        resolve(name, local_path=local_path, allow_network=False)
        return None
    except ModelUnavailableError as e:
        return None if allow_network else str(e)


def required_models(method: str, image_model: str, multiview_model: str, allow_network: bool = False,
                    image_model_path: str | Path | None = None) -> list[str]:
    """Messages for every model `method` would need that is absent (empty list: the route can run).
    "auto" needs the image model and either TripoSR or the multiview model."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    miss = [_missing(image_model, allow_network, image_model_path)]
    ff, mv = _missing(SINGLE_IMAGE_MODEL, allow_network), _missing(multiview_model, allow_network)
    if method == "feedforward":
        miss.append(ff)
    elif method == "fit":
        miss.append(mv)
    elif method == "multiview-feedforward":
        miss += [mv, _missing(MULTIVIEW_RECON_MODEL, allow_network)]
    elif ff is not None and mv is not None:
        miss += [f"feed-forward route: {ff}", f"multiview + fit route: {mv}"]
    return [m for m in miss if m]


def text_to_asset(
    prompt: str,
    method: str = "auto",
    image_model: str = "sd15",
    multiview_model: str = DEFAULT_MULTIVIEW_MODEL,
    negative_prompt: str = "",
    steps: int = 30,
    guidance_scale: float = 7.5,
    seed: int | None = None,
    width: int = 512,
    height: int = 512,
    multiview_steps: int = 50,
    multiview_guidance: float = 3.0,
    rig: MultiviewRig = MultiviewRig(),
    params: FeedForwardParams = FeedForwardParams(),
    image_model_path: str | Path | None = None,
    allow_network: bool = False,
    fit_fn: Callable[..., Any] | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    cache: PipelineCache | None = None,
):
    """Prompt → Asset (see the module docstring). Progress: 0–0.3 image, 0.3–1 the 3D route.
    fit_fn(views, progress, cancel) → Asset overrides `reconstruct.views_to_asset` (tests, custom fits).
    Raises ModelUnavailableError (all missing models named), BlockedContentError, CancelledError."""
    from .image_to_asset import image_to_asset
    from .text_to_image import TextToImageParams, generate_images

    report = progress or (lambda f, m: None)
    check_prompt(prompt, negative_prompt)
    missing = required_models(method, image_model, multiview_model, allow_network, image_model_path)
    if missing:
        raise ModelUnavailableError(f"text_to_asset --method {method}: missing model(s):\n- " + "\n- ".join(missing))
    check_cancel(cancel)
    seed = resolve_seed(seed)
    batch = generate_images(
        TextToImageParams(prompt=prompt, model=image_model, negative_prompt=negative_prompt, steps=steps,
                          guidance_scale=guidance_scale, seed=seed, width=width, height=height, num_images=1,
                          model_path=str(image_model_path) if image_model_path else None, allow_network=allow_network),
        progress=lambda f, m: report(0.3 * f, f"image: {m}"), cancel=cancel, cache=cache)
    image = batch.images[0]
    multiview_fn = functools.partial(image_to_multiview, model=multiview_model, rig=rig, steps=multiview_steps,
                                     guidance=multiview_guidance, seed=seed, allow_network=allow_network, cache=cache)
    asset = image_to_asset(image, method=method, params=params, allow_network=allow_network, multiview_fn=multiview_fn,
                           fit_fn=fit_fn, progress=lambda f, m: report(0.3 + 0.7 * f, m), cancel=cancel)
    md = asset.metadata
    used = md.method or method
    models = {"feedforward": [SINGLE_IMAGE_MODEL], "fit": [multiview_model],
              "multiview-feedforward": [multiview_model, MULTIVIEW_RECON_MODEL]}.get(used, [md.model or ""])
    md.prompt, md.negative_prompt, md.seed, md.pipeline = prompt, negative_prompt or None, seed, "text_to_asset"
    md.model = "+".join([image_model, *models])
    md.watermark_id = md.watermark_id or batch.record.get("watermark_id")
    md.extras.update(image_model=image_model, image_record=batch.record)
    if used != "feedforward":
        md.extras.update(multiview_model=multiview_model, multiview_steps=multiview_steps,
                         multiview_guidance=multiview_guidance)
    report(1.0, "done")
    return asset


def text_to_asset_files(prompt: str, out_dir: str | Path, formats: tuple[str, ...] = ("glb", "usdz"),
                        **kwargs: Any) -> dict[str, Path]:
    """`studio generate 3d PROMPT`: run `text_to_asset(prompt, **kwargs)` and write `asset.<fmt>` for each
    format (validated where a validator exists). Returns {format: path}."""
    from studio.assets.io import save
    from studio.assets.validate import VALIDATORS

    asset = text_to_asset(prompt, **kwargs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return {f: save(asset, out / f"asset.{f}", validate=f".{f}" in VALIDATORS) for f in formats}


# ---- job pipeline (for studio.registry) ----------------------------------------------------------------


@dataclass(frozen=True)
class TextToAssetJob:
    prompt: str = param(help="what to make")
    method: str = param("auto", "auto | feedforward | fit | multiview-feedforward")
    image_model: str = param("sd15", "text → image model")
    multiview_model: str = param(DEFAULT_MULTIVIEW_MODEL, "image → multiview model (fit route)")
    negative_prompt: str = param("", "what to avoid")
    steps: int = param(30, "text → image denoising steps", minimum=1, maximum=500)
    guidance_scale: float = param(7.5, "text → image classifier-free guidance", minimum=0.0, maximum=50.0)
    multiview_steps: int = param(50, "multiview denoising steps", minimum=1, maximum=500)
    multiview_guidance: float = param(3.0, "multiview classifier-free guidance", minimum=0.0, maximum=50.0)
    seed: int = param(0, "random seed (image and multiview)")
    width: int = param(512, "image width in pixels", minimum=64, maximum=4096)
    height: int = param(512, "image height in pixels", minimum=64, maximum=4096)


def stage_text_to_asset(p: TextToAssetJob, inputs: dict[str, Any], ctx: StageContext) -> dict[str, Path]:
    """Writes asset.glb and asset.usdz (validated) into the job folder."""
    from studio.assets.io import save

    asset = text_to_asset(p.prompt, method=p.method, image_model=p.image_model, multiview_model=p.multiview_model,
                          negative_prompt=p.negative_prompt, steps=p.steps, guidance_scale=p.guidance_scale,
                          seed=p.seed, width=p.width, height=p.height, multiview_steps=p.multiview_steps,
                          multiview_guidance=p.multiview_guidance, progress=ctx.progress, cancel=ctx.is_cancelled)
    return {"glb": save(asset, ctx.out_dir / "asset.glb", validate=True),
            "usdz": save(asset, ctx.out_dir / "asset.usdz", validate=True)}


TEXT_TO_ASSET = Pipeline("text_to_asset", TextToAssetJob, (Stage("generate", stage_text_to_asset, cache=False, gpu=True),),
                         "Prompt → image → textured 3D asset (TripoSR feed-forward, else multiview + fit)",
                         requires=("sd15",), title="Text → 3D")
