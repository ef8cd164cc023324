"""Load: 50 concurrent clients submit jobs to `python -m studio serve` and poll each job until it
finishes, for 60 s, on loopback only, against a throwaway STUDIO_HOME. Reports errors (any
non-2xx or transport failure), lost jobs (submitted but not in the store or not succeeded after
a bounded drain), p50/p99 latency of submit and poll, and throughput.

The server runs this file's `ECHO` pipeline (a cached stage with a small key space, so about
half the lookups hit, plus an uncached stage that writes the job's result file), registered
through $STUDIO_EXTRA_PIPELINES; nothing bench-specific lives in the studio package.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.pipeline import Pipeline, Stage, param


@dataclass(frozen=True)
class EchoParams:
    text: str = param("hello", "text echoed into the result file")
    bucket: int = param(0, "selects one of a few cached intermediate results", minimum=0, maximum=1000)


def stage_digest(p: EchoParams, inputs: dict[str, Any], ctx) -> dict:
    ctx.progress(0.5, "digesting")
    return {"bucket": p.bucket, "square": p.bucket * p.bucket}


def stage_echo(p: EchoParams, inputs: dict[str, Any], ctx) -> dict:
    path = ctx.out_dir / "echo.json"
    path.write_text(json.dumps({"text": p.text} | inputs["digest"]))
    return {"echo": path}


ECHO = Pipeline(
    "echo",
    EchoParams,
    (Stage("digest", stage_digest, params=("bucket",)), Stage("echo", stage_echo, inputs=("digest",), cache=False)),
    description="load-test toy: echo params into a JSON file",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def run(clients: int = 50, duration_s: float = 60.0, poll_interval_s: float = 0.1, workers: int = 4, drain_s: float = 60.0) -> dict:
    import httpx

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as home:
        env = os.environ | {
            "STUDIO_HOME": home,
            "STUDIO_EXTRA_PIPELINES": str(Path(__file__).resolve()),
            "STUDIO_SUBMIT_RATE": "1000000",  # all clients share 127.0.0.1: lift the per-client limit
        }
        log = open(Path(home) / "server.log", "w")
        server = subprocess.Popen(
            [sys.executable, "-m", "studio", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            end = time.time() + 180
            while True:
                if server.poll() is not None:
                    raise RuntimeError(f"studio serve exited with {server.returncode}: {(Path(home) / 'server.log').read_text()[-2000:]}")
                try:
                    if httpx.get(f"{base}/v1/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.time() > end:
                    raise RuntimeError("studio serve did not become healthy in 180 s")
                time.sleep(0.5)

            lock = threading.Lock()
            submit_lat: list[float] = []
            poll_lat: list[float] = []
            errors: list[str] = []
            submitted: list[str] = []
            finished: dict[str, str] = {}
            stop_at = time.time() + duration_s

            def client(ci: int) -> None:
                with httpx.Client(base_url=base, timeout=30) as c:
                    i = 0
                    while time.time() < stop_at:
                        body = {"pipeline": "echo", "params": {"text": f"client {ci} job {i}", "bucket": (ci + i) % 8}}
                        t0 = time.perf_counter()
                        try:
                            r = c.post("/v1/generate", json=body)
                        except httpx.HTTPError as e:
                            with lock:
                                errors.append(f"submit: {type(e).__name__}: {e}")
                            continue
                        dt = time.perf_counter() - t0
                        with lock:
                            submit_lat.append(dt)
                            if r.status_code != 202:
                                errors.append(f"submit: HTTP {r.status_code} {r.text[:200]}")
                                continue
                            jid = r.json()["id"]
                            submitted.append(jid)
                        i += 1
                        while time.time() < stop_at:  # poll until final (or the window closes)
                            time.sleep(poll_interval_s)
                            t0 = time.perf_counter()
                            try:
                                r = c.get(f"/v1/jobs/{jid}")
                            except httpx.HTTPError as e:
                                with lock:
                                    errors.append(f"poll: {type(e).__name__}: {e}")
                                continue
                            dt = time.perf_counter() - t0
                            with lock:
                                poll_lat.append(dt)
                                if r.status_code != 200:
                                    errors.append(f"poll: HTTP {r.status_code} {r.text[:200]}")
                                    continue
                            state = r.json()["state"]
                            if state in ("succeeded", "failed", "cancelled"):
                                with lock:
                                    finished[jid] = state
                                break

            threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
            t_start = time.time()
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=duration_s + 60)
            elapsed = time.time() - t_start

            # Drain: every submitted job must reach the store's final state "succeeded".
            lost: list[str] = []
            with httpx.Client(base_url=base, timeout=30) as c:
                deadline = time.time() + drain_s
                pending = [j for j in submitted if finished.get(j) is None]
                while pending and time.time() < deadline:
                    still = []
                    for jid in pending:
                        r = c.get(f"/v1/jobs/{jid}")
                        if r.status_code == 200 and r.json()["state"] in ("succeeded", "failed", "cancelled"):
                            finished[jid] = r.json()["state"]
                        elif r.status_code == 404:
                            lost.append(jid)
                        else:
                            still.append(jid)
                    pending = still
                    time.sleep(0.2)
                lost += pending
                counts = c.get("/v1/health").json()["jobs"]
                metrics = c.get("/metrics").text
            not_succeeded = sorted({j for j, s in finished.items() if s != "succeeded"})
            in_store = sum(counts.values())
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
            log.close()

    hit_ratio = next((float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("studio_cache_hit_ratio ")), float("nan"))
    return {
        "clients": clients,
        "duration_s": elapsed,
        "jobs_submitted": len(submitted),
        "jobs_in_store": in_store,
        "jobs_succeeded": sum(1 for s in finished.values() if s == "succeeded"),
        "errors": len(errors),
        "first_errors": errors[:5],
        "lost_jobs": len(lost) + len(not_succeeded) + abs(in_store - len(submitted)),
        "submit_p50_ms": 1e3 * _percentile(submit_lat, 50),
        "submit_p99_ms": 1e3 * _percentile(submit_lat, 99),
        "poll_p50_ms": 1e3 * _percentile(poll_lat, 50),
        "poll_p99_ms": 1e3 * _percentile(poll_lat, 99),
        "jobs_per_s": len(submitted) / elapsed,
        "requests_per_s": (len(submit_lat) + len(poll_lat)) / elapsed,
        "server_cache_hit_ratio": hit_ratio,
    }


if __name__ == "__main__":
    res = run()
    print(f"{'metric':>24} | value")
    print("-" * 40)
    for k, v in res.items():
        print(f"{k:>24} | {v:.2f}" if isinstance(v, float) else f"{k:>24} | {v}")
    sys.exit(0 if res["errors"] == 0 and res["lost_jobs"] == 0 else 1)
