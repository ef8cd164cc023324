"""The Gradio web app mounted at `/` by `studio serve`. Forms are derived from each pipeline's
params dataclass (the same schema the CLI and the HTTP API use); jobs run on the studio runner."""
from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import gradio as gr

from .api import Studio
from .pipeline import LOCAL_ONLY_PARAMS, params_schema

MESH_EXTS = (".glb", ".gltf", ".obj", ".ply", ".splat")
# Params that name input files become uploads in the web app (the CLI and API take paths):
# name → (multiple files?, images only?)
UPLOAD_FIELDS = {"photos": (True, True), "image": (False, True), "file": (False, False), "src": (False, False)}


def _component(name: str, prop: dict) -> gr.components.Component:
    """A Gradio input for one JSON-schema property."""
    p = prop.get("anyOf", [prop])[0] | {k: v for k, v in prop.items() if k != "anyOf"}
    label = f"{name} — {p['description']}" if p.get("description") else name
    default = p.get("default")
    if name in UPLOAD_FIELDS:
        multiple, _ = UPLOAD_FIELDS[name]
        return gr.File(label=label, file_count="multiple" if multiple else "single", elem_id=f"upload-{name}")
    if "enum" in p:
        return gr.Dropdown(choices=p["enum"], value=default, label=label)
    t = p.get("type")
    if t == "boolean":
        return gr.Checkbox(value=bool(default), label=label)
    if t in ("integer", "number"):
        return gr.Number(value=default, label=label, precision=0 if t == "integer" else None,
                         minimum=p.get("minimum"), maximum=p.get("maximum"))
    return gr.Textbox(value=default or "", label=label)


def _stored_upload(studio: Studio, name: str, value: Any) -> str:
    """Copy a Gradio upload into the studio's upload store (sanitised, size-limited, images
    decoded with limits) and return what the pipeline's param expects: a folder or a file path."""
    from .uploads import store_uploads

    multiple, images_only = UPLOAD_FIELDS[name]
    paths = [Path(str(getattr(v, "name", v))) for v in (value if isinstance(value, list) else [value])]
    folder = store_uploads([(pth.name, pth.read_bytes()) for pth in paths], studio.home / "uploads",
                           images_only=images_only)
    return str(folder) if multiple else str(next(folder.iterdir()))


def _job_rows(studio: Studio) -> list[list[Any]]:
    return [[j.id, j.pipeline, j.state, j.stage, round(j.progress * 100), (j.error or j.message)[:80]] for j in studio.store.list(limit=50)]


def _send_to_headset_for(studio: Studio):
    def send(path):
        from .scene_stream import send_to_headset

        if not path:
            return "nothing to send yet: run the pipeline first"
        asset_id = send_to_headset(studio, path)
        return f"sent to headset as scene asset {asset_id}: open /xr/ in the headset's browser"

    return send


def _figures(studio: Studio) -> dict:
    from .monitoring import snapshot

    return snapshot(studio)


def _preview_file(results: dict[str, str]) -> str | None:
    for key in ("glb", "asset", "mesh"):
        if key in results and Path(results[key]).suffix.lower() in MESH_EXTS:
            return results[key]
    for p in results.values():
        if Path(p).suffix.lower() in MESH_EXTS:
            return p
    return None


