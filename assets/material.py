"""glTF 2.0 metallic-roughness materials and their textures.

Texture images are stored as they are in glTF: colour maps (base colour, emissive) sRGB-encoded,
data maps (metallic-roughness, normal, occlusion) linear. UVs follow glTF: origin top-left, v down.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# OpenGL sampler enums, as glTF stores them.
NEAREST, LINEAR = 9728, 9729
LINEAR_MIPMAP_LINEAR = 9987
REPEAT, CLAMP_TO_EDGE, MIRRORED_REPEAT = 10497, 33071, 33648

ALPHA_MODES = ("OPAQUE", "MASK", "BLEND")


@dataclass(frozen=True)
class Sampler:
    """glTF sampler. None filters mean 'implementation default' (as glTF allows)."""

    mag_filter: int | None = None
    min_filter: int | None = None
    wrap_s: int = REPEAT
    wrap_t: int = REPEAT


@dataclass(frozen=True)
class TextureTransform:
    """KHR_texture_transform: uv' = T(offset) · R(rotation, radians) · S(scale) · uv."""

    offset: tuple[float, float] = (0.0, 0.0)
    rotation: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    texcoord: int | None = None

    def matrix(self) -> np.ndarray:
        """(3,3) float64 matrix acting on homogeneous (u, v, 1)."""
        c, s = np.cos(self.rotation), np.sin(self.rotation)
        t = np.array([[1, 0, self.offset[0]], [0, 1, self.offset[1]], [0, 0, 1]], dtype=np.float64)
        r = np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]], dtype=np.float64)
        sc = np.diag([self.scale[0], self.scale[1], 1.0])
        return t @ r @ sc


@dataclass(eq=False)
class Texture:
    """One texture slot: decoded pixels plus how to sample them.

    image: (H, W, C) uint8, C in {1, 2, 3, 4}. `encoded` keeps the original file bytes (PNG/JPEG)
    so export does not re-encode (and JPEGs are not re-compressed); `mime_type` names that encoding.
    """

    image: np.ndarray
    texcoord: int = 0
    transform: TextureTransform | None = None
    sampler: Sampler = field(default_factory=Sampler)
    name: str = ""
    encoded: bytes | None = None
    mime_type: str = "image/png"

    def __post_init__(self) -> None:
        img = np.asarray(self.image)
        if img.ndim == 2:
            img = img[:, :, None]
        if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4) or img.dtype != np.uint8:
            raise ValueError(f"texture image must be (H,W,C<=4) uint8, got {img.shape} {img.dtype}")
        self.image = img

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.image.shape[1]), int(self.image.shape[0])

    def png_bytes(self) -> bytes:
        """The image as PNG (the original bytes when they already are PNG)."""
        if self.encoded is not None and self.mime_type == "image/png":
            return self.encoded
        from PIL import Image

        img = self.image[:, :, 0] if self.image.shape[2] == 1 else self.image
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        return buf.getvalue()

    def file_bytes(self) -> tuple[bytes, str]:
        """(bytes, mime type) to embed in an export: the original encoding when it is PNG or JPEG."""
        if self.encoded is not None and self.mime_type in ("image/png", "image/jpeg"):
            return self.encoded, self.mime_type
        return self.png_bytes(), "image/png"

    def digest(self) -> str:
        """Content hash of the pixels (for de-duplication and caching)."""
        return hashlib.sha1(self.image.tobytes() + str(self.image.shape).encode()).hexdigest()

    @classmethod
    def from_file_bytes(cls, data: bytes, **kw: Any) -> "Texture":
        """Decode PNG/JPEG bytes; keeps the bytes for lossless re-export."""
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            fmt = (im.format or "PNG").upper()
            if im.mode in ("I;16", "I;16B", "I;16L"):  # 16-bit greyscale: scale, do not clip
                arr = np.round(np.asarray(im).astype(np.float64) / 65535.0 * 255.0).astype(np.uint8)
            else:
                if im.mode not in ("L", "LA", "RGB", "RGBA"):
                    im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
                arr = np.asarray(im).copy()
        if arr.dtype != np.uint8:  # 16-bit PNGs
            arr = (arr.astype(np.float64) / (65535.0 if arr.max() > 255 else 255.0) * 255 + 0.5).astype(np.uint8)
        mime = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}.get(fmt, "image/png")
        return cls(image=arr, encoded=data, mime_type=mime, **kw)


@dataclass(eq=False)
class Material:
    """glTF metallic-roughness material (core + KHR_materials_emissive_strength, KHR_materials_unlit).

    Factors are linear. `base_color_factor` is RGBA; `emissive_factor` RGB.
    """

    name: str = ""
    base_color_factor: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    base_color_texture: Texture | None = None
    metallic_factor: float = 1.0
    roughness_factor: float = 1.0
    metallic_roughness_texture: Texture | None = None  # G = roughness, B = metallic
    normal_texture: Texture | None = None
    normal_scale: float = 1.0
    occlusion_texture: Texture | None = None  # R = occlusion
    occlusion_strength: float = 1.0
    emissive_texture: Texture | None = None
    emissive_factor: tuple[float, float, float] = (0.0, 0.0, 0.0)
    emissive_strength: float = 1.0
    alpha_mode: str = "OPAQUE"
    alpha_cutoff: float = 0.5
    double_sided: bool = False
    unlit: bool = False
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.alpha_mode not in ALPHA_MODES:
            raise ValueError(f"alpha_mode must be one of {ALPHA_MODES}, got {self.alpha_mode!r}")

    TEXTURE_SLOTS = (
        "base_color_texture",
        "metallic_roughness_texture",
        "normal_texture",
        "occlusion_texture",
        "emissive_texture",
    )

    def textures(self) -> dict[str, Texture]:
        """The non-empty texture slots, by slot name."""
        return {s: getattr(self, s) for s in self.TEXTURE_SLOTS if getattr(self, s) is not None}

    def replace(self, **changes: Any) -> "Material":
        return dataclasses.replace(self, **changes)
