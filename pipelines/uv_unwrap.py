"""UV atlas generation with xatlas and UV-space rasterisation (issue #6 item 3).

`unwrap(mesh, params)` cuts the mesh into charts and packs them into one square atlas. Vertices
are split along seams (xatlas's vmapping), so the returned Mesh has more vertices than the input;
normals and colours follow their source vertex. UVs are in glTF convention: origin at the image's
top-left, v down — xatlas's y axis is the atlas image row, so its coordinates map directly.

`rasterize_uv(uvs, faces, width, height)` is the UV-space rasteriser used by baking and the atlas
checks: it finds, for every texel centre ((x + 0.5)/W, (y + 0.5)/H), the triangle covering it and
that point's barycentric coordinates.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from studio.assets.mesh import Mesh
from studio.errors import CancelledError, EmptyResultError

Progress = Callable[[float, str], None] | None
Cancel = Callable[[], bool] | None

STAGE_VERSION = "1"


@dataclass(frozen=True)
class UVParams:
    """resolution: atlas size in texels (square); padding: texels kept free around each chart
    (what bake's dilation fills, so mip-mapping does not bleed); max_iterations: xatlas chart
    growing iterations; bilinear: leave room for bilinear filtering between charts."""

    resolution: int = 1024
    padding: int = 4
    max_iterations: int = 1
    bilinear: bool = True
    rotate_charts: bool = True


@dataclass(frozen=True)
class UVStats:
    """charts: number of charts; utilisation: fraction of the atlas's texel centres covered by a
    triangle (what a bake fills; xatlas's own figure counts partly covered texels too);
    texels_per_metre: sqrt(UV area in texels² / surface area in m²), the mean linear texel density;
    width/height: atlas size in texels."""

    charts: int
    utilisation: float
    texels_per_metre: float
    width: int
    height: int


def unwrap(
    mesh: Mesh,
    params: UVParams = UVParams(),
    progress: Progress = None,
    cancel: Cancel = None,
) -> tuple[Mesh, UVStats]:
    """Unwrap `mesh` into a UV atlas.

    Returns (new Mesh with seams split: vertices (V',3), faces (F,3) in the input's face order,
    uvs[0] (V',2) float32 in [0,1] glTF v-down, normals (the input's, or its area-weighted ones
    when it has none) and colours carried through xatlas's vmapping,
    tangents dropped; stats). The new mesh's `geometry.metadata["uv_vmapping"]` holds vmapping
    (V',) int64, each new vertex's index in the input mesh, and `["uv_chart_ids"]` the chart id
    (F,) int64 of every face. Raises EmptyResultError for a mesh without faces or charts that do
    not fit one atlas, CancelledError when `cancel()` is true before or after xatlas runs."""
    import xatlas

    if len(mesh.faces) == 0:
        raise EmptyResultError("unwrap: the mesh has no faces")
    if cancel is not None and cancel():
        raise CancelledError("cancelled before UV unwrapping")
    if progress is not None:
        progress(0.0, f"unwrapping {len(mesh.faces)} faces")
    v = np.ascontiguousarray(mesh.vertices, dtype=np.float32)
    f = np.ascontiguousarray(mesh.faces, dtype=np.uint32)
    atlas = xatlas.Atlas()
    atlas.add_mesh(v, f, np.ascontiguousarray(mesh.vertex_normals(), dtype=np.float32))
    co = xatlas.ChartOptions()
    co.max_iterations = int(params.max_iterations)
    po = xatlas.PackOptions()
    po.resolution = int(params.resolution)
    po.padding = int(params.padding)
    po.bilinear = bool(params.bilinear)
    po.rotate_charts = bool(params.rotate_charts)
    atlas.generate(co, po)
    # With a fixed `resolution` xatlas picks texels-per-unit itself and may overflow the square
    # (e.g. 658×506 for 512). Then re-pack once at a density scaled to fit (auto atlas size); if
    # that still overflows, the UVs are scaled uniformly into the square below.
    res = int(params.resolution)
    if max(atlas.width, atlas.height) > res or atlas.atlas_count != 1:
        po.resolution = 0
        po.texels_per_unit = float(atlas.texels_per_unit) * 0.99 * res / max(atlas.width, atlas.height, 1)
        atlas.generate(co, po)
    if cancel is not None and cancel():
        raise CancelledError("cancelled during UV unwrapping")
    vmapping, indices, uvs = atlas.get_mesh(0)
    vmapping = vmapping.astype(np.int64)
    indices = indices.astype(np.int64).reshape(-1, 3)
    if atlas.atlas_count != 1:
        raise EmptyResultError(
            f"unwrap: xatlas needed {atlas.atlas_count} atlases at {params.resolution}²; raise UVParams.resolution"
        )
    chart_ids = np.full(len(indices), -1, dtype=np.int64)
    for c in range(atlas.get_mesh_chart_count(0)):
        chart_ids[np.asarray(atlas.get_mesh_chart(0, c).faces, dtype=np.int64)] = c
    # xatlas normalises uvs by its atlas's own width/height, which can differ from `resolution`;
    # place the charts in the requested square at the texel size the packer used.
    w, h = int(atlas.width), int(atlas.height)
    scale = res / max(w, h) if max(w, h) > res else 1.0
    uv = np.asarray(uvs, dtype=np.float64) * np.array([w, h]) * (scale / res)
    pick = lambda a: None if a is None else a[vmapping]  # noqa: E731
    out = Mesh.from_arrays(
        mesh.vertices[vmapping],
        indices,
        material=mesh.material,
        # normals of the unsplit mesh: recomputing them after the split would crease every seam
        normals=mesh.vertex_normals()[vmapping],
        uvs=[uv.astype(np.float32)],
        colors=pick(mesh.colors),
        transform=mesh.transform.copy(),
        name=mesh.name,
    )
    out.geometry.metadata["uv_vmapping"] = vmapping
    out.geometry.metadata["uv_chart_ids"] = chart_ids
    stats = UVStats(
        charts=int(atlas.chart_count),
        utilisation=float((rasterize_uv(uv, indices, res, res)[0] >= 0).mean()),
        texels_per_metre=texel_density(out, res),
        width=res,
        height=res,
    )
    if progress is not None:
        progress(1.0, f"{stats.charts} charts, {100 * stats.utilisation:.0f}% of the atlas used")
    return out, stats


def texel_density(mesh: Mesh, resolution: int, uv_set: int = 0) -> float:
    """Mean linear texel density in texels per metre (world units after `transform`):
    sqrt(Σ UV triangle area · resolution² / Σ surface area)."""
    uv = mesh.uvs[uv_set].astype(np.float64)[mesh.faces] * resolution
    e1, e2 = uv[:, 1] - uv[:, 0], uv[:, 2] - uv[:, 0]
    a_uv = 0.5 * np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).sum()
    p = mesh.world_vertices()[mesh.faces]
    a_3d = 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1).sum()
    return float(np.sqrt(a_uv / a_3d)) if a_3d > 0 else 0.0


def rasterize_uv_hits(
    uvs: np.ndarray, faces: np.ndarray, width: int, height: int, eps: float = 1e-9, chunk: int = 4_000_000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (texel, triangle) pair where the texel centre lies inside the triangle in UV space.

    uvs: (V,2) float UVs in [0,1] (glTF, v down; u·width, v·height are texel coordinates);
    faces: (F,3) int. A centre on a shared edge belongs to both triangles (barycentrics ≥ -eps).
    Returns (texel index y·width + x (K,) int64, face index (K,) int64, barycentrics (K,3) float64).
    Degenerate (zero-area) UV triangles are skipped."""
    uv = np.asarray(uvs, dtype=np.float64) * np.array([width, height], dtype=np.float64)
    tri = uv[np.asarray(faces, dtype=np.int64)]  # (F,3,2)
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    lo = np.floor(tri.min(axis=1) - 0.5).astype(np.int64)
    hi = np.ceil(tri.max(axis=1) - 0.5).astype(np.int64)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, [width - 1, height - 1])
    bw = np.maximum(hi[:, 0] - lo[:, 0] + 1, 0)
    bh = np.maximum(hi[:, 1] - lo[:, 1] + 1, 0)
    ok = (np.abs(area) > 1e-12) & (bw > 0) & (bh > 0)
    fids = np.nonzero(ok)[0]
    counts = (bw * bh)[fids]
    out_t, out_f, out_b = [], [], []
    start = 0
    cum = np.cumsum(counts)
    while start < len(fids):
        base = cum[start - 1] if start else 0
        stop = int(np.searchsorted(cum, base + chunk, side="right"))
        stop = max(stop, start + 1)
        ids = fids[start:stop]
        cnt = counts[start:stop]
        rep = np.repeat(np.arange(len(ids)), cnt)
        local = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        f = ids[rep]
        px = lo[f, 0] + local % bw[f]
        py = lo[f, 1] + local // bw[f]
        x, y = px + 0.5, py + 0.5
        ax, ay, bx, by, cx, cy = a[f, 0], a[f, 1], b[f, 0], b[f, 1], c[f, 0], c[f, 1]
        ar = area[f]
        w0 = ((bx - x) * (cy - y) - (by - y) * (cx - x)) / ar
        w1 = ((cx - x) * (ay - y) - (cy - y) * (ax - x)) / ar
        w2 = 1.0 - w0 - w1
        inside = (w0 >= -eps) & (w1 >= -eps) & (w2 >= -eps)
        out_t.append((py * width + px)[inside])
        out_f.append(f[inside])
        out_b.append(np.stack([w0, w1, w2], axis=1)[inside])
        start = stop
    if not out_t:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3))
    return np.concatenate(out_t), np.concatenate(out_f), np.concatenate(out_b)


def rasterize_uv(uvs: np.ndarray, faces: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise UV triangles: face id (H,W) int64 (-1 where no triangle covers the texel centre)
    and barycentrics (H,W,3) float64 of the texel centre in that face (one face per texel: the
    highest face index wins on shared edges)."""
    t, f, b = rasterize_uv_hits(uvs, faces, width, height)
    fid = np.full(width * height, -1, dtype=np.int64)
    bary = np.zeros((width * height, 3), dtype=np.float64)
    order = np.argsort(f, kind="stable")  # later (higher) faces overwrite earlier ones
    fid[t[order]] = f[order]
    bary[t[order]] = b[order]
    return fid.reshape(height, width), bary.reshape(height, width, 3)


def chart_overlaps(uvs: np.ndarray, faces: np.ndarray, chart_ids: np.ndarray, width: int, height: int) -> int:
    """Number of texels whose centre is covered by triangles of two or more different charts
    (0 for a valid atlas; triangles of the same chart may share edges)."""
    t, f, _ = rasterize_uv_hits(uvs, faces, width, height, eps=-1e-9)  # strict interior: shared edges do not count
    pairs = np.unique(np.stack([t, np.asarray(chart_ids)[f]], axis=1), axis=0)
    _, per_texel = np.unique(pairs[:, 0], return_counts=True)
    return int((per_texel > 1).sum())
