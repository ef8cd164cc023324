"""CPU path of the differentiable Gaussian-splat renderer (gsplat 1.5.3 semantics).

gsplat's CUDA kernels do not load on CPU, so this module re-implements
`gsplat.rasterization` for CPU tensors. Every stage exists twice: a small C++ kernel with a
hand-written backward (compiled once with g++ into $STUDIO_HOME/cache/ext or
~/.cache/studio/ext, ~5 s CPU; called through ctypes; float32 and float64; plain threads),
and a vectorised-torch version used when no compiler works (STUDIO_SPLAT_BACKEND=torch
forces it). The tests hold the two equal and both to gsplat's references.

- projection: EWA splatting exactly as gsplat's fused CUDA kernel (clamped Jacobian,
  ``eps2d`` blur, antialiased compensation, opacity-aware radii, near/far and image culling);
- SH colours: gsplat's basis and sign conventions, max(0, SH + 0.5), degree ≤ 4;
- tile binning: gsplat's int64 keys (image | tile | float32 depth bits) in its stable
  order, so the front-to-back order per tile is gsplat's;
- compositing and its backward, per 16×16 tile and 4×4 pixel block. Constants match gsplat:
  alpha = min(0.999, o·exp(-σ)), skipped when σ < 0 or alpha < 1/255, a pixel stops before
  the Gaussian that would bring its transmittance to ≤ 1e-4.

Conventions: OpenCV cameras (x right, y down, z forward), ``viewmats`` world→camera 4×4,
pixel centres at (i + 0.5, j + 0.5). Shapes are gsplat's (see ``rasterization``).
"""
from __future__ import annotations

import ctypes
import hashlib
import math
import os
import platform
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor

ALPHA_THRESHOLD = 1.0 / 255.0
ALPHA_MAX = 0.999
T_MIN = 1e-4
RADIUS_EXTEND = 3.33

# ----------------------------------------------------------------------------------------
# Projection
# ----------------------------------------------------------------------------------------


def quat_scale_to_covar(quats: Tensor, scales: Tensor) -> Tensor:
    """(…,4) wxyz quaternions (any norm) + (…,3) std devs → (…,3,3) covariance R S Sᵀ Rᵀ."""
    c = _covar6(quats, scales)
    rows = [[c[0], c[1], c[2]], [c[1], c[3], c[4]], [c[2], c[4], c[5]]]
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def _covar6(quats: Tensor, scales: Tensor) -> list:
    """Upper triangle (xx, xy, xz, yy, yz, zz) of R S Sᵀ Rᵀ, elementwise (no batched matmul:
    tiny bmm calls stall on a busy thread pool)."""
    q = torch.nn.functional.normalize(quats, p=2, dim=-1)
    w, x, y, z = q.unbind(-1)
    R = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    s2 = [scales[..., k] ** 2 for k in range(3)]
    cov = lambda i, j: R[i][0] * R[j][0] * s2[0] + R[i][1] * R[j][1] * s2[1] + R[i][2] * R[j][2] * s2[2]  # noqa: E731
    return [cov(0, 0), cov(0, 1), cov(0, 2), cov(1, 1), cov(1, 2), cov(2, 2)]


def fully_fused_projection_torch(
    means: Tensor,
    covars: Optional[Tensor],
    quats: Optional[Tensor],
    scales: Optional[Tensor],
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    calc_compensations: bool = False,
    opacities: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Optional[Tensor]]:
    """Pinhole EWA projection of N Gaussians into C cameras, as gsplat's fused CUDA kernel.

    means (B,N,3); covars (B,N,3,3) or None with quats (B,N,4) wxyz and scales (B,N,3);
    viewmats (B,C,4,4) world→camera; Ks (B,C,3,3); opacities (B,N) or None (None: radius
    extent 3.33σ as gsplat's torch reference; given: extent min(3.33, sqrt(2 ln(255·o)))
    and Gaussians with o·compensation < 1/255 culled, as gsplat's CUDA kernel).
    Returns radii (B,C,N,2) int32 (0 = culled), means2d (B,C,N,2), depths (B,C,N),
    conics (B,C,N,3) (inverse blurred 2D covariance: xx, xy, yy), compensations (B,C,N) or
    None. Culled entries have zero means2d/conics. Differentiable by autograd (vectorised
    torch; ``fully_fused_projection`` uses the C++ kernel when it is available).
    """
    if covars is None:
        cw = [t[:, None, :] for t in _covar6(quats, scales)]  # 6 × (B,1,N)
    else:
        cw = [covars[:, None, :, i, j] for i, j in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))]
    S = [[cw[0], cw[1], cw[2]], [cw[1], cw[3], cw[4]], [cw[2], cw[4], cw[5]]]
    Rv = [[viewmats[:, :, i, j][..., None] for j in range(3)] for i in range(3)]  # (B,C,1)
    mw = [means[:, None, :, k] for k in range(3)]  # (B,1,N)
    x, y, z = (Rv[i][0] * mw[0] + Rv[i][1] * mw[1] + Rv[i][2] * mw[2] + viewmats[:, :, i, 3][..., None]
               for i in range(3))
    # camera-space covariance Rv Σ Rvᵀ (upper triangle), elementwise
    A = [[Rv[i][0] * S[0][k] + Rv[i][1] * S[1][k] + Rv[i][2] * S[2][k] for k in range(3)] for i in range(3)]
    cc = lambda i, j: A[i][0] * Rv[j][0] + A[i][1] * Rv[j][1] + A[i][2] * Rv[j][2]  # noqa: E731
    c00, c01, c02, c11, c12, c22 = cc(0, 0), cc(0, 1), cc(0, 2), cc(1, 1), cc(1, 2), cc(2, 2)
    in_depth = (z >= near_plane) & (z <= far_plane)
    zs = torch.where(in_depth, z, torch.ones_like(z))
    fx = Ks[..., 0, 0][..., None]
    fy = Ks[..., 1, 1][..., None]
    cx = Ks[..., 0, 2][..., None]
    cy = Ks[..., 1, 2][..., None]
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    rz = 1.0 / zs
    tx = zs * torch.minimum(lim_x_pos, torch.maximum(-lim_x_neg, x * rz))
    ty = zs * torch.minimum(lim_y_pos, torch.maximum(-lim_y_neg, y * rz))
    j00, j02 = fx * rz, -fx * tx * rz * rz
    j11, j12 = fy * rz, -fy * ty * rz * rz
    a = j00 * j00 * c00 + 2 * j00 * j02 * c02 + j02 * j02 * c22  # J Σc Jᵀ
    b = j00 * j11 * c01 + j00 * j12 * c02 + j02 * j11 * c12 + j02 * j12 * c22
    c = j11 * j11 * c11 + 2 * j11 * j12 * c12 + j12 * j12 * c22
    mx = fx * x * rz + cx
    my = fy * y * rz + cy

    det_orig = a * c - b * b
    a = a + eps2d
    c = c + eps2d
    det = a * c - b * b
    ok = in_depth & (det > 0)
    dets = torch.where(ok, det, torch.ones_like(det))
    comp = torch.sqrt(torch.clamp(det_orig / dets, min=0.0)) if calc_compensations else None

    with torch.no_grad():
        extend = torch.full_like(zs, RADIUS_EXTEND)
        if opacities is not None:
            op = opacities[:, None, :].expand_as(zs)
            if comp is not None:
                op = op * comp
            ok = ok & (op >= ALPHA_THRESHOLD)
            lg = torch.log(torch.clamp(op, min=ALPHA_THRESHOLD) / ALPHA_THRESHOLD)
            extend = torch.minimum(extend, torch.sqrt(2.0 * lg))
        rx = torch.ceil(extend * torch.sqrt(torch.clamp(a, min=0)))
        ry = torch.ceil(extend * torch.sqrt(torch.clamp(c, min=0)))
        ok = ok & ~((rx <= radius_clip) & (ry <= radius_clip))
        ok = ok & (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
        radii = (torch.stack([rx, ry], -1) * ok[..., None]).to(torch.int32)

    okf = ok[..., None]
    means2d = torch.where(okf, torch.stack([mx, my], -1), torch.zeros((), dtype=mx.dtype))
    conics = torch.stack([c / dets, -b / dets, a / dets], -1)
    conics = torch.where(okf, conics, torch.zeros((), dtype=conics.dtype))
    if comp is not None:
        comp = torch.where(ok, comp, torch.zeros((), dtype=comp.dtype))
    return radii, means2d, z, conics, comp


class _ProjectCpp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, quats, scales, viewmats, Ks, opacities, width, height, eps2d,
                near_plane, far_plane, radius_clip, calc_comp):
        dt = means.dtype
        B, N, _ = means.shape
        C = viewmats.shape[1]
        m, q, sc = (t.detach().contiguous() for t in (means, quats, scales))
        vm, K = viewmats.detach().to(dt).contiguous(), Ks.detach().to(dt).contiguous()
        op = None if opacities is None else opacities.detach().to(dt).contiguous()
        radii = torch.empty((B, C, N, 2), dtype=torch.int32)
        means2d = torch.empty((B, C, N, 2), dtype=dt)
        depths = torch.empty((B, C, N), dtype=dt)
        conics = torch.empty((B, C, N, 3), dtype=dt)
        comp = torch.empty((B, C, N), dtype=dt)
        lib = kernel_library()
        fn = lib.proj_fwd_f64 if dt == torch.float64 else lib.proj_fwd_f32
        nt = 1 if B * N * C < 20_000 else _threads()
        fn(B, C, N, _ptr(m), _ptr(q), _ptr(sc), _ptr(op), _ptr(vm), _ptr(K), width, height,
           eps2d, near_plane, far_plane, radius_clip, int(calc_comp), _ptr(radii),
           _ptr(means2d), _ptr(depths), _ptr(conics), _ptr(comp), nt)
        ctx.save_for_backward(m, q, sc, vm, K, radii)
        ctx.args = (width, height, eps2d, calc_comp)
        ctx.mark_non_differentiable(radii)
        return radii, means2d, depths, conics, comp

    @staticmethod
    def backward(ctx, v_radii, v_means2d, v_depths, v_conics, v_comp):
        m, q, sc, vm, K, radii = ctx.saved_tensors
        width, height, eps2d, calc_comp = ctx.args
        dt = m.dtype
        B, N, _ = m.shape
        C = vm.shape[1]
        prep = lambda t, shape: (torch.zeros(shape, dtype=dt) if t is None else t.to(dt).contiguous())  # noqa: E731
        v_m2 = prep(v_means2d, (B, C, N, 2))
        v_d = prep(v_depths, (B, C, N))
        v_c = prep(v_conics, (B, C, N, 3))
        v_cp = prep(v_comp, (B, C, N)) if (calc_comp and v_comp is not None) else None
        v_means = torch.empty_like(m)
        v_quats = torch.empty_like(q)
        v_scales = torch.empty_like(sc)
        lib = kernel_library()
        fn = lib.proj_bwd_f64 if dt == torch.float64 else lib.proj_bwd_f32
        nt = 1 if B * N * C < 20_000 else _threads()
        fn(B, C, N, _ptr(m), _ptr(q), _ptr(sc), _ptr(vm), _ptr(K), width, height, eps2d,
           _ptr(radii), _ptr(v_m2), _ptr(v_d), _ptr(v_c), _ptr(v_cp), _ptr(v_means),
           _ptr(v_quats), _ptr(v_scales), nt)
        return (v_means, v_quats, v_scales) + (None,) * 10


