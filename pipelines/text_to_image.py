"""Text → image (and img2img, inpainting, ControlNet, IP-Adapter, LoRA) through diffusers.

The base model folder is resolved through the registry (`studio.models.resolve`) and loaded with
diffusers' AutoPipeline, which picks the class from the folder's `model_index.json`
`_class_name` (StableDiffusionPipeline, StableDiffusionXLPipeline, StableDiffusion3Pipeline,
FluxPipeline, …). The loaded pipeline stays warm in the registry's LRU; each job builds a light
job pipeline over the same modules (`from_pipe`: img2img / inpaint / ControlNet variants, its own
scheduler instance) so jobs never leak schedulers, LoRAs or IP-Adapters into the warm copy.

Outputs: (H,W,3) uint8 sRGB arrays, row 0 at the top; never a placeholder (missing weights raise
ModelUnavailableError, refused prompts or flagged images BlockedContentError).

Exactness rules (documented behaviour, not approximations):
* img2img / inpainting with `int(steps * strength) == 0` runs no denoising step, so the input is
  returned unchanged (diffusers itself cannot run zero steps).
* inpainting pastes the generated pixels only where the mask is set: pixels outside the mask are
  the input's, bit for bit (a VAE round trip alone would alter them).
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from studio.errors import ModelUnavailableError
from studio.models import (PipelineCache, get_pipeline, place_pipeline, resolve, select_device, spec)
from studio.pipeline import ParamsError

from .generation_common import (Cancel, Progress, check_cancel, check_output_safety, check_prompt, check_size,
                                 embed_watermark, generators, load_mask, load_rgb, resolve_seed, step_callback,
                                 to_pil, to_uint8, WATERMARK_ID)

# name → (diffusers scheduler class, config overrides). Flow-matching families (SD3, FLUX) only
# take "euler" (their FlowMatchEulerDiscreteScheduler).
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False}),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lcm": ("LCMScheduler", {}),
}
FLOW_MATCHING = ("StableDiffusion3Pipeline", "FluxPipeline", "StableDiffusion3Img2ImgPipeline", "FluxImg2ImgPipeline")


@dataclass
class LoraRef:
    """A LoRA to apply: a registered name or a path to a `.safetensors` file / folder, with its scale."""

    name: str
    scale: float = 1.0


@dataclass
class ControlNetRef:
    """ControlNet model (registered name or folder) and its control image ((H,W,3) uint8, path or PIL:
    a depth/normal render from our renderer or a canny edge map)."""

    model: str
    image: Any
    scale: float = 1.0


@dataclass
class IPAdapterRef:
    """IP-Adapter (registered name or folder holding `<subfolder>/<weight_name>` and `image_encoder/`)
    with its prompt image and scale."""

    model: str
    image: Any
    scale: float = 0.6
    subfolder: str | None = None
    weight_name: str | None = None


@dataclass
class TextToImageParams:
    """Everything a generation depends on (recorded in metadata for reproducibility).

    seed None → a random seed, reported in the result. Image i uses seed+i.
    width/height: output size for text → image and ControlNet (multiple of 8); img2img/inpainting
    keep the init image's size. strength: img2img/inpaint denoising strength in [0,1].
    mask: white/True = repaint (needs init_image). scheduler None keeps the model's own.
    """

    prompt: str
    model: str = "sd15"
    negative_prompt: str = ""
    guidance_scale: float = 7.5
    steps: int = 30
    seed: int | None = None
    width: int = 512
    height: int = 512
    scheduler: str | None = None
    loras: list = field(default_factory=list)  # LoraRef | (name, scale) | name
    controlnet: ControlNetRef | None = None
    ip_adapter: IPAdapterRef | None = None
    init_image: Any = None
    strength: float = 0.8
    mask: Any = None
    num_images: int = 1
    watermark: bool = True
    model_path: str | None = None
    allow_network: bool = False


@dataclass
class ImageBatch:
    """Generated images with what reproduces them: `seeds[i]` made `images[i]`; `record` is JSON-able
    (goes into asset metadata / PNG text)."""

    images: list[np.ndarray]
    seeds: list[int]
    record: dict[str, Any]
    watermarked: list[bool]


_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(key: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


def _loras(refs: Sequence[Any]) -> list[LoraRef]:
    out = []
    for r in refs:
        if isinstance(r, LoraRef):
            out.append(r)
        elif isinstance(r, str):
            out.append(LoraRef(r))
        else:
            name, scale = r
            out.append(LoraRef(str(name), float(scale)))
    return out


def _model_index(folder: Path) -> dict[str, Any]:
    try:
        d = json.loads((Path(folder) / "model_index.json").read_text())
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def pipeline_class_name(folder: Path) -> str:
    """`_class_name` from a diffusers folder's model_index.json ('' when absent)."""
    return str(_model_index(folder).get("_class_name", ""))


