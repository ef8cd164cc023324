"""A readable summary of any asset file: what `studio info` prints."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from studio.assets import Asset


@dataclass
class TextureInfo:
    slot: str
    material: str
    width: int
    height: int
    channels: int
    mime_type: str


@dataclass
class AssetSummary:
    path: str
    format: str
    bytes: int
    meshes: int
    triangles: int
    vertices: int
    materials: int
    uv_sets: int
    vertex_colors: bool
    textures: list[TextureInfo]
    splats: int
    splat_sh_degree: int | None
    bounds_min: list[float]
    bounds_max: list[float]
    metadata: dict
    dropped: list[str]
    validation: dict | None = None
    alpha_modes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(asset: Asset, path: str | Path) -> AssetSummary:
    """Collect counts, textures, bounds and provenance of `asset` loaded from `path`."""
    path = Path(path)
    textures, seen = [], set()
    for mat in asset.materials():
        for slot, tex in mat.textures().items():
            key = (id(mat), slot)
            if key in seen:
                continue
            seen.add(key)
            w, h = tex.size
            textures.append(TextureInfo(slot, mat.name, w, h, int(tex.image.shape[2]), tex.mime_type))
    b = asset.bounds()
    return AssetSummary(
        path=str(path),
        format=path.suffix.lower().lstrip("."),
        bytes=path.stat().st_size if path.exists() else 0,
        meshes=len(asset.meshes),
        triangles=asset.triangle_count,
        vertices=asset.vertex_count,
        materials=len(asset.materials()),
        uv_sets=max((len(m.uvs) for m in asset.meshes), default=0),
        vertex_colors=any(m.colors is not None for m in asset.meshes),
        textures=textures,
        splats=0 if asset.splats is None else len(asset.splats),
        splat_sh_degree=None if asset.splats is None else asset.splats.sh_degree,
        bounds_min=[round(float(x), 6) for x in b[0]],
        bounds_max=[round(float(x), 6) for x in b[1]],
        metadata=asset.metadata.to_dict(),
        dropped=list(asset.dropped),
        alpha_modes=sorted({m.alpha_mode for m in asset.materials()}),
    )
