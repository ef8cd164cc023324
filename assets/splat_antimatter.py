"""antimatter15 `.splat`: the 32-byte-per-Gaussian format of antimatter15/splat and its converter.

Record layout (little-endian, no header, N = file size / 32):
  position 3×f32 | scale 3×f32 (linear standard deviations, not log) |
  colour RGBA 4×u8 (RGB = clamp(0.5 + SH_C0·sh_dc)·255, A = sigmoid(opacity)·255) |
  rotation 4×u8 wxyz, byte = clamp((q/|q|)·128 + 128, 0, 255).
We round to the nearest byte (antimatter15's convert.py truncates; viewers cannot tell the
difference and rounding halves the error). Colour is view-independent: the reader returns
degree-0 SH; the writer drops SH bands > 0.

Order: the writer sorts Gaussians as antimatter15's converter does — descending
exp(scale_0+scale_1+scale_2) · sigmoid(opacity) (big, opaque splats first), so viewers that
stream the file progressively draw the most visible splats first. The sort is stable.
Frame: positions are stored as the asset holds them; no axis conversion.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from studio.errors import InvalidAssetError, NothingToExportError

from .asset import Asset, AssetMetadata
from .atomic import write_bytes_atomic
from .colour import SH_C0
from .splat_ply import check_splats_finite
from .splats import GaussianSplats

RECORD = np.dtype([("pos", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])
assert RECORD.itemsize == 32
OPACITY_EPS = 1e-4  # alpha bytes 0 / 255 decode to opacity 1e-4 / 1−1e-4 (logit ∓9.2) instead of ±inf; re-encoding gives the same byte
MIN_SCALE = 1e-30  # a stored scale of 0 decodes to log(1e-30) instead of −inf


def viewer_order(s: GaussianSplats) -> np.ndarray:
    """Indices sorting splats by descending exp(Σ log scales) · opacity (antimatter15's convert.py)."""
    key = np.exp(s.log_scales.astype(np.float64).sum(1)) * s.opacities.astype(np.float64)
    return np.argsort(-key, kind="stable")


def encode_splat(s: GaussianSplats, sort: bool = True) -> bytes:
    """The .splat bytes of `s` (sorted by `viewer_order` unless sort=False)."""
    if sort:
        s = s.subset(viewer_order(s))
    rec = np.empty(len(s), RECORD)
    rec["pos"] = s.means
    rec["scale"] = np.exp(s.log_scales)
    rgb = np.clip(0.5 + SH_C0 * s.sh[:, 0].astype(np.float64), 0.0, 1.0)
    rec["rgba"][:, :3] = np.round(rgb * 255.0)
    rec["rgba"][:, 3] = np.round(s.opacities.astype(np.float64) * 255.0)
    q = s.quats.astype(np.float64)
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.where(norm > 0, q / np.where(norm > 0, norm, 1), [1.0, 0.0, 0.0, 0.0])
    rec["rot"] = np.clip(np.round(q * 128.0 + 128.0), 0, 255)
    return rec.tobytes()


def decode_splat(data: bytes | np.ndarray, path: Path | None = None) -> GaussianSplats:
    """GaussianSplats (degree-0 SH) from .splat bytes."""
    if len(data) == 0:
        raise InvalidAssetError(path, "file is empty (0 bytes)")
    if len(data) % RECORD.itemsize:
        raise InvalidAssetError(
            path, f".splat size {len(data)} bytes is not a multiple of 32 (truncated or not a .splat file)"
        )
    rec = np.frombuffer(data, RECORD)
    scale = rec["scale"].astype(np.float64)
    if not np.isfinite(rec["pos"]).all() or not np.isfinite(scale).all():
        bad = ~(np.isfinite(rec["pos"]).all(1) & np.isfinite(scale).all(1))
        raise InvalidAssetError(path, f"{int(bad.sum())} splats have NaN/Inf position or scale (first at index {int(np.argmax(bad))})")
    if (scale < 0).any():
        raise InvalidAssetError(path, f"{int((scale < 0).any(1).sum())} splats have negative scales (not a .splat file?)")
    rgba = rec["rgba"].astype(np.float64) / 255.0
    alpha = np.clip(rgba[:, 3], OPACITY_EPS, 1.0 - OPACITY_EPS)
    q = (rec["rot"].astype(np.float64) - 128.0) / 128.0
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.where(norm > 0, q / np.where(norm > 0, norm, 1), [1.0, 0.0, 0.0, 0.0])
    s = GaussianSplats(
        means=rec["pos"],
        quats=q,
        log_scales=np.log(np.maximum(scale, MIN_SCALE)),
        opacity_logits=np.log(alpha / (1.0 - alpha)),
        sh=((rgba[:, :3] - 0.5) / SH_C0)[:, None, :],
    )
    check_splats_finite(path, s)
    return s


def read_splat_file(path: str | Path) -> GaussianSplats:
    """Read a .splat file into GaussianSplats (degree 0)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InvalidAssetError(path, f"cannot read file: {e.strerror or e}") from None
    return decode_splat(data, path)


def write_splat_file(splats: GaussianSplats, path: str | Path, sort: bool = True) -> Path:
    """Write `splats` as .splat (atomically), sorted by `viewer_order` unless sort=False."""
    path = Path(path)
    if len(splats) == 0:
        raise NothingToExportError(path, "splat set is empty; .splat needs at least one Gaussian")
    write_bytes_atomic(path, encode_splat(splats, sort))
    return path


def read_splat(path: str | Path) -> Asset:
    """Asset with `splats` from a .splat file (metadata name = file stem)."""
    path = Path(path)
    return Asset(splats=read_splat_file(path), metadata=AssetMetadata(name=path.stem))


def write_splat(asset: Asset, path: str | Path) -> Path:
    """Write the asset's splats as .splat. Meshes are not stored by this format.

    Raises NothingToExportError when the asset has no splats.
    """
    if asset.splats is None or len(asset.splats) == 0:
        raise NothingToExportError(path, "asset has no Gaussian splats to write as .splat")
    return write_splat_file(asset.splats, path)
