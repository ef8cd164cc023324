"""Per-vertex tangents for normal mapping, in the glTF convention.

glTF stores UVs with v down and normal maps with +Y pointing *up the image* (towards -v), so the
tangent frame is T = ∂P/∂u and B = -∂P/∂v, with bitangent = cross(N, T.xyz) · T.w. This matches
what Blender's exporter and the Khronos sample viewer produce (MikkTSpace computed with the
image's v up). Per-triangle frames are accumulated (area weighted) and Gram-Schmidt
orthogonalised against the vertex normal.
"""
from __future__ import annotations

import numpy as np


def compute_tangents(positions: np.ndarray, normals: np.ndarray, uvs: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """positions (V,3), normals (V,3) unit, uvs (V,2) glTF convention, faces (F,3) → tangents (V,4) float32.

    Vertices with no usable UV gradient get a tangent perpendicular to their normal (w = 1).
    """
    p = np.asarray(positions, np.float64)
    n = np.asarray(normals, np.float64)
    uv = np.asarray(uvs, np.float64)
    f = np.asarray(faces, np.int64)
    e1 = p[f[:, 1]] - p[f[:, 0]]
    e2 = p[f[:, 2]] - p[f[:, 0]]
    d1 = uv[f[:, 1]] - uv[f[:, 0]]
    d2 = uv[f[:, 2]] - uv[f[:, 0]]
    det = d1[:, 0] * d2[:, 1] - d2[:, 0] * d1[:, 1]
    ok = np.abs(det) > 1e-20
    r = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)[:, None]
    t_face = (e1 * d2[:, 1:2] - e2 * d1[:, 1:2]) * r  # ∂P/∂u
    b_face = -(e2 * d1[:, 0:1] - e1 * d2[:, 0:1]) * r  # -∂P/∂v (up the image)
    # Weight by triangle area in 3D (|e1 × e2|) relative to its UV-normalised frame.
    area = np.linalg.norm(np.cross(e1, e2), axis=1)[:, None]
    wt = lambda v: v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-30) * area  # noqa: E731
    t_acc = np.zeros_like(p)
    b_acc = np.zeros_like(p)
    for k in range(3):
        np.add.at(t_acc, f[:, k], wt(t_face))
        np.add.at(b_acc, f[:, k], wt(b_face))
    t = t_acc - n * (n * t_acc).sum(1, keepdims=True)
    tn = np.linalg.norm(t, axis=1, keepdims=True)
    # Fallback: any vector perpendicular to n.
    helper = np.where(np.abs(n[:, :1]) < 0.9, np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]]))
    fb = np.cross(n, helper)
    fb /= np.maximum(np.linalg.norm(fb, axis=1, keepdims=True), 1e-30)
    t = np.where(tn > 1e-12, t / np.maximum(tn, 1e-30), fb)
    w = np.where((np.cross(n, t) * b_acc).sum(1) < 0.0, -1.0, 1.0)
    return np.concatenate([t, w[:, None]], axis=1).astype(np.float32)
