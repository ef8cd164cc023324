"""CPU Gaussian fit benchmarks (issue #6), all measured in one run:

1. fit iteration, ours vs OpenSplat (../shared/peers/opensplat, built once into a cache outside the
   repo: $STUDIO_BENCH_CACHE or ~/.cache/studio-bench) on the same 50k-Gaussian 256² buddha scene
   (its make_scene.py). Per-iteration time = (wall(n=120) − wall(n=20)) / 100 for both, as the
   OpenSplat README prescribes (no densification before step 500 there; strategy "none" here).
2. the demo-sized job (procedural asset, 12 training views on a helix, 4 held-out) stage by stage in a fresh
   process: render views, fit, mesh, bake, GLB export; wall time per stage and peak RSS.
3. quality table: procedural sphere + five glTF samples rendered as ground truth (12 training views
   on a helix from -35° to 60° elevation, 4 held-out views at -15°/30° that no training view shares,
   192²; the angle from each to its nearest training view is printed), fit from depth-initialised points (1200 iterations
   with the 2DGS depth–normal loss), meshed from median disc depth; held-out PSNR (splats), Chamfer (m and % of the bbox
   diagonal), F-score@1 %, normal consistency.
4. the buddha photo capture (13 real photos, shipped poses): held-out PSNR on 2 views against a
   flat-colour guess, train PSNR, stage timings.

`python bench/bench_fit.py` prints a table and one JSON line; `run() -> dict` for bench/run.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PEER = REPO.parent / "shared" / "peers" / "opensplat"
if not PEER.is_dir():
    PEER = Path("/work/shared/peers/opensplat")
TESTDATA = PEER.parents[1] / "testdata"
CACHE = Path(os.environ.get("STUDIO_BENCH_CACHE", Path.home() / ".cache" / "studio-bench"))


def opensplat_binary() -> Path:
    """Build OpenSplat (CPU) into the cache once (~3 min on 2 cores); returns the executable."""
    exe = CACHE / "opensplat" / "opensplat"
    if not exe.exists():
        (CACHE / "opensplat").mkdir(parents=True, exist_ok=True)
        subprocess.run(["bash", str(PEER / "build.sh"), sys.executable, str(CACHE / "opensplat")], check=True,
                       stdout=subprocess.DEVNULL)
    return exe


def scene(n: int = 50_000) -> Path:
    out = CACHE / f"opensplat_scene_{n}"
    if not (out / "sparse" / "0" / "points3D.bin").exists():
        subprocess.run([sys.executable, str(PEER / "make_scene.py"), str(out), str(n)], check=True,
                       stdout=subprocess.DEVNULL)
    return out


def _wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def opensplat_iteration(scene_dir: Path, out: Path) -> float:
    exe = str(opensplat_binary())
    w = {}
    for n in (20, 120):
        w[n] = _wall([exe, str(scene_dir), "--cpu", "-n", str(n), "--num-downscales", "0", "-o", str(out / f"os_{n}.ply")])
    return (w[120] - w[20]) / 100


_OURS = r"""
import sys, time, json
from studio.pipelines.capture import capture_to_views
from studio.pipelines.splat_fit import FitParams, fit_splats
v, pts, cols, _ = capture_to_views(sys.argv[1], max_size=None)
n = int(sys.argv[2])
t = time.perf_counter()
s, _ = fit_splats(v, FitParams(iterations=n, strategy="none", sh_degree=3, sh_interval=1000), init_points=pts, init_colors=cols)
print(json.dumps({"wall": time.perf_counter() - t, "gaussians": len(s)}))
"""


def ours_iteration(scene_dir: Path) -> tuple[float, int]:
    w, g = {}, 0
    for n in (20, 120):
        r = subprocess.run([sys.executable, "-c", _OURS, str(scene_dir), str(n)], check=True, capture_output=True, text=True)
        d = json.loads(r.stdout.strip().splitlines()[-1])
        w[n], g = d["wall"], d["gaussians"]
    return (w[120] - w[20]) / 100, g


_DEMO = r"""
import json, resource, sys, time, tempfile
from pathlib import Path
t0 = time.perf_counter(); T = {}
def lap(k):
    global t0
    T[k] = round(time.perf_counter() - t0, 2); t0 = time.perf_counter()
