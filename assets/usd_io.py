"""USD / USDZ for the asset model: `write_usd` (assets/usd_write.py) and `read_usd` (assets/usd_read.py).

Registered in assets/io.py for .usd, .usda, .usdc and .usdz; validation lives in
assets/usd_validator.py (`validate_usd`, pxr.UsdValidation).
"""
from __future__ import annotations

from .usd_read import read_usd
from .usd_write import gltf_to_usd_transform2d, usd_to_gltf_transform, write_usd

__all__ = ["read_usd", "write_usd", "gltf_to_usd_transform2d", "usd_to_gltf_transform"]
