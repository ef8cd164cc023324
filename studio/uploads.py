"""Storing user uploads safely: sanitised names, size and count limits, image decoding limits."""
from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidAssetError, StudioError
from .paths import safe_child, sanitize_upload_name

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"}


class UploadTooLargeError(StudioError):
    """An upload exceeds the configured size or count limit."""

    exit_code = 2


@dataclass(frozen=True)
class UploadLimits:
    max_files: int = 500
    max_file_bytes: int = 64 << 20
    max_total_bytes: int = 2 << 30
    max_image_pixels: int = 64_000_000  # decompression bombs beyond this are refused


def check_image(data: bytes, name: str, limits: UploadLimits) -> tuple[int, int]:
    """Decode the header (and verify) without trusting the file: (width, height) or InvalidAssetError."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if w * h > limits.max_image_pixels:
                raise InvalidAssetError(name, f"image is {w}x{h} = {w * h:,} pixels, above the {limits.max_image_pixels:,} limit")
            im.verify()
    except InvalidAssetError:
        raise
    except Exception as e:  # PIL raises many types (UnidentifiedImageError, DecompressionBombError, OSError, ...)
        raise InvalidAssetError(name, f"not a readable image ({type(e).__name__}: {e})") from None
    return w, h


def store_uploads(files: list[tuple[str, bytes]], root: Path, limits: UploadLimits = UploadLimits(),
                  images_only: bool = False) -> Path:
    """Write (name, bytes) pairs into a new folder under `root`; returns the folder.

    Names are reduced to safe basenames; duplicates get a numeric suffix. Nothing is written
    unless every file passes the checks."""
    if not files:
        raise InvalidAssetError(None, "no files were uploaded")
    if len(files) > limits.max_files:
        raise UploadTooLargeError(f"{len(files)} files uploaded; the limit is {limits.max_files}")
    total = sum(len(d) for _, d in files)
    if total > limits.max_total_bytes:
        raise UploadTooLargeError(f"upload is {total:,} bytes; the limit is {limits.max_total_bytes:,}")
    names: list[str] = []
    for name, data in files:
        clean = sanitize_upload_name(name)
        if len(data) > limits.max_file_bytes:
            raise UploadTooLargeError(f"{clean} is {len(data):,} bytes; the per-file limit is {limits.max_file_bytes:,}")
        if len(data) == 0:
            raise InvalidAssetError(clean, "file is empty (0 bytes)")
        if images_only:
            if Path(clean).suffix.lower() not in IMAGE_EXTS:
                raise InvalidAssetError(clean, f"not an image file; expected one of {sorted(IMAGE_EXTS)}")
            check_image(data, clean, limits)
        stem, suffix = Path(clean).stem, Path(clean).suffix
        k = 1
        while clean in names:
            clean = f"{stem}_{k}{suffix}"
            k += 1
        names.append(clean)
    folder = safe_child(root, uuid.uuid4().hex[:16])
    folder.mkdir(parents=True)
    for clean, (_, data) in zip(names, files):
        safe_child(folder, clean).write_bytes(data)
    return folder
