"""CPU equivalents of the two CUDA kernels gsplat's ``MCMCStrategy`` calls.

``gsplat.strategy.ops`` imports ``compute_relocation`` (relocation/sample_add) and
``quat_scale_to_covar_preci`` (noise injection) by name; both are CUDA-only in gsplat 1.5.3.
``install_cpu_ops()`` rebinds those two names in ``gsplat.strategy.ops`` to dispatchers:
CUDA tensors still go to gsplat's kernels, CPU tensors to the torch versions here. It is
idempotent and runs on import of this module (``splat_raster`` imports it), so
``gsplat.DefaultStrategy`` and ``gsplat.MCMCStrategy`` work unchanged on CPU.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = ["compute_relocation", "quat_scale_to_covar_preci", "install_cpu_ops"]


def compute_relocation(
    opacities: Tensor, scales: Tensor, ratios: Tensor, binoms: Tensor
) -> Tuple[Tensor, Tensor]:
    """Opacity and scale of a Gaussian split into n copies (3DGS-MCMC, Kheradmand et al., eq. 9).

    opacities (N,), scales (N,3), ratios (N,) copies per Gaussian (clamped in place to
    [1, n_max], as gsplat does), binoms (n_max, n_max) binomial table.
    new_opacity = 1 - (1 - o)^(1/n);
    new_scale = o / (Σ_{i=1..n} Σ_{k=0..i-1} C(i-1,k) (-1)^k o_new^(k+1) / sqrt(k+1)) · scale.
    Evaluated in float64 (the alternating sum cancels badly in float32); returns
    (new_opacities (N,), new_scales (N,3)) in the input dtype.
    """
    if opacities.is_cuda:
        from gsplat.relocation import compute_relocation as _cuda

        return _cuda(opacities, scales, ratios, binoms)
    N = opacities.shape[0]
    n_max = binoms.shape[0]
    assert scales.shape == (N, 3), scales.shape
    assert ratios.shape == (N,), ratios.shape
    ratios.clamp_(min=1, max=n_max)
    n = ratios.long()
    o = opacities.double()
    new_o = 1.0 - torch.pow(1.0 - o, 1.0 / n.double())
    k = torch.arange(n_max, dtype=torch.float64)
    sign_root = torch.where(k % 2 == 0, 1.0, -1.0) / torch.sqrt(k + 1)  # (-1)^k / sqrt(k+1)
    # A[n-1, k] = Σ_{i=1..n} C(i-1, k) · (-1)^k / sqrt(k+1)  (C(i-1,k) = 0 for k > i-1)
    A = torch.cumsum(torch.tril(binoms.double()), dim=0) * sign_root
    powers = new_o[:, None] ** (k[None, :] + 1)  # (N, n_max)
    denom = (A[n - 1] * powers).sum(-1)
    coeff = o / denom
    new_scales = coeff[:, None] * scales.double()
    return new_o.to(opacities.dtype), new_scales.to(scales.dtype)


def quat_scale_to_covar_preci(
    quats: Tensor,
    scales: Tensor,
    compute_covar: bool = True,
    compute_preci: bool = True,
    triu: bool = False,
) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """gsplat's ``quat_scale_to_covar_preci``: (…,4) wxyz + (…,3) → covariance/precision (…,3,3) or (…,6)."""
    if quats.is_cuda:
        from gsplat.cuda._wrapper import quat_scale_to_covar_preci as _cuda

        return _cuda(quats, scales, compute_covar, compute_preci, triu)
    from gsplat.cuda._torch_impl import _quat_scale_to_covar_preci

    return _quat_scale_to_covar_preci(quats, scales, compute_covar, compute_preci, triu)


def install_cpu_ops() -> None:
    """Point gsplat.strategy.ops at the dispatchers above (idempotent)."""
    import gsplat.strategy.ops as ops

    ops.compute_relocation = compute_relocation
    ops.quat_scale_to_covar_preci = quat_scale_to_covar_preci


install_cpu_ops()
