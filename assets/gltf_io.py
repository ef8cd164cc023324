"""glTF 2.0 / GLB reading and writing for the studio's Asset (registered in assets/io.py for .glb and .gltf).

Reading lives in `gltf_read` (strict container parser + own numpy accessor decoder), writing in
`gltf_write` (pygltflib document, aligned binary, images de-duplicated). Validation: `gltf_validator`.
"""
from __future__ import annotations

from .gltf_read import read_gltf
from .gltf_write import write_gltf

__all__ = ["read_gltf", "write_gltf"]
