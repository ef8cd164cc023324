"""What every generative stage shares: devices, seeds, step callbacks (progress + cancel), the prompt
safety filter, the output safety check, the invisible watermark and image conversions.

Images crossing stage boundaries are (H,W,3) uint8 sRGB numpy arrays, row 0 at the top.
"""
from __future__ import annotations

import os
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from studio.errors import BlockedContentError, CancelledError, InvalidAssetError, safe_name
from studio.models import DeviceConfig, place_pipeline, select_device  # noqa: F401  (re-exported)

Progress = Callable[[float, str], None]
Cancel = Callable[[], bool]

# ---- seeds ------------------------------------------------------------------------------------------


def resolve_seed(seed: int | None) -> int:
    """The seed to use and record: `seed`, or a fresh random 31-bit one when None."""
    return int(seed) if seed is not None else random.SystemRandom().randrange(0, 2**31 - 1)


def generators(seed: int, n: int) -> list:
    """One CPU torch.Generator per output image, seeded seed, seed+1, …: image i is reproducible on
    its own (`seed+i`, n=1) and identical across devices (diffusers draws CPU noise then moves it)."""
    import torch

    return [torch.Generator("cpu").manual_seed(int(seed) + i) for i in range(n)]


# ---- progress and cancellation --------------------------------------------------------------------


def check_cancel(cancel: Cancel | None) -> None:
    """Raise CancelledError when `cancel()` says so."""
    if cancel is not None and cancel():
        raise CancelledError("generation cancelled")


def step_callback(total_steps: int, progress: Progress | None, cancel: Cancel | None, label: str = "denoising",
                  start: float = 0.0, span: float = 1.0) -> Callable:
    """A diffusers `callback_on_step_end`: reports `start + span * (i+1)/total` after every step and
    raises CancelledError between steps once `cancel()` is true."""

    def cb(pipe: Any, step: int, timestep: Any, kwargs: dict) -> dict:
        # the pipeline's own count when it exposes one (img2img runs about steps × strength)
        total = int(getattr(pipe, "_num_timesteps", None) or total_steps)
        if progress is not None:
            progress(start + span * min(1.0, (step + 1) / max(1, total)), f"{label} step {step + 1}/{total}")
        check_cancel(cancel)
        return kwargs

    return cb


# ---- prompt safety -------------------------------------------------------------------------------

# A deliberately short default; deployments configure theirs with $STUDIO_BLOCKLIST (a text file,
# one term or /regex/ per line, '#' comments).
DEFAULT_BLOCKLIST: tuple[str, ...] = ("child porn", "csam", "underage nude", "/\\bloli\\b/", "/\\bshota\\b/")


def load_blocklist(path: str | Path | None = None) -> list[str]:
    """Terms from `path` or `$STUDIO_BLOCKLIST`, else DEFAULT_BLOCKLIST."""
    path = path or os.environ.get("STUDIO_BLOCKLIST")
    if not path:
        return list(DEFAULT_BLOCKLIST)
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise InvalidAssetError(p, f"cannot read the prompt blocklist: {e}") from e
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def _rule_matches(rule: str, text: str) -> bool:
    if len(rule) > 2 and rule.startswith("/") and rule.endswith("/"):
        return re.search(rule[1:-1], text, flags=re.IGNORECASE) is not None
    words = r"\s+".join(re.escape(w) for w in rule.lower().split())
    return re.search(rf"(?<!\w){words}(?!\w)", text.lower()) is not None


def check_prompt(*texts: str | None, blocklist: Sequence[str] | None = None) -> None:
    """Raise BlockedContentError naming the rule when any prompt matches the blocklist
    (case-insensitive, whole words; `/regex/` rules as regular expressions)."""
    rules = list(blocklist) if blocklist is not None else load_blocklist()
    for t in texts:
        if not t:
            continue
        normalised = " ".join(str(t).split())
        for rule in rules:
            if _rule_matches(rule, normalised):
                raise BlockedContentError(f"prompt refused by the safety filter (matches blocklist rule {rule!r})")


def check_output_safety(nsfw_flags: Sequence[bool] | None) -> None:
    """Raise BlockedContentError when the pipeline's safety checker flagged any image (diffusers
    blanks flagged images; the studio refuses instead of returning a placeholder)."""
    if nsfw_flags and any(bool(f) for f in nsfw_flags):
        idx = [i for i, f in enumerate(nsfw_flags) if f]
        raise BlockedContentError(f"generated image(s) {idx} flagged by the safety checker; nothing returned")


# ---- invisible watermark -----------------------------------------------------------------------------

# 48-bit payload (the one diffusers' SDXL watermarker uses), embedded with DWT-DCT.
WATERMARK_MESSAGE = 0b101100111110110010010000011110111011000110011110
WATERMARK_BITS = [int(b) for b in bin(WATERMARK_MESSAGE)[2:]]
WATERMARK_MIN_SIZE = 256  # imwatermark's dwtDct needs both sides ≥ 256 px
WATERMARK_ID = f"imwatermark-dwtDct-{WATERMARK_MESSAGE:012x}"


def watermark_available() -> bool:
    try:
        import imwatermark  # noqa: F401
    except ImportError:
        return False
    return True


