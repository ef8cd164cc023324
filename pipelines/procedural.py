"""The studio's built-in procedural sample: known geometry with every PBR map generated.

It needs no data and no weights, so `studio demo` runs anywhere, and because its geometry and
textures are known exactly it is the ground truth that reconstruction is measured against.

The object is a sphere of radius `radius` metres resting on the ground plane (centre at
y = radius, +Y up), UV-mapped latitude/longitude in glTF convention (u = longitude / 2π from
the +X axis towards -Z, v = 0 at the north pole, v down).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from studio.assets import Asset, AssetMetadata, GaussianSplats, Material, Mesh, Texture
from studio.assets.colour import linear_to_srgb, rgb_to_sh0, srgb_to_linear, to_uint8
from studio.assets.tangents import compute_tangents


@dataclass(frozen=True)
class SampleParams:
    """radius in metres; segments/rings of the UV sphere; texture size in pixels (square)."""

    radius: float = 0.3
    segments: int = 96
    rings: int = 48
    texture_size: int = 512
    bump_depth: float = 0.5  # normal-map strength of the dimples (tangent-space slope scale)


def uv_sphere(radius: float, segments: int, rings: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A UV sphere centred at the origin with a seam column and per-segment pole vertices.

    Returns vertices (V,3) float64, faces (F,3) int64 (counter-clockwise seen from outside),
    uvs (V,2) float32 glTF convention, normals (V,3) float32. No triangle is degenerate.
    """
    verts, uvs, faces = [], [], []
    # Ring vertices (excluding poles): rings-1 latitude rows, segments+1 columns (seam duplicated).
    for r in range(1, rings):
        v = r / rings
        theta = np.pi * v
        for s in range(segments + 1):
            u = s / segments
            phi = 2 * np.pi * u
            verts.append((np.sin(theta) * np.cos(phi), np.cos(theta), -np.sin(theta) * np.sin(phi)))
            uvs.append((u, v))
    row = segments + 1
    n_ring = len(verts)
    # Pole vertices, one per segment so each cap triangle gets its own u.
    north = []
    south = []
    for s in range(segments):
        u = (s + 0.5) / segments
        north.append(len(verts))
        verts.append((0.0, 1.0, 0.0))
        uvs.append((u, 0.0))
    for s in range(segments):
        u = (s + 0.5) / segments
        south.append(len(verts))
        verts.append((0.0, -1.0, 0.0))
        uvs.append((u, 1.0))
    idx = lambda r, s: (r - 1) * row + s  # noqa: E731
    for s in range(segments):
        faces.append((north[s], idx(1, s), idx(1, s + 1)))
        faces.append((south[s], idx(rings - 1, s + 1), idx(rings - 1, s)))
    for r in range(1, rings - 1):
        for s in range(segments):
            a, b, c, d = idx(r, s), idx(r, s + 1), idx(r + 1, s), idx(r + 1, s + 1)
            faces.append((a, c, b))
            faces.append((b, c, d))
    assert n_ring == (rings - 1) * row
    unit = np.asarray(verts, dtype=np.float64)
    return unit * radius, np.asarray(faces, dtype=np.int64), np.asarray(uvs, dtype=np.float32), unit.astype(np.float32)


