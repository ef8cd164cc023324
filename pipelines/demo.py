"""`studio demo`: the main job on the built-in procedural sample (needs no data, no weights)."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from studio.assets import Asset
from studio.assets.io import save
from studio.assets.validate import ValidationReport, validate

from .procedural import SampleParams, sample_asset, surface_splats

Progress = Callable[[float, str], None]


@dataclass
class DemoResult:
    """Files written (name → path), their validation reports, and stage timings in seconds."""

    files: dict[str, Path] = field(default_factory=dict)
    reports: list[ValidationReport] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.reports)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "files": {k: str(v) for k, v in self.files.items()},
            "validation": [asdict(r) | {"ok": r.ok} for r in self.reports],
            "timings_s": self.timings,
        }


def run_demo(out: str | Path, progress: Progress | None = None, params: SampleParams = SampleParams()) -> DemoResult:
    """Build the procedural sample, write GLB + USDZ + splat PLY into `out`, validate each."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = progress or (lambda f, m: None)
    result = DemoResult()

    def stage(name: str, frac: float):
        report(frac, name)
        return time.perf_counter()

    t = stage("building procedural sample", 0.0)
    asset = sample_asset(params)
    splats = surface_splats(asset, count=20000, seed=0)
    result.timings["build"] = time.perf_counter() - t

    steps = [
        ("glb", out / "sample.glb", asset),
        ("usdz", out / "sample.usdz", asset),
        ("splat_ply", out / "sample_splats.ply", Asset(splats=splats, metadata=asset.metadata)),
    ]
    for i, (name, path, a) in enumerate(steps):
        t = stage(f"writing {path.name}", 0.1 + 0.8 * i / len(steps))
        save(a, path)
        result.timings[f"write_{name}"] = time.perf_counter() - t
        t = stage(f"validating {path.name}", 0.1 + 0.8 * (i + 0.5) / len(steps))
        result.reports.append(validate(path))
        result.timings[f"validate_{name}"] = time.perf_counter() - t
        result.files[name] = path
    report(1.0, "demo done")
    return result