from studio.pipelines.procedural import sample_asset, SampleParams
from studio.pipelines.views_render import held_out_rig, render_views, training_rig
from studio.pipelines.splat_fit import FitParams, fit_splats
from studio.pipelines.reconstruct import MeshingParams, bake_asset, depth_init_points, mesh_from_splats
from studio.pipelines.evaluate import evaluate
from studio.assets.io import save
size, iters = int(sys.argv[1]), int(sys.argv[2])
lap("imports")
a = sample_asset(SampleParams(texture_size=512))
train = training_rig(a, 12, size)
tv, td = render_views(a, train)
hv, _ = render_views(a, held_out_rig(a, size))
pts, cols = depth_init_points(tv, td)
lap("render_views")
fit = FitParams.for_iterations(iters, lr_means=2e-4)
s, _ = fit_splats(tv, fit, init_points=pts, init_colors=cols)
lap("fit")
mp = MeshingParams(extra_views=16, texture_size=512, target_faces=8000)
dense, low = mesh_from_splats(s, train, mp)
lap("mesh")
asset, _ = bake_asset(dense, low, tv, s, mp)
lap("bake")
d = Path(tempfile.mkdtemp())
save(asset, d / "demo.glb")
lap("export_glb")
m = evaluate(asset, hv, gt_mesh=a, samples=50_000)
lap("evaluate")
print(json.dumps({"stages_s": T, "splats": len(s), "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                  "psnr_splats": m["splats"]["psnr"], "psnr_mesh": m["mesh"]["psnr"],
                  "chamfer_cm": m["surface"]["chamfer"] * 100, "fscore": m["surface"]["fscore"]}))
"""


def demo_job(size: int = 256, iterations: int = 400) -> dict[str, Any]:
    r = subprocess.run([sys.executable, "-c", _DEMO, str(size), str(iterations)], check=True, capture_output=True, text=True)
    d = json.loads(r.stdout.strip().splitlines()[-1])
    d["total_s"] = round(sum(d["stages_s"].values()), 2)
    return d


_QUALITY = r"""
import json, sys, time
import numpy as np
from studio.assets.io import load
from studio.pipelines.procedural import sample_asset, SampleParams
from studio.pipelines.views_render import held_out_rig, nearest_view_deg, render_views, training_rig
from studio.pipelines.splat_fit import FitParams, fit_splats
from studio.pipelines.reconstruct import MeshingParams, depth_init_points, mesh_from_splats
from studio.pipelines.evaluate import evaluate
name, size, iters = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
a = sample_asset(SampleParams(texture_size=256)) if name == "procedural" else load(name)
train = training_rig(a, 12, size)
tv, td = render_views(a, train)
hv, _ = render_views(a, held_out_rig(a, size))
pts, cols = depth_init_points(tv, td)
t = time.perf_counter()
fit = FitParams.for_iterations(iters, lr_means=2e-4, normal_lambda=0.05)
s, _ = fit_splats(tv, fit, init_points=pts, init_colors=cols)
tf = time.perf_counter() - t
dense, _ = mesh_from_splats(s, train, MeshingParams(extra_views=16))
gt = [m for m in a.meshes]
from studio.assets import Asset
m = evaluate(Asset(meshes=[dense], splats=s), hv, gt_mesh=Asset(meshes=gt), samples=50_000)
print(json.dumps({"psnr": m["splats"]["psnr"], "chamfer_cm": m["surface"]["chamfer"] * 100,
                  "chamfer_pct_diag": m["surface"]["chamfer_fraction"] * 100, "fscore": m["surface"]["fscore"],
                  "normal_consistency": m["surface"]["normal_consistency"], "fit_s": tf,
                  "psnr_per_view": m["splats"]["psnr_per_view"],
                  "nearest_train_view_deg": nearest_view_deg(hv.cameras, train).round(1).tolist()}))
"""

_BUDDHA = r"""
import json, sys, time
import numpy as np
from studio.assets import Views
from studio.assets.colour import linear_to_srgb
from studio.pipelines.capture import capture_to_views
from studio.pipelines.metrics import psnr
from studio.pipelines.reconstruct import MeshingParams, mesh_from_splats
from studio.pipelines.splat_fit import FitParams, fit_splats, render_splats
root, size, it = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
T = {}; t = time.perf_counter()
views, pts, cols, rep = capture_to_views(root, max_size=size)
T["views"] = time.perf_counter() - t
hold = [4, 8]  # the two views with a training view within 20° (tests/test_capture.py)
train = [i for i in range(len(views)) if i not in hold]
tv = Views(views.images[train], views.cameras[train]); hv = linear_to_srgb(views.images[hold])
fit = FitParams.for_iterations(it, background=(0, 0, 0), init_random=20_000, init_shell=5_000)
t = time.perf_counter(); s, _ = fit_splats(tv, fit, pts, cols); T["fit"] = time.perf_counter() - t
rgb, _, _ = render_splats(s, views.cameras[hold], background=(0, 0, 0))
flat = psnr(np.broadcast_to(linear_to_srgb(tv.images).mean((0, 1, 2)), hv.shape), hv)
t = time.perf_counter(); dense, low = mesh_from_splats(s, tv.cameras, MeshingParams(target_faces=20_000, isolate_object=True)); T["mesh"] = time.perf_counter() - t
print(json.dumps({"size": [views.cameras.width, views.cameras.height], "iterations": it, "train_views": len(train),
                  "psnr_held_out": psnr(rgb, hv), "psnr_flat_colour": flat,
                  "psnr_train": psnr(render_splats(s, tv.cameras, background=(0, 0, 0))[0], linear_to_srgb(tv.images)),
                  "splats": len(s), "mesh_faces": len(low.faces), "mesh_watertight": bool(low.geometry.is_watertight),
                  "stages_s": {k: round(v, 2) for k, v in T.items()}}))
