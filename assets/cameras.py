"""Pinhole cameras in the studio's internal OpenCV convention.

OpenCV: camera x right, y down, z forward (looking along +z). K maps camera points to pixel
coordinates u = fx·x/z + cx, v = fy·y/z + cy, with the COLMAP/OpenCV pixel convention (the
top-left pixel's centre is (0.5, 0.5)). Optional lens distortion is OpenCV's (k1, k2, p1, p2),
applied to the normalised coordinates (x/z, y/z) before K — exactly COLMAP's OPENCV model, of
which SIMPLE_RADIAL (k1) and RADIAL (k1, k2) are special cases. Converters to and from other conventions (OpenGL /
nerfstudio transforms.json, COLMAP, glTF) live in `studio.assets.camera_formats`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Flip between OpenCV (y down, z forward) and OpenGL/Blender/nerfstudio (y up, z back) camera axes.
CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


def distort_normalized(xy: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Apply OpenCV (k1, k2, p1, p2) distortion to normalised image coordinates.

    xy: (...,2) float64 (x/z, y/z); dist: (...,4) broadcastable against xy's leading axes.
    Same formula as OpenCV `projectPoints` and COLMAP's OPENCV / RADIAL / SIMPLE_RADIAL models."""
    xy = np.asarray(xy, dtype=np.float64)
    d = np.asarray(dist, dtype=np.float64)
    k1, k2, p1, p2 = d[..., 0], d[..., 1], d[..., 2], d[..., 3]
    x, y = xy[..., 0], xy[..., 1]
    xx, yy, xy_ = x * x, y * y, x * y
    r2 = xx + yy
    radial = k1 * r2 + k2 * r2 * r2
    dx = x * radial + 2.0 * p1 * xy_ + p2 * (r2 + 2.0 * xx)
    dy = y * radial + 2.0 * p2 * xy_ + p1 * (r2 + 2.0 * yy)
    return np.stack([x + dx, y + dy], axis=-1)


def undistort_normalized(xy_d: np.ndarray, dist: np.ndarray, iterations: int = 20) -> np.ndarray:
    """Invert `distort_normalized` by Newton's method: distorted (...,2) → ideal normalised coords.

    Converges to ~1e-12 inside the image for the distortion real lenses have; points where the
    distortion model folds over (far outside the image for strong k1 < 0) have no unique inverse."""
    xy_d = np.asarray(xy_d, dtype=np.float64)
    d = np.asarray(dist, dtype=np.float64)
    k1, k2, p1, p2 = d[..., 0], d[..., 1], d[..., 2], d[..., 3]
    xy = xy_d.copy()
    for _ in range(iterations):
        x, y = xy[..., 0], xy[..., 1]
        r2 = x * x + y * y
        radial = k1 * r2 + k2 * r2 * r2
        d_rad = k1 + 2.0 * k2 * r2
        res = distort_normalized(xy, d) - xy_d
        j00 = 1.0 + radial + 2.0 * x * x * d_rad + 2.0 * p1 * y + 6.0 * p2 * x
        j11 = 1.0 + radial + 2.0 * y * y * d_rad + 2.0 * p2 * x + 6.0 * p1 * y
        j01 = 2.0 * x * y * d_rad + 2.0 * p1 * x + 2.0 * p2 * y
        det = j00 * j11 - j01 * j01
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.stack([(j11 * res[..., 0] - j01 * res[..., 1]) / det,
                             (j00 * res[..., 1] - j01 * res[..., 0]) / det], axis=-1)
        xy = xy - np.where(np.isfinite(step), step, 0.0)
        if np.all(np.abs(step[np.isfinite(step)]) < 1e-15):
            break
    return xy


