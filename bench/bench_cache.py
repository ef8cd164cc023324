"""Stage cache: the demo pipeline cold (every stage runs) vs warm (cache hits only for the
cached stages), in the same process and the same STUDIO_HOME."""
from __future__ import annotations

import resource
import tempfile
import time


def run(texture_size: int = 256, splats: int = 20_000) -> dict:
    from studio.api import Studio
    from studio.pipeline import Pipeline

    with tempfile.TemporaryDirectory() as home:
        st = Studio(home)
        demo = st.runner.pipelines["demo"]
        # Time only the cached stages (export writes files every run by design).
        cached_only = Pipeline("demo_cached", demo.params_type, tuple(s for s in demo.stages if s.cache))
        st.runner.pipelines["demo_cached"] = cached_only
        params = {"texture_size": texture_size, "splats": splats}
        t0 = time.perf_counter()
        j1 = st.run("demo_cached", params)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        j2 = st.run("demo_cached", params)
        warm = time.perf_counter() - t0
        assert j1.state == j2.state == "succeeded", (j1.error, j2.error)
        t0 = time.perf_counter()
        j3 = st.run("demo", params | {"turntable_frames": 24})
        full = time.perf_counter() - t0
        assert j3.state == "succeeded", j3.error
    return {
        "cache_cold_s": cold,
        "cache_warm_s": warm,
        "cache_warm_over_cold": warm / cold,
        "demo_rerun_export_only_s": full,  # every cached stage hits; only export (files, previews) runs
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }


if __name__ == "__main__":
    for k, v in run().items():
        print(f"{k:>24}: {v:.4f}")