"""


def buddha(size: int = 320, iterations: int = 1000) -> dict[str, Any]:
    """The real 13-photo buddha capture (shipped poses): held-out PSNR on 2 views, timings."""
    r = subprocess.run([sys.executable, "-c", _BUDDHA, str(TESTDATA / "capture" / "buddha"), str(size), str(iterations)],
                       capture_output=True, text=True)
    return json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else {"error": r.stderr[-400:]}


SAMPLES = ("WaterBottle/WaterBottle.gltf", "CesiumMilkTruck/CesiumMilkTruck.glb", "BoxVertexColors/BoxVertexColors.glb",
           "Box/Box.glb", "MultiUVTest/MultiUVTest.gltf")


def quality(size: int = 192, iterations: int = 1200) -> dict[str, dict]:
    rows = {}
    for name in ("procedural",) + SAMPLES:
        path = name if name == "procedural" else str(TESTDATA / "gltf" / name)
        if name != "procedural" and not Path(path).exists():
            cands = sorted((TESTDATA / "gltf" / name.split("/")[0]).rglob("*.gl*"))
            if not cands:
                continue
            path = str(cands[0])
        r = subprocess.run([sys.executable, "-c", _QUALITY, path, str(size), str(iterations)], capture_output=True, text=True)
        key = name.split("/")[0]
        rows[key] = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else {"error": r.stderr[-400:]}
    return rows


def run(opensplat: bool = True, demo: bool = True, table: bool = True, capture: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {}
    work = CACHE / "fit_runs"
    work.mkdir(parents=True, exist_ok=True)
    if opensplat:
        sc = scene()
        ours, g = ours_iteration(sc)
        theirs = opensplat_iteration(sc, work)
        out.update(ours_s_per_iter=ours, opensplat_s_per_iter=theirs, speedup_vs_opensplat=theirs / ours, gaussians=g)
    if demo:
        out["demo"] = demo_job()
    if table:
        out["quality"] = quality()
    if capture:
        out["buddha"] = buddha()
    return out


def _print(res: dict[str, Any]) -> None:
    if "ours_s_per_iter" in res:
        print(f"fit iteration, 50k Gaussians 256²: ours {res['ours_s_per_iter']:.3f} s, OpenSplat "
              f"{res['opensplat_s_per_iter']:.3f} s → {res['speedup_vs_opensplat']:.2f}× faster")
    if "demo" in res:
        d = res["demo"]
        print("demo job stages (s):", d["stages_s"], f"total {d['total_s']} s, peak RSS {d['peak_rss_gb']:.2f} GB")
    if "quality" in res:
        print(f"{'asset':>18} {'PSNR dB':>8} {'worst view':>10} {'Chamfer cm':>10} {'% diag':>7} {'F@1%':>6} {'NC':>6}"
              "  held-out views' nearest training view (deg)")
        for k, r in res["quality"].items():
            if "error" in r:
                print(f"{k:>18} error: {r['error'][-200:]}")
                continue
            print(f"{k:>18} {r['psnr']:8.2f} {min(r['psnr_per_view']):10.2f} {r['chamfer_cm']:10.3f} {r['chamfer_pct_diag']:7.2f} "
                  f"{r['fscore']:6.3f} {r['normal_consistency']:6.3f}  {r['nearest_train_view_deg']}")
    if "buddha" in res:
        print("buddha capture:", res["buddha"])


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    keys = ("opensplat", "demo", "table", "capture")
    ap.add_argument("--skip", nargs="*", default=[], choices=keys)
    a = ap.parse_args()
    res = run(**{k: k not in a.skip for k in keys})
    _print(res)
    print(json.dumps(res, default=str))
