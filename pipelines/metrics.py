"""Quality metrics for reconstructions (issue #6 item 7): image PSNR/SSIM, mesh Chamfer / normal
consistency / F-score, and a JSON + HTML report.

Images are float arrays in [0, 1] (linear or sRGB — compare like with like), shape (H,W) or (H,W,C).
Meshes are studio `Mesh` (its `transform` applied, metres) or `trimesh.Trimesh`.
"""
from __future__ import annotations

import html
import io
import json
import math
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

from studio.assets.atomic import write_bytes_atomic
from studio.assets.mesh import Mesh


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of a against b.

    a, b: same shape (H,W) or (H,W,C), float; mask: optional (H,W) bool, only those pixels count.
    Returns +inf for identical inputs. Raises ValueError on shape mismatch or an empty mask."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ {a.shape} vs {b.shape}")
    err = (a - b) ** 2
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != a.shape[: mask.ndim]:
            raise ValueError(f"psnr: mask {mask.shape} does not match images {a.shape}")
        if not mask.any():
            raise ValueError("psnr: the mask selects no pixel")
        err = err[mask]
    mse = float(err.mean())
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Mean structural similarity (scikit-image, Gaussian-free 7×7 window, or the largest odd
    window the image allows) of a against b; (H,W) or (H,W,C) with channels last."""
    from skimage.metrics import structural_similarity

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"ssim: shapes differ {a.shape} vs {b.shape}")
    side = min(a.shape[0], a.shape[1])
    win = min(7, side if side % 2 else side - 1)
    if win < 3:
        raise ValueError(f"ssim: image {a.shape} is too small (needs at least 3×3)")
    kw: dict[str, Any] = {"channel_axis": -1} if a.ndim == 3 else {}
    return float(structural_similarity(a, b, data_range=data_range, win_size=win, **kw))


@dataclass(frozen=True)
class ChamferResult:
    """Surface comparison of a reconstruction (a) against a reference (b), distances in metres.

    accuracy: mean distance a→b; completeness: mean distance b→a; chamfer: their mean.
    normal_consistency: mean |n_a·n_b| over nearest-neighbour pairs, both directions, in [0,1].
    precision / recall: fraction of a's samples within tau of b / of b's samples within tau of a;
    fscore: their harmonic mean; tau: the threshold used (default 1 % of b's bbox diagonal);
    diagonal: b's bbox diagonal."""

    chamfer: float
    accuracy: float
    completeness: float
    normal_consistency: float
    fscore: float
    precision: float
    recall: float
    tau: float
    diagonal: float


def _as_trimesh(m: Mesh | trimesh.Trimesh) -> trimesh.Trimesh:
    if isinstance(m, Mesh):
        return trimesh.Trimesh(m.world_vertices(), m.faces, process=False, validate=False)
    return m


def _sample(m: trimesh.Trimesh, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if len(m.faces) == 0:
        raise ValueError("chamfer: a mesh has no faces")
    pts, fid = trimesh.sample.sample_surface(m, n, seed=seed)
    return np.asarray(pts), np.asarray(m.face_normals)[fid]


def _surface_distance(points: np.ndarray, mesh: trimesh.Trimesh) -> tuple[np.ndarray, np.ndarray]:
    """Exact distance (P,) from each point to the mesh's surface and the unit normal (P,3) of the
    closest triangle (open3d RaycastingScene)."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.ascontiguousarray(mesh.vertices, dtype=np.float32)),
        o3d.core.Tensor(np.ascontiguousarray(mesh.faces, dtype=np.uint32)),
    )
    q = o3d.core.Tensor(np.ascontiguousarray(points, dtype=np.float32))
    ans = scene.compute_closest_points(q)
    closest = ans["points"].numpy().astype(np.float64)
    fid = ans["primitive_ids"].numpy().astype(np.int64)
    return np.linalg.norm(points - closest, axis=1), np.asarray(mesh.face_normals)[fid]


def chamfer(
    mesh_a: Mesh | trimesh.Trimesh,
    mesh_b: Mesh | trimesh.Trimesh,
    n: int = 100_000,
    tau: float | None = None,
    tau_fraction: float = 0.01,
    seed: int = 0,
    method: str = "surface",
) -> ChamferResult:
    """Chamfer distance, normal consistency and F-score of mesh_a (reconstruction) vs mesh_b
    (reference) from `n` area-uniform surface samples on each (deterministic under `seed`).

    method "surface": each sample's exact distance to the other mesh's surface (open3d
    RaycastingScene closest points) — identical meshes give 0. method "points": distance to the
    nearest of the other mesh's samples (scipy cKDTree), the classic sample-to-sample Chamfer,
    which has a floor of about half the sample spacing. tau defaults to `tau_fraction` × mesh_b's
    bbox diagonal; normals are the geometric face normals (orientation ignored)."""
    ta, tb = _as_trimesh(mesh_a), _as_trimesh(mesh_b)
    pa, na = _sample(ta, n, seed)
    pb, nb = _sample(tb, n, seed + 1)
    diag = float(np.linalg.norm(tb.bounds[1] - tb.bounds[0]))
    tau = float(tau) if tau is not None else tau_fraction * diag
    if method == "surface":
        d_ab, n_ab = _surface_distance(pa, tb)
        d_ba, n_ba = _surface_distance(pb, ta)
    elif method == "points":
        from scipy.spatial import cKDTree

        d_ab, i_ab = cKDTree(pb).query(pa, workers=-1)
        d_ba, i_ba = cKDTree(pa).query(pb, workers=-1)
        n_ab, n_ba = nb[i_ab], na[i_ba]
    else:
        raise ValueError(f"chamfer: method must be 'surface' or 'points', got {method!r}")
    nc = 0.5 * (np.abs(np.einsum("ij,ij->i", na, n_ab)).mean() + np.abs(np.einsum("ij,ij->i", nb, n_ba)).mean())
    prec = float((d_ab <= tau).mean())
    rec = float((d_ba <= tau).mean())
    f = 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec)
    acc, comp = float(d_ab.mean()), float(d_ba.mean())
    return ChamferResult(0.5 * (acc + comp), acc, comp, float(nc), f, prec, rec, tau, diag)


def _plain(x: Any) -> Any:
    """Dataclasses, numpy scalars/arrays and paths → JSON-able Python values (inf/NaN → strings)."""
    if is_dataclass(x) and not isinstance(x, type):
        return _plain(asdict(x))
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, np.generic):
        return _plain(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return "inf" if x > 0 else "-inf" if x < 0 else "nan"
    if isinstance(x, Path):
        return str(x)
    return x


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}." if isinstance(v, dict) else f"{prefix}{k}"))
        return out
    return {prefix.rstrip("."): d}


def _plot_svg(flat: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    scalars = {k: float(v) for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    series = {
        k: [float(x) for x in v]
        for k, v in flat.items()
        if isinstance(v, list) and v and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
    }
    rows = int(bool(scalars)) + int(bool(series))
    if rows == 0:
        return ""
    fig, axes = plt.subplots(rows, 1, figsize=(7, 1.2 + 0.35 * max(len(scalars), 4) + (3 if series else 0)), squeeze=False)
    r = 0
    if scalars:
        ax = axes[r, 0]
        names = list(scalars)
        vals = [scalars[k] for k in names]
        ax.barh(range(len(names)), vals, color="#4c78a8")
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.invert_yaxis()
        for i, v in enumerate(vals):
            ax.text(v, i, f" {v:.4g}", va="center", fontsize=7)
        ax.set_title("scalar metrics", fontsize=9)
        r += 1
    if series:
        ax = axes[r, 0]
        for k, v in series.items():
            ax.plot(range(len(v)), v, marker="o", ms=3, label=k)
        ax.set_xlabel("index (e.g. view)", fontsize=8)
        ax.legend(fontsize=7)
        ax.set_title("per-item metrics", fontsize=9)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.find("<svg") :]


def write_metrics(results: dict[str, Any], out_dir: str | Path, name: str = "metrics") -> tuple[Path, Path]:
    """Write `results` (nested dicts of numbers, lists, dataclasses such as ChamferResult) as
    `<out_dir>/<name>.json` and a self-contained `<name>.html` (table + inline SVG plot: a bar per
    scalar, a line per numeric list). Both written atomically. Returns (json path, html path)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plain = _plain(results)
    jpath, hpath = out / f"{name}.json", out / f"{name}.html"
    write_bytes_atomic(jpath, (json.dumps(plain, indent=2, sort_keys=True) + "\n").encode())
    flat = _flatten(plain)
    rows = "\n".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(f'{v:.6g}' if isinstance(v, float) else json.dumps(v))}</td></tr>"
        for k, v in flat.items()
    )
    doc = (
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>"
        + html.escape(name)
        + "</title><style>body{font-family:sans-serif}td{padding:2px 8px}"
        "tr:nth-child(even){background:#f3f3f3}</style></head><body>\n<h1>"
        + html.escape(name)
        + "</h1>\n<table>\n"
        + rows
        + "\n</table>\n"
        + _plot_svg(flat)
        + "\n</body></html>\n"
    )
    write_bytes_atomic(hpath, doc.encode())
    return jpath, hpath
