"""The Asset: one scene that goes to GLB, USD/USDZ, the renderer and the XR stream unchanged."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .cameras import Cameras
from .mesh import Mesh
from .splats import GaussianSplats


@dataclass
class AssetMetadata:
    """Provenance carried into exports (glTF asset.extras / USD customLayerData)."""

    name: str = ""
    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    pipeline: str | None = None
    method: str | None = None
    model: str | None = None
    caption: str | None = None
    licence: str | None = None
    watermark_id: str | None = None
    generator: str = "studio"
    extras: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Non-empty fields as a JSON-able dict."""
        return {k: v for k, v in asdict(self).items() if v not in (None, "", {})}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AssetMetadata":
        known = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in d.items() if k in known}
        extra = {k: v for k, v in d.items() if k not in known}
        kw.setdefault("extras", {})
        kw["extras"] = {**kw["extras"], **extra}
        return cls(**kw)


@dataclass
class Asset:
    """A scene for export. Metres, +Y up (glTF/USD convention).

    meshes: placed primitives (each with its own world transform and material).
    splats: optional Gaussian splats in the same world frame.
    cameras: optional cameras (OpenCV convention) that travel with the asset.
    dropped: human-readable notes of what an importer could not keep (skins, animations, …).
    """

    meshes: list[Mesh] = field(default_factory=list)
    splats: GaussianSplats | None = None
    cameras: Cameras | None = None
    metadata: AssetMetadata = field(default_factory=AssetMetadata)
    dropped: list[str] = field(default_factory=list)

    def bounds(self) -> np.ndarray:
        """(2,3) world min/max over meshes and splat means; zeros when empty."""
        boxes = [m.world_bounds() for m in self.meshes if len(m.vertices)]
        if self.splats is not None and len(self.splats):
            boxes.append(self.splats.bounds())
        if not boxes:
            return np.zeros((2, 3))
        b = np.stack(boxes)
        return np.stack([b[:, 0].min(0), b[:, 1].max(0)])

    def transformed(self, matrix: np.ndarray) -> "Asset":
        """A copy moved by `matrix` (4,4), new-world-from-old, rotation · uniform scale +
        translation: each mesh's transform is premultiplied (vertex data untouched), splats and
        cameras are transformed (splat SH rotated with them)."""
        from dataclasses import replace

        m = np.asarray(matrix, np.float64)
        return replace(self, meshes=[replace(x, transform=m @ x.transform) for x in self.meshes],
                       splats=None if self.splats is None else self.splats.transformed(m),
                       cameras=None if self.cameras is None else self.cameras.transformed(m),
                       dropped=list(self.dropped))

    @property
    def triangle_count(self) -> int:
        return int(sum(len(m.faces) for m in self.meshes))

    @property
    def vertex_count(self) -> int:
        return int(sum(len(m.vertices) for m in self.meshes))

    def materials(self) -> list:
        """Distinct materials in mesh order (by identity)."""
        seen: dict[int, Any] = {}
        for m in self.meshes:
            seen.setdefault(id(m.material), m.material)
        return list(seen.values())
