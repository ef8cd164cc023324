"""Reconstruction quality (`studio eval`, issue #6 item 7): image metrics on held-out views and
surface metrics against a ground-truth mesh, written as JSON + HTML by `metrics.write_metrics`.

Image metrics are computed in display sRGB over a fixed background (white by default): the
held-out views' linear images are composited over the background through their masks, the
reconstruction is rendered over the same background (splats with the studio compositor, meshes
with the raster renderer), and PSNR / SSIM compare the two.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from studio.assets import Asset, GaussianSplats, Mesh, Views
from studio.assets.colour import linear_to_srgb

from .metrics import chamfer, psnr, ssim, write_metrics


def _targets(views: Views, background: np.ndarray) -> np.ndarray:
    srgb = linear_to_srgb(np.clip(views.images, 0, 1)).astype(np.float32)
    if views.masks is None:
        return srgb
    m = views.masks[..., None]
    return srgb * m + background * (1 - m)


def _image_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, Any]:
    per = [psnr(p, t) for p, t in zip(pred, target)]
    return {
        "psnr": psnr(pred, target),
        "ssim": float(np.mean([ssim(p, t) for p, t in zip(pred, target)])),
        "psnr_per_view": per,
    }


def render_mesh_srgb(asset: Asset, views: Views, background: np.ndarray) -> np.ndarray:
    """The asset's meshes rendered into the views' cameras (PBR raster, no tone mapping) over
    `background`: (N,H,W,3) float32 sRGB in [0,1]."""
    from studio.renderers.raster import default_renderer

    mesh_only = Asset(meshes=list(asset.meshes), metadata=asset.metadata)
    res = default_renderer().render(mesh_only, views.cameras, tone_mapping="none", passes=("rgb", "alpha"))
    rgb = res.rgb.astype(np.float32) / 255.0
    a = res.alpha.astype(np.float32)[..., None]
    return rgb * a + background * (1 - a)


def _merged(meshes: list[Mesh]) -> "object":
    import trimesh

    parts = [trimesh.Trimesh(m.world_vertices(), m.faces, process=False) for m in meshes]
    return parts[0] if len(parts) == 1 else trimesh.util.concatenate(parts)


def evaluate(
    subject: Asset | GaussianSplats | Mesh,
    held_out: Views | None = None,
    gt_mesh: Mesh | Asset | None = None,
    out_dir: str | Path | None = None,
    name: str = "metrics",
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    samples: int = 100_000,
) -> dict[str, Any]:
    """Quality of a reconstruction.

    subject: an Asset (its splats and/or meshes are evaluated), GaussianSplats or a Mesh.
    held_out: views not used for fitting (linear RGB, masks, cameras); image metrics per
      representation: {"splats": {"psnr", "ssim", "psnr_per_view"}, "mesh": {...}}.
    gt_mesh: reference surface (Mesh or an Asset's merged meshes); adds "surface": Chamfer
      (metres), accuracy, completeness, normal consistency, F-score at 1 % of the reference's bbox
      diagonal (ChamferResult fields) plus "chamfer_fraction" = chamfer / diagonal.
    out_dir: when given, writes <name>.json and <name>.html there ("files" lists them).
    Returns the metrics dict. Raises ValueError when there is nothing to evaluate."""
    from .splat_fit import render_splats

    asset = subject if isinstance(subject, Asset) else (
        Asset(splats=subject) if isinstance(subject, GaussianSplats) else Asset(meshes=[subject]))
    bg = np.asarray(background, np.float32)
    out: dict[str, Any] = {}
    if held_out is not None:
        target = _targets(held_out, bg)
        out["views"] = len(held_out)
        if asset.splats is not None and len(asset.splats):
            rgb, _, _ = render_splats(asset.splats, held_out.cameras, background=tuple(bg))
            out["splats"] = _image_metrics(rgb, target)
        if asset.meshes:
            out["mesh"] = _image_metrics(render_mesh_srgb(asset, held_out, bg), target)
    if gt_mesh is not None:
        if not asset.meshes:
            raise ValueError("evaluate: a ground-truth mesh was given but the subject has no mesh")
        ref = gt_mesh.meshes if isinstance(gt_mesh, Asset) else [gt_mesh]
        c = chamfer(_merged(list(asset.meshes)), _merged(list(ref)), n=samples)
        out["surface"] = {**c.__dict__, "chamfer_fraction": c.chamfer / c.diagonal}
    if not out:
        raise ValueError("evaluate: give held-out views and/or a ground-truth mesh")
    if out_dir is not None:
        j, h = write_metrics(out, out_dir, name)
        out["files"] = [str(j), str(h)]
    return out