@dataclass(frozen=True, eq=False)
class Cameras:
    """N pinhole cameras sharing one image size.

    K: (N,3,3) float64 intrinsics; cam_to_world: (N,4,4) float64 rigid camera-to-world poses
    (OpenCV axes); width, height: image size in pixels; names: optional per-camera names
    (e.g. image file names); dist: optional (N,4) float64 OpenCV distortion (k1, k2, p1, p2)
    per camera, None for ideal pinhole cameras (a (4,) row is broadcast to all cameras).
    """

    K: np.ndarray
    cam_to_world: np.ndarray
    width: int
    height: int
    names: tuple[str, ...] | None = None
    dist: np.ndarray | None = None

    def __post_init__(self) -> None:
        k = np.asarray(self.K, dtype=np.float64)
        c2w = np.asarray(self.cam_to_world, dtype=np.float64)
        if k.ndim == 2:
            k = np.broadcast_to(k, (len(c2w) if c2w.ndim == 3 else 1, 3, 3)).copy()
        if c2w.ndim == 2:
            c2w = c2w[None]
        if k.shape[1:] != (3, 3) or c2w.shape[1:] != (4, 4) or len(k) != len(c2w):
            raise ValueError(f"K {k.shape} and cam_to_world {c2w.shape} must be (N,3,3) and (N,4,4)")
        if not (np.isfinite(k).all() and np.isfinite(c2w).all()):
            raise ValueError("camera intrinsics/poses contain NaN or Inf")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
        if self.names is not None and len(self.names) != len(k):
            raise ValueError(f"{len(self.names)} names for {len(k)} cameras")
        object.__setattr__(self, "K", k)
        object.__setattr__(self, "cam_to_world", c2w)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        if self.names is not None:
            object.__setattr__(self, "names", tuple(self.names))
        if self.dist is not None:
            d = np.asarray(self.dist, dtype=np.float64)
            if d.ndim == 1:
                d = np.broadcast_to(d, (len(k), d.shape[0])).copy()
            if d.shape != (len(k), 4):
                raise ValueError(f"dist must be (N,4) = ({len(k)},4) OpenCV (k1,k2,p1,p2), got {d.shape}")
            if not np.isfinite(d).all():
                raise ValueError("camera distortion contains NaN or Inf")
            object.__setattr__(self, "dist", d)

    def __len__(self) -> int:
        return len(self.K)

    def __getitem__(self, idx) -> "Cameras":
        idx = np.atleast_1d(np.arange(len(self))[idx])
        names = None if self.names is None else tuple(self.names[i] for i in idx)
        dist = None if self.dist is None else self.dist[idx]
        return Cameras(self.K[idx], self.cam_to_world[idx], self.width, self.height, names, dist)

    @property
    def world_to_cam(self) -> np.ndarray:
        """(N,4,4) float64 world-to-camera (viewmat), OpenCV axes — what gsplat calls `viewmats`."""
        r = self.cam_to_world[:, :3, :3]
        t = self.cam_to_world[:, :3, 3]
        out = np.tile(np.eye(4), (len(self), 1, 1))
        out[:, :3, :3] = np.transpose(r, (0, 2, 1))
        out[:, :3, 3] = -np.einsum("nji,nj->ni", r, t)
        return out

    def transformed(self, matrix: np.ndarray) -> "Cameras":
        """The same cameras in a new world frame: `matrix` (4,4) is new-world-from-old, a rotation
        (optionally times a uniform scale) plus a translation. Intrinsics are unchanged; scale moves
        the centres only (poses stay rigid)."""
        m = np.asarray(matrix, dtype=np.float64)
        lin = m[:3, :3]
        s = np.cbrt(np.linalg.det(lin))
        if not (s > 0 and np.allclose(lin.T @ lin, s * s * np.eye(3), atol=1e-6 * s * s)):
            raise ValueError("Cameras.transformed needs a rotation times a positive uniform scale")
        c2w = self.cam_to_world.copy()
        c2w[:, :3, :3] = (lin / s) @ c2w[:, :3, :3]
        c2w[:, :3, 3] = c2w[:, :3, 3] @ lin.T + m[:3, 3]
        return Cameras(self.K, c2w, self.width, self.height, self.names, self.dist)

    @property
    def centers(self) -> np.ndarray:
        """(N,3) camera centres in world space."""
        return self.cam_to_world[:, :3, 3].copy()

    def subject_sphere(self) -> tuple[np.ndarray, float]:
        """(centre (3,), radius) of where an object capture's subject is: the least-squares point
        closest to every camera's optical axis (+Z) (minimum-norm when the axes are parallel, as
        with one camera), and half the distance from it to the nearest camera."""
        centers = self.centers
        dirs = self.cam_to_world[:, :3, 2]
        a = sum(np.eye(3) - np.outer(d, d) for d in dirs)
        b = sum((np.eye(3) - np.outer(d, d)) @ c for d, c in zip(dirs, centers))
        focus = np.linalg.lstsq(a, b, rcond=None)[0]
        return focus, 0.5 * float(np.linalg.norm(centers - focus, axis=1).min())

    def unproject(self, index: int, uv: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """World points (P,3) float64 of pixels uv (P,2) (OpenCV pixel coordinates: a pixel's
        centre is at +0.5) seen by camera `index` at camera-z `depth` (P,). Pinhole: lens
        distortion is ignored (undistort first)."""
        uv = np.asarray(uv, np.float64).reshape(-1, 2)
        pix = np.concatenate([uv, np.ones((len(uv), 1))], axis=1)
        pc = np.linalg.solve(self.K[index], pix.T) * np.asarray(depth, np.float64).reshape(1, -1)
        c2w = self.cam_to_world[index]
        return (c2w[:3, :3] @ pc + c2w[:3, 3:4]).T

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project world points (P,3) into every camera, applying `dist` when present.

        Returns (uv (N,P,2) float64 pixel coordinates, depth (N,P) float64 camera z). Points at
        z <= 0 get meaningless uv (inf/NaN at z = 0); callers mask them with depth > 0."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        w2c = self.world_to_cam
        pc = np.einsum("nij,pj->npi", w2c[:, :3, :3], p) + w2c[:, None, :3, 3]
        z = pc[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = pc[..., :2] / z[..., None]
        if self.dist is not None:
            xy = distort_normalized(xy, self.dist[:, None, :])
        uvw = np.einsum("nij,npj->npi", self.K[:, :, :2], xy) + self.K[:, None, :, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = uvw[..., :2] / uvw[..., 2:3]
        return uv, z

    def undistort_points(self, uv: np.ndarray) -> np.ndarray:
        """Remove lens distortion from pixel coordinates uv (N,P,2) (one row per camera): returns
        where each point would appear in the ideal pinhole camera with the same K. Without
        `dist` the input is returned unchanged (as float64)."""
        uv = np.asarray(uv, dtype=np.float64)
        if uv.ndim != 3 or uv.shape[0] != len(self) or uv.shape[2] != 2:
            raise ValueError(f"uv must be (N,P,2) with N = {len(self)}, got {uv.shape}")
        if self.dist is None:
            return uv.copy()
        kinv = np.linalg.inv(self.K)
        h = np.concatenate([uv, np.ones(uv.shape[:2] + (1,))], axis=-1)
        n = np.einsum("nij,npj->npi", kinv, h)
        xy = undistort_normalized(n[..., :2] / n[..., 2:3], self.dist[:, None, :])
        out = np.einsum("nij,npj->npi", self.K, np.concatenate([xy, np.ones(xy.shape[:2] + (1,))], axis=-1))
        return out[..., :2] / out[..., 2:3]

    @classmethod
    def look_at(
        cls,
        eyes: np.ndarray,
        target: np.ndarray,
        up: np.ndarray = (0.0, 1.0, 0.0),
        fov_y_deg: float = 40.0,
        width: int = 256,
        height: int = 256,
    ) -> "Cameras":
        """Cameras at `eyes` (N,3) looking at `target` (3,), world +Y up, vertical field of view in degrees."""
        eyes = np.atleast_2d(np.asarray(eyes, dtype=np.float64))
        target = np.asarray(target, dtype=np.float64)
        up = np.asarray(up, dtype=np.float64)
        c2w = np.tile(np.eye(4), (len(eyes), 1, 1))
        for i, e in enumerate(eyes):
            z = target - e
            z /= np.linalg.norm(z)
            # OpenCV is right-handed with y ≈ -up, so right = y × z = (-up) × z = z × up.
            x = np.cross(z, up)
            if np.linalg.norm(x) < 1e-9:  # looking straight along ±up: pick world -Z as "up"
                x = np.cross(z, np.array([0.0, 0.0, -1.0]))
            x /= np.linalg.norm(x)
            y = np.cross(z, x)
            c2w[i, :3, :3] = np.stack([x, y, z], axis=1)
            c2w[i, :3, 3] = e
        f = 0.5 * height / np.tan(np.radians(fov_y_deg) / 2)
        k = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
        return cls(np.broadcast_to(k, (len(eyes), 3, 3)).copy(), c2w, width, height)
