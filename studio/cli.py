"""The `studio` command line. Commands are thin: they parse, call the Python API, and print.

Exit codes: 0 ok; 1 unexpected studio error; 2 bad usage / unsupported format / unsafe path;
3 invalid input file; 4 export failed validation; 5 missing external tool; 6 model missing;
7 no display/EGL; 8 no OpenXR runtime; 130 cancelled.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from studio.errors import StudioError

app = typer.Typer(
    name="studio",
    help="Spatial/XR 3D content studio: make, inspect, convert, validate and view 3D assets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def _fail(exc: StudioError) -> None:
    err_console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
    raise typer.Exit(exc.exit_code)


def _validation_table(rows: list) -> Table:
    t = Table(title="validation")
    for col in ("file", "validator", "errors", "warnings", "infos", "verdict"):
        t.add_column(col)
    for r in rows:
        t.add_row(
            Path(r.path).name, r.tool, str(r.errors), str(r.warnings), str(r.infos),
            "[green]pass[/]" if r.ok else "[red]FAIL[/]",
        )
    return t


@app.command()
def validate(
    files: list[Path] = typer.Argument(..., help="GLB/glTF, USD/USDA/USDC/USDZ, PLY, .splat, .spz or OBJ files"),
    as_json: bool = typer.Option(False, "--json", help="print the reports as JSON"),
) -> None:
    """Validate files with the industry's own checkers (Khronos glTF-Validator, usd-core UsdValidation)."""
    from studio.assets.validate import validate as run

    try:
        reports = [run(f) for f in files]
    except StudioError as e:
        _fail(e)
    if as_json:
        from dataclasses import asdict

        print(json.dumps([asdict(r) | {"ok": r.ok} for r in reports], indent=2))
    else:
        console.print(_validation_table(reports))
        for r in reports:
            if not r.ok:
                console.print(str(r), markup=False, highlight=False)
    if not all(r.ok for r in reports):
        raise typer.Exit(4)