def qr_png(url: str) -> bytes:
    """A QR code of `url` as PNG bytes (for 'Open in headset')."""
    import qrcode

    img = qrcode.make(url)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def build_app(studio: Studio, public_url: str = "http://127.0.0.1:7860") -> gr.Blocks:
    """The studio's web UI: one tab per pipeline, plus Asset library, Jobs and Open in headset."""
    _send_to_headset = _send_to_headset_for(studio)
    with gr.Blocks(title="studio") as demo:
        gr.Markdown("# studio — 3D content studio")
        for pipe in studio.runner.pipelines.values():
            schema = params_schema(pipe.params_type)
            with gr.Tab(pipe.title or pipe.name, id=pipe.name):
                gr.Markdown(pipe.description or pipe.name)
                from .registry import availability

                ok, why = availability(pipe)
                if not ok:
                    gr.Markdown(f"**Unavailable on this machine** — {why}", elem_id=f"unavailable-{pipe.name}")
                names = [n for n in schema["properties"] if n not in LOCAL_ONLY_PARAMS]
                inputs = [_component(n, schema["properties"][n]) for n in names]
                run_btn = gr.Button(f"Run {pipe.name}", variant="primary", elem_id=f"run-{pipe.name}", interactive=ok)
                status = gr.Textbox(label="status", interactive=False, elem_id=f"status-{pipe.name}")
                with gr.Row():
                    preview = gr.Model3D(label="3D preview", elem_id=f"preview-{pipe.name}", interactive=False)
                    thumb = gr.Image(label="thumbnail", elem_id=f"thumb-{pipe.name}", height=320)
                    turntable = gr.Video(label="turntable", elem_id=f"turntable-{pipe.name}", height=320)
                files = gr.File(label="results", file_count="multiple", elem_id=f"files-{pipe.name}")
                send = gr.Button("Send to headset", elem_id=f"send-{pipe.name}")
                send.click(_send_to_headset, inputs=preview, outputs=status)

                def run(*values, _pipe=pipe, _names=names, progress=gr.Progress()):
                    params = {n: v for n, v in zip(_names, values) if v not in (None, "", [])}
                    try:
                        for n in list(params):
                            if n in UPLOAD_FIELDS:
                                params[n] = _stored_upload(studio, n, params[n])
                        job = studio.runner.submit(_pipe.name, params)
                    except Exception as e:  # params errors name the field
                        yield f"error: {e}", None, None, None, None
                        return
                    if not studio.runner._threads:  # no worker pool: run in this request's thread
                        import threading

                        threading.Thread(target=studio.runner.run_job, args=(job.id,), daemon=True).start()
                    while True:
                        j = studio.store.get(job.id)
                        progress(j.progress, desc=j.message or j.stage)
                        if j.state in ("succeeded", "failed", "cancelled"):
                            break
                        yield f"{j.state}: {j.stage} {j.progress:.0%} {j.message}", None, None, None, None
                        time.sleep(0.3)
                    if j.state != "succeeded":
                        yield f"{j.state}: {j.error or j.message}", None, None, None, None
                        return
                    r = j.results
                    yield (f"succeeded: job {j.id}", _preview_file(r), r.get("thumbnail"), r.get("turntable"),
                           list(r.values()))

                run_btn.click(run, inputs=inputs, outputs=[status, preview, thumb, turntable, files])

        with gr.Tab("Asset library"):
            gallery = gr.Gallery(label="results (thumbnails)", columns=4, height=360, elem_id="library-gallery")
            lib = gr.Dataframe(headers=["job", "pipeline", "file"], interactive=False)
            with gr.Row():
                refresh_lib = gr.Button("Refresh")
                del_id = gr.Textbox(label="job id to delete (its files and record)")
                delete = gr.Button("Delete", variant="stop")

            def library():
                rows, thumbs = [], []
                for j in studio.store.list(state="succeeded", limit=200):
                    for name, p in j.results.items():
                        rows.append([j.id, j.pipeline, Path(p).name])
                    if "thumbnail" in j.results and Path(j.results["thumbnail"]).exists():
                        thumbs.append((j.results["thumbnail"], f"{j.pipeline} {j.id}"))
                return thumbs, rows

            def delete_job(jid: str):
                import shutil

                jid = jid.strip()
                job = studio.store.get(jid)
                if job is not None and job.state in ("succeeded", "failed", "cancelled"):
                    shutil.rmtree(studio.home / "results" / jid, ignore_errors=True)
                    studio.store.delete(jid)
                return library()

            refresh_lib.click(library, outputs=[gallery, lib])
            delete.click(delete_job, inputs=del_id, outputs=[gallery, lib])
            demo.load(library, outputs=[gallery, lib])

        with gr.Tab("Models"):
            gr.Markdown("Models are never downloaded unless you allow it. Put a model's files in "
                        "`$STUDIO_MODELS/<name>/` (see the README), or register your own with "
                        "`studio models add NAME PATH`.")
            models_table = gr.Dataframe(headers=["name", "present", "size GB", "repo id", "used by"], interactive=False)

            def models_rows():
                from .models import list_models

                return [[m.name, "yes" if m.present else "no", round(m.bytes_on_disk / 1e9, 2) if m.present else 0,
                         m.repo_id or "", ", ".join(m.pipelines)] for m in list_models()]

            demo.load(models_rows, outputs=models_table)

        with gr.Tab("Jobs"):
            table = gr.Dataframe(headers=["id", "pipeline", "state", "stage", "%", "message"], interactive=False)
            job_id = gr.Textbox(label="job id to cancel")
            with gr.Row():
                refresh = gr.Button("Refresh")
                cancel = gr.Button("Cancel job", variant="stop")
            figures = gr.JSON(label="monitoring (same figures as /metrics)")
            refresh.click(lambda: _job_rows(studio), outputs=table)
            refresh.click(lambda: _figures(studio), outputs=figures)
            demo.load(lambda: _figures(studio), outputs=figures)
            cancel.click(lambda jid: (studio.runner.cancel(jid.strip()), _job_rows(studio))[1], inputs=job_id, outputs=table)
            demo.load(lambda: _job_rows(studio), outputs=table)

        with gr.Tab("Open in headset"):
            url = public_url.rstrip("/") + "/xr/"
            gr.Markdown(f"Open **{url}** in the headset's browser (same network), or scan:")
            gr.Image(value=_qr_image(url), label="QR code", height=240)
    return demo


def _qr_image(url: str):
    from PIL import Image

    return Image.open(io.BytesIO(qr_png(url)))
