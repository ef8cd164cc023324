"""Stand a photo capture upright. SfM and COLMAP poses live in an arbitrary world frame (gravity
anywhere, origin at the first camera); the studio's assets are +Y up, metres (DESIGN §4).

Two steps:
- before the fit (`upright`): up from the cameras alone. People hold the camera upright and look
  level or down at what they photograph, so up ≈ mean(camera up) − mean(camera forward); when the
  camera centres lie near a plane (an orbit: smallest spread < `RING_FLATNESS` of the middle one)
  within `RING_MAX_TILT_DEG` of that, the orbit's normal. The subject (where the optical axes
  meet, `Cameras.subject_sphere`) goes to the origin and the first photo looks along −Z, so the
  asset faces the viewer as the first photo saw it.
- after meshing an isolated object (`ground_transform`): the table it stands on is the exact
  ground; level its normal to +Y and put it at y = 0.
SfM scale is arbitrary and is kept."""
from __future__ import annotations

import numpy as np

from studio.assets import Cameras, Views

RING_FLATNESS = 0.25  # smallest / middle principal spread of the camera centres of an orbit
RING_MAX_TILT_DEG = 45.0  # the orbit normal is used within this angle of the cameras' own up cue


def up_direction(cameras: Cameras) -> np.ndarray:
    """(3,) float64 unit world up of a capture (see the module doc)."""
    r = cameras.cam_to_world[:, :3, :3]
    cue = -r[:, :, 1].mean(axis=0) - r[:, :, 2].mean(axis=0)  # OpenCV: +y image-down, +z forward
    if np.linalg.norm(cue) < 1e-6:
        raise ValueError("the cameras give no up direction (their up and forward axes cancel out)")
    cue /= np.linalg.norm(cue)
    c = cameras.centers
    if len(c) >= 4:
        evals, evecs = np.linalg.eigh(np.cov((c - c.mean(axis=0)).T))
        normal = evecs[:, 0] if evecs[:, 0] @ cue >= 0 else -evecs[:, 0]
        if evals[0] < RING_FLATNESS**2 * evals[1] and normal @ cue > np.cos(np.radians(RING_MAX_TILT_DEG)):
            return normal
    return cue


def _frame(up: np.ndarray, origin: np.ndarray, front: np.ndarray) -> np.ndarray:
    """(4,4) rigid transform taking `up` to +Y, `origin` to 0 and the horizontal part of `front`
    to +Z (when `front` is vertical, the smallest rotation of `up` onto +Y is used)."""
    up = np.asarray(up, np.float64) / np.linalg.norm(up)
    f = np.asarray(front, np.float64) - (np.asarray(front, np.float64) @ up) * up
    if np.linalg.norm(f) < 1e-9:
        f = np.array([0.0, 0.0, 1.0]) - up[2] * up
        if np.linalg.norm(f) < 1e-9:
            f = np.array([1.0, 0.0, 0.0]) - up[0] * up
    z = f / np.linalg.norm(f)
    rot = np.stack([np.cross(up, z), up, z])  # rows: the new axes in old coordinates
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = -rot @ np.asarray(origin, np.float64)
    return m


def upright_transform(cameras: Cameras) -> np.ndarray:
    """(4,4) float64 rigid new-from-capture transform: `up_direction` → +Y, the subject centre →
    origin, the first camera on the +Z side."""
    centre, _ = cameras.subject_sphere()
    return _frame(up_direction(cameras), centre, cameras.centers[0] - centre)


def upright(views: Views, points: np.ndarray | None) -> tuple[Views, np.ndarray | None, np.ndarray]:
    """`views` and SfM `points` (P,3) in the upright frame. Returns (views, points, the (4,4)
    new-from-capture transform)."""
    m = upright_transform(views.cameras)
    pts = None if points is None else np.asarray(points, np.float64) @ m[:3, :3].T + m[:3, 3]
    return Views(views.images, views.cameras.transformed(m), views.masks), pts, m


def ground_transform(normal: np.ndarray, offset: float, vertices: np.ndarray) -> np.ndarray:
    """(4,4) rigid transform standing an object on its support plane n·x = offset (unit `normal`
    pointing up, e.g. object_isolation.SupportPlane): the plane becomes y = 0 with +Y up, by the
    smallest rotation of n onto +Y (the heading is kept), and the centre of the object's
    `vertices` (V,3) footprint moves to x = z = 0."""
    n = np.asarray(normal, np.float64) / np.linalg.norm(normal)
    y = np.array([0.0, 1.0, 0.0])
    v = np.cross(n, y)
    s, c = np.linalg.norm(v), float(n @ y)
    if s < 1e-12:
        rot = np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    else:
        k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
        rot = np.eye(3) + k + k @ k * ((1 - c) / s**2)  # Rodrigues: n → +Y
    p = np.asarray(vertices, np.float64) @ rot.T
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = [-(p[:, 0].min() + p[:, 0].max()) / 2, -offset, -(p[:, 2].min() + p[:, 2].max()) / 2]
    return m
