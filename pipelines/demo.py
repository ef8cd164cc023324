"""The `demo` pipeline: the main job on the built-in procedural sample (needs no data, no weights).

Stages: sample (procedural asset + surface splats, cached) → export (GLB + USDZ + splat PLY,
each validated; writes the job's files).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from studio.assets import Asset
from studio.assets.io import save
from studio.assets.validate import validate
from studio.pipeline import Pipeline, Stage, StageContext, param

from .procedural import SampleParams, sample_asset, surface_splats


@dataclass(frozen=True)
class DemoParams:
    texture_size: int = param(512, "procedural texture size in pixels", minimum=16, maximum=4096)
    splats: int = param(20000, "Gaussian splats sampled on the surface", minimum=1, maximum=2_000_000)
    seed: int = param(0, "random seed")
    turntable_frames: int = param(48, "frames of the turntable video", minimum=1, maximum=720)
    out: str = param("", "folder for the results (default: the job's folder)")


def stage_sample(p: DemoParams, inputs: dict[str, Any], ctx: StageContext) -> Asset:
    """Procedural asset with every PBR map, plus splats sampled from its surface."""
    ctx.progress(0.0, "building procedural sample")
    asset = sample_asset(SampleParams(texture_size=p.texture_size))
    ctx.progress(0.5, "sampling surface splats")
    asset.splats = surface_splats(asset, count=p.splats, seed=p.seed)
    asset.metadata.seed = p.seed
    return asset


def stage_export(p: DemoParams, inputs: dict[str, Any], ctx: StageContext) -> dict[str, Path]:
    """Write sample.glb, sample.usdz and sample_splats.ply, validate each (validation.json), and
    render a thumbnail PNG and a turntable MP4 of the asset (meshes and splats)."""
    asset: Asset = inputs["sample"]
    out = Path(p.out) if p.out else ctx.out_dir
    mesh_only = Asset(meshes=asset.meshes, metadata=asset.metadata)
    splats_only = Asset(splats=asset.splats, metadata=asset.metadata)
    targets = [("glb", out / "sample.glb", mesh_only), ("usdz", out / "sample.usdz", mesh_only),
               ("splat_ply", out / "sample_splats.ply", splats_only)]
    files: dict[str, Path] = {}
    reports = []
    for i, (name, path, a) in enumerate(targets):
        ctx.progress(i / len(targets), f"writing + validating {path.name}")
        save(a, path, validate=False)
        r = validate(path)
        reports.append(asdict(r) | {"ok": r.ok})
        files[name] = path
    ctx.progress(0.8, "rendering thumbnail and turntable")
    from studio.renderers.thumbnails import render_turntable, thumbnail

    files["thumbnail"] = thumbnail(mesh_only, out / "sample_thumbnail.png", size=512)
    files["turntable"] = render_turntable(
        mesh_only, out / "sample_turntable.mp4", frames=p.turntable_frames, size=384,
        progress=lambda f, m: ctx.progress(0.8 + 0.2 * f, m),
    )
    report_path = out / "validation.json"
    report_path.write_text(json.dumps(reports, indent=2))
    files["validation"] = report_path
    ctx.progress(1.0, "demo exported")
    return files


DEMO = Pipeline(
    name="demo",
    params_type=DemoParams,
    stages=(
        Stage("sample", stage_sample, version="1", params=("texture_size", "splats", "seed"), weight=1.0),
        Stage("export", stage_export, version="1", inputs=("sample",), cache=False, weight=2.0),
    ),
    description="Procedural PBR sample → GLB + USDZ + splat PLY, each validated",
)
