"""The `demo` pipeline: the studio's main job on its built-in procedural sample (no data, no weights).

sample → views → fit → mesh → bake → export. The procedural sample (known geometry, all five PBR
maps) is rendered from a ring of training cameras plus held-out cameras; Gaussian splats are fitted
to the training views, meshed through TSDF fusion of their depth, decimated, unwrapped and baked
into PBR textures. Export writes the sample and the reconstruction as GLB + USDZ + splat PLY (each
validated), the metrics (held-out PSNR, Chamfer / F-score against the known geometry) as JSON +
HTML, and a thumbnail and turntable. Every stage but export is cached.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.assets import Asset
from studio.pipeline import Pipeline, Stage, StageContext, param

from .procedural import SampleParams, sample_asset, surface_splats


@dataclass(frozen=True)
class DemoParams:
    texture_size: int = param(512, "procedural texture size in pixels", minimum=16, maximum=4096)
    splats: int = param(20000, "Gaussian splats sampled on the surface of the sample", minimum=1, maximum=2_000_000)
    seed: int = param(0, "random seed")
    reconstruct: bool = param(True, "also reconstruct the sample from rendered views (fit → mesh → bake)")
    views: int = param(12, "training views for the reconstruction (three rings, one below the equator)", minimum=2, maximum=64)
    view_size: int = param(192, "training view size in pixels", minimum=32, maximum=1024)
    iterations: int = param(400, "splat fit iterations", minimum=10, maximum=30000)
    target_faces: int = param(8000, "faces of the reconstructed mesh", minimum=100, maximum=1_000_000)
    bake_size: int = param(512, "baked texture size in pixels", minimum=64, maximum=4096)
    turntable_frames: int = param(48, "frames of the turntable video", minimum=1, maximum=720)
    out: str = param("", "folder for the results (default: the job's folder)")


SAMPLE_KEYS = ("texture_size", "splats", "seed")
VIEW_KEYS = SAMPLE_KEYS + ("reconstruct", "views", "view_size")
FIT_KEYS = VIEW_KEYS + ("iterations",)
MESH_KEYS = FIT_KEYS + ("target_faces",)
BAKE_KEYS = MESH_KEYS + ("bake_size",)  # the texture size matters to the bake only, not to meshing


def _meshing(p: DemoParams):
    from .reconstruct import MeshingParams

    return MeshingParams(extra_views=16, texture_size=p.bake_size, target_faces=p.target_faces, close_holes=True)


def stage_sample(p: DemoParams, inputs: dict[str, Any], ctx: StageContext) -> Asset:
    """Procedural asset with every PBR map, plus splats sampled from its surface."""
    ctx.progress(0.0, "building procedural sample")
    asset = sample_asset(SampleParams(texture_size=p.texture_size))
    ctx.progress(0.5, "sampling surface splats")
    asset.splats = surface_splats(asset, count=p.splats, seed=p.seed)
    asset.metadata.seed = p.seed
    return asset


def stage_views(p: DemoParams, inputs: dict[str, Any], ctx: StageContext) -> dict[str, Any]:
    """Training views (three rings) and held-out views (between them) of the sample's mesh."""
    from .reconstruct import depth_init_points
    from .views_render import held_out_rig, render_views, training_rig

    if not p.reconstruct:
        return None
    mesh_only = Asset(meshes=inputs["sample"].meshes)
    ctx.progress(0.0, f"rendering {p.views} training views")
    train, depth = render_views(mesh_only, training_rig(mesh_only, p.views, p.view_size))
    ctx.progress(0.6, "rendering held-out views")
    test, _ = render_views(mesh_only, held_out_rig(mesh_only, p.view_size))
    points, colors = depth_init_points(train, depth, seed=p.seed)
    return {"train": train, "test": test, "points": points, "colors": colors}