def embed_watermark(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """(watermarked copy, embedded?) of an (H,W,3) uint8 image. Images smaller than 256 px on a side
    or without `invisible-watermark` installed come back unchanged with False (as diffusers does)."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"embed_watermark wants (H,W,3) uint8, got {img.shape} {img.dtype}")
    if min(img.shape[:2]) < WATERMARK_MIN_SIZE or not watermark_available():
        return img.copy(), False
    from imwatermark import WatermarkEncoder

    enc = WatermarkEncoder()
    enc.set_watermark("bits", WATERMARK_BITS)
    bgr = np.ascontiguousarray(img[:, :, ::-1])
    return np.ascontiguousarray(enc.encode(bgr, "dwtDct")[:, :, ::-1]), True


def watermark_score(image: np.ndarray) -> float:
    """Fraction of the 48 payload bits decoded correctly (≈0.5 for an unmarked image)."""
    img = np.asarray(image)
    if min(img.shape[:2]) < WATERMARK_MIN_SIZE or not watermark_available():
        return 0.0
    from imwatermark import WatermarkDecoder

    dec = WatermarkDecoder("bits", len(WATERMARK_BITS))
    got = dec.decode(np.ascontiguousarray(img[:, :, :3][:, :, ::-1]), "dwtDct")
    return float(np.mean(np.asarray(got, dtype=int) == np.asarray(WATERMARK_BITS)))


def detect_watermark(image: np.ndarray, threshold: float = 0.9) -> bool:
    """True when ≥ `threshold` of the payload bits match (chance of a false positive on an unmarked
    image at 0.9: P(Binomial(48, .5) ≥ 44) ≈ 1e-9)."""
    return watermark_score(image) >= threshold


# ---- images ---------------------------------------------------------------------------------------


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0,1] (…,H,W,3) → uint8, rounded."""
    return np.clip(np.round(np.asarray(images, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def image_array(image: Any, mode: str, label: str = "image") -> np.ndarray:
    """A path or PIL image converted to PIL `mode` ("RGB", "RGBA", "L") as a uint8 array; any other
    input is returned as an array unchanged. InvalidAssetError (naming the file) when unreadable."""
    from PIL import Image

    if isinstance(image, (str, Path)):
        try:
            with Image.open(image) as im:
                return np.asarray(im.convert(mode)).copy()
        except (OSError, ValueError) as e:
            raise InvalidAssetError(image, f"cannot read {label}: {e}") from e
    if isinstance(image, Image.Image):
        return np.asarray(image.convert(mode)).copy()
    return np.asarray(image)


def load_rgb(image: Any, label: str = "image") -> np.ndarray:
    """(H,W,3) uint8 from a path, PIL image or array ((H,W), (H,W,3|4) uint8 or float in [0,1];
    alpha is dropped). InvalidAssetError for unreadable files or odd shapes."""
    a = image_array(image, "RGB", label)
    if a.dtype != np.uint8:
        a = to_uint8(a)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise InvalidAssetError(None, f"{label} must be (H,W), (H,W,3) or (H,W,4), got shape {a.shape}")
    return np.ascontiguousarray(a[:, :, :3])


def load_mask(mask: Any, shape: tuple[int, int], label: str = "mask") -> np.ndarray:
    """(H,W) bool: True where the image is to be repainted (white / > 0.5), resized (nearest) to `shape`."""
    from PIL import Image

    m = image_array(mask, "L", label)
    if m.ndim == 3:  # an RGB(A) array (files and PIL images arrive as "L")
        m = m[..., :3].mean(axis=2) if m.shape[2] >= 3 else m[..., 0]
    m = m.astype(np.float64)
    if m.max(initial=0) > 1.0:
        m = m / 255.0
    b = m > 0.5
    if b.shape != tuple(shape):
        b = np.asarray(Image.fromarray(b.astype(np.uint8) * 255).resize((shape[1], shape[0]), Image.NEAREST)) > 127
    return b


def to_pil(image: np.ndarray):
    from PIL import Image

    return Image.fromarray(np.asarray(image, dtype=np.uint8))


def check_size(width: int, height: int, multiple: int) -> None:
    """Refuse sizes the model cannot produce exactly (no silent resize)."""
    from studio.pipeline import ParamsError

    for n, v in (("width", width), ("height", height)):
        if v <= 0 or v % multiple:
            raise ParamsError(f"{n} must be a positive multiple of {multiple} for this model, got {v}")


def describe(obj: Any) -> str:
    return safe_name(str(obj))


def load_pipeline_class(model: str, folder: Path, cls_name: str, family: str, needed_by: str,
                        cache: Any = None) -> Any:
    """The diffusers pipeline `cls_name` from the model folder `folder`, warm-cached.

    The folder's model_index.json must name exactly that class; otherwise a ModelUnavailableError
    says what the folder is (`family`, e.g. "Marigold") and what `needed_by` needs."""
    import json

    import diffusers

    from studio.errors import ModelUnavailableError
    from studio.models import get_pipeline

    index = folder / "model_index.json"
    if not index.is_file():
        raise ModelUnavailableError(f"model {model!r}: {folder} has no model_index.json; it is not a diffusers {family} folder")
    found = json.loads(index.read_text(encoding="utf-8")).get("_class_name")
    if found != cls_name:
        raise ModelUnavailableError(f"model {model!r} at {folder} is a {found}, but {needed_by} needs a {cls_name}")
    cfg = select_device("float16")

    def loader():
        pipe = getattr(diffusers, cls_name).from_pretrained(str(folder), dtype=cfg.torch_dtype)
        pipe.set_progress_bar_config(disable=True)
        return place_pipeline(pipe, cfg)

    return get_pipeline((family.lower(), cls_name, str(folder.resolve()), cfg), loader, cache)
