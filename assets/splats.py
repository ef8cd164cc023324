"""3D Gaussian splats, the representation the fit stage produces and splat viewers draw."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def sh_degree_from_k(k: int) -> int:
    """K = (degree+1)² coefficients per colour channel → degree."""
    d = int(round(np.sqrt(k))) - 1
    if (d + 1) ** 2 != k or d < 0 or d > 4:
        raise ValueError(f"{k} SH coefficients per channel is not (degree+1)² for degree 0..4")
    return d


@dataclass(frozen=True, eq=False)
class GaussianSplats:
    """N anisotropic Gaussians in world space (metres, the asset's frame).

    means (N,3) float32; quats (N,4) float32 wxyz (not necessarily normalised);
    log_scales (N,3) float32 natural-log standard deviations; opacity_logits (N,) float32
    (opacity = sigmoid(logit)); sh (N,K,3) float32 real SH coefficients, K = (degree+1)²,
    sh[:,0] the DC term (colour = 0.28209479 * sh0 + 0.5, as 3DGS).

    Colour space: the colour the SH evaluate to is display-referred sRGB-encoded, as every splat
    viewer and file format (Inria PLY, .splat, spz) assumes; convert with studio.assets.colour when
    comparing against linear images.
    """

    means: np.ndarray
    quats: np.ndarray
    log_scales: np.ndarray
    opacity_logits: np.ndarray
    sh: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.means)
        f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
        object.__setattr__(self, "means", f32(self.means).reshape(n, 3))
        object.__setattr__(self, "quats", f32(self.quats).reshape(n, 4))
        object.__setattr__(self, "log_scales", f32(self.log_scales).reshape(n, 3))
        object.__setattr__(self, "opacity_logits", f32(self.opacity_logits).reshape(n))
        sh = f32(self.sh)
        if sh.ndim != 3 or sh.shape[0] != n or sh.shape[2] != 3:
            raise ValueError(f"sh must be (N,K,3) with N={n}, got {sh.shape}")
        sh_degree_from_k(sh.shape[1])
        object.__setattr__(self, "sh", sh)

    def __len__(self) -> int:
        return len(self.means)

    @property
    def sh_degree(self) -> int:
        return sh_degree_from_k(self.sh.shape[1])

    @property
    def opacities(self) -> np.ndarray:
        """(N,) float32 in (0,1)."""
        return (1.0 / (1.0 + np.exp(-self.opacity_logits.astype(np.float64)))).astype(np.float32)

    @property
    def scales(self) -> np.ndarray:
        """(N,3) float32 standard deviations in metres."""
        return np.exp(self.log_scales)

    @property
    def colors(self) -> np.ndarray:
        """(N,3) float32 view-independent colour in [0,1] from the DC term."""
        from .colour import sh0_to_rgb

        return np.clip(sh0_to_rgb(self.sh[:, 0]), 0.0, 1.0)

    def normalized_quats(self) -> np.ndarray:
        """(N,4) unit quaternions wxyz with w >= 0."""
        q = self.quats / np.maximum(np.linalg.norm(self.quats, axis=1, keepdims=True), 1e-12)
        return np.where(q[:, :1] < 0, -q, q).astype(np.float32)

    def bounds(self) -> np.ndarray:
        """(2,3) min/max of the means."""
        if len(self) == 0:
            return np.zeros((2, 3))
        return np.stack([self.means.min(0), self.means.max(0)])

    def subset(self, idx: np.ndarray) -> "GaussianSplats":
        return GaussianSplats(self.means[idx], self.quats[idx], self.log_scales[idx], self.opacity_logits[idx], self.sh[idx])

    def with_sh_degree(self, degree: int) -> "GaussianSplats":
        """Truncate (or zero-pad) SH to `degree`."""
        k = (degree + 1) ** 2
        sh = np.zeros((len(self), k, 3), np.float32)
        m = min(k, self.sh.shape[1])
        sh[:, :m] = self.sh[:, :m]
        return GaussianSplats(self.means, self.quats, self.log_scales, self.opacity_logits, sh)

    def transformed(self, matrix: np.ndarray) -> "GaussianSplats":
        """Apply a similarity transform (4,4) (rotation · uniform scale + translation); the
        view-dependent SH bands are rotated with it (`sh_rotation`), so the splats look the same
        from cameras transformed alike."""
        from scipy.spatial.transform import Rotation

        m = np.asarray(matrix, np.float64)
        lin = m[:3, :3]
        s = np.cbrt(abs(np.linalg.det(lin)))
        rot = lin / s
        means = self.means @ lin.T + m[:3, 3]
        r = Rotation.from_matrix(rot)
        q = self.normalized_quats()
        qr = (r * Rotation.from_quat(q[:, [1, 2, 3, 0]])).as_quat()[:, [3, 0, 1, 2]]
        sh = self.sh if self.sh_degree == 0 else np.einsum("jk,nkc->njc", sh_rotation(rot, self.sh_degree), self.sh)
        return GaussianSplats(means, qr, self.log_scales + np.log(s), self.opacity_logits, sh)


def sh_rotation(rotation: np.ndarray, degree: int) -> np.ndarray:
    """(K,K) float64 matrix M, K = (degree+1)², such that coefficients M @ sh evaluate in direction
    R·d to what sh evaluate to in d (gsplat's real SH basis): the colours of a splat rotated by
    `rotation` R (3,3). Rotation maps each band onto itself, so least squares over 64 directions
    recovers it exactly (to float64 round-off)."""
    import torch
    from gsplat.cuda._torch_impl import _spherical_harmonics

    k = (degree + 1) ** 2
    i = np.arange(64) + 0.5
    z = 1 - 2 * i / 64
    phi = np.pi * (1 + 5**0.5) * i
    dirs = np.stack([np.sqrt(1 - z * z) * np.cos(phi), np.sqrt(1 - z * z) * np.sin(phi), z], axis=1)

    def basis(d: np.ndarray) -> np.ndarray:  # (D,K): one SH evaluation per basis function
        coeffs = torch.eye(k, dtype=torch.float64)[:, None, :, None].expand(k, len(d), k, 3)
        out = _spherical_harmonics(degree, torch.tensor(d)[None].expand(k, len(d), 3), coeffs)
        return out[..., 0].T.numpy()

    rot = np.asarray(rotation, np.float64)
    return np.linalg.lstsq(basis(dirs), basis(dirs @ rot), rcond=None)[0]