def stage_fit(p: DemoParams, inputs: dict[str, Any], ctx: StageContext):
    """Gaussian splats fitted to the training views (init from back-projected depth, like SfM points)."""
    from .splat_fit import FitParams, fit_splats

    v = inputs["views"]
    if v is None:
        return None
    fit = FitParams.for_iterations(p.iterations, lr_means=2e-4, seed=p.seed)
    splats, _ = fit_splats(v["train"], fit, v["points"], v["colors"], progress=ctx.progress, cancel=ctx.is_cancelled)
    return splats


def stage_mesh(p: DemoParams, inputs: dict[str, Any], ctx: StageContext):
    """Splat depth → TSDF → main component → decimated mesh; returns (dense, low)."""
    from .reconstruct import mesh_from_splats

    if inputs["fit"] is None:
        return None
    return mesh_from_splats(inputs["fit"], inputs["views"]["train"].cameras, _meshing(p), ctx.progress, ctx.is_cancelled)


def stage_bake(p: DemoParams, inputs: dict[str, Any], ctx: StageContext) -> Asset:
    """UV unwrap + base colour / normal / AO bake → the reconstructed Asset (mesh + splats)."""
    from .reconstruct import bake_asset

    if inputs["mesh"] is None:
        return None
    dense, low = inputs["mesh"]
    asset, uv = bake_asset(dense, low, inputs["views"]["train"], inputs["fit"], _meshing(p), ctx.progress, ctx.is_cancelled)
    asset.metadata.name = "studio_demo_reconstruction"
    asset.metadata.pipeline = "demo"
    asset.metadata.seed = p.seed
    asset.metadata.extras["uv"] = uv
    return asset


def stage_export(p: DemoParams, inputs: dict[str, Any], ctx: StageContext) -> dict[str, Path]:
    """Write and validate every file, evaluate the reconstruction, render thumbnail + turntable."""
    from .export_bundle import Bundle

    sample: Asset = inputs["sample"]
    bundle = Bundle(Path(p.out) if p.out else ctx.out_dir)
    ctx.progress(0.0, "writing + validating the sample")
    bundle.asset_set("", sample, "sample")
    preview = Asset(meshes=sample.meshes, metadata=sample.metadata)
    if p.reconstruct:
        from .evaluate import evaluate

        recon: Asset = inputs["bake"]
        ctx.progress(0.3, "writing + validating the reconstruction")
        bundle.asset_set("reconstruction_", recon, "reconstruction")
        ctx.progress(0.5, "evaluating on held-out views and against the true geometry")
        evaluate(recon, inputs["views"]["test"], gt_mesh=preview, out_dir=bundle.out, name="metrics", samples=50_000)
        for k in ("json", "html"):
            bundle.files[f"metrics_{k}"] = bundle.out / f"metrics.{k}"
        preview = Asset(meshes=recon.meshes, metadata=recon.metadata)
    ctx.progress(0.7, "rendering thumbnail and turntable")
    bundle.previews(preview, frames=p.turntable_frames, progress=lambda f, m: ctx.progress(0.7 + 0.3 * f, m))
    return bundle.finish()


DEMO = Pipeline(
    name="demo",
    params_type=DemoParams,
    stages=(
        Stage("sample", stage_sample, version="1", params=SAMPLE_KEYS, weight=0.5),
        Stage("views", stage_views, version="2", inputs=("sample",), params=VIEW_KEYS, weight=0.5),
        Stage("fit", stage_fit, version="1", inputs=("views",), params=FIT_KEYS, weight=6.0),
        Stage("mesh", stage_mesh, version="1", inputs=("fit", "views"), params=MESH_KEYS, weight=1.0),
        Stage("bake", stage_bake, version="1", inputs=("mesh", "views", "fit"), params=BAKE_KEYS, weight=1.5),
        Stage("export", stage_export, version="1", inputs=("sample", "views", "bake"), cache=False, weight=1.5),
    ),
    description="Procedural PBR sample → GLB + USDZ + splat PLY, then rendered views → splat fit → mesh → "
    "baked PBR → validated GLB/USDZ with held-out PSNR and Chamfer against the true geometry",
    title="Demo",
)
