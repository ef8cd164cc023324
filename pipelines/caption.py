"""Captioning and tagging: images and assets → text, through transformers.

Architectures (picked from the model folder's `config.json` `architectures`):
* BlipForConditionalGeneration (blip-base / blip-large): captions; a `question` is used as the
  caption's text prefix ("a photo of"), as BLIP's conditional captioning does.
* BlipForQuestionAnswering (blip-vqa): answers `question` (default "what is this?").
* LLaVA-class image-text-to-text models (llava-1.5-7b, …): the question goes through the
  processor's chat template; only the newly generated answer is returned.

`caption_asset` renders the asset from 4 views around its bounds with the raster renderer,
captions each view, and stores the chosen caption in `asset.metadata.caption`, the per-view
captions in `extras["captions"]` and keyword tags in `extras["tags"]` (from there into GLB
extras / USD documentation).
"""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from studio.errors import EmptyResultError, ModelUnavailableError, safe_name
from studio.models import PipelineCache, get_pipeline, resolve, select_device, spec

from .generation_common import Cancel, Progress, check_cancel, load_rgb, to_pil

DEFAULT_QUESTION = "Describe this object in one short sentence."
STOPWORDS = set(
    "a an the of and or with on in at to is are was this that there it its it's for from by as be has have "
    "image picture photo photograph render rendering view close up closeup background white black grey gray "
    "some very what which made".split()
)


def _architecture(folder: Path) -> str:
    try:
        arch = json.loads((folder / "config.json").read_text()).get("architectures") or []
    except (OSError, ValueError) as e:
        raise ModelUnavailableError(f"{safe_name(str(folder))}: no readable config.json ({e}); not a transformers model folder") from e
    return str(arch[0]) if arch else ""


def _load(folder: Path, dtype_pref: str, cache: PipelineCache | None) -> tuple[Any, Any, str]:
    cfg = select_device(dtype_pref)
    arch = _architecture(folder)

    def loader():
        import transformers
        from transformers import AutoProcessor

        if arch.startswith("Blip"):
            cls = getattr(transformers, arch)
        else:
            cls = transformers.AutoModelForImageTextToText
        model = cls.from_pretrained(str(folder), dtype=cfg.torch_dtype).to(cfg.device).eval()
        processor = AutoProcessor.from_pretrained(str(folder))
        return processor, model, arch

    return get_pipeline(("transformers", str(folder.resolve()), cfg), loader, cache)


def caption_image(image: Any, model: str = "blip-base", question: str | None = None, *, model_path: str | Path | None = None,
                  allow_network: bool = False, max_new_tokens: int = 30, cache: PipelineCache | None = None) -> str:
    """Caption (or answer `question` about) one image: (H,W,3|4) uint8 array, PIL image or path.

    Greedy decoding, so the same image and model always give the same text. EmptyResultError when
    the model produces no words; ModelUnavailableError when its weights are missing.
    """
    import torch

    rgb = load_rgb(image, "image to caption")
    folder = resolve(model, local_path=model_path, allow_network=allow_network)
    try:
        pref = spec(model).dtype if model_path is None else "float16"
    except ModelUnavailableError:
        pref = "float16"
    processor, net, arch = _load(folder, pref, cache)
    pil = to_pil(rgb)
    device, dtype = net.device, net.dtype
    prompt_len = 0
    if arch == "BlipForConditionalGeneration":
        inputs = processor(images=pil, text=question, return_tensors="pt")
    elif arch == "BlipForQuestionAnswering":
        inputs = processor(images=pil, text=question or "what is this?", return_tensors="pt")
    else:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question or DEFAULT_QUESTION}]}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = processor(images=pil, text=text, return_tensors="pt")
        prompt_len = int(inputs["input_ids"].shape[1])
    inputs = {k: (v.to(device, dtype) if torch.is_floating_point(v) else v.to(device)) for k, v in inputs.items()}
    with torch.inference_mode():
        out = net.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
    tok = getattr(processor, "tokenizer", processor)
    text = tok.decode(out[0][prompt_len:], skip_special_tokens=True)
    text = " ".join(re.sub(r"\s*##", "", text).split()).strip()
    if not text:
        raise EmptyResultError(f"model {model!r} produced an empty caption; try another captioning model")
    return text


