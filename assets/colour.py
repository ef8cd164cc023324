"""Colour-space conversions, the only place they live.

Textures are stored sRGB-encoded (as glTF wants); lighting, fitting and metrics compute in linear.
All functions accept numpy arrays or torch tensors of any shape, values in [0, 1].
"""
from __future__ import annotations

from typing import TypeVar

import numpy as np

T = TypeVar("T")


def srgb_to_linear(c: T) -> T:
    """sRGB-encoded [0,1] → linear [0,1] (IEC 61966-2-1 piecewise curve)."""
    if isinstance(c, np.ndarray):
        c = np.clip(c, 0.0, 1.0)
        return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    import torch

    c = torch.clamp(c, 0.0, 1.0)
    return torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: T) -> T:
    """Linear [0,1] → sRGB-encoded [0,1]."""
    if isinstance(c, np.ndarray):
        c = np.clip(c, 0.0, 1.0)
        return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(c, 1 / 2.4) - 0.055)
    import torch

    c = torch.clamp(c, 0.0, 1.0)
    return torch.where(c <= 0.0031308, c * 12.92, 1.055 * torch.pow(c.clamp_min(1e-12), 1 / 2.4) - 0.055)


def to_uint8(c: np.ndarray) -> np.ndarray:
    """[0,1] float → uint8 with rounding."""
    return np.clip(np.round(np.asarray(c, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def to_float(c: np.ndarray) -> np.ndarray:
    """uint8/uint16 → float32 in [0,1]; float input is returned as float32."""
    c = np.asarray(c)
    if c.dtype == np.uint8:
        return c.astype(np.float32) / 255.0
    if c.dtype == np.uint16:
        return c.astype(np.float32) / 65535.0
    return c.astype(np.float32)


SH_C0 = 0.28209479177387814
"""Degree-0 real spherical harmonic constant: colour = SH_C0 * sh0 + 0.5 (3DGS convention)."""


def rgb_to_sh0(rgb: T) -> T:
    """Colour in [0,1] → degree-0 SH coefficient (3DGS convention)."""
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(sh0: T) -> T:
    """Degree-0 SH coefficient → colour (unclamped)."""
    return sh0 * SH_C0 + 0.5
