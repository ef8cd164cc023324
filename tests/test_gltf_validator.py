"""The Khronos glTF-Validator bridge: same counts as the shared manifests (same pinned validator version),
clear ToolUnavailableError when node or the npm package is missing."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from studio.assets import gltf_validator
from studio.assets.gltf_validator import validate_gltf
from studio.assets.validate import validate
from studio.errors import ToolUnavailableError


def _conftest():
    spec = importlib.util.spec_from_file_location("_studio_tests_conftest", Path(__file__).with_name("conftest.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_C = _conftest()
MANIFEST = _C.gltf_manifest()
INVALID = _C.invalid_manifest()
REPO = Path(__file__).resolve().parents[1]


def test_pinned_version_matches_manifest() -> None:
    pkg = json.loads((REPO / "package.json").read_text())
    pin = pkg["dependencies"]["gltf-validator"]
    assert pin[0].isdigit(), "gltf-validator must be pinned to an exact version"
    assert {e["validator"]["version"] for e in MANIFEST} == {pin}
    lock = json.loads((REPO / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/gltf-validator"]["version"] == pin


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["name"] for e in MANIFEST])
def test_sample_models_report_as_in_manifest(testdata: Path, entry: dict) -> None:
    report = validate(testdata / "gltf" / entry["path"])  # through the VALIDATORS table
    v = entry["validator"]
    assert (report.errors, report.warnings, report.infos) == (v["errors"], v["warnings"], v["infos"]), str(report)
    assert report.codes("warning") == {k: n for k, n in v["codes"].items() if k in report.codes("warning")}
    assert set(v["codes"]) == set(report.codes("error")) | set(report.codes("warning"))
    assert report.tool == f"gltf-validator {v['version']}"


@pytest.mark.parametrize("entry", INVALID, ids=[e["file"] for e in INVALID])
def test_broken_files_report_as_in_manifest(testdata: Path, entry: dict) -> None:
    report = validate_gltf(testdata / "gltf-invalid" / entry["file"])
    v = entry["validator"]
    assert not report.ok
    if v.get("exception"):
        assert report.codes() == {"VALIDATOR_EXCEPTION": 1}
        assert v["exception"] in report.messages[0].message
    else:
        assert report.errors == v["errors"] and report.codes() == v["codes"], str(report)
        assert all(m.pointer or m.code.startswith("GLB_") or m.code == "INVALID_JSON" for m in report.messages)


def test_missing_node_is_a_clear_error(testdata: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolUnavailableError, match=r"node .*not on PATH.*npm ci"):
        validate_gltf(testdata / "gltf" / "Box" / "Box.glb")


def test_missing_node_modules_is_a_clear_error(testdata: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(gltf_validator.ENV_VAR, raising=False)
    monkeypatch.setattr(gltf_validator, "REPO_ROOT", tmp_path)
    with pytest.raises(ToolUnavailableError, match=r"run `npm ci` in"):
        validate_gltf(testdata / "gltf" / "Box" / "Box.glb")


def test_env_var_points_at_module(testdata: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(gltf_validator, "REPO_ROOT", tmp_path)  # the repo copy must not be what is found
    for where in (REPO / "node_modules", REPO / "node_modules" / "gltf-validator", REPO):
        monkeypatch.setenv(gltf_validator.ENV_VAR, str(where))
        assert validate_gltf(testdata / "gltf" / "Box" / "Box.glb").ok
    monkeypatch.setenv(gltf_validator.ENV_VAR, str(tmp_path))
    with pytest.raises(ToolUnavailableError, match=gltf_validator.ENV_VAR):
        validate_gltf(testdata / "gltf" / "Box" / "Box.glb")


def test_external_resources_stay_inside_the_folder(tmp_path: Path) -> None:
    """The validator's resource loader refuses ../ URIs (reported as an IO error, nothing read outside)."""
    (tmp_path / "secret.bin").write_bytes(b"\x00" * 12)
    sub = tmp_path / "a"
    sub.mkdir()
    doc = {"asset": {"version": "2.0"}, "buffers": [{"byteLength": 12, "uri": "../secret.bin"}]}
    (sub / "x.gltf").write_text(json.dumps(doc))
    report = validate_gltf(sub / "x.gltf")
    assert "IO_ERROR" in report.codes() and "outside the asset folder" in str([m.message for m in report.messages])
