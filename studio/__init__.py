"""The 3D content studio: one import root for the shell (`studio`), the asset model
(`studio.assets`, folder assets/), the pipelines (`studio.pipelines`) and renderers (`studio.renderers`)."""
from __future__ import annotations

__version__ = "0.1.0"