def fully_fused_projection(
    means: Tensor,
    covars: Optional[Tensor],
    quats: Optional[Tensor],
    scales: Optional[Tensor],
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    calc_compensations: bool = False,
    opacities: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Optional[Tensor]]:
    """EWA projection; same contract as ``fully_fused_projection_torch``.

    Uses the fused C++ kernel (hand-written backward to means, quats, scales; no gradient to
    viewmats/Ks) unless covars are given, a camera pose needs a gradient, or no compiler.
    """
    if (covars is None and backend() == "cpp" and not viewmats.requires_grad
            and not Ks.requires_grad):
        radii, means2d, depths, conics, comp = _ProjectCpp.apply(
            means, quats, scales, viewmats, Ks, opacities, width, height, float(eps2d),
            float(near_plane), float(far_plane), float(radius_clip), bool(calc_compensations))
        return radii, means2d, depths, conics, (comp if calc_compensations else None)
    return fully_fused_projection_torch(
        means, covars, quats, scales, viewmats, Ks, width, height, eps2d=eps2d,
        near_plane=near_plane, far_plane=far_plane, radius_clip=radius_clip,
        calc_compensations=calc_compensations, opacities=opacities)


class _SHCpp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, degree, means, campos, coeffs, radii):
        dt = means.dtype
        B, N, _ = means.shape
        C = campos.shape[1]
        per_cam = coeffs.dim() == 5
        K = coeffs.shape[-2]
        m, cp = means.detach().contiguous(), campos.detach().to(dt).contiguous()
        co, r = coeffs.detach().contiguous(), radii.contiguous()
        colors = torch.empty((B, C, N, 3), dtype=dt)
        lib = kernel_library()
        fn = lib.sh_fwd_f64 if dt == torch.float64 else lib.sh_fwd_f32
        nt = 1 if B * C * N < 20_000 else _threads()
        fn(B, C, N, K, degree, int(per_cam), _ptr(m), _ptr(cp), _ptr(co), _ptr(r), _ptr(colors), nt)
        ctx.save_for_backward(m, cp, co, r, colors)
        ctx.degree = degree
        return colors

    @staticmethod
    def backward(ctx, v_colors):
        m, cp, co, r, colors = ctx.saved_tensors
        dt = m.dtype
        B, N, _ = m.shape
        C = cp.shape[1]
        per_cam = co.dim() == 5
        K = co.shape[-2]
        v_co = torch.zeros_like(co)
        v_m = torch.empty_like(m)
        lib = kernel_library()
        fn = lib.sh_bwd_f64 if dt == torch.float64 else lib.sh_bwd_f32
        nt = 1 if B * C * N < 20_000 else _threads()
        v_c = v_colors.to(dt).contiguous()  # keep a reference: the kernel reads its memory
        fn(B, C, N, K, ctx.degree, int(per_cam), _ptr(m), _ptr(cp), _ptr(co), _ptr(r),
           _ptr(colors), _ptr(v_c), _ptr(v_co), _ptr(v_m), nt)
        return None, v_m, None, v_co, None


def sh_colors(degree: int, means: Tensor, campos: Tensor, coeffs: Tensor, radii: Tensor) -> Tensor:
    """View-dependent colours max(0, SH(normalize(mean - campos)) + 0.5), as gsplat.

    means (B,N,3), campos (B,C,3), coeffs (B,N,K,3) or per camera (B,C,N,K,3), radii
    (B,C,N,2) (culled entries get 0.5). Returns (B,C,N,3), differentiable w.r.t. means and
    coeffs (C++ kernel; gsplat's torch reference without a compiler).
    """
    if backend() == "cpp" and not campos.requires_grad:
        return _SHCpp.apply(degree, means, campos, coeffs, radii)
    from gsplat.cuda._torch_impl import _spherical_harmonics

    B, N, _ = means.shape
    C = campos.shape[1]
    K = coeffs.shape[-2]
    shs = coeffs if coeffs.dim() == 5 else coeffs[:, None].expand(B, C, N, K, 3)
    dirs = means[:, None] - campos[:, :, None, :]
    return torch.clamp_min(_spherical_harmonics(degree, dirs, shs) + 0.5, 0.0)



# ----------------------------------------------------------------------------------------
# Tile binning
# ----------------------------------------------------------------------------------------


