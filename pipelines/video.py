"""Video through diffusers, written as MP4 with `av`.

* image → video: Stable Video Diffusion ("svd" → stabilityai/stable-video-diffusion-img2vid-xt).
* text → video: AnimateDiff, a MotionAdapter ("animatediff" → guoyww/animatediff-motion-adapter-v1-5-2)
  on any registered SD 1.x pipeline ("sd15" by default); the AnimateDiff pipeline is built from the
  warm SD pipeline and itself kept warm.

Frames are (F,H,W,3) uint8 sRGB. Models stay warm in the registry's LRU. Progress is reported per
denoising step and `cancel()` is polled between steps.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from studio.errors import InvalidAssetError, ModelUnavailableError
from studio.models import PipelineCache, get_pipeline, place_pipeline, resolve, select_device, spec
from studio.pipeline import ParamsError

from .generation_common import (WATERMARK_ID, Cancel, Progress, check_cancel, check_size, embed_watermark, generators,
                                load_rgb, resolve_seed, step_callback, to_pil, to_uint8)


@dataclass
class ImageToVideoParams:
    """SVD parameters (defaults: img2vid-xt's). width/height: multiples of 8 (the real model wants 1024×576)."""

    image: Any
    model: str = "svd"
    num_frames: int = 14
    fps: int = 7
    steps: int = 25
    seed: int | None = None
    width: int = 1024
    height: int = 576
    motion_bucket_id: int = 127
    noise_aug_strength: float = 0.02
    min_guidance_scale: float = 1.0
    max_guidance_scale: float = 3.0
    decode_chunk_size: int = 8
    watermark: bool = True
    model_path: str | None = None
    allow_network: bool = False


@dataclass
class Video:
    frames: np.ndarray  # (F,H,W,3) uint8
    fps: int
    seed: int
    record: dict[str, Any] = field(default_factory=dict)


def _check(p: ImageToVideoParams) -> None:
    if p.num_frames < 1:
        raise ParamsError(f"parameter 'num_frames' must be >= 1, got {p.num_frames}")
    if p.steps < 1:
        raise ParamsError(f"parameter 'steps' must be >= 1, got {p.steps}")
    if p.fps < 1:
        raise ParamsError(f"parameter 'fps' must be >= 1, got {p.fps}")
    check_size(p.width, p.height, 8)


def image_to_video(params: ImageToVideoParams, progress: Progress | None = None, cancel: Cancel | None = None,
                   cache: PipelineCache | None = None) -> Video:
    """Animate one image into `num_frames` frames of `width`×`height`."""
    p = params
    _check(p)
    check_cancel(cancel)
    image = load_rgb(p.image, "video input image")
    seed = resolve_seed(p.seed)
    folder = resolve(p.model, local_path=p.model_path, allow_network=p.allow_network)
    try:
        s = spec(p.model) if p.model_path is None else None
    except ModelUnavailableError:
        s = None
    cfg = select_device(s.dtype if s else "float16", s.size_hint if s else 0)

    def loader():
        from diffusers import StableVideoDiffusionPipeline

        pipe = StableVideoDiffusionPipeline.from_pretrained(str(folder), dtype=cfg.torch_dtype)
        pipe.set_progress_bar_config(disable=True)
        return place_pipeline(pipe, cfg)

    if progress:
        progress(0.0, f"loading {p.model}")
    base = get_pipeline(("diffusers-video", str(folder.resolve()), cfg), loader, cache)
    check_cancel(cancel)
    pipe = type(base).from_pipe(base)
    pipe.scheduler = type(base.scheduler).from_config(base.scheduler.config)  # job-local scheduler state
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        image=to_pil(image), height=p.height, width=p.width, num_frames=p.num_frames, num_inference_steps=p.steps,
        min_guidance_scale=p.min_guidance_scale, max_guidance_scale=p.max_guidance_scale, fps=p.fps,
        motion_bucket_id=p.motion_bucket_id, noise_aug_strength=p.noise_aug_strength,
        decode_chunk_size=p.decode_chunk_size, generator=generators(seed, 1)[0], output_type="np",
        callback_on_step_end=step_callback(p.steps, progress, cancel),
    )
    frames = to_uint8(np.asarray(out.frames)[0])
    marked = False
    if p.watermark:
        done = [embed_watermark(f) for f in frames]
        frames = np.stack([f for f, _ in done])
        marked = all(ok for _, ok in done)
    record = {k: v for k, v in asdict(p).items() if k not in ("image", "allow_network")}
    record |= {"seed": seed, "pipeline": "image_to_video", "image": f"<image {image.shape}>",
               "watermark_id": WATERMARK_ID if marked else None}
    return Video(frames, p.fps, seed, record)


def write_mp4(frames: np.ndarray, path: str | Path, fps: int, crf: int = 18) -> Path:
    """Write (F,H,W,3) uint8 frames as H.264 (yuv420p) MP4 with `av`, atomically. Odd sizes are
    padded by one edge pixel (yuv420p needs even dimensions)."""
    import av

    from studio.assets.atomic import atomic_path

    f = np.asarray(frames)
    if f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8 or len(f) == 0:
        raise ValueError(f"write_mp4 wants (F,H,W,3) uint8 frames, got {f.shape} {f.dtype}")
    ph, pw = f.shape[1] % 2, f.shape[2] % 2
    if ph or pw:
        f = np.pad(f, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    path = Path(path)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=int(fps))
            stream.width, stream.height = f.shape[2], f.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf)}
            for frame in f:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return path


