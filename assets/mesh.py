"""A triangle mesh with its material: geometry on trimesh, attributes the way glTF keeps them."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import trimesh

from .material import Material


@dataclass(eq=False)
class Mesh:
    """One drawable primitive placed in the scene.

    geometry: trimesh.Trimesh in local coordinates, metres; vertices (V,3) float, faces (F,3) int.
      Built with process=False so vertex order matches every attribute array below.
    normals: (V,3) float32 unit vertex normals or None (then computed from faces when needed).
    uvs: list of (V,2) float32 texture coordinate sets TEXCOORD_0.. in glTF convention
      (origin top-left, v down).
    colors: (V,4) float32 linear RGBA vertex colours (COLOR_0) or None.
    tangents: (V,4) float32 xyz + handedness w, or None.
    transform: (4,4) float64 world-from-local matrix (+Y up, metres).
    """

    geometry: trimesh.Trimesh
    material: Material = field(default_factory=Material)
    normals: np.ndarray | None = None
    uvs: list[np.ndarray] = field(default_factory=list)
    colors: np.ndarray | None = None
    tangents: np.ndarray | None = None
    transform: np.ndarray = field(default_factory=lambda: np.eye(4))
    name: str = ""

    def __post_init__(self) -> None:
        v = len(self.geometry.vertices)
        for i, uv in enumerate(self.uvs):
            if uv.shape != (v, 2):
                raise ValueError(f"TEXCOORD_{i} has shape {uv.shape}, expected ({v}, 2)")
        for nm, arr, w in (("normals", self.normals, 3), ("colors", self.colors, 4), ("tangents", self.tangents, 4)):
            if arr is not None and arr.shape != (v, w):
                raise ValueError(f"{nm} has shape {arr.shape}, expected ({v}, {w})")
        self.transform = np.asarray(self.transform, dtype=np.float64).reshape(4, 4)

    @classmethod
    def from_arrays(cls, vertices: np.ndarray, faces: np.ndarray, **kw) -> "Mesh":
        """Build from raw arrays without trimesh's merging/reordering."""
        geom = trimesh.Trimesh(
            vertices=np.asarray(vertices, dtype=np.float64),
            faces=np.asarray(faces, dtype=np.int64),
            process=False,
            validate=False,
        )
        return cls(geometry=geom, **kw)

    @property
    def vertices(self) -> np.ndarray:
        """(V,3) float64 local positions."""
        return np.asarray(self.geometry.vertices)

    @property
    def faces(self) -> np.ndarray:
        """(F,3) int64 triangle indices."""
        return np.asarray(self.geometry.faces)

    def vertex_normals(self) -> np.ndarray:
        """(V,3) float32: stored normals, or area-weighted normals of the faces."""
        if self.normals is not None:
            return self.normals.astype(np.float32)
        return np.asarray(self.geometry.vertex_normals, dtype=np.float32)

    def world_vertices(self) -> np.ndarray:
        """(V,3) float64 positions with `transform` applied."""
        return trimesh.transform_points(self.vertices, self.transform)

    def world_bounds(self) -> np.ndarray:
        """(2,3) float64 min/max corner in world space."""
        w = self.world_vertices()
        if len(w) == 0:
            return np.zeros((2, 3))
        return np.stack([w.min(0), w.max(0)])