@torch.no_grad()
def isect_tiles(
    means2d: Tensor,
    radii: Tensor,
    depths: Tensor,
    image_ids: Tensor,
    n_images: int,
    tile_size: int,
    tile_width: int,
    tile_height: int,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Bin M projected Gaussians into tiles, sorted per tile front to back (gsplat order).

    means2d (M,2), radii (M,2) int32, depths (M,), image_ids (M,) int64 in [0, n_images).
    Returns tiles_per_gauss (M,) int32, isect_ids (n_isects,) int64
    (image << (32+tile_bits) | tile << 32 | float32 depth bits), flatten_ids (n_isects,)
    int32 (index into M), isect_offsets (n_images, tile_height, tile_width) int32.
    """
    if backend() == "cpp":
        return _isect_tiles_cpp(means2d, radii, depths, image_ids, n_images, tile_size,
                                tile_width, tile_height)
    dev = means2d.device
    m = means2d.detach().float() / tile_size
    r = radii.float() / tile_size
    valid = (radii > 0).all(-1)
    x0 = torch.floor(m[:, 0] - r[:, 0]).clamp(0, tile_width).long()
    y0 = torch.floor(m[:, 1] - r[:, 1]).clamp(0, tile_height).long()
    x1 = torch.ceil(m[:, 0] + r[:, 0]).clamp(0, tile_width).long()
    y1 = torch.ceil(m[:, 1] + r[:, 1]).clamp(0, tile_height).long()
    nx = (x1 - x0) * valid
    ny = (y1 - y0) * valid
    tiles_per_gauss = nx * ny
    n_isects = int(tiles_per_gauss.sum())
    tile_n_bits = (tile_width * tile_height).bit_length()
    cum = torch.cumsum(tiles_per_gauss, 0)
    start = cum - tiles_per_gauss
    # owner of each intersection as a cumulative sum of id jumps at each Gaussian's first
    # slot (repeat_interleave / searchsorted stall on a busy thread pool)
    has = torch.nonzero(tiles_per_gauss > 0).flatten()
    jumps = torch.diff(has, prepend=has.new_zeros(1))
    gid = torch.zeros(n_isects, dtype=torch.int64, device=dev)
    gid[start[has]] = jumps
    gid = torch.cumsum(gid, 0)
    local = torch.arange(n_isects, device=dev) - start[gid]
    nxg = nx[gid]
    tx = x0[gid] + local % nxg.clamp(min=1)
    ty = y0[gid] + local // nxg.clamp(min=1)
    tile_id = ty * tile_width + tx
    dbits = depths.detach().float().contiguous().view(torch.int32).long() & 0xFFFFFFFF
    isect_ids = (image_ids[gid] << (32 + tile_n_bits)) | (tile_id << 32) | dbits[gid]
    isect_ids, order = torch.sort(isect_ids, stable=True)
    flatten_ids = gid[order].to(torch.int32)
    slots = torch.zeros(n_images * tile_height * tile_width, dtype=torch.int64, device=dev)
    if n_isects:
        hi = isect_ids >> 32
        img = hi >> tile_n_bits
        tl = hi & ((1 << tile_n_bits) - 1)
        slots.index_add_(0, img * (tile_width * tile_height) + tl, torch.ones_like(hi))
    offsets = (torch.cumsum(slots, 0) - slots).to(torch.int32)
    offsets = offsets.reshape(n_images, tile_height, tile_width)
    return tiles_per_gauss.to(torch.int32), isect_ids, flatten_ids, offsets


def _isect_tiles_cpp(means2d, radii, depths, image_ids, n_images, tile_size, tile_width,
                     tile_height):
    dt = means2d.dtype
    lib = kernel_library()
    sfx = "f64" if dt == torch.float64 else "f32"
    xy = means2d.detach().contiguous()
    r = radii.contiguous()
    d = depths.detach().contiguous()
    ims = image_ids.to(torch.int64).contiguous()
    M = xy.shape[0]
    tpg = torch.empty(M, dtype=torch.int32)
    getattr(lib, "bin_count_" + sfx)(M, _ptr(xy), _ptr(r), tile_size, tile_width, tile_height, _ptr(tpg))
    cum = torch.cumsum(tpg, 0, dtype=torch.int64)
    n_isects = int(cum[-1]) if M else 0
    tile_n_bits = (tile_width * tile_height).bit_length()
    ids = torch.empty(n_isects, dtype=torch.int64)
    flat = torch.empty(n_isects, dtype=torch.int32)
    getattr(lib, "bin_fill_" + sfx)(M, _ptr(xy), _ptr(r), _ptr(d), _ptr(ims), _ptr(cum), tile_size,
                                    tile_width, tile_height, tile_n_bits, _ptr(ids), _ptr(flat))
    n_tiles = tile_width * tile_height
    ids_s = torch.empty_like(ids)
    flat_s = torch.empty_like(flat)
    offsets = torch.empty((n_images, tile_height, tile_width), dtype=torch.int32)
    lib.bin_sort_c(n_isects, n_images * n_tiles, tile_n_bits, n_tiles, _ptr(ids), _ptr(flat),
                   _ptr(ids_s), _ptr(flat_s), _ptr(offsets))
    return tpg, ids_s, flat_s, offsets


# ----------------------------------------------------------------------------------------
# C++ kernels (ctypes)
# ----------------------------------------------------------------------------------------

_CPP_SOURCE = r"""
#include <cmath>
#include <cstdint>
#include <vector>
#include <algorithm>
#include <cstring>
#include <atomic>
#include <thread>

// Dynamic parallel for on plain threads that block on join: no spinning workers left
// behind (OpenMP's spin-wait doubled wall time on a shared, oversubscribed machine).
template <typename F>
static void parallel_for(int64_t n, int nthreads, int64_t chunk, F&& body) {
  if (nthreads <= 1 || n <= chunk) { if (n > 0) body((int64_t)0, n); return; }
  std::atomic<int64_t> next(0);
  auto work = [&]() {
    for (;;) {
      const int64_t b = next.fetch_add(chunk);
      if (b >= n) break;
      body(b, std::min(n, b + chunk));
    }
  };
  std::vector<std::thread> pool;
  for (int i = 1; i < nthreads; ++i) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
}

constexpr int GS = 9;  // per-Gaussian record: x, y, conic(3), opacity, sigma bound, half extents(2)
template <typename S> struct Consts;
template <> struct Consts<float> {
  static constexpr float thr = 1.f / 255.f; static constexpr float amax = 0.999f;
  static constexpr float tmin = 1e-4f; };
template <> struct Consts<double> {
  static constexpr double thr = 1.0 / 255.0; static constexpr double amax = 0.999;
  static constexpr double tmin = 1e-4; };

// Gather the Gaussians of one tile into a contiguous buffer: x, y, ca, cb, cc, o, reject.
template <typename S>
static void gather(int64_t start, int64_t n, const int32_t* flat, const S* xy, const S* conic,
                   const S* opac, const S* col, int D, std::vector<S>& g, std::vector<S>& c) {
  g.resize(n * GS); c.resize(n * D);
  for (int64_t k = 0; k < n; ++k) {
    int64_t id = flat[start + k];
    S* p = &g[k * GS];
    p[0] = xy[id * 2]; p[1] = xy[id * 2 + 1];
    p[2] = conic[id * 3]; p[3] = conic[id * 3 + 1]; p[4] = conic[id * 3 + 2];
    S o = opac[id]; p[5] = o;
    // sigma above this cannot give alpha >= 1/255 (small margin: exact test follows)
    const double thr = o > 0 ? std::log((double)o / (double)Consts<S>::thr) + 1e-3 : -1.0;
    p[6] = (S)thr;
    // half extents of the ellipse sigma <= thr (bounding box), +margin; empty if thr < 0
    const double a = p[2], b = p[3], cc = p[4], det = a * cc - b * b;
    if (thr < 0) { p[7] = -1; p[8] = -1; }
    else if (!(det > 0) || !(a > 0) || !(cc > 0)) { p[7] = (S)1e30; p[8] = (S)1e30; }
    else {
      p[7] = (S)(std::sqrt(2.0 * thr * cc / det) + 1e-2);
      p[8] = (S)(std::sqrt(2.0 * thr * a / det) + 1e-2);
    }
    for (int d = 0; d < D; ++d) c[k * D + d] = col[id * D + d];
  }
}

// Per 4x4-pixel block of a tile: the (ascending) tile-list indices whose bounding box
// reaches the block's pixel centres.
constexpr int BS = 4;
template <typename S>
static void block_lists(const std::vector<S>& g, int64_t n, int x0, int y0, int x1, int y1,
                        std::vector<std::vector<int32_t>>& lists, int& nbx) {
  nbx = (x1 - x0 + BS - 1) / BS;
  const int nby = (y1 - y0 + BS - 1) / BS;
  lists.resize((size_t)nbx * nby);
  for (auto& l : lists) l.clear();
  for (int64_t k = 0; k < n; ++k) {
    const S* p = &g[k * GS];
    if (p[7] < 0) continue;
    const double lx = p[0] - p[7], hx = p[0] + p[7], ly = p[1] - p[8], hy = p[1] + p[8];
    // block bx covers pixel centres x0 + bx*BS + 0.5 .. min(x1, x0+(bx+1)*BS) - 0.5
    int bx0 = (int)std::floor((lx - x0 - 0.5) / BS), bx1 = (int)std::floor((hx - x0 - 0.5) / BS);
    int by0 = (int)std::floor((ly - y0 - 0.5) / BS), by1 = (int)std::floor((hy - y0 - 0.5) / BS);
    bx0 = std::max(bx0, 0); by0 = std::max(by0, 0);
    bx1 = std::min(bx1, nbx - 1); by1 = std::min(by1, nby - 1);
    for (int by = by0; by <= by1; ++by)
      for (int bx = bx0; bx <= bx1; ++bx) lists[(size_t)by * nbx + bx].push_back((int32_t)k);
  }
}

constexpr int MAXD = 64;  // channels per kernel call (the caller chunks wider colours)

// Every pixel of every tile, tiles shared among threads: gathers the tile's Gaussians (front to
// back) and calls pixel(img, i, j, list, g, c) with the pixel's 4x4-block candidate list.
template <typename S, typename F>
static void tile_pixels(int I, int H, int W, int ts, int tw, int th, int D, int64_t n_isects,
                        const S* xy, const S* conic, const S* opac, const S* col,
                        const int32_t* offsets, const int32_t* flat, int nthreads, F&& pixel) {
  const int64_t ntiles = (int64_t)I * th * tw;
  parallel_for(ntiles, nthreads, 1, [&](int64_t t0, int64_t t1) {
    std::vector<S> g, c;
    std::vector<std::vector<int32_t>> lists;
    for (int64_t t = t0; t < t1; ++t) {
      const int img = (int)(t / ((int64_t)th * tw));
      const int tid = (int)(t % ((int64_t)th * tw));
      const int ty = tid / tw, tx = tid % tw;
      const int64_t start = offsets[t];
      const int64_t end = (t == ntiles - 1) ? n_isects : (int64_t)offsets[t + 1];
      const int64_t n = end - start;
      gather(start, n, flat, xy, conic, opac, col, D, g, c);
      const int x0 = tx * ts, y0 = ty * ts, x1 = std::min(W, x0 + ts), y1 = std::min(H, y0 + ts);
      int nbx;
      block_lists(g, n, x0, y0, x1, y1, lists, nbx);
      for (int i = y0; i < y1; ++i)
        for (int j = x0; j < x1; ++j)
          pixel(img, i, j, lists[(size_t)((i - y0) / BS) * nbx + (j - x0) / BS], g, c);
    }
  });
}

// alpha of tile Gaussian p (gather layout) at pixel centre (px, py); 0 when culled (gsplat rules)
template <typename S>
static inline S pixel_alpha(const S* p, S px, S py) {
  const S dx = p[0] - px, dy = p[1] - py;
  const S sigma = (S)0.5 * (p[2] * dx * dx + p[4] * dy * dy) + p[3] * dx * dy;
  if (sigma < 0 || sigma > p[6]) return 0;
  const S alpha = std::min(Consts<S>::amax, p[5] * std::exp(-sigma));
  return alpha < Consts<S>::thr ? (S)0 : alpha;
}

template <typename S, int DC>  // DC > 0: channel count known at compile time
static void fwd(int I, int H, int W, int ts, int tw, int th, int D_, int64_t n_isects,
                const S* xy, const S* conic, const S* opac, const S* col, const S* bg,
                const int32_t* offsets, const int32_t* flat,
                S* out_col, S* out_T, int32_t* out_last, int nthreads) {
  const int D = DC > 0 ? DC : D_;
  tile_pixels(I, H, W, ts, tw, th, D, n_isects, xy, conic, opac, col, offsets, flat, nthreads,
              [&](int img, int i, int j, const std::vector<int32_t>& lst, const std::vector<S>& g,
                  const std::vector<S>& c) {
    S acc[MAXD];
    const S px = (S)j + (S)0.5, py = (S)i + (S)0.5;
    for (int d = 0; d < D; ++d) acc[d] = 0;
    S T = 1;
    int32_t last = 0;
    for (size_t li = 0; li < lst.size(); ++li) {
      const int64_t k = lst[li];
      const S alpha = pixel_alpha(&g[k * GS], px, py);
      if (alpha == 0) continue;
      const S next_T = T * (1 - alpha);
      if (next_T <= Consts<S>::tmin) break;
      const S vis = alpha * T;
      const S* ck = &c[k * D];
      for (int d = 0; d < D; ++d) acc[d] += ck[d] * vis;
      T = next_T;
      last = (int32_t)(k + 1);
    }
    const int64_t pix = ((int64_t)img * H + i) * W + j;
    const S* bgi = bg ? bg + (int64_t)img * D : nullptr;
    out_T[pix] = T;
    out_last[pix] = last;
    for (int d = 0; d < D; ++d)
      out_col[pix * D + d] = bgi ? acc[d] + T * bgi[d] : acc[d];
  });
}

// Forward only: per pixel, the channels of the Gaussian at which the transmittance first drops
// to `level` or below (the median contributor for level 0.5), zeros when it never does; out_T
// holds the final transmittance. Same culling as fwd (alpha < 1/255 skipped, T_MIN stop).
template <typename S>
static void median(int I, int H, int W, int ts, int tw, int th, int D, int64_t n_isects,
                   const S* xy, const S* conic, const S* opac, const S* col, S level,
                   const int32_t* offsets, const int32_t* flat, S* out_col, S* out_T, int nthreads) {
  tile_pixels(I, H, W, ts, tw, th, D, n_isects, xy, conic, opac, col, offsets, flat, nthreads,
              [&](int img, int i, int j, const std::vector<int32_t>& lst, const std::vector<S>& g,
                  const std::vector<S>& c) {
    const S px = (S)j + (S)0.5, py = (S)i + (S)0.5;
    const int64_t pix = ((int64_t)img * H + i) * W + j;
    S* o = out_col + pix * D;
    for (int d = 0; d < D; ++d) o[d] = 0;
    S T = 1;
    bool found = false;
    for (size_t li = 0; li < lst.size(); ++li) {
      const int64_t k = lst[li];
      const S alpha = pixel_alpha(&g[k * GS], px, py);
      if (alpha == 0) continue;
      const S next_T = T * (1 - alpha);
      const bool stop = next_T <= Consts<S>::tmin;  // fwd composites nothing from here on
      if (!found && (stop || next_T <= level)) {
        for (int d = 0; d < D; ++d) o[d] = c[k * D + d];
        found = true;
      }
      if (stop) break;
      T = next_T;
    }
    out_T[pix] = T;
  });
}

// Gradients are written per intersection entry (each belongs to exactly one tile, so no
// races); the caller scatter-adds them onto Gaussians with index_add_.
template <typename S, int DC>
static void bwd(int I, int H, int W, int ts, int tw, int th, int D_, int64_t n_isects,
                const S* xy, const S* conic, const S* opac, const S* col, const S* bg,
                const int32_t* offsets, const int32_t* flat,
                const S* out_T, const int32_t* out_last, const S* v_col, const S* v_alpha,
                S* g_xy, S* g_conic, S* g_opac, S* g_col, S* g_abs, int nthreads) {
  const int64_t ntiles = (int64_t)I * th * tw;
  const int D = DC > 0 ? DC : D_;
  parallel_for(ntiles, nthreads, 1, [&](int64_t t0, int64_t t1) {
    std::vector<S> g, c;
    S buf[MAXD];
    std::vector<std::vector<int32_t>> lists;
    for (int64_t t = t0; t < t1; ++t) {
      const int img = (int)(t / ((int64_t)th * tw));
      const int tid = (int)(t % ((int64_t)th * tw));
      const int ty = tid / tw, tx = tid % tw;
      const int64_t start = offsets[t];
      const int64_t end = (t == ntiles - 1) ? n_isects : (int64_t)offsets[t + 1];
      const int64_t n = end - start;
      for (int64_t e = start; e < end; ++e) {
        g_xy[e * 2] = g_xy[e * 2 + 1] = 0;
        g_conic[e * 3] = g_conic[e * 3 + 1] = g_conic[e * 3 + 2] = 0;
        g_opac[e] = 0;
        for (int d = 0; d < D; ++d) g_col[e * D + d] = 0;
        if (g_abs) g_abs[e * 2] = g_abs[e * 2 + 1] = 0;
      }
      if (n == 0) continue;
      gather(start, n, flat, xy, conic, opac, col, D, g, c);
      const int x0 = tx * ts, y0 = ty * ts, x1 = std::min(W, x0 + ts), y1 = std::min(H, y0 + ts);
      int nbx;
      block_lists(g, n, x0, y0, x1, y1, lists, nbx);
      const S* bgi = bg ? bg + (int64_t)img * D : nullptr;
      for (int i = y0; i < y1; ++i) {
        for (int j = x0; j < x1; ++j) {
          const std::vector<int32_t>& lst = lists[(size_t)((i - y0) / BS) * nbx + (j - x0) / BS];
          const int64_t pix = ((int64_t)img * H + i) * W + j;
          const S px = (S)j + (S)0.5, py = (S)i + (S)0.5;
          const S T_final = out_T[pix];
          S T = T_final;
          const S* vc = v_col + pix * D;
          const S va = v_alpha[pix];
          S bgdot = 0;
          if (bgi) for (int d = 0; d < D; ++d) bgdot += bgi[d] * vc[d];
          for (int d = 0; d < D; ++d) buf[d] = 0;
          // entries of this block's list before the pixel's last contributor, back to front
          int64_t li = std::lower_bound(lst.begin(), lst.end(), out_last[pix]) - lst.begin();
          while (--li >= 0) {
            const int64_t k = lst[li];
            const S* p = &g[k * GS];
            const S dx = p[0] - px, dy = p[1] - py;
            const S sigma = (S)0.5 * (p[2] * dx * dx + p[4] * dy * dy) + p[3] * dx * dy;
            if (sigma < 0 || sigma > p[6]) continue;
            const S vis = std::exp(-sigma);
            const S ov = p[5] * vis;
            const S alpha = std::min(Consts<S>::amax, ov);
            if (alpha < Consts<S>::thr) continue;
            const S ra = 1 / (1 - alpha);
            T *= ra;
            const S fac = alpha * T;
            const S* ck = &c[k * D];
            const int64_t e = start + k;
            S v_a = 0;
            for (int d = 0; d < D; ++d) {
              g_col[e * D + d] += fac * vc[d];
              v_a += (ck[d] * T - buf[d] * ra) * vc[d];
            }
            v_a += T_final * ra * va;
            if (bgi) v_a -= T_final * ra * bgdot;
            if (ov <= Consts<S>::amax) {
              const S v_sigma = -ov * v_a;
              g_conic[e * 3] += (S)0.5 * v_sigma * dx * dx;
              g_conic[e * 3 + 1] += v_sigma * dx * dy;
              g_conic[e * 3 + 2] += (S)0.5 * v_sigma * dy * dy;
              const S gx = v_sigma * (p[2] * dx + p[3] * dy);
              const S gy = v_sigma * (p[3] * dx + p[4] * dy);
              g_xy[e * 2] += gx;
              g_xy[e * 2 + 1] += gy;
              if (g_abs) { g_abs[e * 2] += std::fabs(gx); g_abs[e * 2 + 1] += std::fabs(gy); }
              g_opac[e] += vis * v_a;
            }
            for (int d = 0; d < D; ++d) buf[d] += ck[d] * fac;
          }
        }
      }
    }
  });
}


// ---------------------------------------------------------------------------------------
// EWA projection (gsplat's fused kernel) and its vector-Jacobian product
// ---------------------------------------------------------------------------------------
template <typename S>
static inline void quat_rot(const S* q, S R[3][3], S qn[4], S& inv_norm) {
  S n2 = q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3];
  S nrm = std::sqrt(n2);
  inv_norm = 1 / std::max(nrm, (S)1e-12);
  S w = q[0] * inv_norm, x = q[1] * inv_norm, y = q[2] * inv_norm, z = q[3] * inv_norm;
  qn[0] = w; qn[1] = x; qn[2] = y; qn[3] = z;
  R[0][0] = 1 - 2 * (y * y + z * z); R[0][1] = 2 * (x * y - w * z); R[0][2] = 2 * (x * z + w * y);
  R[1][0] = 2 * (x * y + w * z); R[1][1] = 1 - 2 * (x * x + z * z); R[1][2] = 2 * (y * z - w * x);
  R[2][0] = 2 * (x * z - w * y); R[2][1] = 2 * (y * z + w * x); R[2][2] = 1 - 2 * (x * x + y * y);
}

