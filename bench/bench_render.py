"""Frame times of the studio raster renderer (moderngl; llvmpipe on CPU machines) and turntable encode time.

    python bench/bench_render.py [--frames 20] [--turntable-frames 60] [--quick]

Measures, in one run on this machine:
  - WaterBottle (shared sample) at 256² and 512², lit (studio IBL, ACES, MSAA 4), full rgb pass read back;
  - the issue-#5 benchmark asset (~100k-triangle textured sphere, `bench_threejs_fps.make_bench_glb`) at 512²,
    lit and unlit, MSAA 4 and 1;
  - a 60-frame 512² WaterBottle turntable MP4 (H.264 via av): total, rendering and encoding seconds.
Each figure is wall time per frame and process CPU time per frame (llvmpipe's worker threads included),
because on a shared machine wall time mostly measures the other tenants. Prints a table and one JSON line.
  - CPU time per frame of three.js (node + Chromium process tree) vs ours on the 100k sphere: the
    fps ratio of `bench/bench_threejs_fps.py` in wall time swings widely on a loaded machine, CPU
    time per frame does not.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_GLTF = REPO.parent / "shared" / "testdata" / "gltf"


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _bench_glb(path: Path) -> Path:
    spec = importlib.util.spec_from_file_location("bench_threejs_fps", REPO / "bench" / "bench_threejs_fps.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_bench_glb(path)


def frame_times(asset, size: int, frames: int, **kw) -> dict[str, float]:
    """Render `frames` orbit views (after 2 warm-up frames); ms per frame, wall and CPU."""
    from studio.renderers.raster import default_renderer
    from studio.renderers.thumbnails import orbit_cameras

    r = default_renderer()
    cams = orbit_cameras(asset, 8, size)
    for i in range(2):
        r.render(asset, cams[i], **kw)
    c0, t0 = _cpu(), time.perf_counter()
    for i in range(frames):
        r.render(asset, cams[i % 8], **kw)
    wall = (time.perf_counter() - t0) / frames * 1000
    cpu = (_cpu() - c0) / frames * 1000
    return {"wall_ms": wall, "cpu_ms": cpu, "fps": 1000.0 / wall}


def turntable_times(asset, path: Path, frames: int, size: int) -> dict[str, float]:
    """Seconds for a whole turntable MP4, and for its two halves measured apart: rendering the
    frames, and H.264-encoding the same frames."""
    from studio.renderers.raster import default_renderer
    from studio.renderers.thumbnails import DEFAULT_BACKGROUND, orbit_cameras, render_turntable, write_mp4

    t0 = time.perf_counter()
    render_turntable(asset, path, frames=frames, size=size)
    total = time.perf_counter() - t0
    r = default_renderer()
    cams = orbit_cameras(asset, frames, size)
    t0 = time.perf_counter()
    imgs = [r.render(asset, cams[i], tone_mapping="aces", background=DEFAULT_BACKGROUND).rgb[0] for i in range(frames)]
    rendering = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_mp4(imgs, path.with_name("encode_only.mp4"))
    encoding = time.perf_counter() - t0
    return {"total_s": total, "render_s": rendering, "encode_s": encoding, "bytes": path.stat().st_size}


def _tree_cpu(proc) -> dict[int, float]:
    """CPU seconds (user + system) of a psutil process and all its descendants, by pid."""
    import psutil

    out = {}
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


def cpu_per_frame_vs_threejs(glb: Path, size: int = 512, frames: tuple[int, int] = (4, 24)) -> dict[str, float]:
    """CPU milliseconds per frame of three.js (node + headless Chromium process tree, SwiftShader) and
    of our renderer (this process, llvmpipe threads included) on the same GLB, cameras, studio
    environment and ACES at size². Each side runs two frame counts and takes the difference, so
    loading, PMREM/prefiltering and start-up are excluded. CPU time, unlike wall time, does not
    depend on how busy a shared machine is."""
    import psutil

    from studio.assets.io import load
    from studio.renderers.environment import default_environment, load_environment, write_hdr

    spec = importlib.util.spec_from_file_location("bench_threejs_fps", REPO / "bench" / "bench_threejs_fps.py")
    fps_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fps_mod)
    th = fps_mod._harness_module()
    cams, near, far = fps_mod.orbit_cameras(fps_mod._bounds_of(glb), size)
    with tempfile.TemporaryDirectory(prefix="studio-bench-env-") as tmp:
        hdr = write_hdr(Path(tmp) / "env.hdr", default_environment().image)
        ref = {}
        with th.ThreeJSHarness() as h:
            tree = psutil.Process(h._proc.pid)
            # warm-up call: shader compilation, JIT and caches happen once, outside the measurement
            h.bench(glb, cams, frames=2, warmup=1, mode="lit", environment=hdr, tone_mapping="aces", near=near, far=far)
            for n in frames:
                before = _tree_cpu(tree)
                h.bench(glb, cams, frames=n, warmup=1, mode="lit", environment=hdr, tone_mapping="aces", near=near, far=far)
                after = _tree_cpu(tree)
                ref[n] = sum(after[p] - before.get(p, 0.0) for p in after)
        env = load_environment(hdr)
    asset = load(glb)
    from studio.renderers.raster import default_renderer

    r = default_renderer()
    for i in range(2):  # warm-up: upload, environment prefilter, shader variants
        r.render(asset, cams[i], environment=env, tone_mapping="aces")
    ours = {}
    for n in frames:
        c0 = _cpu()
        r.render(asset, cams[0], environment=env, tone_mapping="aces")  # setup share, as three.js's call has
        for i in range(n):
            r.render(asset, cams[i % len(cams)], environment=env, tone_mapping="aces")
        ours[n] = _cpu() - c0
    dn = frames[1] - frames[0]
    t_ms = (ref[frames[1]] - ref[frames[0]]) / dn * 1000
    o_ms = (ours[frames[1]] - ours[frames[0]]) / dn * 1000
    return {"threejs_cpu_ms": t_ms, "ours_cpu_ms": o_ms, "cpu_ratio_threejs_over_ours": t_ms / max(o_ms, 1e-9)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--turntable-frames", type=int, default=60)
    ap.add_argument("--quick", action="store_true", help="fewer frames (smoke run)")
    ap.add_argument("--no-threejs", action="store_true", help="skip the CPU-time comparison with three.js")
    args = ap.parse_args(argv)
    frames = 4 if args.quick else args.frames
    tt_frames = 8 if args.quick else args.turntable_frames

    from studio.assets.io import load
    from studio.renderers.raster import default_renderer

    out: dict[str, object] = {"bench": "render"}
    rows = []
    bottle = load(SHARED_GLTF / "WaterBottle" / "WaterBottle.gltf")
    lit = dict(tone_mapping="aces", msaa=4)
    for size in (256, 512):
        r = frame_times(bottle, size, frames, **lit)
        rows.append((f"WaterBottle {size}² lit msaa4", r))
        out[f"waterbottle_{size}"] = r
    with tempfile.TemporaryDirectory(prefix="studio-bench-render-") as tmp:
        sphere = load(_bench_glb(Path(tmp) / "sphere100k.glb"))
        out["sphere_triangles"] = sphere.triangle_count
        for label, kw in (
            ("lit msaa4", dict(tone_mapping="aces", msaa=4)),
            ("lit msaa1", dict(tone_mapping="aces", msaa=1)),
            ("unlit msaa4", dict(lighting="unlit", msaa=4)),
        ):
            r = frame_times(sphere, 512, frames, **kw)
            rows.append((f"sphere {sphere.triangle_count} tris 512² {label}", r))
            out[f"sphere_512_{label.replace(' ', '_')}"] = r
        tt = turntable_times(bottle, Path(tmp) / "turntable.mp4", tt_frames, 512)
        out["turntable_waterbottle_512"] = {**tt, "frames": tt_frames}
        cmp = None
        if not args.no_threejs:
            cmp = cpu_per_frame_vs_threejs(Path(tmp) / "sphere100k.glb", 512, (3, 9) if args.quick else (4, 24))
            out["cpu_vs_threejs_sphere_512"] = cmp
    renderer = str(default_renderer().ctx.info.get("GL_RENDERER", "?"))
    out["gl_renderer"] = renderer
    print(f"studio raster renderer on {renderer}")
    for label, r in rows:
        print(f"  {label:<40} {r['wall_ms']:8.1f} ms/frame wall ({r['fps']:6.2f} fps)  {r['cpu_ms']:8.1f} ms/frame CPU")
    print(
        f"  turntable WaterBottle {tt_frames} frames 512²: {tt['total_s']:.2f} s total "
        f"(render {tt['render_s']:.2f} s, H.264 encode {tt['encode_s']:.2f} s, {tt['bytes'] / 1024:.0f} KiB)"
    )
    if cmp is not None:
        print(
            f"  CPU per frame, 100k-triangle sphere 512² lit ACES MSAA 4: three.js (Chromium/SwiftShader) "
            f"{cmp['threejs_cpu_ms']:.1f} ms, ours {cmp['ours_cpu_ms']:.1f} ms → three.js/ours "
            f"{cmp['cpu_ratio_threejs_over_ours']:.2f} (> 1: ours needs less CPU per frame)"
        )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
