"""WebXR client in the emulated headset: stream-delta latency and frame times.

    python bench/bench_xr_latency.py [--updates 50] [--triangles 100000] [--splats 200000] [--quick]

Runs `studio serve` (temporary STUDIO_HOME), pushes the procedural sample re-tessellated to about
`--triangles` triangles, opens /xr/?emulate=1&probe=1 in headless Debian Chromium (SwiftShader
WebGL2, iwer Quest 3 in stereo) and enters immersive-vr.

- latency: `--updates` material edits (POST /v1/scene/<id>/material, one at a time). Each delta
  carries the server's broadcast time `t`; the client records the end of the first XR frame
  that drew it (after a 1-pixel readPixels, so the GPU has finished). Latency = shown - t on
  one machine's clock: median and p95; split into stream (t → message received) and frame
  (received → drawn).
- frame time: XR frame interval (rAF cadence) and render time (three.js render + GPU finish)
  over ~3 s, first with the mesh alone, then with `--splats` Gaussian splats (Spark) alone.

Numbers are for a software rasteriser on a shared CPU, not a headset GPU. Prints a table and one
JSON line; `run() -> dict` returns the same figures for bench/run.py.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--use-angle=swiftshader",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
        "--ignore-gpu-blocklist"]


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs, dtype=float), q)) if xs else float("nan")


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST")
    return json.load(urllib.request.urlopen(req, timeout=60))


def _push(url: str, path: Path) -> str:
    sys.path.insert(0, str(REPO))
    from studio.xr_push import push

    return push(path, server=url, timeout=300)


def _push_replace(url: str, path: Path, asset_id: str) -> str:
    from studio.xr_push import push

    return push(path, server=url, replace=asset_id, timeout=300)


def _sample_glb(path: Path, triangles: int) -> int:
    from studio.assets.io import save
    from studio.pipelines.procedural import SampleParams, sample_asset

    # UV sphere: about 2 * segments * rings triangles, segments = 2 * rings
    rings = max(8, int(round((triangles / 4) ** 0.5)))
    asset = sample_asset(SampleParams(segments=2 * rings, rings=rings, texture_size=256))
    save(asset, path)
    return asset.triangle_count


def _splat_ply(path: Path, n: int) -> None:
    from studio.assets.asset import Asset
    from studio.assets.io import save
    from studio.assets.splats import GaussianSplats

    rng = np.random.default_rng(0)
    means = rng.normal(0, 0.15, (n, 3)) + [0.0, 0.3, 0.0]
    s = GaussianSplats(means=means, quats=rng.normal(size=(n, 4)), log_scales=np.full((n, 3), np.log(0.006)),
                       opacity_logits=np.full(n, 1.0), sh=rng.normal(0, 1, (n, 1, 3)))
    save(Asset(splats=s), path)


def _frame_stats(page, seconds: float, min_frames: int = 6, timeout: float = 180.0) -> dict:
    """XR frame intervals and render times over `seconds`, or until `min_frames` frames (slow scenes)."""
    page.evaluate("window.__xr.frameIntervals.length = 0; window.__xr.renderMs.length = 0")
    t0 = time.perf_counter()
    time.sleep(seconds)
    while page.evaluate("window.__xr.frameIntervals.length") < min_frames and time.perf_counter() - t0 < timeout:
        time.sleep(0.5)
    iv = page.evaluate("window.__xr.frameIntervals.slice()")
    rm = page.evaluate("window.__xr.renderMs.slice()")
    return {"frames": len(iv), "interval_ms_median": statistics.median(iv) if iv else float("nan"),
            "interval_ms_p95": _pct(iv, 95), "render_ms_median": statistics.median(rm) if rm else float("nan"),
            "render_ms_p95": _pct(rm, 95), "fps": 1000.0 / statistics.median(iv) if iv else 0.0}


def _latency(page, url: str, asset_id: str, updates: int) -> dict:
    """`updates` material deltas one after another; ms from broadcast to the first XR frame drawn with it."""
    lat, stream, frame = [], [], []
    for i in range(updates):
        colour = [(i * 0.37) % 1.0, 0.5, 1.0 - (i * 0.37) % 1.0, 1.0]
        seq = _post(f"{url}/v1/scene/{asset_id}/material", {"base_color": colour})["seq"]
        page.wait_for_function("s => window.__xr.applied.some(a => a.seq === s && a.xr)", arg=seq, timeout=30_000)
        a = page.evaluate("s => window.__xr.applied.find(a => a.seq === s)", seq)
        lat.append(a["shown"] - a["sent"])
        stream.append(a["recv"] - a["sent"])
        frame.append(a["shown"] - a["recv"])
    return {"median": statistics.median(lat), "p95": _pct(lat, 95), "max": max(lat),
            "stream_median": statistics.median(stream), "frame_median": statistics.median(frame)}


def run(updates: int = 50, triangles: int = 100_000, splats: int = 200_000, width: int = 1280, height: int = 640) -> dict:
    """Figures as a dict (milliseconds); see the module doc."""
    from playwright.sync_api import sync_playwright

    if not (REPO / "xr" / "dist" / "index.html").is_file():
        raise RuntimeError("xr/dist is not built: run `npm ci` in xr/")
    home = Path(tempfile.mkdtemp(prefix="bench_xr_"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = open(home / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "studio", "serve", "--port", str(port), "--workers", "1"],
                            env=dict(os.environ, STUDIO_HOME=str(home)), stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    out: dict = {"updates": updates, "viewport": [width, height], "device": "iwer Quest 3 stereo, Chromium SwiftShader"}
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url + "/v1/health", timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError((home / "serve.log").read_text()[-2000:])
                time.sleep(0.5)
        light = home / "light.glb"
        out["light_triangles"] = _sample_glb(light, 5_000)
        mesh_id = _push(url, light)
        glb = home / "mesh.glb"
        out["triangles"] = _sample_glb(glb, triangles)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url + "/xr/?emulate=1&probe=1")
            page.wait_for_function("window.__xr && window.__xr.ready", timeout=120_000)
            page.evaluate("""() => { const d = window.__xrDevice; const p = -0.45;
                d.quaternion.set(Math.sin(p / 2), 0, 0, Math.cos(p / 2)); }""")
            page.evaluate("window.__xr.enterVR()")
            page.wait_for_function("window.__xr.xrFrames > 20", timeout=60_000)
            out["latency_light_ms"] = _latency(page, url, mesh_id, updates)
            seq = json.loads(urllib.request.urlopen(f"{url}/v1/scene", timeout=30).read())["seq"]
            _push_replace(url, glb, mesh_id)
            page.wait_for_function("s => window.__xr.applied.some(a => a.seq > s && a.xr)", arg=seq, timeout=120_000)
            page.wait_for_function("n => window.__xr.xrFrames > n", arg=page.evaluate("window.__xr.xrFrames") + 10, timeout=120_000)
            out["mesh_frame"] = _frame_stats(page, 3.0)

            out["latency_ms"] = _latency(page, url, mesh_id, updates)

            if splats:
                ply = home / "splats.ply"
                _splat_ply(ply, splats)
                _post(f"{url}/v1/scene/{mesh_id}/visibility", {"visible": False})
                t0 = time.perf_counter()
                sid = _push(url, ply)
                page.wait_for_function("id => window.__xr.assetIds().includes(id)", arg=sid, timeout=300_000)
                out["splat_load_s"] = time.perf_counter() - t0
                page.wait_for_function("n => window.__xr.xrFrames > n", arg=page.evaluate("window.__xr.xrFrames") + 3, timeout=300_000)
                out["splats"] = splats
                out["splat_frame"] = _frame_stats(page, 3.0)
            out["client_errors"] = page.evaluate("window.__xr.errors")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)
    return out


def table(r: dict) -> str:
    lines = [f"WebXR client, {r['device']}, {r['viewport'][0]}x{r['viewport'][1]} (both eyes)",
             f"{'measure':44s} {'median':>9s} {'p95':>9s}"]
    for key, tri in (("latency_light_ms", r["light_triangles"]), ("latency_ms", r["triangles"])):
        L = r[key]
        lines.append(f"{'delta → XR frame, %d tris (ms, n=%d)' % (tri, r['updates']):44s} {L['median']:9.1f} {L['p95']:9.1f}")
        lines.append(f"{'  of which stream (send → received)':44s} {L['stream_median']:9.1f} {'':>9s}")
        lines.append(f"{'  of which frame (received → drawn)':44s} {L['frame_median']:9.1f} {'':>9s}")
    for key, label in (("mesh_frame", f"{r['triangles']} triangles"), ("splat_frame", f"{r.get('splats', 0)} splats")):
        if key in r:
            f = r[key]
            lines.append(f"{label + ' frame interval (ms)':44s} {f['interval_ms_median']:9.1f} {f['interval_ms_p95']:9.1f}   ({f['fps']:.1f} fps)")
            lines.append(f"{label + ' render + GPU finish (ms)':44s} {f['render_ms_median']:9.1f} {f['render_ms_p95']:9.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--updates", type=int, default=50)
    ap.add_argument("--triangles", type=int, default=100_000)
    ap.add_argument("--splats", type=int, default=200_000)
    ap.add_argument("--quick", action="store_true", help="10 updates, 20k triangles, 20k splats")
    a = ap.parse_args(argv)
    if a.quick:
        a.updates, a.triangles, a.splats = 10, 20_000, 20_000
    r = run(a.updates, a.triangles, a.splats)
    print(table(r))
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