template <typename S>
struct ProjCtx {  // per (camera, gaussian) intermediates shared by fwd and bwd
  S R[3][3], qn[4], inv_norm, M[3][3], Sig[3][3], Rv[3][3], Sc[3][3], p[3];
  S J0[3], J1[3], a, b, c, ab, cb, det, det_orig, rz, tx, ty, lx, ly;
  bool clx, cly;
};

template <typename S>
static inline void proj_core(const S* mean, const S* q, const S* sc, const S* vm, const S* K,
                             int W, int H, S eps2d, ProjCtx<S>& P) {
  quat_rot(q, P.R, P.qn, P.inv_norm);
  for (int i = 0; i < 3; ++i) for (int j = 0; j < 3; ++j) P.M[i][j] = P.R[i][j] * sc[j];
  for (int i = 0; i < 3; ++i) for (int j = 0; j < 3; ++j)
    P.Sig[i][j] = P.M[i][0] * P.M[j][0] + P.M[i][1] * P.M[j][1] + P.M[i][2] * P.M[j][2];
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) P.Rv[i][j] = vm[i * 4 + j];
    P.p[i] = P.Rv[i][0] * mean[0] + P.Rv[i][1] * mean[1] + P.Rv[i][2] * mean[2] + vm[i * 4 + 3];
  }
  S T1[3][3];
  for (int i = 0; i < 3; ++i) for (int k = 0; k < 3; ++k)
    T1[i][k] = P.Rv[i][0] * P.Sig[0][k] + P.Rv[i][1] * P.Sig[1][k] + P.Rv[i][2] * P.Sig[2][k];
  for (int i = 0; i < 3; ++i) for (int l = 0; l < 3; ++l)
    P.Sc[i][l] = T1[i][0] * P.Rv[l][0] + T1[i][1] * P.Rv[l][1] + T1[i][2] * P.Rv[l][2];
  const S fx = K[0], fy = K[4], cx = K[2], cy = K[5];
  const S x = P.p[0], y = P.p[1], z = P.p[2];
  const S tfx = (S)0.5 * W / fx, tfy = (S)0.5 * H / fy;
  const S lxp = (W - cx) / fx + (S)0.3 * tfx, lxn = cx / fx + (S)0.3 * tfx;
  const S lyp = (H - cy) / fy + (S)0.3 * tfy, lyn = cy / fy + (S)0.3 * tfy;
  P.rz = 1 / z;
  const S ux = x * P.rz, uy = y * P.rz;
  P.lx = std::min(lxp, std::max(-lxn, ux));
  P.ly = std::min(lyp, std::max(-lyn, uy));
  P.clx = !(ux <= lxp && ux >= -lxn);
  P.cly = !(uy <= lyp && uy >= -lyn);
  P.tx = z * P.lx; P.ty = z * P.ly;
  P.J0[0] = fx * P.rz; P.J0[1] = 0; P.J0[2] = -fx * P.tx * P.rz * P.rz;
  P.J1[0] = 0; P.J1[1] = fy * P.rz; P.J1[2] = -fy * P.ty * P.rz * P.rz;
  S SJ0[3], SJ1[3];
  for (int i = 0; i < 3; ++i) {
    SJ0[i] = P.Sc[i][0] * P.J0[0] + P.Sc[i][1] * P.J0[1] + P.Sc[i][2] * P.J0[2];
    SJ1[i] = P.Sc[i][0] * P.J1[0] + P.Sc[i][1] * P.J1[1] + P.Sc[i][2] * P.J1[2];
  }
  P.a = P.J0[0] * SJ0[0] + P.J0[1] * SJ0[1] + P.J0[2] * SJ0[2];
  P.b = P.J0[0] * SJ1[0] + P.J0[1] * SJ1[1] + P.J0[2] * SJ1[2];
  P.c = P.J1[0] * SJ1[0] + P.J1[1] * SJ1[1] + P.J1[2] * SJ1[2];
  P.det_orig = P.a * P.c - P.b * P.b;
  P.ab = P.a + eps2d; P.cb = P.c + eps2d;
  P.det = P.ab * P.cb - P.b * P.b;
}

template <typename S>
static void proj_fwd(int B, int C, int N, const S* means, const S* quats, const S* scales,
                     const S* opac, const S* viewmats, const S* Ks, int W, int H, S eps2d,
                     S near_plane, S far_plane, S radius_clip, int calc_comp,
                     int32_t* radii, S* means2d, S* depths, S* conics, S* comp, int nthreads) {
  parallel_for((int64_t)B * N, nthreads, 2048, [&](int64_t b0, int64_t b1) {
  for (int64_t bn = b0; bn < b1; ++bn) {
    const int b = (int)(bn / N), n = (int)(bn % N);
    ProjCtx<S> P;
    for (int cam = 0; cam < C; ++cam) {
      const int64_t o = ((int64_t)b * C + cam) * N + n;
      const S* vm = viewmats + ((int64_t)b * C + cam) * 16;
      const S* K = Ks + ((int64_t)b * C + cam) * 9;
      const S* mean = means + bn * 3;
      const S z = vm[8] * mean[0] + vm[9] * mean[1] + vm[10] * mean[2] + vm[11];
      depths[o] = z;
      radii[o * 2] = 0; radii[o * 2 + 1] = 0;
      means2d[o * 2] = 0; means2d[o * 2 + 1] = 0;
      conics[o * 3] = 0; conics[o * 3 + 1] = 0; conics[o * 3 + 2] = 0;
      if (comp) comp[o] = 0;
      if (!(z >= near_plane && z <= far_plane)) continue;
      proj_core(mean, quats + bn * 4, scales + bn * 3, vm, K, W, H, eps2d, P);
      if (!(P.det > 0)) continue;
      const S cp = std::sqrt(std::max((S)0, P.det_orig / P.det));
      S extend = (S)3.33;
      if (opac) {
        S o2 = opac[bn];
        if (calc_comp) o2 *= cp;
        if (o2 < Consts<S>::thr) continue;
        extend = std::min(extend, std::sqrt(2 * std::log(o2 / Consts<S>::thr)));
      }
      const S rx = std::ceil(extend * std::sqrt(P.ab)), ry = std::ceil(extend * std::sqrt(P.cb));
      if (rx <= radius_clip && ry <= radius_clip) continue;
      const S mx = K[0] * P.p[0] * P.rz + K[2], my = K[4] * P.p[1] * P.rz + K[5];
      if (mx + rx <= 0 || mx - rx >= W || my + ry <= 0 || my - ry >= H) continue;
      radii[o * 2] = (int32_t)rx; radii[o * 2 + 1] = (int32_t)ry;
      means2d[o * 2] = mx; means2d[o * 2 + 1] = my;
      conics[o * 3] = P.cb / P.det; conics[o * 3 + 1] = -P.b / P.det; conics[o * 3 + 2] = P.ab / P.det;
      if (comp && calc_comp) comp[o] = cp;
    }
  }
  });
}