def _check(p: TextToImageParams) -> None:
    if not isinstance(p.prompt, str) or not p.prompt.strip():
        raise ParamsError("parameter 'prompt' must be a non-empty string")
    if p.steps < 1:
        raise ParamsError(f"parameter 'steps' must be >= 1, got {p.steps}")
    if p.num_images < 1 or p.num_images > 64:
        raise ParamsError(f"parameter 'num_images' must be in 1..64, got {p.num_images}")
    if not 0.0 <= p.strength <= 1.0:
        raise ParamsError(f"parameter 'strength' must be in [0, 1], got {p.strength}")
    if p.scheduler is not None and p.scheduler not in SCHEDULERS:
        raise ParamsError(f"parameter 'scheduler' must be one of {sorted(SCHEDULERS)}, got {p.scheduler!r}")
    if p.mask is not None and p.init_image is None:
        raise ParamsError("a mask (inpainting) needs an init_image")
    if p.init_image is None:
        check_size(p.width, p.height, 8)


def _resolve_lora(ref: LoraRef, allow_network: bool) -> tuple[Path, str | None]:
    """(folder, weight file name) of a LoRA given by registered name or path."""
    p = Path(ref.name).expanduser()
    if p.is_file():
        return p.parent, p.name
    if p.is_dir():
        return p, None
    s = spec(ref.name)
    folder = resolve(ref.name, allow_network=allow_network)
    if folder.is_file():
        return folder.parent, folder.name
    return folder, s.weight_name


def _family_root(cls_name: str) -> str:
    """'StableDiffusionXLImg2ImgPipeline' → 'StableDiffusionXL' (the base family a LoRA is trained for)."""
    for suffix in ("Img2ImgPipeline", "InpaintPipeline", "Pipeline"):
        if cls_name.endswith(suffix):
            return cls_name[: -len(suffix)]
    return cls_name


def _check_lora_base(name: str, family: str) -> None:
    """A registered LoRA that declares its base model must match the pipeline family (an SDXL LoRA
    cannot load into SD 1.5): ParamsError naming both, instead of a shape-mismatch traceback."""
    s = _spec_or_none(name) if not Path(name).expanduser().exists() else None
    if s is None or not s.base:
        return
    b = _spec_or_none(s.base)
    if b is not None and b.kind.endswith("Pipeline") and _family_root(b.kind) != _family_root(family):
        raise ParamsError(f"LoRA {name!r} is for {s.base} ({b.kind}); the chosen model is a {family}")


def _load_base(folder: Path, cfg, cache: PipelineCache | None):
    from diffusers import AutoPipelineForText2Image

    def loader():
        variant = "fp16" if cfg.dtype != "float32" and any(folder.glob("*/*.fp16.safetensors")) else None
        # components saved as [null, null] (no safety checker, SD3 without its T5 encoder) are passed as None
        absent = {k: None for k, v in _model_index(folder).items()
                  if not k.startswith("_") and isinstance(v, list) and v[:2] == [None, None]}
        pipe = AutoPipelineForText2Image.from_pretrained(str(folder), dtype=cfg.torch_dtype, variant=variant, **absent)
        pipe.set_progress_bar_config(disable=True)
        return place_pipeline(pipe, cfg)

    return get_pipeline(("diffusers", str(folder.resolve()), cfg), loader, cache)


def _load_controlnet(folder: Path, cfg, cache: PipelineCache | None):
    def loader():
        from diffusers import ControlNetModel

        return ControlNetModel.from_pretrained(str(folder), dtype=cfg.torch_dtype).to(cfg.device)

    return get_pipeline(("controlnet", str(folder.resolve()), cfg), loader, cache)


