"""Feed-forward 3D vs the fit route on the same views (issue #10).

    python bench/bench_feedforward.py [--fit-iterations 300] [--layers 2] [--grid 128] [--quick]

Scene: the procedural sample asset (pipelines/procedural.py) rendered by the PBR rasteriser into
6 views on zero123++'s rig (azimuths 30…330, elevations +20/−10), 128² — what the multiview
stage hands to reconstruction.

Measured in one run, on whatever device the registry picks (CPU here):
- TripoSR, random weights, published widths (ViT 768, backbone 1024 with 16×64 heads, 40-channel
  planes, 64×9 decoder) but `layers` transformer layers in both the ViT and the backbone, a
  256² conditioning image and 16² token planes (32² as published would be 4× the tokens):
  network seconds, and seconds to a textured Asset (grid³ marching cubes, unwrap, bake);
- InstantMesh, random weights, published widths (ViT 768 with adaLN, transformer 1024/16 heads,
  80-channel planes), `layers` layers each, 6 views at 320²: network and total seconds;
- the fit route (`reconstruct.views_to_asset`: splat fit `fit_iterations` steps, TSDF mesh,
  unwrap, bake) on the same 6 views: seconds;
- ratios fit / feed-forward, and the parameter counts of both architectures at their published
  sizes (built on the meta device, no memory).
Random weights make the meshes noise; the times are what a real pass costs at these sizes.

Prints a table and one JSON line; `run() -> dict` returns the same figures for bench/run.py.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
import torch


def _views(size: int = 128):
    from studio.pipelines.procedural import sample_asset
    from studio.pipelines.views_render import render_views

    from studio.assets import Cameras

    asset = sample_asset()
    lo, hi = asset.bounds()
    centre, radius = (lo + hi) / 2, 2.2 * float(np.linalg.norm(hi - lo)) / 2
    c2w = []
    for i in range(6):
        az, el = np.radians(30 + 60 * i), np.radians(20 if i % 2 == 0 else -10)
        eye = centre + radius * np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])
        z = (centre - eye) / np.linalg.norm(centre - eye)
        x = np.cross(z, [0.0, -1.0, 0.0])
        x /= np.linalg.norm(x)
        m = np.eye(4)
        m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, np.cross(z, x), z, eye
        c2w.append(m)
    f = 0.5 * size / np.tan(np.radians(30) / 2)  # 30° fov as InstantMesh's rig
    K = np.tile(np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]]), (6, 1, 1))
    views, _ = render_views(asset, Cameras(K, np.stack(c2w), size, size))
    return views


def _params(m: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in m.parameters()))


def run(fit_iterations: int = 300, layers: int = 2, grid: int = 128, texture_size: int = 512, quick: bool = False) -> dict:
    from studio.pipelines.feedforward import (FeedForwardParams, lrm, single_image_to_asset, triposr,
                                              views_to_asset_feedforward)
    from studio.pipelines.image_to_asset import prepare_image
    from studio.pipelines.reconstruct import MeshingParams, views_to_asset
    from studio.pipelines.splat_fit import FitParams

    if quick:
        fit_iterations, layers, grid, texture_size = min(fit_iterations, 100), 1, min(grid, 96), min(texture_size, 256)
    torch.manual_seed(0)
    out: dict = {"device": "cpu", "threads": torch.get_num_threads(), "layers": layers, "grid": grid}
    with torch.device("meta"):
        out["triposr_params_published"] = _params(triposr.TSR(triposr.PUBLISHED_CONFIG))
        out["instant_mesh_params_published"] = _params(lrm.InstantMesh(lrm.PUBLISHED["instant-mesh-large"]))

    views = _views()
    # --- TripoSR at published widths, fewer layers
    cfg = dict(triposr.PUBLISHED_CONFIG)
    cfg.update(cond_image_size=256,
               image_tokenizer={"config": {"num_hidden_layers": layers}},
               tokenizer={"plane_size": 16, "num_channels": 1024},
               backbone={**triposr.PUBLISHED_CONFIG["backbone"], "num_layers": layers})
    tsr = triposr.TSR(cfg).eval()
    out["triposr_params_bench"] = _params(tsr)
    from studio.assets.colour import linear_to_srgb

    img = np.concatenate([linear_to_srgb(views.images[0]), views.masks[0][..., None]], axis=2)
    prep = prepare_image(img, size=256)
    with torch.no_grad():
        code = tsr(torch.as_tensor(prep.image)[None])[0]
        pts = torch.rand(20000, 3) * 1.6 - 0.8
        thr = float(tsr.query(code, pts)["density_act"].quantile(0.6))
    p = FeedForwardParams(resolution=grid, threshold=thr, texture_size=texture_size, device="cpu")
    a = single_image_to_asset(prep.image, tsr, p)
    s = a.metadata.extras["seconds"]
    out.update(triposr_network_s=s["network"], triposr_mesh_s=s["mesh"], triposr_total_s=s["total"],
               triposr_faces=a.triangle_count)
    del tsr

    # --- InstantMesh at published widths, fewer layers, 6 views at 320²
    lc = replace(lrm.PUBLISHED["instant-mesh-large"], transformer_layers=layers, vit_layers=layers)
    im = lrm.InstantMesh(lc).eval()
    out["instant_mesh_params_bench"] = _params(im)
    a = views_to_asset_feedforward(views, im, FeedForwardParams(resolution=0, texture_size=texture_size, device="cpu"))
    s = a.metadata.extras["seconds"]
    out.update(instant_mesh_network_s=s["network"], instant_mesh_mesh_s=s["mesh"], instant_mesh_total_s=s["total"],
               instant_mesh_faces=a.triangle_count)
    del im

    # --- the fit route on the same views
    t0 = time.perf_counter()
    fitted = views_to_asset(views, FitParams(iterations=fit_iterations, init_count=5000),
                            MeshingParams(texture_size=texture_size, extra_views=8, voxels_per_diagonal=128))
    out.update(fit_iterations=fit_iterations, fit_total_s=round(time.perf_counter() - t0, 3), fit_faces=fitted.triangle_count)
    out["ratio_fit_over_instant_mesh"] = round(out["fit_total_s"] / out["instant_mesh_total_s"], 2)
    out["ratio_fit_over_triposr"] = round(out["fit_total_s"] / out["triposr_total_s"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit-iterations", type=int, default=300)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--grid", type=int, default=128)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    res = run(a.fit_iterations, a.layers, a.grid, quick=a.quick)
    for k, v in res.items():
        print(f"{k:>34}: {v}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