template <typename S>
static void proj_bwd(int B, int C, int N, const S* means, const S* quats, const S* scales,
                     const S* viewmats, const S* Ks, int W, int H, S eps2d,
                     const int32_t* radii, const S* v_means2d, const S* v_depths,
                     const S* v_conics, const S* v_comp,
                     S* v_means, S* v_quats, S* v_scales, int nthreads) {
  parallel_for((int64_t)B * N, nthreads, 2048, [&](int64_t b0, int64_t b1) {
  for (int64_t bn = b0; bn < b1; ++bn) {
    const int b = (int)(bn / N);
    const int n = (int)(bn % N);
    S vmean[3] = {0, 0, 0}, vM[3][3] = {{0}}, haveM = 0;
    ProjCtx<S> P;
    for (int cam = 0; cam < C; ++cam) {
      const int64_t o = ((int64_t)b * C + cam) * N + n;
      const S* vm = viewmats + ((int64_t)b * C + cam) * 16;
      const S* K = Ks + ((int64_t)b * C + cam) * 9;
      if (v_depths) for (int j = 0; j < 3; ++j) vmean[j] += vm[8 + j] * v_depths[o];
      if (radii[o * 2] <= 0 || radii[o * 2 + 1] <= 0) continue;
      proj_core(means + bn * 3, quats + bn * 4, scales + bn * 3, vm, K, W, H, eps2d, P);
      const S fx = K[0], fy = K[4];
      const S det = P.det, rz = P.rz, rz2 = rz * rz, rz3 = rz2 * rz;
      // conics (cb/det, -b/det, ab/det)
      const S v0 = v_conics[o * 3], v1 = v_conics[o * 3 + 1], v2 = v_conics[o * 3 + 2];
      const S s = (v0 * P.cb - v1 * P.b + v2 * P.ab) / (det * det);
      S va = v2 / det - s * P.cb;
      S vc = v0 / det - s * P.ab;
      S vb = -v1 / det + 2 * s * P.b;
      if (v_comp) {
        const S r = P.det_orig / det;
        if (r > 0) {
          const S vr = v_comp[o] * (S)0.5 / std::sqrt(r);
          va += vr * (P.c - r * P.cb) / det;
          vc += vr * (P.a - r * P.ab) / det;
          vb += vr * (-2 * P.b * (1 - r)) / det;
        }
      }
      // cov2d = [J0; J1] Sc [J0; J1]^T
      S G[3][3];
      for (int i = 0; i < 3; ++i) for (int j = 0; j < 3; ++j)
        G[i][j] = va * P.J0[i] * P.J0[j] + vb * P.J0[i] * P.J1[j] + vc * P.J1[i] * P.J1[j];
      S SJ0[3], SJ1[3];
      for (int i = 0; i < 3; ++i) {
        SJ0[i] = P.Sc[i][0] * P.J0[0] + P.Sc[i][1] * P.J0[1] + P.Sc[i][2] * P.J0[2];
        SJ1[i] = P.Sc[i][0] * P.J1[0] + P.Sc[i][1] * P.J1[1] + P.Sc[i][2] * P.J1[2];
      }
      S vJ0[3], vJ1[3];
      for (int i = 0; i < 3; ++i) {
        vJ0[i] = 2 * va * SJ0[i] + vb * SJ1[i];
        vJ1[i] = 2 * vc * SJ1[i] + vb * SJ0[i];
      }
      // camera-space mean
      const S x = P.p[0], y = P.p[1];
      S vp[3] = {0, 0, 0};
      const S vmx = v_means2d[o * 2], vmy = v_means2d[o * 2 + 1];
      vp[0] += fx * rz * vmx;
      vp[1] += fy * rz * vmy;
      vp[2] += -(fx * x * vmx + fy * y * vmy) * rz2;
      vp[2] += -fx * rz2 * vJ0[0] - fy * rz2 * vJ1[1];
      if (!P.clx) { vp[0] += -fx * rz2 * vJ0[2]; vp[2] += 2 * fx * P.tx * rz3 * vJ0[2]; }
      else { vp[2] += fx * P.tx * rz3 * vJ0[2]; }
      if (!P.cly) { vp[1] += -fy * rz2 * vJ1[2]; vp[2] += 2 * fy * P.ty * rz3 * vJ1[2]; }
      else { vp[2] += fy * P.ty * rz3 * vJ1[2]; }
      for (int j = 0; j < 3; ++j)
        vmean[j] += P.Rv[0][j] * vp[0] + P.Rv[1][j] * vp[1] + P.Rv[2][j] * vp[2];
      // Sc = Rv Sig Rv^T  ->  G_Sig = Rv^T G Rv
      S T2[3][3], GS[3][3];
      for (int i = 0; i < 3; ++i) for (int l = 0; l < 3; ++l)
        T2[i][l] = G[i][0] * P.Rv[0][l] + G[i][1] * P.Rv[1][l] + G[i][2] * P.Rv[2][l];
      for (int k = 0; k < 3; ++k) for (int l = 0; l < 3; ++l)
        GS[k][l] = P.Rv[0][k] * T2[0][l] + P.Rv[1][k] * T2[1][l] + P.Rv[2][k] * T2[2][l];
      // Sig = M M^T -> vM = (GS + GS^T) M
      for (int i = 0; i < 3; ++i) for (int j = 0; j < 3; ++j) {
        S acc = 0;
        for (int k = 0; k < 3; ++k) acc += (GS[i][k] + GS[k][i]) * P.M[k][j];
        vM[i][j] += acc;
      }
      haveM = 1;
    }
    for (int j = 0; j < 3; ++j) v_means[bn * 3 + j] = vmean[j];
    if (!haveM) {
      for (int j = 0; j < 3; ++j) v_scales[bn * 3 + j] = 0;
      for (int j = 0; j < 4; ++j) v_quats[bn * 4 + j] = 0;
      continue;
    }
    // M = R diag(s)
    const S* sc = scales + bn * 3;
    S VR[3][3];
    for (int j = 0; j < 3; ++j) {
      S acc = 0;
      for (int i = 0; i < 3; ++i) { acc += vM[i][j] * P.R[i][j]; VR[i][j] = vM[i][j] * sc[j]; }
      v_scales[bn * 3 + j] = acc;
    }
    const S w = P.qn[0], x = P.qn[1], y = P.qn[2], z = P.qn[3];
    S vq[4];
    vq[0] = 2 * (-z * VR[0][1] + y * VR[0][2] + z * VR[1][0] - x * VR[1][2] - y * VR[2][0] + x * VR[2][1]);
    vq[1] = 2 * (y * VR[0][1] + z * VR[0][2] + y * VR[1][0] - 2 * x * VR[1][1] - w * VR[1][2] + z * VR[2][0] + w * VR[2][1] - 2 * x * VR[2][2]);
    vq[2] = 2 * (-2 * y * VR[0][0] + x * VR[0][1] + w * VR[0][2] + x * VR[1][0] + z * VR[1][2] - w * VR[2][0] + z * VR[2][1] - 2 * y * VR[2][2]);
    vq[3] = 2 * (-2 * z * VR[0][0] - w * VR[0][1] + x * VR[0][2] + w * VR[1][0] - 2 * z * VR[1][1] + y * VR[1][2] + x * VR[2][0] + y * VR[2][1]);
    const S dot = w * vq[0] + x * vq[1] + y * vq[2] + z * vq[3];
    for (int j = 0; j < 4; ++j) v_quats[bn * 4 + j] = (vq[j] - P.qn[j] * dot) * P.inv_norm;
  }
  });
}


// ---------------------------------------------------------------------------------------
// Real SH colours (gsplat's basis and signs, degree <= 4) with forward-mode derivatives
// ---------------------------------------------------------------------------------------
template <typename S>
struct Dual {  // value + gradient w.r.t. the unit direction (x, y, z)
  S v, d[3];
  Dual(S v_ = 0) : v(v_) { d[0] = d[1] = d[2] = 0; }
};
template <typename S> static inline Dual<S> operator+(const Dual<S>& a, const Dual<S>& b) {
  Dual<S> r(a.v + b.v); for (int i = 0; i < 3; ++i) r.d[i] = a.d[i] + b.d[i]; return r; }
template <typename S> static inline Dual<S> operator-(const Dual<S>& a, const Dual<S>& b) {
  Dual<S> r(a.v - b.v); for (int i = 0; i < 3; ++i) r.d[i] = a.d[i] - b.d[i]; return r; }
template <typename S> static inline Dual<S> operator*(const Dual<S>& a, const Dual<S>& b) {
  Dual<S> r(a.v * b.v); for (int i = 0; i < 3; ++i) r.d[i] = a.d[i] * b.v + a.v * b.d[i]; return r; }
template <typename S> static inline Dual<S> operator*(S a, const Dual<S>& b) {
  Dual<S> r(a * b.v); for (int i = 0; i < 3; ++i) r.d[i] = a * b.d[i]; return r; }
template <typename S> static inline Dual<S> operator+(const Dual<S>& a, S b) {
  Dual<S> r(a); r.v += b; return r; }

// bases[0..(deg+1)^2) at unit direction (x, y, z); T = S or Dual<S>
template <typename S, typename T>
static inline void sh_bases(int deg, const T& x, const T& y, const T& z, T* out) {
  out[0] = T((S)0.2820947917738781);
  if (deg < 1) return;
  out[1] = (S)-0.48860251190292 * y;
  out[2] = (S)0.48860251190292 * z;
  out[3] = (S)-0.48860251190292 * x;
  if (deg < 2) return;
  T z2 = z * z, fTmpB = (S)-1.092548430592079 * z;
  T fC1 = x * x - y * y, fS1 = (S)2 * (x * y);
  out[6] = (S)0.9461746957575601 * z2 + (S)-0.3153915652525201;
  out[7] = fTmpB * x; out[5] = fTmpB * y;
  out[8] = (S)0.5462742152960395 * fC1; out[4] = (S)0.5462742152960395 * fS1;
  if (deg < 3) return;
  T fTmpC = (S)-2.285228997322329 * z2 + (S)0.4570457994644658;
  T fTmpB3 = (S)1.445305721320277 * z;
  T fC2 = x * fC1 - y * fS1, fS2 = x * fS1 + y * fC1;
  out[12] = z * ((S)1.865881662950577 * z2 + (S)-1.119528997770346);
  out[13] = fTmpC * x; out[11] = fTmpC * y;
  out[14] = fTmpB3 * fC1; out[10] = fTmpB3 * fS1;
  out[15] = (S)-0.5900435899266435 * fC2; out[9] = (S)-0.5900435899266435 * fS2;
  if (deg < 4) return;
  T fTmpD = z * ((S)-4.683325804901025 * z2 + (S)2.007139630671868);
  T fTmpC4 = (S)3.31161143515146 * z2 + (S)-0.47308734787878;
  T fTmpB4 = (S)-1.770130769779931 * z;
  T fC3 = x * fC2 - y * fS2, fS3 = x * fS2 + y * fC2;
  out[20] = (S)1.984313483298443 * (z2 * ((S)1.865881662950577 * z2 + (S)-1.119528997770346))
            + (S)-1.006230589874905 * ((S)0.9461746957575601 * z2 + (S)-0.3153915652525201);
  out[21] = fTmpD * x; out[19] = fTmpD * y;
  out[22] = fTmpC4 * fC1; out[18] = fTmpC4 * fS1;
  out[23] = fTmpB4 * fC2; out[17] = fTmpB4 * fS2;
  out[24] = (S)0.6258357354491763 * fC3; out[16] = (S)0.6258357354491763 * fS3;
}

// colors[b,c,n,:] = max(0, sum_k basis_k(normalize(mean - campos)) coeffs[.., k, :] + 0.5)
template <typename S>
static void sh_fwd(int B, int C, int N, int K, int deg, int per_cam, const S* means,
                   const S* campos, const S* coeffs, const int32_t* radii, S* colors, int nthreads) {
  const int nb = (deg + 1) * (deg + 1);
  parallel_for((int64_t)B * N, nthreads, 2048, [&](int64_t b0, int64_t b1) {
  for (int64_t bn = b0; bn < b1; ++bn) {
    const int b = (int)(bn / N), n = (int)(bn % N);
    S bases[25];
    for (int cam = 0; cam < C; ++cam) {
      const int64_t o = ((int64_t)b * C + cam) * N + n;
      S* out = colors + o * 3;
      if (radii[o * 2] <= 0 || radii[o * 2 + 1] <= 0) { out[0] = out[1] = out[2] = (S)0.5; continue; }
      const S* cp = campos + ((int64_t)b * C + cam) * 3;
      S d[3] = {means[bn * 3] - cp[0], means[bn * 3 + 1] - cp[1], means[bn * 3 + 2] - cp[2]};
      S inv = 1 / std::max(std::sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]), (S)1e-12);
      sh_bases<S, S>(deg, d[0] * inv, d[1] * inv, d[2] * inv, bases);
      const S* co = coeffs + (per_cam ? o : bn) * (int64_t)K * 3;
      for (int ch = 0; ch < 3; ++ch) {
        S acc = 0;
        for (int k = 0; k < nb; ++k) acc += bases[k] * co[k * 3 + ch];
        out[ch] = std::max(acc + (S)0.5, (S)0);
      }
    }
  }
  });
}

template <typename S>
static void sh_bwd(int B, int C, int N, int K, int deg, int per_cam, const S* means,
                   const S* campos, const S* coeffs, const int32_t* radii, const S* colors,
                   const S* v_colors, S* v_coeffs, S* v_means, int nthreads) {
  const int nb = (deg + 1) * (deg + 1);
  parallel_for((int64_t)B * N, nthreads, 2048, [&](int64_t b0, int64_t b1) {
  for (int64_t bn = b0; bn < b1; ++bn) {
    const int b = (int)(bn / N), n = (int)(bn % N);
    Dual<S> bases[25];
    S vm[3] = {0, 0, 0};
    for (int cam = 0; cam < C; ++cam) {
      const int64_t o = ((int64_t)b * C + cam) * N + n;
      if (radii[o * 2] <= 0 || radii[o * 2 + 1] <= 0) continue;
      S vc[3];
      bool any = false;
      for (int ch = 0; ch < 3; ++ch) {
        vc[ch] = colors[o * 3 + ch] > 0 ? v_colors[o * 3 + ch] : (S)0;  // clamp at 0
        any |= vc[ch] != 0;
      }
      if (!any) continue;
      const S* cp = campos + ((int64_t)b * C + cam) * 3;
      S d[3] = {means[bn * 3] - cp[0], means[bn * 3 + 1] - cp[1], means[bn * 3 + 2] - cp[2]};
      S nrm = std::max(std::sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2]), (S)1e-12), inv = 1 / nrm;
      Dual<S> u[3];
      for (int i = 0; i < 3; ++i) { u[i] = Dual<S>(d[i] * inv); u[i].d[i] = 1; }
      sh_bases<S, Dual<S>>(deg, u[0], u[1], u[2], bases);
      const S* co = coeffs + (per_cam ? o : bn) * (int64_t)K * 3;
      S* vco = v_coeffs + (per_cam ? o : bn) * (int64_t)K * 3;
      S vu[3] = {0, 0, 0};
      for (int k = 0; k < nb; ++k) {
        S g = 0;
        for (int ch = 0; ch < 3; ++ch) { vco[k * 3 + ch] += bases[k].v * vc[ch]; g += co[k * 3 + ch] * vc[ch]; }
        for (int i = 0; i < 3; ++i) vu[i] += g * bases[k].d[i];
      }
      // u = d / |d|  ->  v_d = (vu - u (u . vu)) / |d|
      const S dot = u[0].v * vu[0] + u[1].v * vu[1] + u[2].v * vu[2];
      for (int i = 0; i < 3; ++i) vm[i] += (vu[i] - u[i].v * dot) * inv;
    }
    for (int i = 0; i < 3; ++i) v_means[bn * 3 + i] = vm[i];
  }
  });
}

