"""`capture_to_asset`: photos (or a COLMAP model / transforms.json capture) → splats → mesh →
baked PBR → validated GLB + USDZ + splat PLY, plus the posed views as transforms.json so the same
capture can be trained with nerfstudio."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from studio.assets import Asset, AssetMetadata, GaussianSplats
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
    engine: Literal["studio", "nerfstudio"] = param("studio", "fit engine: the studio's own splat fit, or nerfstudio run in its own environment (ns_env)")
    ns_env: str = param("", "nerfstudio environment (a venv or conda prefix with ns-train and ns-export) for engine=nerfstudio; default $STUDIO_NS_ENV")
    ns_method: Literal["splatfacto", "nerfacto"] = param("splatfacto", "nerfstudio method: splatfacto → splats, nerfacto → its Poisson mesh")
    ns_device: Literal["cuda", "cpu", "mps"] = param("cuda", "device nerfstudio trains on (splatfacto needs CUDA)")
    seed: int = param(0, "random seed")
    out: str = param("", "folder for the results (default: the job's folder)")


VIEW_KEYS = ("photos", "max_size", "upright")
FIT_KEYS = VIEW_KEYS + ("iterations", "seed", "engine", "ns_method", "ns_device")
MESH_KEYS = FIT_KEYS + ("target_faces", "isolate")
BAKE_KEYS = MESH_KEYS + ("bake_size",)  # the texture size matters to the bake only, not to meshing


def _ns_env(p: CaptureParams) -> str:
    import os

    return p.ns_env or os.environ.get("STUDIO_NS_ENV", "")


def _meshing(p: CaptureParams):
    from .reconstruct import MeshingParams

    return MeshingParams(texture_size=p.bake_size, target_faces=p.target_faces, isolate_object=p.isolate)


def stage_views(p: CaptureParams, inputs: dict[str, Any], ctx: StageContext) -> dict[str, Any]:
    """SfM (or the given poses) → posed, undistorted views + sparse points, stood upright
    (capture_frame.upright) unless `upright` is off; "frame" is the (4,4) new-from-source transform."""
    import numpy as np

    from .capture import capture_to_views
    from .capture_frame import upright
    from .nerfstudio_engine import find_ns_env

    if p.engine == "nerfstudio":
        find_ns_env(_ns_env(p))  # a missing environment fails now, not after SfM
    views, pts, cols, report = capture_to_views(p.photos, max_size=p.max_size, progress=ctx.progress)
    frame = np.eye(4)
    if p.upright:
        views, pts, frame = upright(views, pts)
    return {"views": views, "points": pts, "colors": cols, "report": asdict(report), "frame": frame}


def stage_fit(p: CaptureParams, inputs: dict[str, Any], ctx: StageContext):
    """GaussianSplats from the studio's fit or nerfstudio's splatfacto; a Mesh from nerfacto."""
    from .nerfstudio_engine import NerfstudioParams, nerfstudio_reconstruct
    from .splat_fit import FitParams, fit_splats

    v = inputs["views"]
    if p.engine == "nerfstudio":
        ns = NerfstudioParams(method=p.ns_method, iterations=p.iterations, device=p.ns_device)
        work = (Path(p.out) if p.out else ctx.out_dir) / "nerfstudio_run"  # kept: ns-viewer can open its config.yml
        asset = nerfstudio_reconstruct(v["views"], work, _ns_env(p), ns, progress=ctx.progress)
        return asset.splats if asset.splats is not None and len(asset.splats) else asset.meshes[0]
    # SfM points are sparse (buddha: 134): add uniform points around the subject and a far shell for
    # the room behind it (held-out PSNR on buddha 14 → 19 dB, tests/test_capture.py)
    fit = FitParams.for_iterations(p.iterations, seed=p.seed, init_random=20_000, init_shell=5_000)
    splats, _ = fit_splats(v["views"], fit, v["points"], v["colors"], progress=ctx.progress, cancel=ctx.is_cancelled)
    return splats


def stage_mesh(p: CaptureParams, inputs: dict[str, Any], ctx: StageContext):
    """(dense, decimated) meshes: meshed from the splats, or nerfacto's mesh decimated."""
    from studio.assets import Mesh

    from .mesh_extract import decimate
    from .reconstruct import mesh_from_splats

    fit = inputs["fit"]
    if isinstance(fit, Mesh):
        return fit, decimate(fit, p.target_faces)
    return mesh_from_splats(fit, inputs["views"]["views"].cameras, _meshing(p), ctx.progress, ctx.is_cancelled)


def stage_bake(p: CaptureParams, inputs: dict[str, Any], ctx: StageContext) -> Asset:
    import numpy as np

    from .capture_frame import ground_transform
    from .reconstruct import bake_asset, ground_plane

    dense, low = inputs["mesh"]
    views = inputs["views"]["views"]
    splats = inputs["fit"] if isinstance(inputs["fit"], GaussianSplats) else None
    asset, uv = bake_asset(dense, low, views, splats, _meshing(p), ctx.progress, ctx.is_cancelled)
    ground = np.eye(4)
    if p.isolate and p.upright and splats is not None and (plane := ground_plane(splats, views.cameras, _meshing(p))) is not None:
        ground = ground_transform(plane.normal, plane.offset, low.vertices)  # stand it on the table at y = 0
        asset = asset.transformed(ground)
    frame = {"upright": np.asarray(inputs["views"]["frame"]).tolist(), "ground": ground.tolist()}
    method = "fit" if p.engine == "studio" else f"nerfstudio-{p.ns_method}"
    asset.metadata = AssetMetadata(name=Path(p.photos).name, pipeline="capture_to_asset", method=method, seed=p.seed,
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
    ground = np.asarray(asset.metadata.extras["frame"]["ground"])
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