@app.command()
def info(
    file: Path = typer.Argument(..., help="any supported asset file"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
    check: bool = typer.Option(True, "--validate/--no-validate", help="also run the format's validator"),
) -> None:
    """Summarise an asset: meshes, triangles, materials, textures, splats, bounds, validator verdict."""
    from studio.assets.io import load
    from studio.assets.validate import VALIDATORS
    from studio.assets.validate import validate as run
    from studio.summary import summarize

    try:
        asset = load(file)
        s = summarize(asset, file)
        if check and file.suffix.lower() in VALIDATORS:
            r = run(file)
            s.validation = {"tool": r.tool, "errors": r.errors, "warnings": r.warnings, "infos": r.infos, "ok": r.ok}
    except StudioError as e:
        _fail(e)
    if as_json:
        print(json.dumps(s.to_dict(), indent=2))
        return
    t = Table(title=f"{file.name} ({s.format}, {s.bytes:,} bytes)", show_header=False)
    t.add_column("what")
    t.add_column("value")
    t.add_row("meshes", str(s.meshes))
    t.add_row("triangles / vertices", f"{s.triangles:,} / {s.vertices:,}")
    t.add_row("materials", f"{s.materials} ({', '.join(s.alpha_modes) or '-'})")
    t.add_row("UV sets / vertex colours", f"{s.uv_sets} / {'yes' if s.vertex_colors else 'no'}")
    for tex in s.textures:
        t.add_row(f"  texture {tex.slot}", f"{tex.width}x{tex.height}x{tex.channels} {tex.mime_type} ({tex.material})")
    t.add_row("splats", f"{s.splats:,}" + (f" (SH degree {s.splat_sh_degree})" if s.splats else ""))
    t.add_row("bounds (m)", f"{s.bounds_min} .. {s.bounds_max}")
    for k, v in s.metadata.items():
        t.add_row(f"  {k}", str(v))
    for note in s.dropped:
        t.add_row("[yellow]dropped[/]", note)
    if s.validation:
        v = s.validation
        verdict = "[green]pass[/]" if v["ok"] else "[red]FAIL[/]"
        t.add_row("validator", f"{v['tool']}: {v['errors']} errors, {v['warnings']} warnings — {verdict}")
    console.print(t)


@app.command()
def export(
    src: Path = typer.Argument(..., help="input asset (any supported format)"),
    dst: Path = typer.Argument(..., help="output file; the extension picks the format"),
    check: bool = typer.Option(True, "--validate/--no-validate", help="validate the output (default on)"),
) -> None:
    """Convert an asset to GLB/glTF/USD/USDA/USDC/USDZ/OBJ/PLY/.splat/.spz by the output extension."""
    from studio.assets.io import load, save
    from studio.assets.validate import VALIDATORS

    try:
        asset = load(src)
        for note in asset.dropped:
            err_console.print(f"[yellow]note:[/] {note}", highlight=False)
        save(asset, dst, validate=check and dst.suffix.lower() in VALIDATORS)
    except StudioError as e:
        _fail(e)
    console.print(f"wrote {dst}")


@app.command()
def demo(
    out: Path = typer.Option(Path("studio-out/demo"), "--out", "-o", help="output folder"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """Build the procedural sample asset, export GLB + USDZ + splat PLY, validate each."""
    from studio.api import Studio

    try:
        job = Studio().run("demo", {"out": str(out.resolve())}, progress=None if as_json else _progress_printer())
    except StudioError as e:
        _fail(e)
    _finish_job(job, as_json)


@app.command()
def reconstruct(
    source: Path = typer.Argument(..., help="folder of photos, a COLMAP capture (sparse/0 + images/) or a transforms.json folder"),
    out: Path = typer.Option(Path("studio-out/reconstruction"), "--out", "-o", help="output folder"),
    max_size: int = typer.Option(384, help="longest image side used for fitting"),
    iterations: int = typer.Option(600, help="splat fit iterations"),
    target_faces: int = typer.Option(20000, help="faces of the output mesh"),
    isolate: bool = typer.Option(False, "--isolate", help="keep only the object standing on the table or floor, closed (watertight)"),
    upright: bool = typer.Option(True, "--upright/--source-frame", help="stand the result upright (+Y up, on the table at y = 0 with --isolate) or keep the capture's own frame"),
    engine: str = typer.Option("studio", help="fit engine: studio (its own splat fit) or nerfstudio (in --ns-env)"),
    ns_env: Path | None = typer.Option(None, "--ns-env", help="nerfstudio environment (venv/conda prefix with ns-train, ns-export); default $STUDIO_NS_ENV"),
    ns_method: str = typer.Option("splatfacto", help="nerfstudio method: splatfacto (splats, needs CUDA) or nerfacto (its Poisson mesh)"),
    ns_device: str = typer.Option("cuda", help="device nerfstudio trains on: cuda, cpu or mps"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Photos → SfM (pycolmap) → splats → mesh → baked PBR → validated GLB + USDZ + splats (+ transforms.json).
    With --engine nerfstudio the fit runs as ns-train in your nerfstudio environment instead."""
    from studio.api import Studio

    params = {"photos": str(source.resolve()), "out": str(out.resolve()), "max_size": max_size,
              "iterations": iterations, "target_faces": target_faces, "isolate": isolate, "upright": upright,
              "engine": engine, "ns_env": str(ns_env.expanduser().resolve()) if ns_env else "",
              "ns_method": ns_method, "ns_device": ns_device}
    try:
        job = Studio().run("capture_to_asset", params, progress=None if as_json else _progress_printer())
    except StudioError as e:
        _fail(e)
    _finish_job(job, as_json)


@app.command("run")
def run_pipeline(
    pipeline: str = typer.Argument(..., help="pipeline name (see `studio pipelines`)"),
    param: list[str] = typer.Option([], "--param", "-p", help="KEY=VALUE, repeatable (checked against the pipeline's schema)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run any registered pipeline with parameters from its schema (the same one the API and web app use)."""
    from studio.api import Studio

    params = {}
    for kv in param:
        if "=" not in kv:
            err_console.print(f"[red]error:[/] --param wants KEY=VALUE, got {kv!r}")
            raise typer.Exit(2)
        k, v = kv.split("=", 1)
        params[k] = v
    try:
        job = Studio().run(pipeline, params, progress=None if as_json else _progress_printer())
    except StudioError as e:
        _fail(e)
    _finish_job(job, as_json)


@app.command("pipelines")
def list_pipelines(as_json: bool = typer.Option(False, "--json")) -> None:
    """Registered pipelines, their parameters and whether their models are present."""
    from studio.pipeline import params_schema
    from studio.registry import availability, pipelines

    rows = []
    for p in pipelines().values():
        ok, why = availability(p)
        rows.append({"name": p.name, "available": ok, "reason": why, "description": p.description,
                     "params": params_schema(p.params_type)})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    t = Table(title="pipelines")
    for col in ("name", "available", "params", "description"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["name"], "[green]yes[/]" if r["available"] else "[red]no[/] (models missing: `studio models`)",
                  ", ".join(r["params"]["properties"]), r["description"])
    console.print(t)


@app.command("eval")
def eval_asset(
    file: Path = typer.Argument(..., help="reconstructed asset (mesh and/or splats)"),
    gt: Path = typer.Option(..., "--gt", help="ground-truth mesh file"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder for metrics.json + metrics.html"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Chamfer distance, normal consistency and F-score @ 1 % of the diagonal against a ground-truth mesh."""
    from studio.assets.io import load
    from studio.pipelines.evaluate import evaluate

    try:
        subject = load(file)
        m = evaluate(_meshes_only(subject), None, gt_mesh=load(gt), out_dir=out)
    except StudioError as e:
        _fail(e)
    except ValueError as e:
        err_console.print(f"[red]error:[/] {e}", highlight=False)
        raise typer.Exit(2)
    if as_json:
        print(json.dumps(m, indent=2, default=str))
        return
    sfc = m["surface"]
    console.print(f"Chamfer {sfc['chamfer'] * 100:.3f} cm ({sfc['chamfer_fraction'] * 100:.2f} % of the diagonal), "
                  f"F-score@1% {sfc['fscore']:.3f}, normal consistency {sfc['normal_consistency']:.3f}", highlight=False)


def _meshes_only(asset):
    """Evaluate geometry only (splats need held-out views)."""
    from studio.assets import Asset

    return Asset(meshes=asset.meshes) if asset.meshes else asset


def _finish_job(job, as_json: bool) -> None:
    """Print a finished job's files and validation table; exit non-zero unless it succeeded."""
    from studio.assets.validate import ValidationReport

    reports = []
    vpath = job.results.get("validation")
    if vpath and Path(vpath).exists():
        for d in json.loads(Path(vpath).read_text()):
            d.pop("ok", None)
            reports.append(ValidationReport(**{k: v for k, v in d.items() if k != "messages"}))
    if as_json:
        print(json.dumps(job.to_dict() | {"validation": [r.__dict__ for r in reports]}, indent=2, default=str))
    else:
        if reports:
            console.print(_validation_table(reports))
        mpath = job.results.get("metrics_json")
        if mpath and Path(mpath).exists():
            m = json.loads(Path(mpath).read_text())
            t = Table(title="reconstruction quality (held-out views, true geometry)")
            for col in ("metric", "value"):
                t.add_column(col)
            for rep in ("splats", "mesh"):
                if rep in m:
                    t.add_row(f"{rep} PSNR / SSIM", f"{m[rep]['psnr']:.2f} dB / {m[rep]['ssim']:.4f}")
            if "surface" in m:
                sfc = m["surface"]
                t.add_row("Chamfer", f"{sfc['chamfer'] * 100:.2f} cm ({sfc['chamfer_fraction'] * 100:.2f} % of the diagonal)")
                t.add_row("F-score @ 1 % / normal consistency", f"{sfc['fscore']:.3f} / {sfc['normal_consistency']:.3f}")
            console.print(t)
        for name, path in job.results.items():
            console.print(f"{name:>12}: {path}", highlight=False)
        if job.state != "succeeded":
            err_console.print(f"[red]job {job.id} {job.state}:[/] {job.error or job.message}", highlight=False)
    if job.state == "cancelled":
        raise typer.Exit(130)
    if job.state != "succeeded":
        raise typer.Exit(1)
    if not all(r.ok for r in reports):
        raise typer.Exit(4)


@app.command()
def view(
    file: Path = typer.Argument(..., help="any supported asset file"),
    out: Optional[Path] = typer.Option(None, "--out", help="write a thumbnail PNG instead of opening a window"),
    turntable: Optional[Path] = typer.Option(None, "--turntable", help="write a turntable MP4 (H.264)"),
    sheet: Optional[Path] = typer.Option(None, "--contact-sheet", help="write a PNG grid of 8 views"),
    frames: int = typer.Option(60, min=1, max=3600, help="turntable frames"),
    size: int = typer.Option(512, min=16, max=4096, help="image size in pixels"),
    environment: str = typer.Option("studio", help="built-in environment (studio, sky) or an equirect HDR/EXR/PNG"),
) -> None:
    """Look at an asset: a window with orbit controls, or --out PNG / --turntable MP4 / --contact-sheet PNG."""
    try:
        if out is None and turntable is None and sheet is None:
            from studio.renderers.viewer import open_viewer

            open_viewer(file, environment=environment)
            return
        from studio.assets.io import load
        from studio.renderers import thumbnails

        from studio.renderers.environment import resolve_environment

        asset = load(file)
        env = resolve_environment(environment)
        if out is not None:
            thumbnails.thumbnail(asset, out, size=size, environment=env)
            console.print(f"wrote {out}")
        if sheet is not None:
            thumbnails.contact_sheet(asset, sheet, size=max(64, size // 2), environment=env)
            console.print(f"wrote {sheet}")
        if turntable is not None:
            thumbnails.render_turntable(asset, turntable, frames=frames, size=size, progress=_progress_printer(), environment=env)
            console.print(f"wrote {turntable}")
    except StudioError as e:
        _fail(e)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="bind address; anything but loopback needs --token"),
    port: int = typer.Option(7860, help="port"),
    token: Optional[str] = typer.Option(None, envvar="STUDIO_TOKEN", help="API token (Authorization: Bearer …)"),
    workers: int = typer.Option(1, min=1, max=64, help="job worker threads"),
    backend: str = typer.Option("local", help="where stages run: local (in-process) or ray (Ray tasks)"),
    address: Optional[str] = typer.Option(None, help="Ray cluster address for --backend ray (default: a local Ray; 'auto': the running cluster)"),
) -> None:
    """Serve the web app (/), HTTP API (/v1, docs at /v1/docs), WebXR client (/xr/) and metrics (/metrics)."""
    from studio.server import serve as run_server

    if backend not in ("local", "ray"):
        err_console.print(f"[red]error:[/] --backend must be local or ray, got {backend!r}")
        raise typer.Exit(2)
    try:
        run_server(host=host, port=port, token=token, workers=workers, backend=backend, ray_address=address)
    except StudioError as e:
        _fail(e)


models_app = typer.Typer(help="List, add and remove generative models (offline-first registry).", invoke_without_command=True)
generate_app = typer.Typer(help="Generate images and videos with registered models.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(generate_app, name="generate")


@models_app.callback()
def models_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """Every registered model: present or missing, size on disk, which pipelines need it."""
    if ctx.invoked_subcommand is not None:
        return
    from dataclasses import asdict

    from studio.models import list_models

    rows = list_models()
    if as_json:
        print(json.dumps([asdict(r) for r in rows], indent=2, default=str))
        return
    t = Table(title="models ($STUDIO_MODELS)")
    for col in ("name", "present", "size", "repo id", "used by"):
        t.add_column(col)
    for r in rows:
        size = f"{r.bytes_on_disk / 1e9:.2f} GB" if r.present else "-"
        t.add_row(r.name, "[green]yes[/]" if r.present else "[dim]no[/]", size, r.repo_id or "", ", ".join(r.pipelines))
    console.print(t)


@models_app.command("add")
def models_add(name: str, path: Path, kind: str = typer.Option("auto", help="model class or 'lora'"),
               base: Optional[str] = typer.Option(None, help="base model a LoRA belongs to")) -> None:
    """Register a local model folder or LoRA file under NAME."""
    from studio.models import register

    try:
        spec = register(name, path, kind=kind, base=base)
    except StudioError as e:
        _fail(e)
    console.print(f"registered {spec.name} → {path}")


@models_app.command("remove")
def models_remove(name: str) -> None:
    """Forget a user-registered model (files are left alone)."""
    from studio.models import unregister

    try:
        unregister(name)
    except StudioError as e:
        _fail(e)
    console.print(f"removed {name}")


@generate_app.command("image")
def generate_image(
    prompt: str = typer.Argument(..., help="what to draw"),
    out: Path = typer.Option(Path("studio-out/images"), "--out", "-o", help="output folder"),
    model: str = typer.Option("sd15", help="registered model name (see `studio models`)"),
    negative: str = typer.Option("", "--negative", help="negative prompt"),
    steps: int = typer.Option(30, min=1, max=500),
    guidance: float = typer.Option(7.5, help="classifier-free guidance scale"),
    seed: Optional[int] = typer.Option(None, help="random seed (default: random, reported)"),
    width: int = typer.Option(512, min=64, max=4096),
    height: int = typer.Option(512, min=64, max=4096),
    scheduler: Optional[str] = typer.Option(None, help="ddim, euler, euler_a, dpmpp_2m, dpmpp_2m_karras, unipc, lcm"),
    lora: list[str] = typer.Option([], help="NAME[:SCALE], repeatable"),
    init_image: Optional[Path] = typer.Option(None, "--init-image", help="img2img input"),
    strength: float = typer.Option(0.8, min=0.0, max=1.0, help="img2img/inpaint strength"),
    mask: Optional[Path] = typer.Option(None, help="inpainting mask (white = repaint)"),
    num_images: int = typer.Option(1, "--num-images", min=1, max=64),
    allow_network: bool = typer.Option(False, "--allow-network", help="download a missing model from the Hugging Face Hub"),
    enhance: bool = typer.Option(False, "--enhance", help="enhance the prompt with the route's template"),
    enhance_model: Optional[str] = typer.Option(None, "--enhance-model", help="registered text model that rewrites the prompt first (e.g. prompt-llm)"),
) -> None:
    """Text → image (SD 1.x/SDXL/SD3/FLUX through diffusers), img2img and inpainting."""
    from studio.pipelines.text_to_image import LoraRef, TextToImageParams, generate_image_files

    if enhance or enhance_model:
        from studio.pipelines.prompt_enhance import enhance_prompt

        try:
            prompt = enhance_prompt(prompt, "text_to_image", enhance_model, allow_network=allow_network).prompt
        except StudioError as e:
            _fail(e)
        err_console.print(f"prompt: {prompt}", highlight=False)

    loras = [LoraRef(x.split(":")[0], float(x.split(":")[1]) if ":" in x else 1.0) for x in lora]
    params = TextToImageParams(prompt=prompt, model=model, negative_prompt=negative, guidance_scale=guidance, steps=steps,
                               seed=seed, width=width, height=height, scheduler=scheduler, loras=loras,
                               init_image=str(init_image) if init_image else None, strength=strength,
                               mask=str(mask) if mask else None, num_images=num_images, allow_network=allow_network)
    try:
        paths = generate_image_files(params, out, progress=_progress_printer())
    except StudioError as e:
        _fail(e)
    for p in paths:
        console.print(f"wrote {p}")


@generate_app.command("video")
def generate_video(
    out: Path = typer.Option(Path("studio-out/video.mp4"), "--out", "-o"),
    image: Optional[Path] = typer.Option(None, help="image → video (Stable Video Diffusion)"),
    prompt: Optional[str] = typer.Option(None, help="text → video (AnimateDiff)"),
    seed: Optional[int] = typer.Option(None),
) -> None:
    """Image → video or text → video, written as H.264 MP4."""
    from studio.pipelines import video as v

    if (image is None) == (prompt is None):
        err_console.print("[red]error:[/] give exactly one of --image or --prompt")
        raise typer.Exit(2)
    try:
        if image is not None:
            path = v.image_to_video_file(v.ImageToVideoParams(image=str(image), seed=seed), out, progress=_progress_printer())
        else:
            path = v.text_to_video_file(v.TextToVideoParams(prompt=prompt, seed=seed), out, progress=_progress_printer())
    except StudioError as e:
        _fail(e)
    console.print(f"wrote {path}")


@generate_app.command("3d")
def generate_3d(
    image: Optional[Path] = typer.Argument(None, help="a photo or render of one object (alpha channel used as the mask)"),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="text → 3D instead: text → image → (feed-forward | multiview + fit)"),
    out: Path = typer.Option(Path("studio-out/asset.glb"), "--out", "-o", help="GLB/USDZ/... by extension"),
    method: str = typer.Option("auto", help="auto | feedforward (TripoSR) | fit (multiview + splat fit) | shap-e | sds (splats by score distillation)"),
    seed: Optional[int] = typer.Option(None, help="random seed for the generative stages"),
    model_path: Optional[Path] = typer.Option(None, "--model-path", help="explicit TripoSR folder (config.yaml + model.ckpt)"),
    allow_network: bool = typer.Option(False, "--allow-network", help="download missing models from the Hub"),
    enhance: bool = typer.Option(False, "--enhance", help="enhance the prompt for text → 3D (one centred object, plain background)"),
    enhance_model: Optional[str] = typer.Option(None, "--enhance-model", help="registered text model that rewrites the prompt first"),
) -> None:
    """Image → 3D or text → 3D: a feed-forward model when its weights are present, else multiview + fit."""
    from studio.assets.io import save
    from studio.assets.validate import VALIDATORS

    if (image is None) == (prompt is None):
        err_console.print("[red]error:[/] give an IMAGE or --prompt TEXT (one of them)")
        raise typer.Exit(2)
    enhanced = None
    try:
        if prompt is not None and (enhance or enhance_model):
            from studio.pipelines.prompt_enhance import enhance_prompt

            enhanced = enhance_prompt(prompt, "text_to_3d", enhance_model, allow_network=allow_network)
            prompt = enhanced.prompt
            err_console.print(f"prompt: {prompt}", highlight=False)
        if method == "shap-e":
            from studio.pipelines import shap_e

            sp = shap_e.ShapEParams(seed=seed, allow_network=allow_network)
            if prompt is not None:
                asset = shap_e.shap_e_text_to_3d(prompt, params=sp, progress=_progress_printer())
            else:
                from studio.pipelines.generation_common import load_rgb

                asset = shap_e.shap_e_image_to_3d(load_rgb(str(image)), params=sp, progress=_progress_printer())
        elif method == "sds":
            from studio.pipelines.sds import SDSParams, sds_to_asset

            if prompt is None:
                err_console.print("[red]error:[/] --method sds needs --prompt")
                raise typer.Exit(2)
            asset = sds_to_asset(prompt, params=SDSParams(seed=seed, allow_network=allow_network), progress=_progress_printer())
        elif prompt is not None:
            from studio.pipelines.text_to_asset import text_to_asset

            asset = text_to_asset(prompt, method=method, seed=seed, allow_network=allow_network, progress=_progress_printer())
        else:
            from studio.pipelines.image_to_asset import image_to_asset

            asset = image_to_asset(str(image), method=method, local_path=model_path, allow_network=allow_network,
                                   progress=_progress_printer())
        if enhanced is not None:
            asset.metadata.extras.update(enhanced.metadata())
        save(asset, out, validate=out.suffix.lower() in VALIDATORS)
    except ValueError as e:
        err_console.print(f"[red]error:[/] {e}", highlight=False)
        raise typer.Exit(2)
    except StudioError as e:
        _fail(e)
    console.print(f"wrote {out} (method {asset.metadata.method}, model {asset.metadata.model})", highlight=False)


@generate_app.command("materials")
def generate_materials(
    image: Path = typer.Argument(..., help="a photo"),
    out: Path = typer.Option(Path("studio-out/materials"), "--out", "-o", help="output folder"),
    which: list[str] = typer.Option(["depth", "normals", "materials"], help="depth, normals and/or materials (repeatable)"),
) -> None:
    """Marigold: relative depth, surface normals and albedo / roughness / metallic maps of a photo."""
    from studio.pipelines.material_estimation import material_files

    try:
        paths = material_files(image, out, tuple(which), progress=_progress_printer())
    except StudioError as e:
        _fail(e)
    for p in paths:
        console.print(f"wrote {p}")


@generate_app.command("multiview")
def generate_multiview(
    image: Path = typer.Argument(..., help="a photo or render of one object"),
    out: Path = typer.Option(Path("studio-out/multiview"), "--out", "-o", help="output folder (PNGs + cameras.json)"),
    model: str = typer.Option("stable-zero123", help="Zero123-class model (see `studio models`)"),
    views: int = typer.Option(6, min=1, max=64),
    size: int = typer.Option(256, min=32, max=2048),
    steps: int = typer.Option(50, min=1, max=500),
    seed: int = typer.Option(0),
    allow_network: bool = typer.Option(False, "--allow-network"),
) -> None:
    """Image → posed novel views at a fixed, known camera rig (ready for reconstruction)."""
    from studio.pipelines.multiview import multiview_files

    try:
        paths = multiview_files(image, out, model=model, n=views, size=size, steps=steps, seed=seed,
                                allow_network=allow_network, progress=_progress_printer())
    except StudioError as e:
        _fail(e)
    console.print(f"wrote {len(paths)} files to {out}")


@app.command()
def caption(
    file: Path = typer.Argument(..., help="an image, or any asset (rendered from 4 views, then captioned)"),
    model: str = typer.Option("blip-base", help="captioning model (blip-base, llava-1.5-7b, ...)"),
    question: Optional[str] = typer.Option(None, help="ask a question instead (e.g. 'what material is this?')"),
    out: Optional[Path] = typer.Option(None, "--out", help="for assets: write a copy with the caption in its metadata"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Caption or tag an image or a 3D asset; captions go into the asset's metadata."""
    from studio.pipelines.caption import caption_path

    try:
        r = caption_path(file, model=model, question=question, out=out)
    except StudioError as e:
        _fail(e)
    if as_json:
        print(json.dumps({"caption": r.caption, "tags": r.tags, "captions": r.captions}))
    else:
        console.print(r.caption, highlight=False)
        if r.tags:
            console.print(f"tags: {', '.join(r.tags)}", highlight=False)


xr_app = typer.Typer(help="Headset preview: push to the live scene, native OpenXR viewer.", no_args_is_help=True)
app.add_typer(xr_app, name="xr")


@xr_app.command("push")
def xr_push(
    file: Path = typer.Argument(..., help="GLB/glTF/USD/OBJ (sent as GLB) or splats (.ply/.splat/.spz)"),
    server: Optional[str] = typer.Option(None, "--server", help="studio URL (default $STUDIO_URL or http://127.0.0.1:7860)"),
    token: Optional[str] = typer.Option(None, envvar="STUDIO_TOKEN", help="API token of that studio"),
    replace: Optional[str] = typer.Option(None, help="scene asset id to replace"),
) -> None:
    """Send an asset to the live scene: every connected headset (WebXR /xr/, OpenXR) shows it."""
    from studio.xr_push import push

    try:
        asset_id = push(file, server=server, token=token, replace=replace)
    except StudioError as e:
        _fail(e)
    console.print(f"pushed {file.name} as scene asset {asset_id}", highlight=False)


@xr_app.command("openxr")
def xr_openxr(
    file: Optional[Path] = typer.Argument(None, help="asset to show; omit to follow the studio's live scene"),
    frames: Optional[int] = typer.Option(None, "--frames", help="stop after N rendered frames"),
    server: Optional[str] = typer.Option(None, "--server", help="studio to follow (default $STUDIO_URL or http://127.0.0.1:7860)"),
    msaa: int = typer.Option(4, "--msaa", help="samples per pixel (1 = fastest on CPU)"),
    binding: str = typer.Option("auto", "--binding", help="auto | egl | glx"),
) -> None:
    """Show FILE (or a studio's live scene) in the headset through the active OpenXR runtime."""
    from studio.renderers.openxr import cli_openxr

    try:
        cli_openxr(str(file) if file else None, frames, server, msaa, binding)
    except StudioError as e:
        _fail(e)


jobs_app = typer.Typer(help="List, inspect, cancel and resume jobs.", no_args_is_help=True)
cache_app = typer.Typer(help="Inspect or clear the stage cache.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(cache_app, name="cache")


@jobs_app.command("list")
def jobs_list(
    state: Optional[str] = typer.Option(None, help="only jobs in this state"),
    limit: int = typer.Option(50, help="at most this many"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Recent jobs, newest first."""
    from studio.api import Studio

    jobs = Studio().store.list(state=state, limit=limit)
    if as_json:
        print(json.dumps([j.to_dict() for j in jobs], indent=2, default=str))
        return
    t = Table(title="jobs")
    for col in ("id", "pipeline", "state", "stage", "progress", "message"):
        t.add_column(col)
    for j in jobs:
        t.add_row(j.id, j.pipeline, j.state, j.stage, f"{j.progress:.0%}", (j.error or j.message)[:60])
    console.print(t)


def _job_or_exit(job_id: str):
    from studio.api import Studio

    st = Studio()
    job = st.store.get(job_id)
    if job is None:
        err_console.print(f"[red]error:[/] no job {job_id!r}; see `studio jobs list`", highlight=False)
        raise typer.Exit(2)
    return st, job


@jobs_app.command("show")
def jobs_show(job_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """One job: state, stage, progress, results, log."""
    _, job = _job_or_exit(job_id)
    if as_json:
        print(json.dumps(job.to_dict(), indent=2, default=str))
        return
    for k in ("id", "pipeline", "state", "stage", "progress", "message", "error", "params", "results"):
        console.print(f"{k:>9}: {getattr(job, k)}", highlight=False)
    console.print(job.log, highlight=False)


@jobs_app.command("cancel")
def jobs_cancel(job_id: str) -> None:
    """Ask a queued or running job to stop (cooperative: it stops at the next progress check)."""
    st, job = _job_or_exit(job_id)
    job = st.runner.cancel(job_id)
    console.print(f"{job_id}: {job.state}{' (cancel requested)' if job.cancel_requested and job.state == 'running' else ''}")


@jobs_app.command("resume")
def jobs_resume(job_id: Optional[str] = typer.Argument(None, help="job id; default: every interrupted job")) -> None:
    """Run interrupted or failed jobs again; finished stages come from the cache."""
    from studio.api import Studio

    st = Studio()
    ids = [job_id] if job_id else st.store.requeue_interrupted() + [j.id for j in st.store.list(state="queued")]
    if not ids:
        console.print("nothing to resume")
        return
    for jid in dict.fromkeys(ids):
        job = st.store.get(jid)
        if job is None:
            err_console.print(f"[red]error:[/] no job {jid!r}")
            raise typer.Exit(2)
        if job.state in ("failed", "cancelled", "running"):
            st.store.update(jid, state="queued", error=None, cancel_requested=0)
        job = st.runner.run_job(jid)
        console.print(f"{jid}: {job.state} {job.error or ''}", highlight=False)


@cache_app.command("info")
def cache_info(as_json: bool = typer.Option(False, "--json")) -> None:
    """Entries, size and limit of the stage cache."""
    from dataclasses import asdict

    from studio.api import Studio

    st = Studio().cache.stats()
    if as_json:
        print(json.dumps(asdict(st)))
    else:
        console.print(f"{st.entries} entries, {st.bytes / 1e6:.1f} MB of {st.limit_bytes / 1e9:.1f} GB limit")


@cache_app.command("clear")
def cache_clear() -> None:
    """Remove every cache entry."""
    from studio.api import Studio

    n = Studio().cache.clear()
    console.print(f"removed {n} entries")


def _progress_printer():
    """A rich progress bar driven by progress(fraction, message) callbacks."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    prog = Progress(TextColumn("{task.description:<40}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                    TimeElapsedColumn(), console=err_console, transient=False)
    state: dict = {}

    def cb(fraction: float, message: str) -> None:
        if "task" not in state:
            prog.start()
            state["task"] = prog.add_task(message, total=1.0)
        prog.update(state["task"], completed=fraction, description=message)
        if fraction >= 1.0:
            prog.stop()

    return cb


def main() -> None:  # pragma: no cover - entry for python -m studio
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
