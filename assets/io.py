"""Load and save any supported format by extension: the one place the CLI and pipelines call.

Each format lives in its own module (trimesh-style): gltf_io, usd_io, mesh_io, splat_ply,
splat_antimatter, spz. Heavy libraries load only when their format is used.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from studio.errors import InvalidAssetError, UnsupportedFormatError

from .asset import Asset

# suffix → "module:function". Readers take a Path and return an Asset.
READERS = {
    ".glb": "studio.assets.gltf_io:read_gltf",
    ".gltf": "studio.assets.gltf_io:read_gltf",
    ".usd": "studio.assets.usd_io:read_usd",
    ".usda": "studio.assets.usd_io:read_usd",
    ".usdc": "studio.assets.usd_io:read_usd",
    ".usdz": "studio.assets.usd_io:read_usd",
    ".obj": "studio.assets.mesh_io:read_mesh",
    ".ply": "studio.assets.mesh_io:read_ply",  # sniffs 3DGS splat PLY vs mesh PLY
    ".stl": "studio.assets.mesh_io:read_mesh",
    ".splat": "studio.assets.splat_antimatter:read_splat",
    ".spz": "studio.assets.spz:read_spz",
}

# suffix → "module:function". Writers take (Asset, Path) and write atomically.
WRITERS = {
    ".glb": "studio.assets.gltf_io:write_gltf",
    ".gltf": "studio.assets.gltf_io:write_gltf",
    ".usd": "studio.assets.usd_io:write_usd",
    ".usda": "studio.assets.usd_io:write_usd",
    ".usdc": "studio.assets.usd_io:write_usd",
    ".usdz": "studio.assets.usd_io:write_usd",
    ".obj": "studio.assets.mesh_io:write_mesh",
    ".ply": "studio.assets.mesh_io:write_ply",  # splat PLY when the asset has splats and no meshes
    ".stl": "studio.assets.mesh_io:write_mesh",
    ".splat": "studio.assets.splat_antimatter:write_splat",
    ".spz": "studio.assets.spz:write_spz",
}


def _resolve(table: dict[str, str], suffix: str, verb: str):
    if suffix not in table:
        raise UnsupportedFormatError(
            f"cannot {verb} '{suffix or '(no extension)'}' files; supported: {', '.join(sorted(table))}"
        )
    mod, fn = table[suffix].split(":")
    return getattr(importlib.import_module(mod), fn)


def load(path: str | Path) -> Asset:
    """Read any supported file into an Asset. Broken input raises InvalidAssetError naming the file."""
    path = Path(path)
    reader = _resolve(READERS, path.suffix.lower(), "read")
    if not path.exists():
        raise InvalidAssetError(path, "file not found")
    if path.is_dir():
        raise InvalidAssetError(path, "is a folder, not a file")
    if path.stat().st_size == 0:
        raise InvalidAssetError(path, "file is empty (0 bytes)")
    return reader(path)


def save(asset: Asset, path: str | Path, validate: bool = False) -> Path:
    """Write `asset` to `path` by extension (atomically). With validate=True, run the format's
    validator and raise ValidationFailedError on any error (removing the file)."""
    path = Path(path)
    writer = _resolve(WRITERS, path.suffix.lower(), "write")
    writer(asset, path)
    if validate:
        from studio.errors import ValidationFailedError

        from .validate import validate as run_validator

        report = run_validator(path)
        if not report.ok:
            path.unlink(missing_ok=True)
            raise ValidationFailedError(path, report)
    return path
