"""The Khronos glTF-Validator (npm `gltf-validator`, pinned in the repo-root package.json), driven through node.

`assets/gltf_validate.mjs` reads the file, calls `validateBytes` (external .bin/images resolved inside
the asset's folder only) and prints the JSON report; this module turns it into a ValidationReport.

Where the validator lives: $STUDIO_GLTF_VALIDATOR (the `gltf-validator` package folder, or a
`node_modules` folder holding it, or a folder with `node_modules/` in it), else `<repo root>/node_modules`.
Missing node or module → ToolUnavailableError that says to run `npm ci` in the repo root.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from studio.errors import InvalidAssetError, ToolUnavailableError, safe_name

from .validate import ValidationMessage, ValidationReport

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve().parent / "gltf_validate.mjs"
ENV_VAR = "STUDIO_GLTF_VALIDATOR"
SEVERITIES = {0: "error", 1: "warning", 2: "info", 3: "hint"}
TIMEOUT_S = 300


def validator_module_dir() -> Path:
    """The folder of the `gltf-validator` npm package; ToolUnavailableError when it is not installed."""
    env = os.environ.get(ENV_VAR)
    if env:
        base = Path(env)
        for cand in (base, base / "gltf-validator", base / "node_modules" / "gltf-validator"):
            if (cand / "package.json").is_file() and (cand / "index.js").is_file():
                return cand
        raise ToolUnavailableError(
            f"{ENV_VAR}={safe_name(env)} does not hold the npm package gltf-validator; point it at "
            f"node_modules/gltf-validator, or unset it and run `npm ci` in {REPO_ROOT}"
        )
    cand = REPO_ROOT / "node_modules" / "gltf-validator"
    if (cand / "package.json").is_file():
        return cand
    raise ToolUnavailableError(
        f"the Khronos glTF-Validator is not installed: run `npm ci` in {REPO_ROOT} "
        f"(or set {ENV_VAR} to a gltf-validator package folder)"
    )


def node_executable() -> str:
    node = shutil.which("node")
    if node is None:
        raise ToolUnavailableError(
            f"node (Node.js >= 18) is not on PATH; it runs the glTF-Validator. Install Node.js, then run `npm ci` in {REPO_ROOT}"
        )
    return node


def validate_gltf(path: Path) -> ValidationReport:
    """Validate a .glb/.gltf file with the Khronos glTF-Validator (all issues, external resources checked).

    A file the validator cannot even parse (e.g. zero bytes) gives a report with one error, code
    VALIDATOR_EXCEPTION. Raises ToolUnavailableError when node or the npm package is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidAssetError(path, "file not found")
    module = validator_module_dir()
    node = node_executable()
    try:
        proc = subprocess.run(
            [node, str(SCRIPT), str(module), str(path)],
            capture_output=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ToolUnavailableError(f"glTF-Validator did not finish within {TIMEOUT_S} s on {safe_name(path)}") from None
    try:
        out = json.loads(proc.stdout.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        err = proc.stderr.decode("utf-8", "replace").strip()[-2000:]
        raise ToolUnavailableError(
            f"glTF-Validator failed on {safe_name(path)} (exit {proc.returncode}): {err or 'no output'}; "
            f"try `npm ci` in {REPO_ROOT}"
        ) from None
    tool = f"gltf-validator {out.get('validatorVersion', '?')}"
    if "exception" in out:
        return ValidationReport(
            path=str(path),
            tool=tool,
            errors=1,
            messages=[ValidationMessage(code="VALIDATOR_EXCEPTION", severity="error", message=str(out["exception"]))],
        )
    return parse_report(out["report"], path, tool)


def parse_report(report: dict, path: Path, tool: str) -> ValidationReport:
    """A validator JSON report (the `validateBytes` result) → ValidationReport."""
    issues = report.get("issues", {})
    msgs = [
        ValidationMessage(
            code=str(m.get("code", "")),
            severity=SEVERITIES.get(m.get("severity"), "hint"),
            message=str(m.get("message", "")),
            pointer=str(m.get("pointer", "") or (f"@{m['offset']}" if "offset" in m else "")),
        )
        for m in issues.get("messages", [])
    ]
    return ValidationReport(
        path=str(path),
        tool=tool,
        errors=int(issues.get("numErrors", 0)),
        warnings=int(issues.get("numWarnings", 0)),
        infos=int(issues.get("numInfos", 0)),
        messages=msgs,
    )