def tags_from_captions(captions: Sequence[str], limit: int = 10) -> list[str]:
    """Keywords: words of ≥ 3 letters not in STOPWORDS, by frequency over all captions, ties by first use."""
    words: list[str] = []
    for c in captions:
        words += [w for w in re.findall(r"[a-z][a-z\-]+", c.lower()) if len(w) >= 3 and w not in STOPWORDS]
    counts = Counter(words)
    first = {w: i for i, w in reversed(list(enumerate(words)))}
    return sorted(counts, key=lambda w: (-counts[w], first[w]))[:limit]


def orbit_cameras(bounds: np.ndarray, views: int = 4, size: int = 384, elevation_deg: float = 20.0, fov_y_deg: float = 40.0):
    """`views` cameras evenly around the bounds' centre (azimuth 0 = +Z, then around +Y), at `elevation_deg`,
    far enough that the bounding sphere fits the vertical field of view with 10 % margin."""
    from studio.assets.cameras import Cameras

    b = np.asarray(bounds, dtype=np.float64)
    centre = b.mean(axis=0)
    radius = max(0.5 * float(np.linalg.norm(b[1] - b[0])), 1e-6)
    dist = 1.1 * radius / np.sin(np.radians(fov_y_deg) / 2)
    az = np.radians(np.arange(views) * 360.0 / views)
    el = np.radians(elevation_deg)
    dirs = np.stack([np.sin(az) * np.cos(el), np.full_like(az, np.sin(el)), np.cos(az) * np.cos(el)], axis=1)
    return Cameras.look_at(centre + dist * dirs, centre, fov_y_deg=fov_y_deg, width=size, height=size)


@dataclass
class CaptionResult:
    caption: str
    tags: list[str]
    captions: list[str] = field(default_factory=list)  # one per rendered view (assets)


def _default_renderer(asset, cameras):
    from studio.renderers.raster import render

    return render(asset, cameras, passes=("rgb",), background=(1.0, 1.0, 1.0), tone_mapping="neutral")


def caption_asset(asset, renderer: Callable | None = None, model: str = "blip-base", question: str | None = None, *,
                  views: int = 4, size: int = 384, model_path: str | Path | None = None, allow_network: bool = False,
                  progress: Progress | None = None, cancel: Cancel | None = None,
                  cache: PipelineCache | None = None) -> CaptionResult:
    """Render `asset` from `views` orbit cameras (`renderer(asset, cameras) -> RenderResult` with an
    (N,H,W,3) uint8 `rgb`; default: the headless raster renderer on a white background), caption every
    view, and store the result in `asset.metadata` (caption = the most frequent view caption, ties
    → the first view's; extras["captions"], extras["tags"], extras["caption_model"])."""
    b = asset.bounds()
    if not asset.meshes and (asset.splats is None or not len(asset.splats)):
        raise EmptyResultError("the asset has no meshes or splats to render for captioning")
    cams = orbit_cameras(b, views=views, size=size)
    check_cancel(cancel)
    if progress:
        progress(0.0, f"rendering {views} views")
    rgb = np.asarray((renderer or _default_renderer)(asset, cams).rgb)
    if rgb.ndim != 4 or rgb.shape[0] != views:
        raise EmptyResultError(f"renderer returned rgb of shape {rgb.shape}, expected ({views}, H, W, 3)")
    captions = []
    for i in range(views):
        check_cancel(cancel)
        captions.append(caption_image(rgb[i], model, question, model_path=model_path, allow_network=allow_network, cache=cache))
        if progress:
            progress((i + 1) / views, f"captioned view {i + 1}/{views}")
    counts = Counter(captions)
    best = max(captions, key=lambda c: (counts[c], -captions.index(c)))
    tags = tags_from_captions(captions)
    asset.metadata.caption = best
    asset.metadata.extras["captions"] = captions
    asset.metadata.extras["tags"] = tags
    asset.metadata.extras["caption_model"] = model
    return CaptionResult(best, tags, captions)


# ---- CLI-callable ------------------------------------------------------------------------------------

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def caption_path(path: str | Path, model: str = "blip-base", question: str | None = None, out: str | Path | None = None,
                 allow_network: bool = False) -> CaptionResult:
    """`studio caption PATH`: an image is captioned directly; any asset format `studio.assets.io`
    reads is rendered and captioned, and with `out` written (atomically) with the caption and tags
    in its metadata."""
    p = Path(path)
    if p.suffix.lower() in IMAGE_SUFFIXES:
        text = caption_image(p, model, question, allow_network=allow_network)
        return CaptionResult(text, tags_from_captions([text]), [text])
    from studio.assets.io import load, save

    asset = load(p)
    res = caption_asset(asset, model=model, question=question, allow_network=allow_network)
    if out is not None:
        save(asset, out)
    return res
