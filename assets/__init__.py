"""The studio's asset model and every format reader, writer and validator.

Importing this package is cheap: format modules load their heavy libraries lazily.
"""
from __future__ import annotations

from .asset import Asset, AssetMetadata
from .cameras import Cameras
from .colour import linear_to_srgb, srgb_to_linear
from .material import Material, Sampler, Texture, TextureTransform
from .mesh import Mesh
from .splats import GaussianSplats
from .views import Views

__all__ = [
    "Asset",
    "AssetMetadata",
    "Cameras",
    "GaussianSplats",
    "Material",
    "Mesh",
    "Sampler",
    "Texture",
    "TextureTransform",
    "Views",
    "linear_to_srgb",
    "srgb_to_linear",
]
