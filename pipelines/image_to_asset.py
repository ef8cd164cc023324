"""One image → Asset: route selection between the feed-forward model and multiview + fitting.

`image_to_asset(image, method)`:
- "feedforward": TripoSR (registry name "tripo-sr", repo stabilityai/TripoSR) in one network pass;
  ModelUnavailableError naming the repo id and how to provide it when its weights are absent.
- "fit": the multiview stage (registry name "stable-zero123", a Zero123-class model) makes posed views, then
  `reconstruct.views_to_asset` fits Gaussian splats and bakes a mesh; with "instant-mesh" weights
  present `method="multiview-feedforward"` reconstructs those views in one InstantMesh pass instead.
- "auto" (default): feedforward when tripo-sr resolves; else multiview + InstantMesh when both
  models resolve; else multiview + fit when the multiview model resolves; else
  ModelUnavailableError naming every model that would have served.
The chosen method and model are recorded in `asset.metadata` (method, model; extras["route"]
says why).

Background removal (documented, no segmentation network here): an alpha channel is used when the
image has one that is not fully opaque; otherwise the border colour (median of the outermost
pixels) is keyed out — pixels within `key_tolerance` (max abs difference over RGB, 0–1 sRGB) of it
become background — and the largest foreground blob is kept. The foreground is then cropped,
recentred and padded to a square where it fills `foreground_ratio` of the side (TripoSR: 0.85),
on a grey (0.5) background.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from studio.errors import InvalidAssetError, ModelUnavailableError, StudioError

from .feedforward import FeedForwardParams

Progress = Callable[[float, str], None] | None
Cancel = Callable[[], bool] | None

SINGLE_IMAGE_MODEL = "tripo-sr"
MULTIVIEW_MODEL = "stable-zero123"
MULTIVIEW_RECON_MODEL = "instant-mesh"
METHODS = ("auto", "feedforward", "fit", "multiview-feedforward")


@dataclass(frozen=True)
class Prepared:
    """image (S,S,3) float32 sRGB in [0,1] on a grey background; mask (S,S) float32 foreground;
    source: "alpha" or "border-key" (how the foreground was found)."""

    image: np.ndarray
    mask: np.ndarray
    source: str


def load_rgba(image: Any) -> np.ndarray:
    """(H,W,4) float32 sRGB + alpha in [0,1] from a path, PIL image or array ((H,W), (H,W,3|4),
    uint8 or float in [0,1]); alpha 1 where the input has none. InvalidAssetError otherwise."""
    from .generation_common import image_array

    a = image_array(image, "RGBA", "the image")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or min(a.shape[:2]) < 2:
        raise InvalidAssetError(None, f"image must be (H,W), (H,W,3) or (H,W,4), got shape {a.shape}")
    f = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    if not np.isfinite(f).all() or f.min() < 0 or f.max() > 1:
        raise InvalidAssetError(None, "float images must hold finite values in [0, 1]")
    if f.shape[2] == 3:
        f = np.concatenate([f, np.ones(f.shape[:2] + (1,), np.float32)], axis=2)
    return f


def foreground_mask(rgba: np.ndarray, key_tolerance: float = 0.08) -> tuple[np.ndarray, str]:
    """(H,W) float32 foreground in [0,1] and how it was found ("alpha" / "border-key")."""
    from scipy import ndimage

    alpha = rgba[..., 3]
    if alpha.min() < 0.999:
        return alpha.astype(np.float32), "alpha"
    rgb = rgba[..., :3]
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    key = np.median(border, axis=0)
    fg = np.abs(rgb - key).max(axis=2) > key_tolerance
    labels, n = ndimage.label(fg)
    if n > 1:
        sizes = ndimage.sum(fg, labels, index=np.arange(1, n + 1))
        fg = labels == (1 + int(np.argmax(sizes)))
    fg = ndimage.binary_fill_holes(fg)
    return fg.astype(np.float32), "border-key"


def prepare_image(image: Any, size: int = 512, foreground_ratio: float = 0.85, background: float = 0.5,
                  key_tolerance: float = 0.08) -> Prepared:
    """Foreground → cropped, centred, padded square of `size` px where the object's longer side is
    `foreground_ratio` of the image, composited on `background` grey. InvalidAssetError when no
    foreground is found."""
    from PIL import Image

    if not 0 < foreground_ratio <= 1:
        raise ValueError(f"foreground_ratio must be in (0, 1], got {foreground_ratio}")
    rgba = load_rgba(image)
    mask, source = foreground_mask(rgba, key_tolerance)
    ys, xs = np.nonzero(mask > 0.5)
    if len(ys) == 0 or (len(ys) == mask.size and source == "alpha"):
        raise InvalidAssetError(None, f"no foreground object found ({source}): give an image with an alpha channel or a plain background")
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = rgba[y0:y1, x0:x1, :3]
    m = mask[y0:y1, x0:x1]
    side = int(np.ceil(max(crop.shape[:2]) / foreground_ratio))
    canvas = np.full((side, side, 3), background, np.float32)
    cmask = np.zeros((side, side), np.float32)
    oy, ox = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    canvas[oy : oy + crop.shape[0], ox : ox + crop.shape[1]] = crop * m[..., None] + background * (1 - m[..., None])
    cmask[oy : oy + crop.shape[0], ox : ox + crop.shape[1]] = m
    img = np.asarray(Image.fromarray((canvas * 255 + 0.5).astype(np.uint8)).resize((size, size), Image.LANCZOS), np.float32) / 255
    msk = np.asarray(Image.fromarray((cmask * 255 + 0.5).astype(np.uint8)).resize((size, size), Image.BILINEAR), np.float32) / 255
    return Prepared(img, msk, source)


def _present(name: str, local_path: str | Path | None = None) -> tuple[bool, str]:
    from studio.models import resolve

    try:
        return True, str(resolve(name, local_path=local_path))
    except ModelUnavailableError as e:
        return False, str(e)


def _default_multiview(image: np.ndarray, progress: Progress = None, cancel: Cancel = None):
    """The multiview stage (issue #7) when it is installed: `studio.pipelines.multiview.image_to_multiview`."""
    try:
        from . import multiview  # type: ignore[attr-defined]
    except ImportError as e:
        raise StudioError("the multiview stage (studio.pipelines.multiview) is not installed in this build") from e
    return multiview.image_to_multiview(image, progress=progress, cancel=cancel)


def image_to_asset(
    image: Any,
    method: str = "auto",
    params: FeedForwardParams = FeedForwardParams(),
    local_path: str | Path | None = None,
    allow_network: bool = False,
    multiview_fn: Callable[..., Any] | None = None,
    fit_fn: Callable[..., Any] | None = None,
    progress: Progress = None,
    cancel: Cancel = None,
):
    """One image (path, PIL image or array; alpha used as the mask) → Asset; see the module doc.

    local_path: an explicit TripoSR folder (config.yaml + model.ckpt). multiview_fn(image, progress,
    cancel) → Views overrides the multiview stage; fit_fn(views, progress, cancel) → Asset overrides
    `reconstruct.views_to_asset`. Raises ModelUnavailableError (naming repo ids) when the route
    cannot run, ValueError for an unknown method."""
    from .feedforward import load_model, single_image_to_asset, views_to_asset_feedforward

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    report = progress or (lambda f, m: None)
    if method in ("auto", "feedforward"):
        ok, why = _present(SINGLE_IMAGE_MODEL, local_path)
        if ok or method == "feedforward":
            if not ok and allow_network:
                ok = True
            if not ok:
                raise ModelUnavailableError(f"image_to_asset --method feedforward: {why}")
            prep = prepare_image(image, size=512)
            from studio.models import select_device

            dev = select_device("float16") if params.device is None else None
            device = params.device or dev.device
            dtype = dev.torch_dtype if dev is not None else __import__("torch").float32
            model = load_model(SINGLE_IMAGE_MODEL, local_path, device=device, dtype=dtype, allow_network=allow_network)
            asset = single_image_to_asset(prep.image, model, params, SINGLE_IMAGE_MODEL, progress, cancel)
            asset.metadata.extras.update(route="feedforward weights present" if method == "auto" else "asked for feedforward",
                                         foreground=prep.source)
            return asset
        feedforward_missing = why
    else:
        feedforward_missing = None
    mv_ok, mv_why = _present(MULTIVIEW_MODEL)
    if not mv_ok and multiview_fn is None:
        if method == "auto":
            raise ModelUnavailableError(
                f"image_to_asset: no route available. Feed-forward: {feedforward_missing} "
                f"Multiview + fit fallback: {mv_why}")
        raise ModelUnavailableError(f"image_to_asset --method {method}: {mv_why}")
    use_lrm = method == "multiview-feedforward" or (method == "auto" and _present(MULTIVIEW_RECON_MODEL)[0])
    if method == "multiview-feedforward":
        ok, why = _present(MULTIVIEW_RECON_MODEL)
        if not ok:
            raise ModelUnavailableError(f"image_to_asset --method multiview-feedforward: {why}")
    prep = prepare_image(image, size=320, foreground_ratio=0.85, background=1.0)
    report(0.0, "multiview generation")
    views = (multiview_fn or _default_multiview)(prep.image, progress=lambda f, m: report(0.4 * f, m), cancel=cancel)
    if use_lrm:
        model = load_model(MULTIVIEW_RECON_MODEL, device=params.device or "cpu")
        asset = views_to_asset_feedforward(views, model, FeedForwardParams(**{**params.__dict__, "resolution": 0}),
                                           MULTIVIEW_RECON_MODEL, lambda f, m: report(0.4 + 0.6 * f, m), cancel)
        asset.metadata.model = f"{MULTIVIEW_MODEL}+{MULTIVIEW_RECON_MODEL}"
        asset.metadata.method = "multiview-feedforward"
    else:
        from .reconstruct import views_to_asset

        asset = (fit_fn or views_to_asset)(views, progress=lambda f, m: report(0.4 + 0.6 * f, m), cancel=cancel)
        asset.metadata.method, asset.metadata.model = "fit", MULTIVIEW_MODEL
    asset.metadata.pipeline = "image_to_asset"
    route = (f"fell back to multiview + {'InstantMesh' if use_lrm else 'fit'}: {feedforward_missing}"
             if method == "auto" else f"asked for {method}")
    asset.metadata.extras.update(route=route, foreground=prep.source)
    return asset