def _job_pipeline(base, mode: str, controlnet=None):
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting, AutoPipelineForText2Image

    auto = {"text": AutoPipelineForText2Image, "img2img": AutoPipelineForImage2Image, "inpaint": AutoPipelineForInpainting}[mode]
    kw = {"controlnet": controlnet} if controlnet is not None else {}
    pipe = auto.from_pipe(base, **kw)
    pipe.set_progress_bar_config(disable=True)
    if getattr(pipe, "watermark", None) is not None:
        pipe.watermark = None  # SDXL's own watermarker: the studio embeds the same payload after the inpaint overlay
    return pipe


def _set_scheduler(pipe, name: str | None, family: str) -> None:
    import diffusers

    if name is None:
        cls, overrides = type(pipe.scheduler), {}
    else:
        if family in FLOW_MATCHING and name != "euler":
            raise ParamsError(f"{family} is a flow-matching model: scheduler must be 'euler' (or unset), got {name!r}")
        if family in FLOW_MATCHING:
            cls, overrides = type(pipe.scheduler), {}
        else:
            cls_name, overrides = SCHEDULERS[name]
            cls = getattr(diffusers, cls_name)
    pipe.scheduler = cls.from_config(pipe.scheduler.config, **overrides)  # a fresh, job-local instance


def generate_images(params: TextToImageParams, progress: Progress | None = None, cancel: Cancel | None = None,
                    cache: PipelineCache | None = None) -> ImageBatch:
    """Run one generation job; see TextToImageParams. Progress reports fractions in [0,1] (loading,
    then one report per denoising step); `cancel()` is polled between steps (CancelledError)."""
    p = params
    _check(p)
    check_prompt(p.prompt)
    check_cancel(cancel)
    seed = resolve_seed(p.seed)
    seeds = [seed + i for i in range(p.num_images)]
    record = generation_record(p, seed)

    # Resolve every model before loading anything: a missing one fails fast with its instructions.
    folder = resolve(p.model, local_path=p.model_path, allow_network=p.allow_network)
    loras = [(_resolve_lora(r, p.allow_network), r.scale) for r in _loras(p.loras)]
    cn_folder = resolve(p.controlnet.model, allow_network=p.allow_network) if p.controlnet else None
    ip_folder = resolve(p.ip_adapter.model, allow_network=p.allow_network) if p.ip_adapter else None
    family = pipeline_class_name(folder)
    if not family:
        raise ModelUnavailableError(f"model {p.model!r}: {folder} has no model_index.json; it is not a diffusers pipeline folder")
    for r in _loras(p.loras):
        _check_lora_base(r.name, family)

    mode = "inpaint" if p.mask is not None else ("img2img" if p.init_image is not None else "text")
    init = load_rgb(p.init_image, "init image") if p.init_image is not None else None
    mask = load_mask(p.mask, init.shape[:2]) if p.mask is not None else None
    if init is not None and int(p.steps * p.strength) == 0:
        # Zero denoising steps: the documented identity (see module docstring).
        if progress:
            progress(1.0, "strength 0: input returned unchanged")
        return ImageBatch([init.copy() for _ in seeds], seeds, record | {"identity": True, "watermark_id": None},
                          [False] * len(seeds))

    s_model = _spec_or_none(p.model) if p.model_path is None else None
    cfg = select_device(s_model.dtype if s_model else "float16", s_model.size_hint if s_model else 0)
    if progress:
        progress(0.0, f"loading {p.model}")
    base = _load_base(folder, cfg, cache)
    controlnet = _load_controlnet(cn_folder, cfg, cache) if cn_folder is not None else None
    check_cancel(cancel)

    with _lock_for(str(folder.resolve())):
        pipe = _job_pipeline(base, mode, controlnet)
        _set_scheduler(pipe, p.scheduler, family)
        adapters: list[str] = []
        try:
            for i, ((lfolder, wname), scale) in enumerate(loras):
                name = f"studio_lora_{i}"
                pipe.load_lora_weights(str(lfolder), weight_name=wname, adapter_name=name)
                adapters.append(name)
            if adapters:
                pipe.set_adapters(adapters, adapter_weights=[s for _, s in loras])
            kwargs: dict[str, Any] = dict(
                prompt=p.prompt, negative_prompt=p.negative_prompt or None, num_inference_steps=p.steps,
                guidance_scale=p.guidance_scale, num_images_per_prompt=p.num_images, generator=generators(seed, p.num_images),
                output_type="np",
            )
            if p.ip_adapter is not None:
                s = _spec_or_none(p.ip_adapter.model)
                pipe.load_ip_adapter(str(ip_folder), subfolder=p.ip_adapter.subfolder or (s.subfolder if s else None) or "",
                                     weight_name=p.ip_adapter.weight_name or (s.weight_name if s else None))
                pipe.set_ip_adapter_scale(p.ip_adapter.scale)
                kwargs["ip_adapter_image"] = to_pil(load_rgb(p.ip_adapter.image, "IP-Adapter image"))
            if mode == "text":
                kwargs.update(width=p.width, height=p.height)
            else:
                # the output keeps the init image's size (SD1.x img2img infers it; SD3/SDXL take it explicitly)
                kwargs.update(image=to_pil(init), strength=p.strength, width=init.shape[1], height=init.shape[0])
                if mode == "inpaint":
                    kwargs["mask_image"] = to_pil(mask.astype(np.uint8) * 255)
            if controlnet is not None:
                control = to_pil(load_rgb(p.controlnet.image, "control image"))
                kwargs["controlnet_conditioning_scale"] = p.controlnet.scale
                kwargs["control_image" if mode != "text" else "image"] = control
            total = p.steps if mode == "text" else max(1, int(p.steps * p.strength))
            kwargs["callback_on_step_end"] = step_callback(total, progress, cancel)
            accepted = inspect.signature(pipe.__call__).parameters
            kwargs = {k: v for k, v in kwargs.items() if k in accepted and v is not None}
            out = pipe(**kwargs)
        finally:
            if adapters:
                pipe.unload_lora_weights()
            if p.ip_adapter is not None and hasattr(pipe, "unload_ip_adapter"):
                try:
                    pipe.unload_ip_adapter()
                except Exception:  # noqa: BLE001 - nothing loaded because loading failed
                    pass
    check_output_safety(getattr(out, "nsfw_content_detected", None))
    images = list(to_uint8(out.images))
    if mask is not None:
        images = [np.where(mask[:, :, None], im, init) for im in images]
    marked = []
    for i, im in enumerate(images):
        if p.watermark:
            images[i], ok = embed_watermark(im)
        else:
            ok = False
        marked.append(ok)
    record["watermark_id"] = WATERMARK_ID if any(marked) else None
    return ImageBatch(images, seeds, record, marked)