def read_video_frames(path: str | Path) -> np.ndarray:
    """(F,H,W,3) uint8 frames decoded with `av` (InvalidAssetError for an unreadable file)."""
    import av

    try:
        with av.open(str(path)) as c:
            frames = [fr.to_ndarray(format="rgb24") for fr in c.decode(video=0)]
    except (av.error.FFmpegError, OSError) as e:  # type: ignore[attr-defined]
        raise InvalidAssetError(path, f"cannot decode video: {e}") from e
    if not frames:
        raise InvalidAssetError(path, "video has no frames")
    return np.stack(frames)


def image_to_video_file(params: ImageToVideoParams, out: str | Path, progress: Progress | None = None,
                        cancel: Cancel | None = None) -> Path:
    """`studio generate video --image IMG`: generate and write `out` (.mp4)."""
    v = image_to_video(params, progress, cancel)
    return write_mp4(v.frames, out, v.fps)


# ---- text → video (AnimateDiff) ----------------------------------------------------------------------------


@dataclass
class TextToVideoParams:
    """AnimateDiff parameters. model: an SD 1.x pipeline; motion_adapter: a MotionAdapter for it."""

    prompt: str
    model: str = "sd15"
    motion_adapter: str = "animatediff"
    negative_prompt: str = ""
    num_frames: int = 16
    fps: int = 8
    steps: int = 25
    guidance_scale: float = 7.5
    seed: int | None = None
    width: int = 512
    height: int = 512
    scheduler: str | None = None
    watermark: bool = True
    model_path: str | None = None
    allow_network: bool = False


def text_to_video(params: TextToVideoParams, progress: Progress | None = None, cancel: Cancel | None = None,
                  cache: PipelineCache | None = None) -> Video:
    """`num_frames` frames of `width`×`height` from a prompt (blocked prompts raise BlockedContentError)."""
    from .generation_common import check_prompt
    from .text_to_image import _load_base, _set_scheduler, pipeline_class_name

    p = params
    if not isinstance(p.prompt, str) or not p.prompt.strip():
        raise ParamsError("parameter 'prompt' must be a non-empty string")
    if p.num_frames < 1 or p.steps < 1 or p.fps < 1:
        raise ParamsError("num_frames, steps and fps must be >= 1")
    check_size(p.width, p.height, 8)
    check_prompt(p.prompt)
    check_cancel(cancel)
    seed = resolve_seed(p.seed)
    folder = resolve(p.model, local_path=p.model_path, allow_network=p.allow_network)
    adapter_folder = resolve(p.motion_adapter, allow_network=p.allow_network)
    try:
        s = spec(p.model) if p.model_path is None else None
    except ModelUnavailableError:
        s = None
    cfg = select_device(s.dtype if s else "float16", s.size_hint if s else 0)
    if progress:
        progress(0.0, f"loading {p.model} + {p.motion_adapter}")
    base = _load_base(folder, cfg, cache)

    def loader():
        from diffusers import AnimateDiffPipeline, MotionAdapter

        adapter = MotionAdapter.from_pretrained(str(adapter_folder), dtype=cfg.torch_dtype)
        pipe = AnimateDiffPipeline.from_pipe(base, motion_adapter=adapter)
        pipe.set_progress_bar_config(disable=True)
        return place_pipeline(pipe, cfg)

    anim = get_pipeline(("animatediff", str(folder.resolve()), str(adapter_folder.resolve()), cfg), loader, cache)
    check_cancel(cancel)
    pipe = type(anim).from_pipe(anim)
    pipe.set_progress_bar_config(disable=True)
    _set_scheduler(pipe, p.scheduler, pipeline_class_name(folder))
    out = pipe(
        prompt=p.prompt, negative_prompt=p.negative_prompt or None, num_frames=p.num_frames, height=p.height,
        width=p.width, num_inference_steps=p.steps, guidance_scale=p.guidance_scale,
        generator=generators(seed, 1)[0], output_type="np", callback_on_step_end=step_callback(p.steps, progress, cancel),
    )
    frames = to_uint8(np.asarray(out.frames)[0])
    marked = False
    if p.watermark:
        done = [embed_watermark(f) for f in frames]
        frames = np.stack([f for f, _ in done])
        marked = all(ok for _, ok in done)
    record = {k: v for k, v in asdict(p).items() if k != "allow_network"}
    record |= {"seed": seed, "pipeline": "text_to_video", "watermark_id": WATERMARK_ID if marked else None}
    return Video(frames, p.fps, seed, record)


def text_to_video_file(params: TextToVideoParams, out: str | Path, progress: Progress | None = None,
                       cancel: Cancel | None = None) -> Path:
    """`studio generate video --prompt TEXT`: generate and write `out` (.mp4)."""
    v = text_to_video(params, progress, cancel)
    return write_mp4(v.frames, out, v.fps)