def _height(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Dimple height field in [0,1] over UV (1 = flat surface, lower = dimple)."""
    cu = (u * 12) % 1.0 - 0.5
    cv = (v * 6) % 1.0 - 0.5
    d2 = (cu**2 + cv**2) / 0.16
    return 1.0 - np.exp(-d2 * 4.0) * 0.8 * (d2 < 1.0)


def pbr_textures(size: int, bump_depth: float) -> dict[str, np.ndarray]:
    """Procedural maps (H=W=size) as uint8 arrays, in the encodings glTF wants.

    base_color (H,W,4) sRGB; metallic_roughness (H,W,3) linear (G rough, B metal);
    normal (H,W,3) tangent space (+X = +u, +Y = -v, i.e. glTF/MikkTSpace with glTF's v-down UVs);
    occlusion (H,W,3) linear (R); emissive (H,W,3) sRGB.
    """
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    u = (x + 0.5) / size
    v = (y + 0.5) / size
    checker = ((np.floor(u * 12) + np.floor(v * 6)) % 2).astype(np.float64)
    hue = np.stack([0.5 + 0.5 * np.cos(2 * np.pi * (u + k / 3)) for k in range(3)], -1)
    base_lin = np.where(checker[..., None] > 0, 0.15 + 0.7 * hue, np.array([0.85, 0.82, 0.75]))
    base = np.concatenate([to_uint8(linear_to_srgb(base_lin)), np.full((size, size, 1), 255, np.uint8)], -1)

    rough = 0.2 + 0.7 * v  # smooth at the top, rough at the bottom
    metal = (checker > 0).astype(np.float64) * (np.floor(u * 4) % 2)  # metallic squares on alternating quarters
    mr = np.stack([np.zeros_like(u), rough, metal], -1)

    h = _height(u, v)
    du = np.gradient(h, axis=1) * size / 12 * bump_depth
    dv = np.gradient(h, axis=0) * size / 6 * bump_depth
    n = np.stack([-du, dv, np.ones_like(h)], -1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    normal = to_uint8(n * 0.5 + 0.5)

    occ = np.clip(0.35 + 0.65 * h, 0, 1)
    occlusion = to_uint8(np.stack([occ, occ, occ], -1))

    band = np.exp(-(((v - 0.5) / 0.02) ** 2))
    emissive_lin = band[..., None] * np.array([1.0, 0.45, 0.1])
    emissive = to_uint8(linear_to_srgb(emissive_lin))
    return {
        "base_color": base,
        "metallic_roughness": to_uint8(mr),
        "normal": normal,
        "occlusion": occlusion,
        "emissive": emissive,
    }


def sample_asset(params: SampleParams = SampleParams()) -> Asset:
    """The procedural sample as an Asset: one mesh, one material with all five PBR maps."""
    verts, faces, uvs, normals = uv_sphere(params.radius, params.segments, params.rings)
    verts = verts + np.array([0.0, params.radius, 0.0])
    maps = pbr_textures(params.texture_size, params.bump_depth)
    material = Material(
        name="procedural_pbr",
        base_color_texture=Texture(maps["base_color"], name="base_color"),
        metallic_roughness_texture=Texture(maps["metallic_roughness"], name="metallic_roughness"),
        normal_texture=Texture(maps["normal"], name="normal"),
        occlusion_texture=Texture(maps["occlusion"], name="occlusion"),
        emissive_texture=Texture(maps["emissive"], name="emissive"),
        emissive_factor=(1.0, 1.0, 1.0),
        emissive_strength=2.0,
    )
    tangents = compute_tangents(verts, normals, uvs, faces)
    mesh = Mesh.from_arrays(
        verts, faces, material=material, normals=normals, uvs=[uvs], tangents=tangents, name="sample_sphere"
    )
    meta = AssetMetadata(
        name="studio_procedural_sample",
        pipeline="procedural",
        licence="CC0-1.0",
        caption="A dimpled, checker-patterned sphere with a glowing equator band",
        extras={"radius_m": params.radius},
    )
    return Asset(meshes=[mesh], metadata=meta)


def sample_texture_bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup of `image` (H,W,C) uint8 at glTF UVs (P,2) with repeat wrap → (P,C) float64 in [0,1]."""
    h, w = image.shape[:2]
    x = uv[:, 0] * w - 0.5
    y = uv[:, 1] * h - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    img = image.astype(np.float64) / 255.0
    px = lambda yy, xx: img[yy % h, xx % w]  # noqa: E731
    return (
        px(y0, x0) * (1 - fx) * (1 - fy)
        + px(y0, x0 + 1) * fx * (1 - fy)
        + px(y0 + 1, x0) * (1 - fx) * fy
        + px(y0 + 1, x0 + 1) * fx * fy
    )


def surface_splats(asset: Asset, count: int = 20000, seed: int = 0) -> GaussianSplats:
    """Gaussian splats sampled on the asset's mesh surfaces: flat discs tangent to the surface,
    coloured by the base-colour texture × factor (DC SH), opacity 0.95.

    The disc radius is set so `count` discs cover the surface area about twice.
    """
    import trimesh
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    areas = np.array([m.geometry.area for m in asset.meshes])
    per_mesh = rng.multinomial(count, areas / areas.sum())
    means, quats, scales, colours = [], [], [], []
    disc = np.sqrt(2.0 * areas.sum() / count / np.pi)
    for mesh, k in zip(asset.meshes, per_mesh):
        if k == 0:
            continue
        pts, fidx = trimesh.sample.sample_surface(mesh.geometry, int(k), seed=int(rng.integers(1 << 31)))
        tri = mesh.vertices[mesh.faces[fidx]]
        bary = trimesh.triangles.points_to_barycentric(tri, pts)
        col = np.ones((len(pts), 3)) * np.asarray(mesh.material.base_color_factor[:3])
        if mesh.material.base_color_texture is not None and mesh.uvs:
            uv = np.einsum("pk,pkj->pj", bary, mesh.uvs[mesh.material.base_color_texture.texcoord][mesh.faces[fidx]])
            tex = sample_texture_bilinear(mesh.material.base_color_texture.image, uv)[:, :3]
            col = col * srgb_to_linear(tex)
        nrm = mesh.geometry.face_normals[fidx]
        world = trimesh.transform_points(pts, mesh.transform)
        nrm_w = nrm @ mesh.transform[:3, :3].T
        nrm_w /= np.linalg.norm(nrm_w, axis=1, keepdims=True)
        # Rotation taking local z to the normal: disc is flat in local z.
        z = np.array([0.0, 0.0, 1.0])
        axis = np.cross(z, nrm_w)
        s = np.linalg.norm(axis, axis=1, keepdims=True)
        c = nrm_w @ z
        ang = np.arctan2(s[:, 0], c)
        rotvec = np.where(s > 1e-9, axis / np.maximum(s, 1e-12), np.array([1.0, 0.0, 0.0])) * ang[:, None]
        q = Rotation.from_rotvec(rotvec).as_quat()[:, [3, 0, 1, 2]]
        means.append(world)
        quats.append(q)
        scales.append(np.tile([disc, disc, disc * 0.05], (len(pts), 1)))
        colours.append(linear_to_srgb(np.clip(col, 0, 1)))
    means, quats, scales, colours = (np.concatenate(a) for a in (means, quats, scales, colours))
    sh = rgb_to_sh0(colours)[:, None, :]
    logit = np.full(len(means), np.log(0.95 / 0.05))
    return GaussianSplats(means, quats, np.log(scales), logit, sh)