def text_to_image(params: TextToImageParams, progress: Progress | None = None, cancel: Cancel | None = None,
                  cache: PipelineCache | None = None) -> list[np.ndarray]:
    """Generated images, each (H,W,3) uint8 sRGB. See `generate_images` for seeds and the record."""
    return generate_images(params, progress, cancel, cache).images


def _spec_or_none(name: str):
    try:
        return spec(name)
    except ModelUnavailableError:
        return None


def generation_record(p: TextToImageParams, seed: int) -> dict[str, Any]:
    """JSON-able parameters that reproduce the job (images are summarised by shape, not embedded)."""

    def summarise(v: Any) -> Any:
        if v is None or isinstance(v, (str, int, float, bool)):
            return v
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, dict):
            return {k: summarise(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [summarise(x) for x in v]
        if dataclasses.is_dataclass(v):
            return {f.name: summarise(getattr(v, f.name)) for f in dataclasses.fields(v)}
        shape = getattr(v, "shape", None) or (getattr(v, "size", None)[::-1] if hasattr(v, "mode") else None)
        return f"<image {tuple(shape) if shape else type(v).__name__}>"

    d = {f.name: summarise(getattr(p, f.name)) for f in dataclasses.fields(p)} | {"seed": seed, "pipeline": "text_to_image"}
    d.pop("allow_network", None)
    return d


# ---- CLI-callable ------------------------------------------------------------------------------------


def generate_image_files(params: TextToImageParams, out_dir: str | Path, stem: str = "image",
                         progress: Progress | None = None, cancel: Cancel | None = None) -> list[Path]:
    """Generate and write `<out_dir>/<stem>_<i>.png` (atomically), each with its parameters and seed
    in the PNG `parameters` text chunk. Returns the written paths."""
    from PIL import PngImagePlugin

    from studio.assets.atomic import atomic_path

    batch = generate_images(params, progress, cancel)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (im, s) in enumerate(zip(batch.images, batch.seeds)):
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", json.dumps(batch.record | {"seed": s, "index": i, "watermarked": batch.watermarked[i]}))
        path = out / f"{stem}_{i}.png"
        with atomic_path(path) as tmp:
            to_pil(im).save(tmp, format="PNG", pnginfo=info)
        paths.append(path)
    return paths
