"""nerfstudio as an optional reconstruction engine (issue #6 item 6).

nerfstudio pins older torch / numpy / gsplat, so it never shares the studio's environment: the user
points `--ns-env PATH` at a virtualenv or conda prefix where `ns-train` and `ns-export` exist. We
write our posed views as a nerfstudio dataset (`capture.export_transforms_json`), run

    PATH/bin/ns-train splatfacto --data DATA --output-dir OUT --experiment-name studio
        --timestamp run --max-num-iterations N --viewer.quit-on-train-completion True
        --pipeline.model.background-color white nerfstudio-data --orientation-method none
        --center-method none --auto-scale-poses False
    PATH/bin/ns-export gaussian-splat --load-config OUT/studio/splatfacto/run/config.yml
        --output-dir OUT/export

(`--orientation-method none --center-method none --auto-scale-poses False` keep our world frame,
so the exported splats come back in the studio's coordinates), and read `splat.ply` back into
`GaussianSplats`. For nerfacto the export is `ns-export poisson --normal-method open3d` →
`poisson_mesh.ply`. Checked against a real nerfstudio 1.1.5 (pip, torch 2.14, CPU): it needs
TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 to load its checkpoints (set here) and, offline, the AlexNet
weights its LPIPS metric loads (the error says which file).
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from studio.assets import Asset, AssetMetadata, Views
from studio.errors import EmptyResultError, ToolUnavailableError

Progress = Callable[[float, str], None] | None
# torch.hub's line when a model (nerfacto and splatfacto both build LPIPS → AlexNet) fetches weights
_WEIGHTS_DOWNLOAD = re.compile(r'Downloading: "https?://\S+/([^/"]+)" to (\S+)/[^/\s]+\n')


@dataclass(frozen=True)
class NerfstudioParams:
    """method: "splatfacto" (→ splats) or "nerfacto" (→ Poisson mesh); iterations: ns-train
    --max-num-iterations; device: ns-train --machine.device-type ("cuda", "cpu", "mps"; splatfacto
    needs CUDA); export_points: points ns-export poisson samples; train_args: extra ns-train options
    (e.g. ("--pipeline.datamanager.train-num-rays-per-batch", "512")); timeout_s: wall-clock limit
    per command."""

    method: str = "splatfacto"
    iterations: int = 7000
    device: str = "cuda"
    export_points: int = 1_000_000
    train_args: tuple[str, ...] = ()
    timeout_s: float = 6 * 3600


def find_ns_env(ns_env: str | Path | None) -> tuple[Path, Path]:
    """The (ns-train, ns-export) executables in the nerfstudio environment `ns_env` (a venv or conda
    prefix: looks in bin/ and Scripts/). Raises ToolUnavailableError saying how to make one."""
    how = ("create one with `python -m venv ~/ns && ~/ns/bin/pip install nerfstudio` (its own torch/CUDA) and "
           "pass --ns-env ~/ns")
    if ns_env is None or str(ns_env) == "":
        raise ToolUnavailableError(f"the nerfstudio engine needs --ns-env PATH (a nerfstudio environment); {how}")
    root = Path(ns_env).expanduser()
    if not root.is_dir():
        raise ToolUnavailableError(f"nerfstudio environment {root} does not exist; {how}")
    found = []
    for tool in ("ns-train", "ns-export"):
        cands = [root / d / (tool + ext) for d in ("bin", "Scripts") for ext in ("", ".exe")]
        exe = next((c for c in cands if c.is_file() and os.access(c, os.X_OK)), None)
        if exe is None:
            raise ToolUnavailableError(f"{tool} not found in {root}/bin: {root} is not a nerfstudio environment; {how}")
        found.append(exe)
    return found[0], found[1]


def train_command(ns_train: Path, data: Path, out: Path, p: NerfstudioParams) -> list[str]:
    """The ns-train argv for `p.method` on the dataset folder `data`, outputs under `out`."""
    return [
        str(ns_train), p.method, "--data", str(data), "--output-dir", str(out),
        "--experiment-name", "studio", "--timestamp", "run", "--max-num-iterations", str(p.iterations),
        "--viewer.quit-on-train-completion", "True", "--machine.device-type", p.device,
        "--pipeline.model.background-color", "white", *p.train_args,
        "nerfstudio-data", "--orientation-method", "none", "--center-method", "none",
        "--auto-scale-poses", "False",
    ]


def export_command(ns_export: Path, out: Path, p: NerfstudioParams) -> list[str]:
    """The ns-export argv that writes the trained result into out/export."""
    config = out / "studio" / p.method / "run" / "config.yml"
    cmd = [str(ns_export), "gaussian-splat" if p.method == "splatfacto" else "poisson", "--load-config", str(config),
           "--output-dir", str(out / "export")]
    if p.method != "splatfacto":  # nerfacto predicts no normals by default; we bake our own textures
        cmd += ["--normal-method", "open3d", "--num-points", str(p.export_points), "--texture-method", "point_cloud"]
    return cmd


def exported_file(out: Path, p: NerfstudioParams) -> Path:
    """Where ns-export (nerfstudio 1.1) writes the result: splat.ply or poisson_mesh.ply."""
    return out / "export" / ("splat.ply" if p.method == "splatfacto" else "poisson_mesh.ply")


def _run(cmd: list[str], env_root: Path, log: Path, timeout: float) -> None:
    env = dict(os.environ)
    env["PATH"] = f"{env_root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(env_root)
    # nerfstudio 1.1 loads its own checkpoints with torch.load's defaults, which torch >= 2.6 refuses
    env.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with open(log, "ab") as f:
        f.write(("$ " + shlex.join(cmd) + "\n").encode())
        f.flush()
        try:
            r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as e:
            raise ToolUnavailableError(f"{Path(cmd[0]).name} ran past {timeout:.0f} s; see {log}") from e
    if r.returncode != 0:
        text = log.read_text(errors="replace")
        tail = text[-2000:]
        hint = ""
        if (m := _WEIGHTS_DOWNLOAD.search(text)) is not None:
            hint = (f"\nnerfstudio tried to download {m.group(1)} (torchvision weights for its LPIPS metric, built "
                    f"by every model) and this machine is offline: copy that file into {m.group(2)} first. ")
        raise ToolUnavailableError(f"{Path(cmd[0]).name} failed (exit {r.returncode});{hint} log {log}:\n{tail}")


def nerfstudio_reconstruct(views: Views, work: str | Path, ns_env: str | Path | None,
                           params: NerfstudioParams = NerfstudioParams(), progress: Progress = None) -> Asset:
    """Train nerfstudio on `views` in the user's environment and read the result back as an Asset
    (splats for splatfacto, a mesh for nerfacto). `work` keeps the dataset, outputs and ns.log.
    Raises ToolUnavailableError when the environment is missing or a command fails,
    EmptyResultError when the export wrote nothing."""
    from studio.assets.io import load

    from .capture import export_transforms_json

    ns_train, ns_export = find_ns_env(ns_env)
    root = ns_train.parent.parent
    report = progress or (lambda f, m: None)
    work = Path(work)
    data, out, log = work / "data", work / "outputs", work / "ns.log"
    work.mkdir(parents=True, exist_ok=True)
    export_transforms_json(views, data)
    report(0.05, f"ns-train {params.method} ({params.iterations} iterations)")
    _run(train_command(ns_train, data, out, params), root, log, params.timeout_s)
    report(0.9, "ns-export")
    _run(export_command(ns_export, out, params), root, log, params.timeout_s)
    result = exported_file(out, params)
    name = result.name
    if not result.is_file():
        raise EmptyResultError(f"ns-export wrote no {name} in {result.parent}; see {log}")
    asset = load(result)
    asset.metadata = AssetMetadata(pipeline="reconstruct", method=f"nerfstudio-{params.method}")
    report(1.0, f"read back {name}")
    return asset
