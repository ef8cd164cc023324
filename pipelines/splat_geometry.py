"""Surface geometry of flat Gaussians, rendered with the ordinary (differentiable) compositor.

Each Gaussian is treated as a disc: the plane through its mean normal to its thinnest axis.
Where a pixel ray x = z·r, r = ((u−cx)/fx, (v−cy)/fy, 1), meets that plane n·x = n·μ the inverse
depth is 1/z = (n·r)/(n·μ) — affine in the pixel coordinates (u, v). So the three coefficients
of that affine function can be composited as ordinary colour channels and the alpha-weighted
*ray–disc intersection* depth read back exactly: 1/z = (A·u + B·v + C)/α. With the disc normals
composited beside them this gives, in one rasterization, what 2DGS (Huang et al. 2024) renders
with its own kernels: a depth map whose normals can be compared with the rendered normals.

`disc_channels` builds the per-Gaussian channels for one camera; `depth_normal_loss` turns a
render of them into the 2DGS normal-consistency loss 1 − n_rendered·n_from_depth; both are plain
torch, so they run (and differentiate) on the CPU compositor and on gsplat alike.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

GRAZING = 0.2  # |n·μ| / |μ| below this (disc seen nearly edge-on): use a fronto-parallel plane instead


def disc_normals(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """World-space unit normals (N,3) of the discs: the column of R(quat) of the smallest scale.
    quats (N,4) wxyz any norm, scales (N,3) linear std devs."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    cols = torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y + w * z), 2 * (x * z - w * y)], -1),
        torch.stack([2 * (x * y - w * z), 1 - 2 * (x * x + z * z), 2 * (y * z + w * x)], -1),
        torch.stack([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)], -1),
    ], 1)  # (N, 3 columns, 3)
    idx = scales.argmin(dim=-1)
    return cols[torch.arange(len(idx), device=quats.device), idx]


def disc_channels(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, viewmat: torch.Tensor,
                  K: torch.Tensor) -> torch.Tensor:
    """(N,6) channels for one camera: camera-space disc normal facing the camera (3) and the
    coefficients (a, b, c) of its inverse depth 1/z = a·u + b·v + c in pixels (3).
    means (N,3) world metres, viewmat (4,4) world→camera (OpenCV), K (3,3)."""
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    mu = means @ R.T + t
    n = disc_normals(quats, scales) @ R.T
    n = torch.where(((n * mu).sum(-1) > 0)[:, None], -n, n)  # face the camera
    nm = (n * mu).sum(-1)
    edge_on = nm.abs() < GRAZING * mu.norm(dim=-1)
    front = torch.tensor([0.0, 0.0, -1.0], dtype=means.dtype, device=means.device).expand_as(n)
    n_plane = torch.where(edge_on[:, None], front, n)
    nm = torch.where(edge_on, -mu[:, 2], nm)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    a = n_plane[:, 0] / (fx * nm)
    b = n_plane[:, 1] / (fy * nm)
    c = (n_plane[:, 2] - n_plane[:, 0] * cx / fx - n_plane[:, 1] * cy / fy) / nm
    return torch.cat([n, torch.stack([a, b, c], -1)], -1)


