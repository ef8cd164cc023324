"""`capture_to_asset`: photos (or a COLMAP model / transforms.json capture) → splats → mesh →
baked PBR → validated GLB + USDZ + splat PLY, plus the posed views as transforms.json so the same
capture can be trained with nerfstudio."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from studio.assets import Asset, AssetMetadata
from studio.pipeline import Pipeline, Stage, StageContext, param



@dataclass(frozen=True)
class CaptureParams:
    photos: str = param(help="folder of photos, a COLMAP capture (sparse/0 + images/) or a transforms.json folder")
    max_size: int = param(384, "longest image side used for fitting", minimum=32, maximum=4096)
    iterations: int = param(600, "splat fit iterations", minimum=10, maximum=30000)
    target_faces: int = param(20000, "faces of the output mesh", minimum=100, maximum=1_000_000)
    isolate: bool = param(False, "keep only the object standing on the table or floor, closed (watertight)")
    upright: bool = param(True, "stand the result upright: +Y up (from the cameras; with isolate, level on the table at y = 0)")
    bake_size: int = param(1024, "baked texture size", minimum=64, maximum=8192)
    seed: int = param(0, "random seed")
    out: str = param("", "folder for the results (default: the job's folder)")


VIEW_KEYS = ("photos", "max_size", "upright")
FIT_KEYS = VIEW_KEYS + ("iterations", "seed")
MESH_KEYS = FIT_KEYS + ("target_faces", "isolate")
BAKE_KEYS = MESH_KEYS + ("bake_size",)  # the texture size matters to the bake only, not to meshing


def _meshing(p: CaptureParams):
    from .reconstruct import MeshingParams

    return MeshingParams(texture_size=p.bake_size, target_faces=p.target_faces, isolate_object=p.isolate)


def stage_views(p: CaptureParams, inputs: dict[str, Any], ctx: StageContext) -> dict[str, Any]:
    """SfM (or the given poses) → posed, undistorted views + sparse points, stood upright
    (capture_frame.upright) unless `upright` is off; "frame" is the (4,4) new-from-source transform."""
    import numpy as np

    from .capture import capture_to_views
    from .capture_frame import upright

    views, pts, cols, report = capture_to_views(p.photos, max_size=p.max_size, progress=ctx.progress)
    frame = np.eye(4)
    if p.upright:
        views, pts, frame = upright(views, pts)
    return {"views": views, "points": pts, "colors": cols, "report": asdict(report), "frame": frame}


def stage_fit(p: CaptureParams, inputs: dict[str, Any], ctx: StageContext):
    from .splat_fit import FitParams, fit_splats

    v = inputs["views"]
    # SfM points are sparse (buddha: 134): add uniform points around the subject and a far shell for
    # the room behind it (held-out PSNR on buddha 14 → 19 dB, tests/test_capture.py)
    fit = FitParams.for_iterations(p.iterations, seed=p.seed, init_random=20_000, init_shell=5_000)
    splats, _ = fit_splats(v["views"], fit, v["points"], v["colors"], progress=ctx.progress, cancel=ctx.is_cancelled)
    return splats


def stage_mesh(p: CaptureParams, inputs: dict[str, Any], ctx: StageContext):
    from .reconstruct import mesh_from_splats

    return mesh_from_splats(inputs["fit"], inputs["views"]["views"].cameras, _meshing(p), ctx.progress, ctx.is_cancelled)


def stage_bake(p: CaptureParams, inputs: dict[str, Any], ctx: StageContext) -> Asset:
    from .reconstruct import bake_asset

    import numpy as np

    from .capture_frame import ground_transform
    from .reconstruct import ground_plane

    dense, low = inputs["mesh"]
    views = inputs["views"]["views"]
    asset, uv = bake_asset(dense, low, views, inputs["fit"], _meshing(p), ctx.progress, ctx.is_cancelled)
    ground = np.eye(4)
    if p.isolate and p.upright and (plane := ground_plane(inputs["fit"], views.cameras, _meshing(p))) is not None:
        ground = ground_transform(plane.normal, plane.offset, low.vertices)  # stand it on the table at y = 0
        asset = asset.transformed(ground)
    frame = {"upright": np.asarray(inputs["views"].get("frame", np.eye(4))).tolist(), "ground": ground.tolist()}
    asset.metadata = AssetMetadata(name=Path(p.photos).name, pipeline="capture_to_asset", method="fit", seed=p.seed,
                                   extras={"uv": uv, "capture": inputs["views"]["report"], "frame": frame})
    return asset


def stage_export(p: CaptureParams, inputs: dict[str, Any], ctx: StageContext) -> dict[str, Path]:
    """Validated GLB + USDZ + splat PLY, the posed views as transforms.json, thumbnail + turntable."""
    import numpy as np

    from studio.assets import Views

    from .capture import export_transforms_json
    from .export_bundle import Bundle

    asset: Asset = inputs["bake"]
    bundle = Bundle(Path(p.out) if p.out else ctx.out_dir)
    ctx.progress(0.0, "writing + validating")
    bundle.asset_set("", asset, "asset")
    ctx.progress(0.4, "writing transforms.json for nerfstudio")
    views = inputs["views"]["views"]  # in the asset's frame, so what nerfstudio makes of them lines up with it
    ground = np.asarray(asset.metadata.extras.get("frame", {}).get("ground", np.eye(4)))
    views = Views(views.images, views.cameras.transformed(ground), views.masks)
    bundle.files["transforms"] = export_transforms_json(views, bundle.out / "nerfstudio")
    ctx.progress(0.6, "rendering thumbnail and turntable")
    bundle.previews(Asset(meshes=asset.meshes, metadata=asset.metadata), progress=lambda f, m: ctx.progress(0.6 + 0.4 * f, m))
    return bundle.finish()


CAPTURE = Pipeline(
    name="capture_to_asset",
    params_type=CaptureParams,
    stages=(
        Stage("views", stage_views, params=VIEW_KEYS, weight=1.0),
        Stage("fit", stage_fit, inputs=("views",), params=FIT_KEYS, weight=6.0),
        Stage("mesh", stage_mesh, inputs=("fit", "views"), params=MESH_KEYS, weight=1.0),
        Stage("bake", stage_bake, inputs=("mesh", "views", "fit"), params=BAKE_KEYS, weight=1.5),
        Stage("export", stage_export, inputs=("bake", "views"), cache=False, weight=1.0),
    ),
    description="Photos (or a COLMAP / transforms.json capture) → SfM → splat fit → mesh → baked PBR → GLB + USDZ + splats",
    title="Photos → 3D",
)