// ---------------------------------------------------------------------------------------
// Tile binning: count, fill (image | tile | depth bits) keys; offsets from sorted keys
// ---------------------------------------------------------------------------------------
template <typename S>
static inline void tile_rect(const S* xy, const int32_t* r, int ts, int tw, int th, int rect[4]) {
  const float mx = (float)xy[0] / ts, my = (float)xy[1] / ts;
  const float rx = (float)r[0] / ts, ry = (float)r[1] / ts;
  rect[0] = std::min(std::max(0, (int)std::floor(mx - rx)), tw);
  rect[1] = std::min(std::max(0, (int)std::floor(my - ry)), th);
  rect[2] = std::min(std::max(0, (int)std::ceil(mx + rx)), tw);
  rect[3] = std::min(std::max(0, (int)std::ceil(my + ry)), th);
}

template <typename S>
static void bin_count(int64_t M, const S* xy, const int32_t* radii, int ts, int tw, int th,
                      int32_t* tiles_per_gauss) {
  for (int64_t i = 0; i < M; ++i) {
    if (radii[i * 2] <= 0 || radii[i * 2 + 1] <= 0) { tiles_per_gauss[i] = 0; continue; }
    int r[4]; tile_rect(xy + i * 2, radii + i * 2, ts, tw, th, r);
    tiles_per_gauss[i] = (r[2] - r[0]) * (r[3] - r[1]);
  }
}

template <typename S>
static void bin_fill(int64_t M, const S* xy, const int32_t* radii, const S* depths,
                     const int64_t* image_ids, const int64_t* cum, int ts, int tw, int th,
                     int tile_bits, int64_t* isect_ids, int32_t* flatten_ids) {
  for (int64_t i = 0; i < M; ++i) {
    if (radii[i * 2] <= 0 || radii[i * 2 + 1] <= 0) continue;
    int r[4]; tile_rect(xy + i * 2, radii + i * 2, ts, tw, th, r);
    const float dz = (float)depths[i];
    uint32_t bits; std::memcpy(&bits, &dz, 4);
    int64_t cur = i == 0 ? 0 : cum[i - 1];
    const int64_t hi = image_ids[i] << (32 + tile_bits);
    for (int y = r[1]; y < r[3]; ++y)
      for (int x = r[0]; x < r[2]; ++x) {
        isect_ids[cur] = hi | ((int64_t)(y * tw + x) << 32) | (int64_t)bits;
        flatten_ids[cur] = (int32_t)i;
        ++cur;
      }
  }
}


// Counting sort of intersections by (image, tile) slot, then by (float depth bits, index) within
// a slot: the order of gsplat's stable radix sort on its 64-bit keys, without a global sort.
static void bin_sort(int64_t n, int64_t n_slots, int tile_bits, int n_tiles,
                     const int64_t* ids_in, const int32_t* flat_in,
                     int64_t* ids_out, int32_t* flat_out, int32_t* offsets) {
  std::vector<int64_t> cnt(n_slots + 1, 0);
  auto slot_of = [&](int64_t key) {
    const int64_t hi = key >> 32;
    return (hi >> tile_bits) * n_tiles + (hi & ((1LL << tile_bits) - 1));
  };
  for (int64_t e = 0; e < n; ++e) ++cnt[slot_of(ids_in[e]) + 1];
  for (int64_t t = 0; t < n_slots; ++t) cnt[t + 1] += cnt[t];
  for (int64_t t = 0; t < n_slots; ++t) offsets[t] = (int32_t)cnt[t];
  std::vector<int64_t> pos(cnt.begin(), cnt.end() - 1);
  for (int64_t e = 0; e < n; ++e) {
    const int64_t p = pos[slot_of(ids_in[e])]++;
    ids_out[p] = ids_in[e]; flat_out[p] = flat_in[e];
  }
  std::vector<std::pair<int64_t, int32_t>> tmp;
  for (int64_t t = 0; t < n_slots; ++t) {
    const int64_t a = cnt[t], b = cnt[t + 1];
    if (b - a < 2) continue;
    tmp.resize(b - a);
    for (int64_t e = a; e < b; ++e) tmp[e - a] = {ids_out[e], flat_out[e]};
    std::sort(tmp.begin(), tmp.end());  // key (slot | depth bits), then index: stable order
    for (int64_t e = a; e < b; ++e) { ids_out[e] = tmp[e - a].first; flat_out[e] = tmp[e - a].second; }
  }
}

// v_out[flat[e]] += g[e] for rows of width w (the per-intersection gradients → per Gaussian)
template <typename S>
static void scatter_rows(int64_t n, int w, const int32_t* flat, const S* g, S* out) {
  for (int64_t e = 0; e < n; ++e) {
    S* o = out + (int64_t)flat[e] * w;
    const S* ge = g + e * w;
    for (int k = 0; k < w; ++k) o[k] += ge[k];
  }
}

extern "C" {
#define FWD_ARGS(S) int I, int H, int W, int ts, int tw, int th, int D, int64_t n, \
  const S* xy, const S* conic, const S* opac, const S* col, const S* bg, \
  const int32_t* offsets, const int32_t* flat, S* out_col, S* out_T, int32_t* out_last, int nt
#define FWD_CALL I, H, W, ts, tw, th, D, n, xy, conic, opac, col, bg, offsets, flat, \
  out_col, out_T, out_last, nt
#define BY_D(F, S, CALL) switch (D) { case 1: F<S, 1>(CALL); break; case 2: F<S, 2>(CALL); break; \
  case 3: F<S, 3>(CALL); break; case 4: F<S, 4>(CALL); break; default: F<S, 0>(CALL); }
void splat_fwd_f32(FWD_ARGS(float)) { BY_D(fwd, float, FWD_CALL) }
void splat_fwd_f64(FWD_ARGS(double)) { BY_D(fwd, double, FWD_CALL) }
#define BWD_ARGS(S) int I, int H, int W, int ts, int tw, int th, int D, int64_t n, \
  const S* xy, const S* conic, const S* opac, const S* col, const S* bg, \
  const int32_t* offsets, const int32_t* flat, const S* out_T, const int32_t* out_last, \
  const S* v_col, const S* v_alpha, S* g_xy, S* g_conic, S* g_opac, S* g_col, S* g_abs, int nt
#define BWD_CALL I, H, W, ts, tw, th, D, n, xy, conic, opac, col, bg, offsets, flat, \
  out_T, out_last, v_col, v_alpha, g_xy, g_conic, g_opac, g_col, g_abs, nt
void splat_bwd_f32(BWD_ARGS(float)) { BY_D(bwd, float, BWD_CALL) }
void splat_bwd_f64(BWD_ARGS(double)) { BY_D(bwd, double, BWD_CALL) }
void splat_median_f32(int I, int H, int W, int ts, int tw, int th, int D, int64_t n, const float* xy,
  const float* conic, const float* opac, const float* col, float level, const int32_t* offsets,
  const int32_t* flat, float* out_col, float* out_T, int nt) {
  median<float>(I, H, W, ts, tw, th, D, n, xy, conic, opac, col, level, offsets, flat, out_col, out_T, nt); }
#define PF_ARGS(S) int B, int C, int N, const S* means, const S* quats, const S* scales, \
  const S* opac, const S* viewmats, const S* Ks, int W, int H, S eps2d, S near_plane, \
  S far_plane, S radius_clip, int calc_comp, int32_t* radii, S* means2d, S* depths, \
  S* conics, S* comp, int nt
#define PF_CALL B, C, N, means, quats, scales, opac, viewmats, Ks, W, H, eps2d, near_plane, \
  far_plane, radius_clip, calc_comp, radii, means2d, depths, conics, comp, nt
void proj_fwd_f32(PF_ARGS(float)) { proj_fwd<float>(PF_CALL); }
void proj_fwd_f64(PF_ARGS(double)) { proj_fwd<double>(PF_CALL); }
#define PB_ARGS(S) int B, int C, int N, const S* means, const S* quats, const S* scales, \
  const S* viewmats, const S* Ks, int W, int H, S eps2d, const int32_t* radii, \
  const S* v_means2d, const S* v_depths, const S* v_conics, const S* v_comp, \
  S* v_means, S* v_quats, S* v_scales, int nt
#define PB_CALL B, C, N, means, quats, scales, viewmats, Ks, W, H, eps2d, radii, v_means2d, \
  v_depths, v_conics, v_comp, v_means, v_quats, v_scales, nt
void proj_bwd_f32(PB_ARGS(float)) { proj_bwd<float>(PB_CALL); }
void proj_bwd_f64(PB_ARGS(double)) { proj_bwd<double>(PB_CALL); }
#define SF_ARGS(S) int B, int C, int N, int K, int deg, int per_cam, const S* means, \
  const S* campos, const S* coeffs, const int32_t* radii, S* colors, int nt
#define SF_CALL B, C, N, K, deg, per_cam, means, campos, coeffs, radii, colors, nt
void sh_fwd_f32(SF_ARGS(float)) { sh_fwd<float>(SF_CALL); }
void sh_fwd_f64(SF_ARGS(double)) { sh_fwd<double>(SF_CALL); }
#define SB_ARGS(S) int B, int C, int N, int K, int deg, int per_cam, const S* means, \
  const S* campos, const S* coeffs, const int32_t* radii, const S* colors, const S* v_colors, \
  S* v_coeffs, S* v_means, int nt
#define SB_CALL B, C, N, K, deg, per_cam, means, campos, coeffs, radii, colors, v_colors, \
  v_coeffs, v_means, nt