def _pixel_centres(h: int, w: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(u, v) (H,W) pixel-centre coordinates (OpenCV: +0.5) in `like`'s dtype and device."""
    v, u = torch.meshgrid(torch.arange(h, dtype=like.dtype, device=like.device) + 0.5,
                          torch.arange(w, dtype=like.dtype, device=like.device) + 0.5, indexing="ij")
    return u, v


def _inverse_to_depth(inv: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Depth 1/inv (H,W), 0 where alpha ≤ 0.5 or inv is not positive (no gradient through the 0s)."""
    ok = (alpha > 0.5) & (inv > 0)
    return torch.where(ok, 1.0 / torch.where(ok, inv, torch.ones_like(inv)), torch.zeros_like(inv))


def depth_from_channels(render: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Ray–disc depth (H,W) from a render (H,W,6) of `disc_channels` and its alpha (H,W);
    0 where alpha ≤ 0.5 or the inverse depth is not positive."""
    u, v = _pixel_centres(*alpha.shape, render)
    inv = (render[..., 3] * u + render[..., 4] * v + render[..., 5]) / alpha.clamp(min=1e-6)
    return _inverse_to_depth(inv, alpha)


def depth_normal_loss(render: torch.Tensor, alpha: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """2DGS normal consistency: mean over covered pixels of α·(1 − n_r·n_d), where n_r is the
    rendered (alpha-weighted, renormalised) disc normal and n_d the normal of the depth map's
    surface (central differences of its camera-space points). render (H,W,6), alpha (H,W)."""
    z = depth_from_channels(render, alpha)
    u, v = _pixel_centres(*z.shape, z)
    pts = torch.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], -1)
    dx = pts[1:-1, 2:] - pts[1:-1, :-2]
    dy = pts[2:, 1:-1] - pts[:-2, 1:-1]
    n_d = F.normalize(torch.cross(dx, dy, dim=-1), dim=-1)
    n_d = torch.where(((n_d * pts[1:-1, 1:-1]).sum(-1) > 0)[..., None], -n_d, n_d)
    n_r = F.normalize(render[1:-1, 1:-1, :3], dim=-1)
    valid = (z[1:-1, 1:-1] > 0) & (z[2:, 1:-1] > 0) & (z[:-2, 1:-1] > 0) & (z[1:-1, 2:] > 0) & (z[1:-1, :-2] > 0)
    if not bool(valid.any()):
        return render.sum() * 0.0
    err = alpha[1:-1, 1:-1] * (1 - (n_r * n_d).sum(-1))
    return err[valid].mean()


def render_disc_depth(splats, cameras, median: bool = True, depth_sharpen: float = 4.0) -> tuple["np.ndarray", "np.ndarray"]:
    """Ray–disc depth (N,H,W) float32 metres (0 = none) and alpha (N,H,W) of GaussianSplats in
    every camera, for meshing.

    median (default): the depth of the disc at which the ray's transmittance drops to 0.5 — the
    median depth 2DGS fuses, robust to the semi-transparent shell around a fitted surface (C++
    kernel `splat_cpu.median_render`, on the CPU). Otherwise the alpha-weighted depth rendered
    with opacities 1 − (1 − o)^k, k = depth_sharpen (weights T^k: toward the first surface)."""
    import numpy as np

    from studio.renderers.splat_cpu import median_render
    from studio.renderers.splat_raster import rasterization

    t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    means, quats, scales, opac = t(splats.means), t(splats.quats), t(splats.scales), t(splats.opacities)
    o = opac if median else torch.clamp(1 - (1 - opac) ** depth_sharpen, 0.0, 1.0 - 1e-6)
    h, w = cameras.height, cameras.width
    u, v = _pixel_centres(h, w, means)
    depths, alphas = [], []
    with torch.no_grad():
        for i in range(len(cameras)):
            vm, K = t(cameras.world_to_cam[i]), t(cameras.K[i])
            ch = disc_channels(means, quats, scales, vm, K)
            if median:
                abc, alpha = median_render(means, quats, scales, o, ch[:, 3:], vm, K, w, h)
                depth = _inverse_to_depth(abc[..., 0] * u + abc[..., 1] * v + abc[..., 2], alpha)
            else:
                geo, alpha, _ = rasterization(means, quats, scales, o, ch, vm[None], K[None], w, h, sh_degree=None, packed=False)
                alpha = alpha[0, ..., 0]
                depth = depth_from_channels(geo[0], alpha)
            depths.append(depth.numpy())
            alphas.append(alpha.numpy())
    return np.stack(depths).astype(np.float32), np.stack(alphas).astype(np.float32)
