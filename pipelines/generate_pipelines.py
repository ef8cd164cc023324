"""Job pipelines around the generative stages and conversions: text_to_image, image_to_asset,
caption and export. Each declares the models it needs (`requires`) so surfaces can show it as
unavailable, with the reason, when the weights are absent."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.pipeline import Pipeline, Stage, StageContext, param


@dataclass(frozen=True)
class TextToImageJob:
    prompt: str = param(help="what to draw")
    model: str = param("sd15", "registered model name")
    negative_prompt: str = param("", "what to avoid")
    steps: int = param(30, "denoising steps", minimum=1, maximum=500)
    guidance_scale: float = param(7.5, "classifier-free guidance", minimum=0.0, maximum=50.0)
    seed: int = param(0, "random seed")
    width: int = param(512, "width in pixels", minimum=64, maximum=4096)
    height: int = param(512, "height in pixels", minimum=64, maximum=4096)
    num_images: int = param(1, "images to generate", minimum=1, maximum=16)


def stage_text_to_image(p: TextToImageJob, inputs: dict[str, Any], ctx: StageContext) -> dict[str, Path]:
    from .text_to_image import TextToImageParams, generate_image_files

    params = TextToImageParams(prompt=p.prompt, model=p.model, negative_prompt=p.negative_prompt, steps=p.steps,
                               guidance_scale=p.guidance_scale, seed=p.seed, width=p.width, height=p.height,
                               num_images=p.num_images)
    paths = generate_image_files(params, ctx.out_dir, progress=ctx.progress, cancel=ctx.is_cancelled)
    return {f"image_{i}": path for i, path in enumerate(paths)}


@dataclass(frozen=True)
class ImageToAssetJob:
    image: str = param(help="path of the input image (alpha channel = mask)")
    method: str = param("auto", "auto | feedforward | fit")


def stage_image_to_asset(p: ImageToAssetJob, inputs: dict[str, Any], ctx: StageContext) -> dict[str, Path]:
    from studio.assets.io import save

    from .image_to_asset import image_to_asset

    asset = image_to_asset(p.image, method=p.method, progress=ctx.progress, cancel=ctx.is_cancelled)
    out = {"glb": save(asset, ctx.out_dir / "asset.glb", validate=True), "usdz": save(asset, ctx.out_dir / "asset.usdz", validate=True)}
    return out


@dataclass(frozen=True)
class CaptionJob:
    file: str = param(help="an image or an asset file")
    model: str = param("blip-base", "captioning model")
    question: str = param("", "ask a question instead of captioning")


def stage_caption(p: CaptionJob, inputs: dict[str, Any], ctx: StageContext) -> dict[str, Path]:
    from .caption import caption_path

    r = caption_path(p.file, model=p.model, question=p.question or None)
    path = ctx.out_dir / "caption.json"
    path.write_text(json.dumps({"caption": r.caption, "tags": r.tags, "captions": r.captions}, indent=2))
    return {"caption": path}


@dataclass(frozen=True)
class ExportJob:
    src: str = param(help="input asset file")
    format: str = param("glb", "output format: glb, gltf, usdz, usda, usdc, obj, ply, splat, spz")


def stage_export(p: ExportJob, inputs: dict[str, Any], ctx: StageContext) -> dict[str, Path]:
    from studio.assets.io import load, save
    from studio.assets.validate import VALIDATORS

    ext = "." + p.format.lower().lstrip(".")
    dst = ctx.out_dir / (Path(p.src).stem + ext)
    save(load(p.src), dst, validate=ext in VALIDATORS)
    return {"file": dst}


@dataclass(frozen=True)
class ImageToVideoJob:
    image: str = param(help="path of the first frame")
    num_frames: int = param(14, "frames", minimum=2, maximum=128)
    fps: int = param(7, "frames per second", minimum=1, maximum=60)
    steps: int = param(25, "denoising steps", minimum=1, maximum=200)
    seed: int = param(0, "random seed")


def stage_image_to_video(p: ImageToVideoJob, inputs: dict[str, Any], ctx: StageContext) -> dict[str, Path]:
    from .video import ImageToVideoParams, image_to_video_file

    params = ImageToVideoParams(image=p.image, num_frames=p.num_frames, fps=p.fps, steps=p.steps, seed=p.seed)
    return {"video": image_to_video_file(params, ctx.out_dir / "video.mp4", progress=ctx.progress, cancel=ctx.is_cancelled)}


@dataclass(frozen=True)
class TextToVideoJob:
    prompt: str = param(help="what happens")
    num_frames: int = param(16, "frames", minimum=2, maximum=128)
    fps: int = param(8, "frames per second", minimum=1, maximum=60)
    steps: int = param(25, "denoising steps", minimum=1, maximum=200)
    seed: int = param(0, "random seed")


def stage_text_to_video(p: TextToVideoJob, inputs: dict[str, Any], ctx: StageContext) -> dict[str, Path]:
    from .video import TextToVideoParams, text_to_video_file

    params = TextToVideoParams(prompt=p.prompt, num_frames=p.num_frames, fps=p.fps, steps=p.steps, seed=p.seed)
    return {"video": text_to_video_file(params, ctx.out_dir / "video.mp4", progress=ctx.progress, cancel=ctx.is_cancelled)}


IMAGE_TO_VIDEO = Pipeline("image_to_video", ImageToVideoJob, (Stage("generate", stage_image_to_video, cache=False, gpu=True),),
                          "Image → video (Stable Video Diffusion), H.264 MP4", requires=("svd",), title="Image → Video")
TEXT_TO_VIDEO = Pipeline("text_to_video", TextToVideoJob, (Stage("generate", stage_text_to_video, cache=False, gpu=True),),
                         "Text → video (AnimateDiff on SD 1.5), H.264 MP4", requires=("sd15", "animatediff"), title="Text → Video")
TEXT_TO_IMAGE = Pipeline("text_to_image", TextToImageJob, (Stage("generate", stage_text_to_image, cache=False),),
                         "Prompt → images (Stable Diffusion family through diffusers)", requires=("sd15",), title="Image")
IMAGE_TO_ASSET = Pipeline("image_to_asset", ImageToAssetJob, (Stage("reconstruct", stage_image_to_asset, cache=False),),
                          "One image → textured 3D asset (TripoSR feed-forward, else multiview + fit)", requires=("tripo-sr",),
                          title="Image → 3D")
CAPTION = Pipeline("caption", CaptionJob, (Stage("caption", stage_caption, cache=False),),
                   "Caption an image or a rendered asset", requires=("blip-base",), title="Caption")
EXPORT = Pipeline("export", ExportJob, (Stage("export", stage_export, cache=False),),
                  "Convert an asset file to another format, validated", title="Convert")
