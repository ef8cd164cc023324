"""Frames per second of three.js in headless Chromium (SwiftShader WebGL2 here) on one GLB.

    python bench/bench_threejs_fps.py [--glb FILE] [--size 512] [--frames 60] [--mode lit|unlit] [--no-ours]

Without --glb it builds the issue-#5 benchmark asset: a ~100k-triangle UV sphere with a 512² texture
(`make_bench_glb`). Each frame renders one of 8 orbit views, then gl.finish() and a 1-pixel
readPixels, so the (software) GPU work is inside the timing. Lit mode lights with the studio's
built-in environment through PMREM, ACES tone mapping. Unless --no-ours, the studio raster
renderer (studio.renderers.raster) draws the same GLB, cameras, environment and tone mapping in
the same run (each frame read back to the CPU) and the ratio ours/three.js is printed.
Prints table lines and one JSON line.

`threejs_fps` and `make_bench_glb` are importable (by path) for the renderer-vs-three.js ratio bench.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _harness_module():
    spec = importlib.util.spec_from_file_location("threejs_harness", REPO / "tests" / "threejs_harness.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("threejs_harness", mod)
    spec.loader.exec_module(mod)
    return mod


def make_bench_glb(path: str | Path, triangles: int = 100_000, texture_size: int = 512) -> Path:
    """Write a textured UV sphere of about `triangles` triangles (radius 1 m, PBR base-colour
    checker texture texture_size², metallic 0, roughness 0.5) as GLB. Returns the path."""
    import trimesh
    from PIL import Image

    n = max(int(round(np.sqrt(triangles / 4))), 2)  # trimesh's uv_sphere(count=[n+1]*2) has ~4n² faces
    sphere = trimesh.creation.uv_sphere(radius=1.0, count=[n + 1, n + 1])
    v = sphere.vertices / np.linalg.norm(sphere.vertices, axis=1, keepdims=True)
    uv = np.stack([np.arctan2(v[:, 2], v[:, 0]) / (2 * np.pi) + 0.5, np.arccos(np.clip(v[:, 1], -1, 1)) / np.pi], 1)
    yy, xx = np.mgrid[0:texture_size, 0:texture_size]
    cell = max(texture_size // 16, 1)
    checker = ((xx // cell + yy // cell) % 2).astype(np.float64)
    img = np.stack([0.2 + 0.7 * checker, 0.3 + 0.4 * (xx / texture_size), 0.8 - 0.6 * checker], -1)
    tex = Image.fromarray((img * 255).astype(np.uint8))
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=tex, metallicFactor=0.0, roughnessFactor=0.5)
    sphere.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    path = Path(path)
    sphere.export(path)
    return path


def orbit_cameras(bounds: np.ndarray, size: int, n: int = 8):
    """n cameras on a ring around the bounds centre, 20° above it, framing the bounding sphere."""
    from studio.assets.cameras import Cameras

    centre = bounds.mean(0)
    radius = float(np.linalg.norm(bounds[1] - bounds[0])) / 2
    dist = radius / np.sin(np.radians(20.0)) * 1.05
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    el = np.radians(20.0)
    eyes = centre + dist * np.stack([np.cos(el) * np.sin(ang), np.full(n, np.sin(el)), np.cos(el) * np.cos(ang)], 1)
    cams = Cameras.look_at(eyes, centre, fov_y_deg=40.0, width=size, height=size)
    return cams, max(dist - 1.5 * radius, 1e-3 * dist), dist + 1.5 * radius


def _bounds_of(glb: Path) -> np.ndarray:
    import trimesh

    return np.asarray(trimesh.load(glb, force="scene").bounds, dtype=np.float64)


def threejs_fps(
    glb: str | Path,
    size: int = 512,
    frames: int = 60,
    warmup: int = 5,
    mode: str = "lit",
    tone_mapping: str = "aces",
    environment_hdr: str | Path | None = None,
) -> dict[str, Any]:
    """three.js fps on `glb` at size² in headless Chromium. Returns the harness's bench result
    {"fps", "frames", "seconds", "triangles", "revision", "renderer"} plus "startup_s" (browser start)."""
    th = _harness_module()
    glb = Path(glb)
    cams, near, far = orbit_cameras(_bounds_of(glb), size)
    with tempfile.TemporaryDirectory(prefix="studio-bench-") as tmp:
        if mode == "lit" and environment_hdr is None:
            from studio.renderers.environment import default_environment, write_hdr

            environment_hdr = write_hdr(Path(tmp) / "env.hdr", default_environment().image)
        t0 = time.perf_counter()
        with th.ThreeJSHarness() as h:
            startup = time.perf_counter() - t0
            res = h.bench(glb, cams, frames=frames, warmup=warmup, mode=mode, environment=environment_hdr,
                          tone_mapping=tone_mapping, near=near, far=far)
            res["browser"] = h.browser
    res["startup_s"] = startup
    res.update(size=size, mode=mode, glb=str(glb))
    return res


def ours_fps(
    glb: str | Path,
    size: int = 512,
    frames: int = 60,
    warmup: int = 5,
    mode: str = "lit",
    tone_mapping: str = "aces",
    environment_hdr: str | Path | None = None,
) -> dict[str, Any]:
    """The studio raster renderer's fps on the same GLB, orbit cameras and settings as `threejs_fps`
    (one camera per frame, colour pass read back). Returns {"fps", "frames", "seconds", "renderer"}."""
    from studio.assets.io import load
    from studio.renderers import raster
    from studio.renderers.environment import default_environment, load_environment

    asset = load(glb)
    cams, _near, _far = orbit_cameras(_bounds_of(Path(glb)), size)
    env = load_environment(environment_hdr) if environment_hdr else default_environment()
    lighting = "ibl" if mode == "lit" else "unlit"
    r = raster.default_renderer()

    def frame(i: int) -> None:
        r.render(asset, cams[i % len(cams)], environment=env, lighting=lighting, tone_mapping=tone_mapping)

    for i in range(warmup):
        frame(i)
    t0 = time.perf_counter()
    for i in range(frames):
        frame(i)
    seconds = time.perf_counter() - t0
    info = getattr(r.ctx, "info", {}) or {}
    return {"fps": frames / seconds, "frames": frames, "seconds": seconds,
            "renderer": str(info.get("GL_RENDERER", "moderngl"))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--glb", type=Path, help="model to draw (default: generated 100k-triangle textured sphere)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--mode", choices=("lit", "unlit"), default="lit")
    ap.add_argument("--triangles", type=int, default=100_000, help="size of the generated model")
    ap.add_argument("--no-ours", action="store_true", help="measure three.js only")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="studio-bench-glb-") as tmp:
        glb = args.glb or make_bench_glb(Path(tmp) / "bench_sphere.glb", args.triangles)
        env_hdr = None
        if args.mode == "lit":
            from studio.renderers.environment import default_environment, write_hdr

            env_hdr = write_hdr(Path(tmp) / "env.hdr", default_environment().image)
        res = threejs_fps(glb, args.size, args.frames, args.warmup, args.mode, environment_hdr=env_hdr)
        ours = None if args.no_ours else ours_fps(glb, args.size, args.frames, args.warmup, args.mode,
                                                  environment_hdr=env_hdr)
    print(f"three.js r{res['revision']} in Chromium {res['browser']} ({res['renderer']}): "
          f"{res['fps']:.2f} fps at {args.size}² over {res['frames']} frames, {res['triangles']} triangles/frame, "
          f"{args.mode}; browser start {res['startup_s']:.2f} s")
    out = {"bench": "threejs_fps", "threejs": res}
    if ours is not None:
        ratio = ours["fps"] / res["fps"]
        print(f"studio raster ({ours['renderer']}): {ours['fps']:.2f} fps, same GLB/cameras/settings")
        print(f"ratio ours/three.js: {ratio:.2f} (goal >= 1)")
        out.update(ours=ours, ratio=ratio)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def run(size: int = 512, frames: int = 30, triangles: int = 100_000) -> dict[str, Any]:
    """For bench/run.py: our renderer vs three.js on the same textured 100k-triangle GLB, same run."""
    with tempfile.TemporaryDirectory(prefix="studio-bench-glb-") as tmp:
        from studio.renderers.environment import default_environment, write_hdr

        glb = make_bench_glb(Path(tmp) / "bench_sphere.glb", triangles)
        env_hdr = write_hdr(Path(tmp) / "env.hdr", default_environment().image)
        three = threejs_fps(glb, size, frames, 3, "lit", environment_hdr=env_hdr)
        ours = ours_fps(glb, size, frames, 3, "lit", environment_hdr=env_hdr)
    return {"threejs_fps": three["fps"], "ours_fps": ours["fps"], "ours_over_threejs": ours["fps"] / three["fps"],
            "triangles": three["triangles"], "size": size}
