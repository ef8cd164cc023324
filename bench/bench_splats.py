"""CPU splat compositor: forward + backward seconds per iteration, with ratios in one run.

    python bench/bench_splats.py [--n 50000] [--size 256] [--reps 7] [--quick]

Scene (`make_scene`): N Gaussians uniform in a 2 m cube seen whole by one 256² pinhole camera
(50° fov, 3 m away), std devs log-normal around 1 % of the scene extent (2 cm), random
rotations, opacities U(0.1, 0.9), SH degree 3 colours — the shape of a fitted scene.

Measured, medians over repeats (the machine is shared, so single runs are noisy):
- ours: `studio.renderers.splat_raster.rasterization` forward + backward of a weighted sum
  of colours and alphas (all of projection, SH, binning, compositing and their gradients);
  also the forward alone and our projection + binning alone;
- gsplat's CPU-capable torch reference stages on the same scene: `_quat_scale_to_covar_preci`
  + `_fully_fused_projection` + `_isect_tiles` (no image: its `_rasterize_to_pixels` needs CUDA);
- the dense reference of tests/test_splat_raster.py (every Gaussian against every pixel) at a
  smaller size (`--dense-n` Gaussians, `--dense-size`²), against ours at that size;
- one fit iteration like OpenSplat's (render one view, L1 + 0.2 D-SSIM, backward, Adam step)
  against OpenSplat's CPU iteration: timed in this run with `--opensplat BINARY` (build it with
  ../shared/peers/opensplat/build.sh), else its README figure (0.96 s on this machine type).

Prints a table and one JSON line; `run() -> dict` returns the same figures for bench/run.py.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict

import torch

REPO = Path(__file__).resolve().parents[1]


def make_scene(n: int = 50_000, size: int = 256, sh_degree: int = 3, seed: int = 0) -> Dict[str, Any]:
    """Random fitted-looking scene (see module doc). float32 CPU tensors + width/height."""
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 3, generator=g) * 2 - 1
    quats = torch.randn(n, 4, generator=g)
    scales = 0.02 * torch.exp(0.4 * torch.randn(n, 3, generator=g))
    opacities = torch.rand(n, generator=g) * 0.8 + 0.1
    sh = torch.zeros(n, (sh_degree + 1) ** 2, 3)
    sh[:, 0] = (torch.rand(n, 3, generator=g) - 0.5) / 0.28209479
    sh[:, 1:] = 0.05 * torch.randn(n, (sh_degree + 1) ** 2 - 1, 3, generator=g)
    eye = torch.tensor([0.0, 0.3, -3.0])
    zax = torch.nn.functional.normalize(-eye, dim=0)
    xax = torch.nn.functional.normalize(torch.linalg.cross(torch.tensor([0.0, -1.0, 0.0]), zax), dim=0)
    yax = torch.linalg.cross(zax, xax)
    R = torch.stack([xax, yax, zax])
    V = torch.eye(4)
    V[:3, :3] = R
    V[:3, 3] = -R @ eye
    f = size / (2 * math.tan(math.radians(25)))
    K = torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]])
    return dict(means=means, quats=quats, scales=scales, opacities=opacities, colors=sh,
                viewmats=V[None], Ks=K[None], width=size, height=size, sh_degree=sh_degree)


def _median_time(fn: Callable[[], Any], reps: int, warmup: int = 1, cpu: bool = False) -> float:
    """Median wall seconds per call (or process CPU seconds with cpu=True)."""
    clock = time.process_time if cpu else time.perf_counter
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t = clock()
        fn()
        ts.append(clock() - t)
    return statistics.median(ts)


class _threads:
    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self) -> None:
        self.old = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc: Any) -> None:
        torch.set_num_threads(self.old)


def _ours_fwd_bwd(s: Dict[str, Any], backward: bool = True) -> Callable[[], None]:
    from studio.renderers.splat_raster import rasterization

    names = ("means", "quats", "scales", "opacities", "colors")
    params = {k: s[k].clone().requires_grad_(backward) for k in names}
    w = torch.rand(1, s["height"], s["width"], 3, generator=torch.Generator().manual_seed(1))

    def step() -> None:
        for p in params.values():
            p.grad = None
        with torch.set_grad_enabled(backward):
            c, a, _ = rasterization(params["means"], params["quats"], params["scales"], params["opacities"],
                                    params["colors"], s["viewmats"], s["Ks"], s["width"], s["height"],
                                    sh_degree=s["sh_degree"], packed=False)
            if backward:
                ((c * w).sum() + a.sum()).backward()
    return step


def _ours_project_bin(s: Dict[str, Any]) -> Callable[[], None]:
    from studio.renderers import splat_cpu

    def step() -> None:
        with torch.no_grad():
            r, m, d, _, _ = splat_cpu.fully_fused_projection(
                s["means"][None], None, s["quats"][None], s["scales"][None], s["viewmats"][None], s["Ks"][None],
                s["width"], s["height"], opacities=s["opacities"][None])
            tw = math.ceil(s["width"] / 16)
            th = math.ceil(s["height"] / 16)
            splat_cpu.isect_tiles(m.reshape(-1, 2), r.reshape(-1, 2), d.reshape(-1),
                                  torch.zeros(m.shape[2], dtype=torch.int64), 1, 16, tw, th)
    return step


def _gsplat_reference_stages(s: Dict[str, Any]) -> Callable[[], None]:
    from gsplat.cuda._torch_impl import _fully_fused_projection, _isect_tiles, _quat_scale_to_covar_preci

    def step() -> None:
        with torch.no_grad():
            covars, _ = _quat_scale_to_covar_preci(s["quats"], s["scales"], compute_preci=False)
            r, m, d, _, _ = _fully_fused_projection(s["means"], covars, s["viewmats"], s["Ks"],
                                                     s["width"], s["height"])
            _isect_tiles(m, r, d, 16, math.ceil(s["width"] / 16), math.ceil(s["height"] / 16))
    return step


def _dense_reference(s: Dict[str, Any]) -> Callable[[], None]:
    spec = importlib.util.spec_from_file_location("_splat_tests", REPO / "tests" / "test_splat_raster.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    names = ("means", "quats", "scales", "opacities", "colors")
    params = {k: s[k].clone().requires_grad_(True) for k in names}
    w = torch.rand(1, s["height"], s["width"], 3, generator=torch.Generator().manual_seed(1))

    def step() -> None:
        t = dict(s, **params)
        c, a = mod.dense_render(t, sh_degree=s["sh_degree"])
        ((c * w).sum() + a.sum()).backward()
    return step


def _ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of (B,H,W,C) images, Gaussian window (as 3DGS)."""
    c = a.shape[-1]
    x, y = a.permute(0, 3, 1, 2), b.permute(0, 3, 1, 2)
    g = torch.arange(window, dtype=a.dtype) - window // 2
    g = torch.exp(-(g**2) / (2 * sigma**2))
    g = g / g.sum()
    w = (g[:, None] * g[None, :]).expand(c, 1, window, window).contiguous()
    conv = lambda t: torch.nn.functional.conv2d(t, w, padding=window // 2, groups=c)  # noqa: E731
    mx, my = conv(x), conv(y)
    sxx, syy, sxy = conv(x * x) - mx**2, conv(y * y) - my**2, conv(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return (((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))).mean()


def _fit_iteration(s: Dict[str, Any]) -> Callable[[], None]:
    """One training iteration as OpenSplat's: render one view, L1 + 0.2 D-SSIM, backward, Adam."""
    from studio.renderers.splat_raster import rasterization

    with torch.no_grad():
        target, _, _ = rasterization(s["means"], s["quats"], s["scales"], s["opacities"], s["colors"],
                                     s["viewmats"], s["Ks"], s["width"], s["height"], sh_degree=s["sh_degree"])
    g = torch.Generator().manual_seed(2)
    p = {
        "means": s["means"] + 0.01 * torch.randn(s["means"].shape, generator=g),
        "quats": s["quats"].clone(),
        "scales": torch.log(s["scales"]),
        "opacities": torch.logit(s["opacities"]),
        "sh0": s["colors"][:, :1].clone(),
        "shN": s["colors"][:, 1:].clone(),
    }
    for t in p.values():
        t.requires_grad_(True)
    lrs = {"means": 1.6e-4, "quats": 1e-3, "scales": 5e-3, "opacities": 5e-2, "sh0": 2.5e-3, "shN": 2.5e-3 / 20}
    opt = torch.optim.Adam([{"params": [p[k]], "lr": lr} for k, lr in lrs.items()], eps=1e-15)

    def step() -> None:
        img, _, _ = rasterization(p["means"], p["quats"], torch.exp(p["scales"]), torch.sigmoid(p["opacities"]),
                                  torch.cat([p["sh0"], p["shN"]], 1), s["viewmats"], s["Ks"], s["width"],
                                  s["height"], sh_degree=s["sh_degree"], packed=False)
        loss = 0.8 * torch.abs(img - target).mean() + 0.2 * (1 - _ssim(img, target))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def _fit_iteration_colmap(scene: Path) -> Callable[[], None]:
    """Our training iteration on OpenSplat's benchmark scene (COLMAP: images + sparse/0), set up
    as OpenSplat does: Gaussians at the points, scale = mean distance to 3 nearest neighbours,
    opacity 0.1, SH degree 3 (DC from the point colour); views in turn; L1 + 0.2 D-SSIM; Adam."""
    import numpy as np
    import pycolmap
    from PIL import Image
    from scipy.spatial import cKDTree

    from studio.renderers.splat_raster import rasterization

    rec = pycolmap.Reconstruction(str(scene / "sparse" / "0"))
    pts = np.array([p.xyz for p in rec.points3D.values()], dtype=np.float32)
    rgb = np.array([p.color for p in rec.points3D.values()], dtype=np.float32) / 255.0
    d, _ = cKDTree(pts).query(pts, k=4)
    n = len(pts)
    p = {
        "means": torch.from_numpy(pts),
        "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
        "scales": torch.log(torch.from_numpy(d[:, 1:].mean(1).astype(np.float32)).clamp(min=1e-7))[:, None].repeat(1, 3),
        "opacities": torch.logit(torch.full((n,), 0.1)),
        "sh0": ((torch.from_numpy(rgb) - 0.5) / 0.28209479)[:, None, :],
        "shN": torch.zeros(n, 15, 3),
    }
    for t in p.values():
        t.requires_grad_(True)
    views = []
    for img in rec.images.values():
        cam = rec.cameras[img.camera_id]
        V = torch.eye(4)
        V[:3] = torch.from_numpy(img.cam_from_world().matrix()).float()
        K = torch.from_numpy(cam.calibration_matrix()).float()
        target = torch.from_numpy(np.asarray(Image.open(scene / "images" / img.name).convert("RGB"), np.float32) / 255.0)
        views.append((V[None], K[None], target[None], cam.width, cam.height))
    lrs = {"means": 1.6e-4, "quats": 1e-3, "scales": 5e-3, "opacities": 5e-2, "sh0": 2.5e-3, "shN": 2.5e-3 / 20}
    opt = torch.optim.Adam([{"params": [p[k]], "lr": lr} for k, lr in lrs.items()], eps=1e-15)
    it = [0]

    def step() -> None:
        V, K, target, w, h = views[it[0] % len(views)]
        it[0] += 1
        img, _, _ = rasterization(p["means"], p["quats"], torch.exp(p["scales"]), torch.sigmoid(p["opacities"]),
                                  torch.cat([p["sh0"], p["shN"]], 1), V, K, w, h, sh_degree=3, packed=False)
        loss = 0.8 * torch.abs(img - target).mean() + 0.2 * (1 - _ssim(img, target))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def _make_opensplat_scene(out: Path, n: int) -> None:
    import subprocess

    peers = REPO.parent / "shared" / "peers" / "opensplat"
    subprocess.run([sys.executable, str(peers / "make_scene.py"), str(out), str(n)], check=True, capture_output=True)


def _opensplat_iteration(binary: Path, n: int) -> float:
    """OpenSplat's per-iteration seconds on its benchmark scene, measured as its README says:
    (wall(-n 120) - wall(-n 20)) / 100 (single run each)."""
    import subprocess
    import tempfile

    peers = REPO.parent / "shared" / "peers" / "opensplat"
    with tempfile.TemporaryDirectory() as tmp:
        scene = Path(tmp) / "scene"
        subprocess.run([sys.executable, str(peers / "make_scene.py"), str(scene), str(n)], check=True,
                       capture_output=True)
        walls = []
        for iters in (20, 120):
            t = time.perf_counter()
            subprocess.run([str(binary), str(scene), "--cpu", "-n", str(iters), "--num-downscales", "0",
                            "-o", str(Path(tmp) / "x.ply")], check=True, capture_output=True, cwd=tmp)
            walls.append(time.perf_counter() - t)
    return (walls[1] - walls[0]) / 100


OPENSPLAT_README_S = 0.96  # ../shared/peers/opensplat/README.md, 50k Gaussians, 256², this machine type


def run(n: int = 50_000, size: int = 256, reps: int = 7, dense_n: int = 2_000, dense_size: int = 64,
        gsplat_reps: int = 3, opensplat: str | None = None, scene_fit: bool = False) -> Dict[str, Any]:
    """Measure and return the figures (seconds, ratios) as a flat dict."""
    from studio.renderers import splat_cpu

    s = make_scene(n, size)
    out: Dict[str, Any] = {"n_gaussians": n, "size": size, "threads": torch.get_num_threads(),
                           "backend": splat_cpu.backend()}
    step = _ours_fwd_bwd(s)
    out["ours_fwd_bwd_s"] = _median_time(step, reps)
    out["ours_fwd_bwd_cpu_s"] = _median_time(step, reps, cpu=True)
    with _threads(1):
        out["ours_fwd_bwd_1thread_s"] = _median_time(step, reps)
    out["ours_fwd_s"] = _median_time(_ours_fwd_bwd(s, backward=False), reps)
    out["ours_project_bin_s"] = _median_time(_ours_project_bin(s), reps)
    out["gsplat_ref_project_isect_s"] = _median_time(_gsplat_reference_stages(s), gsplat_reps, warmup=0)
    out["ratio_gsplat_ref_over_ours_fwd_bwd"] = out["gsplat_ref_project_isect_s"] / out["ours_fwd_bwd_s"]
    out["ratio_gsplat_ref_over_ours_project_bin"] = out["gsplat_ref_project_isect_s"] / out["ours_project_bin_s"]
    sd = make_scene(dense_n, dense_size)
    out["dense_n"], out["dense_size"] = dense_n, dense_size
    out["dense_ref_fwd_bwd_s"] = _median_time(_dense_reference(sd), 1, warmup=0)
    out["ours_small_fwd_bwd_s"] = _median_time(_ours_fwd_bwd(sd), reps)
    out["ratio_dense_over_ours_small"] = out["dense_ref_fwd_bwd_s"] / out["ours_small_fwd_bwd_s"]
    fit = _fit_iteration(s)
    out["ours_fit_iteration_s"] = _median_time(fit, reps)
    out["ours_fit_iteration_cpu_s"] = _median_time(fit, reps, cpu=True)
    with _threads(1):
        out["ours_fit_iteration_1thread_s"] = _median_time(fit, reps)
    out["opensplat_iteration_s_readme"] = OPENSPLAT_README_S
    if opensplat is not None:
        out["opensplat_iteration_s"] = _opensplat_iteration(Path(opensplat), n)
    if scene_fit:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            _make_opensplat_scene(Path(tmp) / "scene", n)
            fit_c = _fit_iteration_colmap(Path(tmp) / "scene")
            out["ours_fit_iteration_opensplat_scene_s"] = _median_time(fit_c, reps)
            with _threads(1):
                out["ours_fit_iteration_opensplat_scene_1thread_s"] = _median_time(fit_c, reps)
    if (n, size) == (50_000, 256) or opensplat is not None:  # the peer's scene size
        ref = out.get("opensplat_iteration_s", OPENSPLAT_README_S)
        out["ratio_opensplat_over_ours_fit_iteration"] = ref / out["ours_fit_iteration_s"]
        out["ratio_opensplat_over_ours_fit_iteration_1thread"] = ref / out["ours_fit_iteration_1thread_s"]
    out["load_average_1min"] = os.getloadavg()[0]
    out["goal_under_1s"] = out["ours_fwd_bwd_s"] < 1.0
    out["goal_under_gsplat_ref"] = out["ours_fwd_bwd_s"] < out["gsplat_ref_project_isect_s"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--dense-n", type=int, default=2_000)
    ap.add_argument("--dense-size", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--scene-fit", action="store_true",
                    help="also time our fit iteration on OpenSplat's buddha scene (needs pycolmap)")
    ap.add_argument("--opensplat", help="path of a built opensplat binary (peers/opensplat/build.sh) to time "
                                        "in this run; without it the README's figure is the reference")
    a = ap.parse_args(argv)
    if a.quick:
        r = run(n=5_000, size=64, reps=2, dense_n=200, dense_size=32, gsplat_reps=1)
    else:
        r = run(a.n, a.size, a.reps, a.dense_n, a.dense_size, opensplat=a.opensplat, scene_fit=a.scene_fit)
    print(f"CPU splat compositor ({r['backend']}, {r['threads']} threads), {r['n_gaussians']} Gaussians, "
          f"{r['size']}², SH degree 3, medians (load average {r['load_average_1min']:.1f} on "
          f"{os.cpu_count()} CPUs):")
    rows = [
        ("ours forward + backward", r["ours_fwd_bwd_s"], f"{r['threads']} threads, wall"),
        ("ours forward + backward, 1 thread", r["ours_fwd_bwd_1thread_s"], "wall"),
        ("ours forward + backward, CPU time", r["ours_fwd_bwd_cpu_s"], "process CPU s, all threads"),
        ("ours forward", r["ours_fwd_s"], ""),
        ("ours projection + binning", r["ours_project_bin_s"], ""),
        ("gsplat CPU ref: projection + isect", r["gsplat_ref_project_isect_s"],
         f"{r['ratio_gsplat_ref_over_ours_fwd_bwd']:.1f}x ours fwd+bwd, "
         f"{r['ratio_gsplat_ref_over_ours_project_bin']:.0f}x ours proj+bin"),
        (f"dense reference fwd+bwd ({r['dense_n']}, {r['dense_size']}²)", r["dense_ref_fwd_bwd_s"],
         f"{r['ratio_dense_over_ours_small']:.0f}x ours"),
        (f"ours fwd+bwd ({r['dense_n']}, {r['dense_size']}²)", r["ours_small_fwd_bwd_s"], ""),
    ]
    osp = r.get("opensplat_iteration_s")
    ratio = r.get("ratio_opensplat_over_ours_fit_iteration")
    ratio1 = r.get("ratio_opensplat_over_ours_fit_iteration_1thread")
    peer = (f"OpenSplat {osp if osp else r['opensplat_iteration_s_readme']:.2f} s "
            f"({'measured now' if osp else 'README figure'}) / ours: ") if ratio else ""
    rows += [
        ("ours fit iteration (L1+D-SSIM, Adam)", r["ours_fit_iteration_s"],
         f"{r['threads']} threads, wall; " + (f"{peer}{ratio:.1f}x" if ratio else "")),
        ("ours fit iteration, 1 thread", r["ours_fit_iteration_1thread_s"],
         "wall; " + (f"{peer}{ratio1:.1f}x" if ratio1 else "")),
        ("ours fit iteration, CPU time", r["ours_fit_iteration_cpu_s"], "process CPU s, all threads"),
    ]
    if "ours_fit_iteration_opensplat_scene_s" in r:
        ref = r.get("opensplat_iteration_s", r["opensplat_iteration_s_readme"])
        for key, label in (("ours_fit_iteration_opensplat_scene_s", f"{r['threads']} threads, wall"),
                           ("ours_fit_iteration_opensplat_scene_1thread_s", "1 thread, wall")):
            rows.append((f"ours fit iteration, OpenSplat's scene", r[key],
                         f"{label}; OpenSplat {ref:.2f} s / ours: {ref / r[key]:.1f}x"))
    for name, sec, note in rows:
        print(f"  {name:<44} {sec:9.4f} s  {note}")
    print(f"  goal < 1 s: {'met' if r['goal_under_1s'] else 'MISSED'}; "
          f"goal < gsplat ref stages: {'met' if r['goal_under_gsplat_ref'] else 'MISSED'}")
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
