"""Structural validation of PLY, .splat, .spz, OBJ and STL files (tool "studio-structural").

There is no industry validator for these formats, so each check re-reads the file with the
studio's own reader (which refuses truncation, bad counts, NaN/Inf and out-of-range indices) and
then checks the values a renderer relies on:
- splats: finite values; quaternions of non-zero length (a zero quaternion is an error; a norm far
  from 1 after a lossy decode, a warning); scales within [1e-7, 1e3] m (warning outside);
  opacity that is not everywhere zero (warning).
- meshes: at least one triangle; degenerate (zero-area or repeated-index) triangles (warning);
  unit-length normals (warning); UVs finite (error) and colours within [0, 1] (warning).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from studio.errors import InvalidAssetError, StudioError

from .asset import Asset
from .splats import GaussianSplats
from .validate import ValidationMessage, ValidationReport

TOOL = "studio-structural"
MIN_SCALE, MAX_SCALE = 1e-7, 1e3  # metres


class _Report:
    def __init__(self, path: Path):
        self.r = ValidationReport(path=str(path), tool=TOOL)

    def add(self, severity: str, code: str, message: str, pointer: str = "") -> None:
        self.r.messages.append(ValidationMessage(code, severity, message, pointer))
        if severity == "error":
            self.r.errors += 1
        elif severity == "warning":
            self.r.warnings += 1
        elif severity == "info":
            self.r.infos += 1


def _code_for(reason: str) -> str:
    r = reason.lower()
    if "nan" in r or "inf" in r:
        return "NON_FINITE"
    if "index" in r or "indices" in r:
        return "INDEX_OUT_OF_RANGE"
    if "truncated" in r or "ends before" in r or "shorter" in r or "more data" in r or "more than" in r or "bytes after" in r:
        return "SIZE_MISMATCH"
    if "empty" in r:
        return "EMPTY_FILE"
    return "UNREADABLE"


def _read(rep: _Report, reader, path: Path):
    try:
        return reader(path)
    except InvalidAssetError as e:
        rep.add("error", _code_for(e.reason), e.reason)
    except StudioError as e:
        rep.add("error", "UNREADABLE", str(e))
    except OSError as e:
        rep.add("error", "UNREADABLE", f"cannot read file: {e.strerror or e}")
    return None


def check_splats(rep: _Report, s: GaussianSplats, raw_quats: np.ndarray | None = None) -> None:
    """Append splat value checks to `rep` (raw_quats: quaternions before any reader normalisation)."""
    n = len(s)
    rep.add("info", "SPLAT_COUNT", f"{n} Gaussians, SH degree {s.sh_degree}")
    if n == 0:
        rep.add("warning", "EMPTY", "file holds no Gaussians")
        return
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        a = getattr(s, name)
        bad = int((~np.isfinite(a.reshape(n, -1))).any(1).sum())
        if bad:
            rep.add("error", "NON_FINITE", f"{bad} Gaussians have NaN/Inf {name}", name)
    q = s.quats if raw_quats is None else raw_quats
    norm = np.linalg.norm(q.astype(np.float64), axis=1)
    zero = int((norm < 1e-8).sum())
    if zero:
        rep.add("error", "ZERO_QUATERNION", f"{zero} Gaussians have a zero-length rotation quaternion (no orientation)", "quats")
    if raw_quats is None:
        off = int((np.abs(norm - 1.0) > 0.05).sum() - zero)
        if off > 0:
            rep.add("warning", "QUATERNION_NOT_UNIT", f"{off} decoded quaternions have |q| more than 5% from 1", "quats")
    with np.errstate(over="ignore"):
        scale = np.exp(s.log_scales.astype(np.float64))
    big = int((scale > MAX_SCALE).any(1).sum())
    tiny = int((scale < MIN_SCALE).any(1).sum())
    if big:
        rep.add("warning", "SCALE_HUGE", f"{big} Gaussians have a standard deviation above {MAX_SCALE:g} m", "log_scales")
    if tiny:
        rep.add("warning", "SCALE_TINY", f"{tiny} Gaussians have a standard deviation below {MIN_SCALE:g} m", "log_scales")
    if np.isfinite(s.opacity_logits).all() and (s.opacities < 1.0 / 255.0).all():
        rep.add("warning", "ALL_TRANSPARENT", "every Gaussian has opacity below 1/255", "opacity_logits")


def check_meshes(rep: _Report, asset: Asset) -> None:
    """Append mesh checks (counts, index range, finite values, degenerate faces, normals, colours)."""
    rep.add("info", "MESH_COUNT", f"{len(asset.meshes)} meshes, {asset.vertex_count} vertices, {asset.triangle_count} triangles")
    if asset.triangle_count == 0:
        rep.add("error", "NO_TRIANGLES", "file holds no triangles")
    for i, m in enumerate(asset.meshes):
        ptr = f"meshes[{i}]"
        v, f = m.vertices, m.faces
        if not np.isfinite(v).all():
            rep.add("error", "NON_FINITE", "vertex positions contain NaN/Inf", ptr)
            continue
        if f.size and (f.min() < 0 or f.max() >= len(v)):
            rep.add("error", "INDEX_OUT_OF_RANGE", f"face indices outside [0, {len(v)})", ptr)
            continue
        if len(f):
            rep_idx = (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 0] == f[:, 2])
            area = np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=1)
            degen = int((rep_idx | (area <= 1e-30)).sum())
            if degen:
                rep.add("warning", "DEGENERATE_TRIANGLES", f"{degen} triangles have zero area or repeat a vertex", ptr)
        if m.normals is not None:
            if not np.isfinite(m.normals).all():
                rep.add("error", "NON_FINITE", "normals contain NaN/Inf", ptr)
            else:
                bad = int((np.abs(np.linalg.norm(m.normals, axis=1) - 1.0) > 1e-3).sum())
                if bad:
                    rep.add("warning", "NORMAL_NOT_UNIT", f"{bad} normals are not unit length", ptr)
        for j, uv in enumerate(m.uvs):
            if not np.isfinite(uv).all():
                rep.add("error", "NON_FINITE", f"TEXCOORD_{j} contains NaN/Inf", ptr)
        if m.colors is not None and ((m.colors < 0) | (m.colors > 1)).any():
            rep.add("warning", "COLOR_OUT_OF_RANGE", "vertex colours outside [0, 1]", ptr)


def _finish(rep: _Report) -> ValidationReport:
    return rep.r


def validate_ply(path: str | Path) -> ValidationReport:
    """Validate a splat PLY (splat checks on the raw stored values) or a mesh PLY (mesh checks)."""
    from .mesh_io import read_mesh_ply
    from .splat_ply import read_ply_header, read_splat_ply

    path = Path(path)
    rep = _Report(path)
    header = _read(rep, read_ply_header, path)
    if header is None:
        return _finish(rep)
    if header.is_splat():
        s = _read(rep, read_splat_ply, path)
        if s is not None:
            check_splats(rep, s, raw_quats=s.quats)
    else:
        asset = _read(rep, read_mesh_ply, path)
        if asset is not None:
            check_meshes(rep, asset)
    return _finish(rep)


def validate_splat(path: str | Path) -> ValidationReport:
    """Validate an antimatter15 .splat or an .spz file."""
    path = Path(path)
    rep = _Report(path)
    if path.suffix.lower() == ".spz":
        from .spz import read_spz_splats

        out = _read(rep, read_spz_splats, path)
        if out is not None:
            s, info = out
            rep.add("info", "SPZ_VERSION", f"spz version {info.version}, {info.fractional_bits} fractional bits")
            if info.has_extensions:
                rep.add("info", "SPZ_EXTENSIONS", "file carries spz extensions; they are not interpreted")
            check_splats(rep, s)
        return _finish(rep)
    from .splat_antimatter import RECORD, read_splat_file

    s = _read(rep, read_splat_file, path)
    if s is not None:
        raw = np.fromfile(path, RECORD)["rot"].astype(np.float64) - 128.0
        check_splats(rep, s, raw_quats=raw)
    return _finish(rep)


def validate_mesh_file(path: str | Path) -> ValidationReport:
    """Validate an OBJ (with its MTL/textures) or STL file."""
    from .mesh_io import read_mesh

    path = Path(path)
    rep = _Report(path)
    asset = _read(rep, read_mesh, path)
    if asset is not None:
        for d in asset.dropped:
            rep.add("warning", "DROPPED", f"could not keep: {d}")
        check_meshes(rep, asset)
    return _finish(rep)