void sh_bwd_f32(SB_ARGS(float)) { sh_bwd<float>(SB_CALL); }
void sh_bwd_f64(SB_ARGS(double)) { sh_bwd<double>(SB_CALL); }
void bin_count_f32(int64_t M, const float* xy, const int32_t* r, int ts, int tw, int th, int32_t* t) { bin_count<float>(M, xy, r, ts, tw, th, t); }
void bin_count_f64(int64_t M, const double* xy, const int32_t* r, int ts, int tw, int th, int32_t* t) { bin_count<double>(M, xy, r, ts, tw, th, t); }
void bin_fill_f32(int64_t M, const float* xy, const int32_t* r, const float* d, const int64_t* im, const int64_t* cum, int ts, int tw, int th, int tb, int64_t* ids, int32_t* flat) { bin_fill<float>(M, xy, r, d, im, cum, ts, tw, th, tb, ids, flat); }
void bin_sort_c(int64_t n, int64_t n_slots, int tile_bits, int n_tiles, const int64_t* ids_in, const int32_t* flat_in, int64_t* ids_out, int32_t* flat_out, int32_t* offsets) { bin_sort(n, n_slots, tile_bits, n_tiles, ids_in, flat_in, ids_out, flat_out, offsets); }
void scatter_rows_f32(int64_t n, int w, const int32_t* flat, const float* g, float* out) { scatter_rows<float>(n, w, flat, g, out); }
void scatter_rows_f64(int64_t n, int w, const int32_t* flat, const double* g, double* out) { scatter_rows<double>(n, w, flat, g, out); }
void bin_fill_f64(int64_t M, const double* xy, const int32_t* r, const double* d, const int64_t* im, const int64_t* cum, int ts, int tw, int th, int tb, int64_t* ids, int32_t* flat) { bin_fill<double>(M, xy, r, d, im, cum, ts, tw, th, tb, ids, flat); }
}
"""

_CXX_FLAGS = ["-O3", "-fno-math-errno", "-pthread", "-shared", "-fPIC", "-std=c++17"]
_lib_lock = threading.Lock()
_lib: Any = None
_lib_error: Optional[str] = None


def _cache_dir() -> Path:
    home = os.environ.get("STUDIO_HOME")
    base = Path(home) / "cache" if home else Path.home() / ".cache" / "studio"
    return base / "ext"


def _build_library() -> ctypes.CDLL:
    """Compile (once per source/flags/machine, cached on disk) and load the kernel library."""
    cxx = os.environ.get("CXX", "g++")
    key = hashlib.sha256(
        (_CPP_SOURCE + " ".join(_CXX_FLAGS) + cxx + platform.machine()).encode()
    ).hexdigest()[:16]
    out_dir = _cache_dir()
    lib_path = out_dir / f"splat_cpu_{key}.so"
    if not lib_path.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
            src = Path(tmp) / "splat_cpu.cpp"
            src.write_text(_CPP_SOURCE)
            tmp_so = Path(tmp) / "lib.so"
            proc = subprocess.run(
                [cxx, *_CXX_FLAGS, str(src), "-o", str(tmp_so)],
                capture_output=True, text=True, timeout=300,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"{cxx} failed to build the splat kernel:\n{proc.stderr[-2000:]}")
            os.replace(tmp_so, lib_path)  # atomic: concurrent builders race harmlessly
        for stale in out_dir.glob("splat_cpu_*.so"):  # builds of earlier sources
            if stale != lib_path:
                stale.unlink(missing_ok=True)
    lib = ctypes.CDLL(str(lib_path))
    vp, i32, i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
    for name in ("splat_fwd_f32", "splat_fwd_f64"):
        getattr(lib, name).argtypes = [i32] * 7 + [i64] + [vp] * 10 + [i32]
        getattr(lib, name).restype = None
    lib.splat_median_f32.argtypes = [i32] * 7 + [i64] + [vp] * 4 + [ctypes.c_float] + [vp] * 4 + [i32]
    lib.splat_median_f32.restype = None
    for name in ("splat_bwd_f32", "splat_bwd_f64"):
        getattr(lib, name).argtypes = [i32] * 7 + [i64] + [vp] * 16 + [i32]
        getattr(lib, name).restype = None
    f32, f64 = ctypes.c_float, ctypes.c_double
    for name, fl in (("proj_fwd_f32", f32), ("proj_fwd_f64", f64)):
        getattr(lib, name).argtypes = [i32] * 3 + [vp] * 6 + [i32, i32, fl, fl, fl, fl, i32] + [vp] * 5 + [i32]
        getattr(lib, name).restype = None
    for name, fl in (("proj_bwd_f32", f32), ("proj_bwd_f64", f64)):
        getattr(lib, name).argtypes = [i32] * 3 + [vp] * 5 + [i32, i32, fl] + [vp] * 8 + [i32]
        getattr(lib, name).restype = None
    for name in ("sh_fwd_f32", "sh_fwd_f64"):
        getattr(lib, name).argtypes = [i32] * 6 + [vp] * 5 + [i32]
        getattr(lib, name).restype = None
    for name in ("sh_bwd_f32", "sh_bwd_f64"):
        getattr(lib, name).argtypes = [i32] * 6 + [vp] * 8 + [i32]
        getattr(lib, name).restype = None
    for name in ("bin_count_f32", "bin_count_f64"):
        getattr(lib, name).argtypes = [i64, vp, vp, i32, i32, i32, vp]
        getattr(lib, name).restype = None
    for name in ("bin_fill_f32", "bin_fill_f64"):
        getattr(lib, name).argtypes = [i64, vp, vp, vp, vp, vp, i32, i32, i32, i32, vp, vp]
        getattr(lib, name).restype = None
    lib.bin_sort_c.argtypes = [i64, i64, i32, i32] + [vp] * 5
    lib.bin_sort_c.restype = None
    for name in ("scatter_rows_f32", "scatter_rows_f64"):
        getattr(lib, name).argtypes = [i64, i32, vp, vp, vp]
        getattr(lib, name).restype = None
    return lib


def kernel_library() -> Any:
    """The loaded C++ kernel library, or None when it cannot be built (then torch is used)."""
    global _lib, _lib_error
    if _lib is None and _lib_error is None:
        with _lib_lock:
            if _lib is None and _lib_error is None:
                try:
                    _lib = _build_library()
                except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                    _lib_error = str(e)
    return _lib


def backend() -> str:
    """Compositor in use: "cpp" or "torch" (env STUDIO_SPLAT_BACKEND forces one)."""
    forced = os.environ.get("STUDIO_SPLAT_BACKEND", "").lower()
    if forced == "torch":
        return "torch"
    if kernel_library() is not None:
        return "cpp"
    if forced == "cpp":
        raise RuntimeError(f"STUDIO_SPLAT_BACKEND=cpp but the kernel did not build: {_lib_error}")
    return "torch"


_MAX_CHANNELS = 64  # MAXD in the kernel


def _threads() -> int:
    """Worker threads for a large kernel call: STUDIO_SPLAT_THREADS if set, else torch's count.

    (Measured under load average 12 on 2 CPUs: 2 threads still beat 1 for these kernels,
    which block on join instead of spinning.)
    """
    env = os.environ.get("STUDIO_SPLAT_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return torch.get_num_threads()


def _n_threads(n_isects: int, tile_size: int) -> int:
    # a thread team costs more than it saves on tiny work, and much more on a busy machine
    return 1 if n_isects * tile_size * tile_size < 1 << 20 else _threads()


def _ptr(t: Optional[Tensor]) -> Optional[int]:
    return None if t is None else t.data_ptr()


class _CompositeCpp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, backgrounds, width, height,
                tile_size, isect_offsets, flatten_ids, absgrad):
        dt = means2d.dtype
        I, th, tw = isect_offsets.shape
        D = colors.shape[-1]
        ctx.shapes = (means2d.shape, conics.shape, colors.shape, opacities.shape)
        xy = means2d.detach().reshape(-1, 2).contiguous()
        cn = conics.detach().reshape(-1, 3).contiguous()
        col = colors.detach().reshape(-1, D).contiguous()
        op = opacities.detach().reshape(-1).contiguous()
        bg = None if backgrounds is None else backgrounds.detach().to(dt).contiguous()
        offs = isect_offsets.contiguous()
        flat = flatten_ids.contiguous()
        out_col = torch.empty((I, height, width, D), dtype=dt)
        out_T = torch.empty((I, height, width), dtype=dt)
        out_last = torch.empty((I, height, width), dtype=torch.int32)
        fn = kernel_library().splat_fwd_f64 if dt == torch.float64 else kernel_library().splat_fwd_f32
        fn(I, height, width, tile_size, tw, th, D, len(flat), _ptr(xy), _ptr(cn), _ptr(op),
           _ptr(col), _ptr(bg), _ptr(offs), _ptr(flat), _ptr(out_col), _ptr(out_T),
           _ptr(out_last), _n_threads(len(flat), tile_size))
        ctx.save_for_backward(xy, cn, col, op, bg, offs, flat, out_T, out_last)
        ctx.dims = (width, height, tile_size, absgrad, backgrounds is not None)
        ctx.means2d_ref = means2d
        alphas = (1.0 - out_T)[..., None]
        return out_col, alphas

    @staticmethod
    def backward(ctx, v_col, v_alpha):
        xy, cn, col, op, bg, offs, flat, out_T, out_last = ctx.saved_tensors
        width, height, tile_size, absgrad, has_bg = ctx.dims
        dt = xy.dtype
        I, th, tw = offs.shape
        D = col.shape[-1]
        n = len(flat)
        v_col = v_col.to(dt).contiguous()
        v_alpha = v_alpha[..., 0].to(dt).contiguous()
        g_xy = torch.empty((n, 2), dtype=dt)  # zeroed per tile by the kernel
        g_cn = torch.empty((n, 3), dtype=dt)
        g_op = torch.empty((n,), dtype=dt)
        g_col = torch.empty((n, D), dtype=dt)
        g_abs = torch.empty((n, 2), dtype=dt) if absgrad else None
        lib = kernel_library()
        fn = lib.splat_bwd_f64 if dt == torch.float64 else lib.splat_bwd_f32
        fn(I, height, width, tile_size, tw, th, D, n, _ptr(xy), _ptr(cn), _ptr(op), _ptr(col),
           _ptr(bg), _ptr(offs), _ptr(flat), _ptr(out_T), _ptr(out_last), _ptr(v_col),
           _ptr(v_alpha), _ptr(g_xy), _ptr(g_cn), _ptr(g_op), _ptr(g_col), _ptr(g_abs),
           _n_threads(n, tile_size))
        M = xy.shape[0]
        scatter = lib.scatter_rows_f64 if dt == torch.float64 else lib.scatter_rows_f32

        def gather_rows(g: Tensor, w: int) -> Tensor:
            out = torch.zeros((M, w), dtype=dt)
            scatter(n, w, _ptr(flat), _ptr(g), _ptr(out))
            return out

        v_xy, v_cn = gather_rows(g_xy, 2), gather_rows(g_cn, 3)
        v_op, v_cl = gather_rows(g_op, 1)[:, 0], gather_rows(g_col, D)
        if absgrad:
            ctx.means2d_ref.absgrad = gather_rows(g_abs, 2).reshape(ctx.shapes[0])
        v_bg = None
        if has_bg and ctx.needs_input_grad[4]:
            v_bg = (v_col * out_T[..., None]).sum(dim=(1, 2))
        s_xy, s_cn, s_cl, s_op = ctx.shapes
        return (v_xy.reshape(s_xy), v_cn.reshape(s_cn), v_cl.reshape(s_cl), v_op.reshape(s_op), v_bg,
                None, None, None, None, None, None)


def _composite_torch(means2d, conics, colors, opacities, backgrounds, width, height,
                     tile_size, isect_offsets, flatten_ids, absgrad):
    """Vectorised-torch compositor per tile (autograd backward); fallback without a compiler."""
    I, th, tw = isect_offsets.shape
    D = colors.shape[-1]
    dt = means2d.dtype
    means2d, conics = means2d.reshape(-1, 2), conics.reshape(-1, 3)
    colors, opacities = colors.reshape(-1, D), opacities.reshape(-1)
    n_isects = len(flatten_ids)
    offs = torch.cat([isect_offsets.flatten().long(), torch.tensor([n_isects])])
    flat = flatten_ids.long()
    img_cols, img_T = [], []
    for img in range(I):
        rows_c, rows_t = [], []
        for ty in range(th):
            tiles_c, tiles_t = [], []
            y0, y1 = ty * tile_size, min(height, (ty + 1) * tile_size)
            for tx in range(tw):
                x0, x1 = tx * tile_size, min(width, (tx + 1) * tile_size)
                t = (img * th + ty) * tw + tx
                ids = flat[offs[t]:offs[t + 1]]
                yy, xx = torch.meshgrid(
                    torch.arange(y0, y1, dtype=dt) + 0.5, torch.arange(x0, x1, dtype=dt) + 0.5,
                    indexing="ij",
                )
                p = torch.stack([xx.flatten(), yy.flatten()], -1)  # (P,2)
                d = means2d[ids][None, :, :] - p[:, None, :]  # (P,K,2)
                cn = conics[ids]
                sigma = 0.5 * (cn[:, 0] * d[..., 0] ** 2 + cn[:, 2] * d[..., 1] ** 2) \
                    + cn[:, 1] * d[..., 0] * d[..., 1]
                alpha = torch.clamp(opacities[ids] * torch.exp(-sigma), max=ALPHA_MAX)
                alpha = torch.where((sigma < 0) | (alpha < ALPHA_THRESHOLD), 0.0, alpha)
                with torch.no_grad():
                    # transmittance is monotone, so "next_T > 1e-4" marks exactly the
                    # Gaussians gsplat composites before a pixel terminates
                    keep = torch.cumprod(1.0 - alpha, dim=1) > T_MIN
                alpha = alpha * keep
                one_m = 1.0 - alpha
                T_excl = torch.cat([torch.ones_like(one_m[:, :1]), torch.cumprod(one_m, 1)[:, :-1]], 1)
                w = alpha * T_excl
                c = w @ colors[ids] if len(ids) else torch.zeros((len(p), D), dtype=dt)
                T_fin = torch.prod(one_m, 1) if len(ids) else torch.ones(len(p), dtype=dt)
                tiles_c.append(c.reshape(y1 - y0, x1 - x0, D))
                tiles_t.append(T_fin.reshape(y1 - y0, x1 - x0))
            rows_c.append(torch.cat(tiles_c, 1))
            rows_t.append(torch.cat(tiles_t, 1))
        img_cols.append(torch.cat(rows_c, 0))
        img_T.append(torch.cat(rows_t, 0))
    cols = torch.stack(img_cols)
    T = torch.stack(img_T)[..., None]
    if backgrounds is not None:
        cols = cols + T * backgrounds[:, None, None, :]
    return cols, 1.0 - T


def rasterize_to_pixels(
    means2d: Tensor,
    conics: Tensor,
    colors: Tensor,
    opacities: Tensor,
    width: int,
    height: int,
    tile_size: int,
    isect_offsets: Tensor,
    flatten_ids: Tensor,
    backgrounds: Optional[Tensor] = None,
    absgrad: bool = False,
) -> Tuple[Tensor, Tensor]:
    """Front-to-back alpha compositing of M projected Gaussians into I images.

    means2d (…,2), conics (…,3), colors (…,D), opacities (…) whose leading dims flatten to
    M (= I·N or nnz; flatten_ids index that flattening),
    isect_offsets (I,th,tw) int32 and flatten_ids (n_isects,) int32 from ``isect_tiles``,
    backgrounds (I,D) or None. Returns colors (I,H,W,D) and alphas (I,H,W,1), differentiable
    w.r.t. means2d, conics, colors, opacities, backgrounds. With absgrad the backward pass
    stores Σ|∂L/∂means2d| per pixel in ``means2d.absgrad`` (C++ backend).
    """
    if backend() == "cpp":
        D = colors.shape[-1]
        if D <= _MAX_CHANNELS:
            return _CompositeCpp.apply(means2d, conics, colors, opacities, backgrounds, width,
                                       height, tile_size, isect_offsets, flatten_ids, absgrad)
        outs = [
            _CompositeCpp.apply(means2d, conics, colors[..., i:i + 32], opacities,
                                None if backgrounds is None else backgrounds[..., i:i + 32],
                                width, height, tile_size, isect_offsets, flatten_ids,
                                absgrad and i == 0)
            for i in range(0, D, 32)
        ]
        return torch.cat([o[0] for o in outs], -1), outs[0][1]
    if absgrad:
        raise NotImplementedError("absgrad needs the C++ splat kernel (g++ was not usable)")
    return _composite_torch(means2d, conics, colors, opacities, backgrounds, width, height,
                            tile_size, isect_offsets, flatten_ids, absgrad)


# ----------------------------------------------------------------------------------------
# Full pipeline (gsplat.rasterization on CPU)
# ----------------------------------------------------------------------------------------


def rasterization_cpu(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    eps2d: float = 0.3,
    sh_degree: Optional[int] = None,
    packed: bool = True,
    tile_size: int = 16,
    backgrounds: Optional[Tensor] = None,
    render_mode: str = "RGB",
    absgrad: bool = False,
    rasterize_mode: str = "classic",
    covars: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor, Dict[str, Any]]:
    """``gsplat.rasterization`` for CPU tensors (pinhole cameras); same shapes and ``meta``."""
    assert render_mode in ("RGB", "D", "ED", "RGB+D", "RGB+ED"), render_mode
    assert rasterize_mode in ("classic", "antialiased"), rasterize_mode
    batch_dims = means.shape[:-2]
    B = math.prod(batch_dims)
    N = means.shape[-2]
    C = viewmats.shape[-3]
    I = B * C
    dt = means.dtype
    assert means.shape == batch_dims + (N, 3), means.shape
    assert opacities.shape == batch_dims + (N,), opacities.shape
    assert viewmats.shape == batch_dims + (C, 4, 4), viewmats.shape
    assert Ks.shape == batch_dims + (C, 3, 3), Ks.shape
    if covars is None:
        assert quats.shape == batch_dims + (N, 4) and scales.shape == batch_dims + (N, 3)
    else:
        assert covars.shape == batch_dims + (N, 3, 3), covars.shape

    radii, means2d, depths, conics, comp = fully_fused_projection(
        means.reshape(B, N, 3),
        None if covars is None else covars.reshape(B, N, 3, 3),
        None if covars is not None else quats.reshape(B, N, 4),
        None if covars is not None else scales.reshape(B, N, 3),
        viewmats.reshape(B, C, 4, 4).to(dt),
        Ks.reshape(B, C, 3, 3).to(dt),
        width, height, eps2d=eps2d, near_plane=near_plane, far_plane=far_plane,
        radius_clip=radius_clip, calc_compensations=rasterize_mode == "antialiased",
        opacities=opacities.reshape(B, N).detach(),
    )  # (B,C,N,...)
    opac_bcn = opacities.reshape(B, 1, N).expand(B, C, N)
    if comp is not None:
        opac_bcn = opac_bcn * comp

    meta: Dict[str, Any] = {}
    valid = (radii > 0).all(-1)  # (B,C,N)
    if packed:
        b_ids, c_ids, g_ids = torch.nonzero(valid, as_tuple=True)
        radii_o = radii[b_ids, c_ids, g_ids]
        means2d_o = means2d[b_ids, c_ids, g_ids]
        depths_o = depths[b_ids, c_ids, g_ids]
        conics_o = conics[b_ids, c_ids, g_ids]
        opac_o = opac_bcn[b_ids, c_ids, g_ids]
        image_ids = b_ids * C + c_ids
        meta.update(batch_ids=b_ids, camera_ids=c_ids, gaussian_ids=g_ids)
    else:
        out = batch_dims + (C, N)
        radii_o, means2d_o = radii.reshape(out + (2,)), means2d.reshape(out + (2,))
        depths_o, conics_o = depths.reshape(out), conics.reshape(out + (3,))
        opac_o = opac_bcn.reshape(out)
        image_ids = torch.arange(I).repeat_interleave(N)
        meta.update(batch_ids=None, camera_ids=None, gaussian_ids=None)
    meta.update(radii=radii_o, means2d=means2d_o, depths=depths_o, conics=conics_o,
                opacities=opac_o)

    # colours per (image, gaussian) as (B,C,N,D)
    if sh_degree is None:
        D = colors.shape[-1]
        if colors.dim() == len(batch_dims) + 2:
            cols = colors.reshape(B, 1, N, D).expand(B, C, N, D)
        else:
            cols = colors.reshape(B, C, N, D)
    else:
        K = colors.shape[-2]
        campos = torch.inverse(viewmats.reshape(B, C, 4, 4).to(dt))[..., :3, 3]  # (B,C,3)
        if colors.dim() == len(batch_dims) + 3:
            shs = colors.reshape(B, N, K, 3)
        else:
            shs = colors.reshape(B, C, N, K, 3)
        cols = sh_colors(sh_degree, means.reshape(B, N, 3), campos, shs, radii)  # (B,C,N,3)
        if packed:
            cols = cols[b_ids, c_ids, g_ids]
    if packed and sh_degree is None:
        cols = cols[b_ids, c_ids, g_ids]
    cols = cols.reshape(-1, cols.shape[-1])

    bgs = None if backgrounds is None else backgrounds.reshape(I, -1).to(dt)
    dflat = depths_o.reshape(-1)
    if render_mode in ("RGB+D", "RGB+ED"):
        cols = torch.cat([cols, dflat[:, None]], -1)
        if bgs is not None:
            bgs = torch.cat([bgs, torch.zeros((I, 1), dtype=dt)], -1)
    elif render_mode in ("D", "ED"):
        cols = dflat[:, None]
        if bgs is not None:
            bgs = torch.zeros((I, 1), dtype=dt)

    tile_width = math.ceil(width / float(tile_size))
    tile_height = math.ceil(height / float(tile_size))
    tiles_per_gauss, isect_ids, flatten_ids, isect_offsets = isect_tiles(
        means2d_o.reshape(-1, 2), radii_o.reshape(-1, 2), dflat, image_ids, I, tile_size,
        tile_width, tile_height,
    )
    meta.update(
        tile_width=tile_width, tile_height=tile_height,
        tiles_per_gauss=tiles_per_gauss if packed else tiles_per_gauss.reshape(batch_dims + (C, N)),
        isect_ids=isect_ids, flatten_ids=flatten_ids,
        isect_offsets=isect_offsets.reshape(batch_dims + (C, tile_height, tile_width)),
        width=width, height=height, tile_size=tile_size, n_batches=B, n_cameras=C,
    )

    # means2d_o is the exact tensor in meta: strategies read its .grad / .absgrad
    render_colors, render_alphas = rasterize_to_pixels(
        means2d_o, conics_o, cols, opac_o, width, height, tile_size, isect_offsets,
        flatten_ids, backgrounds=bgs, absgrad=absgrad,
    )
    if render_mode in ("ED", "RGB+ED"):
        render_colors = torch.cat(
            [render_colors[..., :-1], render_colors[..., -1:] / render_alphas.clamp(min=1e-10)], -1
        )
    out_shape = batch_dims + (C, height, width)
    return (render_colors.reshape(out_shape + (-1,)), render_alphas.reshape(out_shape + (1,)),
            meta)


def median_render(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, channels: Tensor,
                  viewmat: Tensor, K: Tensor, width: int, height: int, level: float = 0.5,
                  tile_size: int = 16) -> Tuple[Tensor, Tensor]:
    """Forward only, one pinhole camera, float32 on the CPU (C++ kernel): per pixel, the
    `channels` (N,D) of the Gaussian at which the front-to-back transmittance first drops to
    `level` or below — the median contributor for 0.5 — zeros where it never does.
    means (N,3), quats (N,4) wxyz, scales (N,3), opacities (N,) in [0,1], viewmat (4,4), K (3,3).
    Returns (values (H,W,D), alpha (H,W) = 1 − final transmittance)."""
    lib = kernel_library()
    if lib is None:
        raise RuntimeError(f"median_render needs the C++ splat kernel (g++ was not usable): {_lib_error}")
    f = lambda t: t.detach().to("cpu", torch.float32)  # noqa: E731
    means, quats, scales, opacities, channels = f(means), f(quats), f(scales), f(opacities), f(channels)
    radii, means2d, depths, conics, _ = fully_fused_projection(
        means[None], None, quats[None], scales[None], f(viewmat)[None, None], f(K)[None, None], width, height,
        eps2d=0.3, near_plane=0.01, far_plane=1e10, radius_clip=0.0, calc_compensations=False,
        opacities=opacities[None])
    tw, th = math.ceil(width / tile_size), math.ceil(height / tile_size)
    N = means.shape[0]
    _, _, flatten_ids, isect_offsets = isect_tiles(
        means2d.reshape(-1, 2), radii.reshape(-1, 2), depths.reshape(-1), torch.zeros(N, dtype=torch.long), 1,
        tile_size, tw, th)
    D = channels.shape[-1]
    out = torch.empty((height, width, D), dtype=torch.float32)
    T = torch.empty((height, width), dtype=torch.float32)
    xy, cn = means2d.reshape(-1, 2).contiguous(), conics.reshape(-1, 3).contiguous()
    op, col = opacities.contiguous(), channels.contiguous()
    offs, flat = isect_offsets.contiguous(), flatten_ids.contiguous()
    lib.splat_median_f32(1, height, width, tile_size, tw, th, D, len(flat), _ptr(xy), _ptr(cn), _ptr(op), _ptr(col),
                         float(level), _ptr(offs), _ptr(flat), _ptr(out), _ptr(T), _n_threads(len(flat), tile_size))
    return out, 1.0 - T
