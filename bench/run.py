"""One command for every benchmark: `python bench/run.py [--quick] [--only NAME ...]`.

Each benchmark measures its baseline in the same run and reports ratios plus absolute numbers.
`bench/bench_render.py` (CPU time per frame vs three.js) and each bench_*.py also run on their own.
Results are printed as a table and written to bench/results.json.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name → (module file, kwargs for --quick)
BENCHES = {
    "cache": ("bench_cache.py", {"texture_size": 128, "splats": 5000}),
    "splats": ("bench_splats.py", {"n": 20_000, "reps": 3}),
    "threejs_fps": ("bench_threejs_fps.py", {"frames": 10}),
    "xr_latency": ("bench_xr_latency.py", {"updates": 10, "triangles": 20_000, "splats": 20_000}),
    "fit": ("bench_fit.py", {"opensplat": False, "table": False, "capture": False}),
    "load": ("bench_load.py", {"clients": 50, "duration_s": 20}),
    "feedforward": ("bench_feedforward.py", {"quick": True}),
}


def load(file: str):
    spec = importlib.util.spec_from_file_location(file[:-3], HERE / file)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[file[:-3]] = mod
    spec.loader.exec_module(mod)
    return mod


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (minutes instead of tens of minutes)")
    ap.add_argument("--only", nargs="*", help=f"subset of {sorted(BENCHES)}")
    args = ap.parse_args()
    results: dict[str, dict] = {"_machine": {"python": platform.python_version(), "machine": platform.machine(),
                                              "time": time.strftime("%Y-%m-%d %H:%M:%S")}}
    failed = False
    for name, (file, quick_kw) in BENCHES.items():
        if args.only and name not in args.only:
            continue
        if not (HERE / file).exists():
            continue
        mod = load(file)
        if not hasattr(mod, "run"):
            continue
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            res = mod.run(**(quick_kw if args.quick else {}))
        except Exception:
            traceback.print_exc()
            res = {"error": traceback.format_exc(limit=3)}
            failed = True
        res["_wall_s"] = time.perf_counter() - t0
        results[name] = res
        for k, v in res.items():
            print(f"  {k:>36}: {v:.4g}" if isinstance(v, float) else f"  {k:>36}: {v}")
    (HERE / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {HERE / 'results.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
