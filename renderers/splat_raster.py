"""Differentiable Gaussian-splat rasterization: gsplat on CUDA, our own kernels on CPU.

``rasterization`` has the signature and semantics of ``gsplat.rasterization`` (1.5.3).
CUDA tensors go to gsplat unchanged; CPU tensors go to ``splat_cpu.rasterization_cpu``
(pinhole cameras, float32 or float64), which returns the same ``meta`` keys so gsplat's
``DefaultStrategy`` and (with ``splat_strategy``) ``MCMCStrategy`` work on both paths.
"""
from __future__ import annotations

from typing import Any, Dict, Literal, Optional, Tuple

from torch import Tensor

from . import splat_cpu
from . import splat_strategy  # noqa: F401  (lets gsplat's MCMCStrategy run on CPU)

RenderMode = Literal["RGB", "D", "ED", "RGB+D", "RGB+ED"]


def rasterization(
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
    render_mode: RenderMode = "RGB",
    sparse_grad: bool = False,
    absgrad: bool = False,
    rasterize_mode: Literal["classic", "antialiased"] = "classic",
    channel_chunk: int = 32,
    distributed: bool = False,
    camera_model: Literal["pinhole", "ortho", "fisheye", "ftheta"] = "pinhole",
    covars: Optional[Tensor] = None,
    **kwargs: Any,
) -> Tuple[Tensor, Tensor, Dict[str, Any]]:
    """Render N Gaussians into C cameras, as ``gsplat.rasterization``.

    means (…,N,3), quats (…,N,4) wxyz, scales (…,N,3) std devs, opacities (…,N) in [0,1],
    colors (…,[C,]N,D) or SH coefficients (…,[C,]N,K,3) when ``sh_degree`` is set,
    viewmats (…,C,4,4) world→camera (OpenCV), Ks (…,C,3,3), backgrounds (…,C,D).
    Returns render_colors (…,C,H,W,D[+1]), render_alphas (…,C,H,W,1) and the meta dict
    (radii (…,C,N,2) int32 or (nnz,2) when packed, means2d, depths, conics, opacities,
    gaussian_ids/camera_ids/batch_ids when packed, tile data, width, height, n_cameras).
    CPU supports pinhole cameras only; sparse_grad, distributed, UT/eval3d and distortion
    are CUDA-only.
    """
    if means.is_cuda:
        import gsplat

        return gsplat.rasterization(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height,
            near_plane=near_plane, far_plane=far_plane, radius_clip=radius_clip, eps2d=eps2d,
            sh_degree=sh_degree, packed=packed, tile_size=tile_size, backgrounds=backgrounds,
            render_mode=render_mode, sparse_grad=sparse_grad, absgrad=absgrad,
            rasterize_mode=rasterize_mode, channel_chunk=channel_chunk,
            distributed=distributed, camera_model=camera_model, covars=covars, **kwargs,
        )
    if camera_model != "pinhole":
        raise NotImplementedError(f"CPU splat rasterization supports pinhole cameras, not {camera_model!r}")
    if distributed or sparse_grad:
        raise NotImplementedError("distributed and sparse_grad rasterization need CUDA (gsplat)")
    used = {k for k, v in kwargs.items() if v is not None and v is not False and k != "segmented"}
    if str(kwargs.get("rolling_shutter", "")).endswith("GLOBAL"):  # the default shutter
        used.discard("rolling_shutter")
    if used:
        raise NotImplementedError(f"CPU splat rasterization does not support {sorted(used)}")
    return splat_cpu.rasterization_cpu(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height,
        near_plane=near_plane, far_plane=far_plane, radius_clip=radius_clip, eps2d=eps2d,
        sh_degree=sh_degree, packed=packed, tile_size=tile_size, backgrounds=backgrounds,
        render_mode=render_mode, absgrad=absgrad, rasterize_mode=rasterize_mode,
        covars=covars,
    )
