"""UV unwrap (xatlas) and PBR bakes: base colour from ray-cast views, normal map, AO, material."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

from studio.assets.cameras import Cameras
from studio.assets.colour import srgb_to_linear, to_float
from studio.assets.material import Texture
from studio.assets.mesh import Mesh
from studio.errors import CancelledError, EmptyResultError
from studio.pipelines.bake import (
    BakeParams,
    NormalBakeParams,
    TexelSurface,
    bake_ambient_occlusion,
    bake_base_color,
    bake_normal_map,
    decode_normal_map,
    dilate,
    make_pbr_material,
    pad_atlas,
    push_pull,
    raycast_views,
    raycasting_scene,
    texel_surface,
    texel_tangent_frames,
)
from studio.pipelines.mesh_extract import decimate
from studio.pipelines.metrics import psnr
from studio.pipelines.uv_unwrap import UVParams, chart_overlaps, rasterize_uv, texel_density, unwrap


def ring_cameras(n: int = 16, dist: float = 1.2, res: int = 128, target=(0.0, 0.0, 0.0)) -> Cameras:
    """n cameras on a Fibonacci sphere of radius `dist` around `target`, looking at it."""
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    th = np.pi * (1 + 5**0.5) * i
    eyes = dist * np.stack([np.cos(th) * np.sin(phi), np.cos(phi), np.sin(th) * np.sin(phi)], 1) + np.asarray(target)
    return Cameras.look_at(eyes, np.asarray(target), fov_y_deg=40, width=res, height=res)


def as_mesh(tm: trimesh.Trimesh) -> Mesh:
    return Mesh.from_arrays(tm.vertices, tm.faces)


def sample_texture(img: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup of (H,W,C) float image at glTF uvs (K,2) (texel centres at (i+0.5)/W), clamped."""
    h, w = img.shape[:2]
    x = uv[:, 0] * w - 0.5
    y = uv[:, 1] * h - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    g = lambda yy, xx: img[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]  # noqa: E731
    return g(y0, x0) * (1 - fx) * (1 - fy) + g(y0, x0 + 1) * fx * (1 - fy) + g(y0 + 1, x0) * (1 - fx) * fy + g(y0 + 1, x0 + 1) * fx * fy


# ----------------------------------------------------------------------------- UV atlas


@pytest.fixture(scope="module")
def torus_uv():
    t = trimesh.creation.torus(major_radius=0.3, minor_radius=0.12, major_sections=48, minor_sections=24)
    mesh = as_mesh(t)
    mesh.colors = np.random.default_rng(0).random((len(t.vertices), 4)).astype(np.float32)
    return mesh, *unwrap(mesh, UVParams(resolution=256, padding=4))


def test_rasterize_uv_covers_square_once():
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    fid, bary = rasterize_uv(uv, faces, 16, 8)
    assert (fid >= 0).all()
    # barycentrics reproduce each texel centre
    ys, xs = np.mgrid[0:8, 0:16]
    centre = np.stack([(xs + 0.5) / 16, (ys + 0.5) / 8], -1)
    rec = np.einsum("hwj,hwjc->hwc", bary, uv[faces[fid]])
    np.testing.assert_allclose(rec, centre, atol=1e-12)
    assert np.allclose(bary.sum(-1), 1.0)
    # a triangle outside the atlas covers nothing
    fid2, _ = rasterize_uv(uv + 2.0, faces, 16, 8)
    assert (fid2 < 0).all()


def test_unwrap_atlas_has_no_overlaps(torus_uv):
    src, mesh, stats = torus_uv
    uv = mesh.uvs[0]
    assert uv.dtype == np.float32 and (uv >= 0).all() and (uv <= 1).all()
    assert len(mesh.faces) == len(src.faces)
    chart_ids = mesh.geometry.metadata["uv_chart_ids"]
    assert stats.charts == len(np.unique(chart_ids)) > 1
    assert chart_overlaps(uv, mesh.faces, chart_ids, 256, 256) == 0
    # the overlap check can fail: move chart 1 onto chart 0
    moved = uv.astype(np.float64).copy()
    v0 = np.unique(mesh.faces[chart_ids == 0])
    v1 = np.unique(mesh.faces[chart_ids == 1])
    moved[v1] += moved[v0].mean(0) - moved[v1].mean(0)
    assert chart_overlaps(moved, mesh.faces, chart_ids, 256, 256) > 10


def test_unwrap_stats_and_attributes(torus_uv):
    src, mesh, stats = torus_uv
    fid, _ = rasterize_uv(mesh.uvs[0], mesh.faces, 256, 256)
    assert stats.utilisation == (fid >= 0).mean()
    assert 0.3 < stats.utilisation <= 1.0
    # texel density: 256 texels over the atlas; independent estimate from the covered texel count
    area = src.geometry.area
    assert stats.texels_per_metre == pytest.approx(np.sqrt((fid >= 0).sum() / area), rel=0.1)
    assert stats.texels_per_metre == pytest.approx(texel_density(mesh, 256))
    assert (stats.width, stats.height) == (256, 256)
    # seams split vertices; positions, normals, colours follow vmapping
    vm = mesh.geometry.metadata["uv_vmapping"]
    assert len(mesh.vertices) > len(src.vertices)
    np.testing.assert_array_equal(mesh.vertices, src.vertices[vm])
    np.testing.assert_array_equal(mesh.colors, src.colors[vm])
    np.testing.assert_array_equal(src.vertices[vm][mesh.faces], src.vertices[src.faces])
    # the source has no normals: the unsplit mesh's are carried, so seams do not crease
    np.testing.assert_allclose(mesh.normals, src.vertex_normals()[vm])
    seam = np.bincount(vm) > 1
    assert seam.any()
    # a higher resolution keeps the padding in texels, so density scales with it
    _, stats2 = unwrap(src, UVParams(resolution=512, padding=4))
    assert stats2.texels_per_metre == pytest.approx(2 * stats.texels_per_metre, rel=0.15)


def test_unwrap_errors():
    with pytest.raises(EmptyResultError):
        unwrap(Mesh.from_arrays(np.zeros((0, 3)), np.zeros((0, 3), int)))
    s = trimesh.creation.icosphere(1)
    with pytest.raises(CancelledError):
        unwrap(as_mesh(s), cancel=lambda: True)


# ----------------------------------------------------------------------------- padding


def test_dilate_and_push_pull():
    img = np.zeros((32, 32, 3))
    valid = np.zeros((32, 32), bool)
    valid[8:16, 8:16] = True
    img[8:16, 8:16] = [0.2, 0.4, 0.6]
    img[~valid] = 7.0  # garbage outside must not leak in
    d, dv = dilate(img, valid, 4)
    assert dv[4:20, 4:20].all() and not dv[3, 3] and not dv[20, 20]
    np.testing.assert_allclose(d[dv], np.broadcast_to([0.2, 0.4, 0.6], d[dv].shape))
    full = push_pull(img, valid)
    np.testing.assert_allclose(full, np.broadcast_to([0.2, 0.4, 0.6], full.shape))
    # two regions: valid texels keep their values, filled ones lie between the two colours
    img2 = np.zeros((16, 16, 1))
    v2 = np.zeros((16, 16), bool)
    v2[:, :3], v2[:, -3:] = True, True
    img2[:, :3], img2[:, -3:] = 0.0, 1.0
    out = pad_atlas(img2, v2, 2)
    assert np.array_equal(out[v2], img2[v2])
    assert (out[:, 3:5] == 0.0).all() and (out[:, -5:-3] == 1.0).all()  # exact dilation by padding
    assert ((out >= 0) & (out <= 1)).all()


# ----------------------------------------------------------------------------- base colour


def colour_fn(p: np.ndarray) -> np.ndarray:
    """A smooth linear-RGB pattern on 3D positions (a few cycles across the 0.6 m sphere)."""
    return np.stack(
        [
            0.5 + 0.4 * np.sin(30 * p[:, 0] + 1),
            0.5 + 0.4 * np.sin(25 * p[:, 1]),
            0.5 + 0.4 * np.cos(20 * p[:, 2] + 10 * p[:, 0]),
        ],
        1,
    )


def render_textured(mesh: Mesh, uv_tex: np.ndarray, texture: np.ndarray, cams: Cameras, colour_of_face=None):
    """Ray-cast views of a textured mesh: each pixel's colour is the texture at the hit UV."""
    hits = raycast_views(mesh, cams)
    f = np.maximum(hits.face, 0)
    uv = np.einsum("nhwj,nhwjc->nhwc", hits.bary, uv_tex[mesh.faces[f]])
    img = sample_texture(texture, uv.reshape(-1, 2)).reshape(*uv.shape[:3], 3)
    if colour_of_face is not None:
        img = np.where(colour_of_face(f)[..., None], img, 0.05)
    return np.where((hits.face >= 0)[..., None], img, 0.0).astype(np.float32), hits


@pytest.fixture(scope="module")
def textured_sphere():
    """A UV sphere (lat/long UVs) with a known texture, and its xatlas-unwrapped copy."""
    from studio.pipelines.procedural import uv_sphere

    v, f, uv, n = uv_sphere(0.3, 48, 24)
    sphere = Mesh.from_arrays(v, f, uvs=[uv], normals=n)
    # texture defined from the 3D pattern through the lat/long map (texel centres)
    res = 256
    ys, xs = np.mgrid[0:res, 0:res]
    u, vv = (xs + 0.5) / res, (ys + 0.5) / res
    theta, phi = np.pi * vv, 2 * np.pi * u
    pos = 0.3 * np.stack([np.sin(theta) * np.cos(phi), np.cos(theta), -np.sin(theta) * np.sin(phi)], -1)
    texture = colour_fn(pos.reshape(-1, 3)).reshape(res, res, 3)
    unwrapped, stats = unwrap(sphere, UVParams(resolution=256, padding=4))
    return sphere, texture, unwrapped


def baked_vs_truth(unwrapped: Mesh, source: Mesh, texture: np.ndarray, baked: Texture, n: int = 20_000):
    """Sample the baked atlas and the known texture at the same random surface points."""
    pts, fid = trimesh.sample.sample_surface(unwrapped.geometry, n, seed=1)
    bary = trimesh.triangles.points_to_barycentric(unwrapped.vertices[unwrapped.faces[fid]], pts)
    uv_new = np.einsum("kj,kjc->kc", bary, unwrapped.uvs[0][unwrapped.faces[fid]])
    vm = unwrapped.geometry.metadata["uv_vmapping"]
    uv_old = np.einsum("kj,kjc->kc", bary, source.uvs[0][vm][unwrapped.faces[fid]])
    got = sample_texture(srgb_to_linear(to_float(baked.image)), uv_new)
    return got, sample_texture(texture, uv_old)


def test_bake_base_color_reproduces_texture(textured_sphere):
    sphere, texture, unwrapped = textured_sphere
    assert np.abs(np.linalg.norm(sphere.vertices, axis=1) - 0.3).max() < 1e-9
    cams = ring_cameras()
    images, hits = render_textured(sphere, sphere.uvs[0], texture, cams)
    fractions = []
    baked = bake_base_color(unwrapped, images, cams, hits.depth, BakeParams(resolution=256), progress=lambda f, m: fractions.append(f))
    assert baked.image.shape == (256, 256, 3) and baked.image.dtype == np.uint8
    got, truth = baked_vs_truth(unwrapped, sphere, texture, baked)
    value = psnr(got, truth)
    assert value >= 35.0, value
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    # visibility computed by ray casting the mesh itself gives the same result
    again = bake_base_color(unwrapped, images, cams, None, BakeParams(resolution=256))
    assert psnr(*baked_vs_truth(unwrapped, sphere, texture, again)) >= 35.0


def test_bake_base_color_depth_test_rejects_occluders(textured_sphere):
    """Views of the sphere partly hidden behind a dark plate: only visible pixels may contribute."""
    sphere, texture, unwrapped = textured_sphere
    cams = ring_cameras()
    plate = trimesh.creation.box((0.5, 0.5, 0.01))
    plate.apply_translation([0, 0, 0.45])
    both = trimesh.util.concatenate([trimesh.Trimesh(sphere.vertices, sphere.faces, process=False), plate])
    scene = Mesh.from_arrays(both.vertices, both.faces)
    n_sph = len(sphere.faces)
    uv_all = np.concatenate([sphere.uvs[0], np.zeros((len(plate.vertices), 2), np.float32)])
    images, hits = render_textured(scene, uv_all, texture, cams, colour_of_face=lambda f: f < n_sph)
    assert ((hits.face >= n_sph).sum(axis=(1, 2)) > 200).sum() >= 3  # the plate hides part of several views
    baked = bake_base_color(unwrapped, images, cams, hits.depth, BakeParams(resolution=256))
    got, truth = baked_vs_truth(unwrapped, sphere, texture, baked)
    assert psnr(got, truth) >= 33.0
    # without the plate's depth (depths of the sphere alone) the dark plate bleeds into the bake
    alone = raycast_views(sphere, cams).depth
    leaky = bake_base_color(unwrapped, images, cams, alone, BakeParams(resolution=256))
    assert psnr(*baked_vs_truth(unwrapped, sphere, texture, leaky)) < psnr(got, truth) - 3.0


def test_bake_base_color_errors(textured_sphere):
    sphere, texture, unwrapped = textured_sphere
    cams = ring_cameras(n=2, res=32)
    imgs = np.zeros((2, 32, 32, 3), np.float32)
    with pytest.raises(EmptyResultError, match="UVs"):
        bake_base_color(Mesh.from_arrays(sphere.vertices, sphere.faces), imgs, cams)
    with pytest.raises(ValueError):
        bake_base_color(unwrapped, imgs[:1], cams)
    with pytest.raises(EmptyResultError, match="visible"):
        bake_base_color(unwrapped, imgs, cams, np.zeros((2, 32, 32), np.float32), BakeParams(resolution=64))
    with pytest.raises(CancelledError):
        bake_base_color(unwrapped, imgs, cams, params=BakeParams(resolution=64), cancel=lambda: True)


# ----------------------------------------------------------------------------- normal map


def quad(z_of_xy=lambda x, y: 0 * x, n: int = 16) -> Mesh:
    """A 1×1 m grid facing +Z, UVs mapped like an upright image: u = x + 0.5, v = 0.5 - y (v down)."""
    xs, ys = np.meshgrid(np.linspace(-0.5, 0.5, n + 1), np.linspace(-0.5, 0.5, n + 1))
    v = np.stack([xs.ravel(), ys.ravel(), z_of_xy(xs, ys).ravel()], 1)
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    uv = np.stack([v[:, 0] + 0.5, 0.5 - v[:, 1]], 1).astype(np.float32)
    return Mesh.from_arrays(v, faces, uvs=[uv])


def test_normal_map_follows_gltf_convention():
    """Dense surface tilted towards +X reads as +X (red > 0.5); tilted towards +Y (up the image,
    -v) reads as +Y (green > 0.5); flat reads (0.5, 0.5, 1)."""
    low = quad()
    s = 0.2
    far = NormalBakeParams(max_distance=0.2)  # the tilted planes lie up to 0.11 m off the quad
    expect = 0.5 * s / np.sqrt(1 + s * s)
    for dense, ch, sign in (
        (quad(lambda x, y: -s * x + 0.01), 0, 1),  # normal ∝ (s, 0, 1)
        (quad(lambda x, y: -s * y + 0.01), 1, 1),  # normal ∝ (0, s, 1): towards +Y = up the image
        (quad(lambda x, y: s * y - 0.01), 1, -1),
    ):
        img = bake_normal_map(dense, low, 32, far).image.astype(np.float64) / 255.0
        centre = img[8:24, 8:24].reshape(-1, 3)
        assert np.abs(centre[:, ch] - (0.5 + sign * expect)).max() < 0.01
        assert np.abs(centre[:, 1 - ch] - 0.5).max() < 0.01
        assert (centre[:, 2] > 0.95).all()
    flat = bake_normal_map(quad(lambda x, y: 0 * x + 0.005), low, 32).image.astype(np.float64) / 255.0
    np.testing.assert_allclose(flat[4:28, 4:28].reshape(-1, 3).mean(0), [0.5, 0.5, 1.0], atol=0.005)
    # mirrored UVs (u = 0.5 - x): tangent handedness flips, the decoded world normal stays right
    mirrored = quad()
    mirrored.uvs = [np.stack([0.5 - mirrored.vertices[:, 0], mirrored.uvs[0][:, 1]], 1).astype(np.float32)]
    tex = bake_normal_map(quad(lambda x, y: -s * x + 0.01), mirrored, 32, far)
    assert (tex.image[8:24, 8:24, 0] < 128).all()  # +X world is -u now
    nw, _ = decode_normal_map(tex, mirrored)
    np.testing.assert_allclose(nw.mean(0), np.array([s, 0, 1]) / np.sqrt(1 + s * s), atol=0.01)


R, AMP, FREQ = 0.3, 0.02, 25.0


def bumpy_sphere(subdiv: int = 5) -> Mesh:
    u = trimesh.creation.icosphere(subdiv, radius=1.0)
    d = u.vertices
    r = R + AMP * np.sin(FREQ * d[:, 0]) * np.sin(FREQ * d[:, 1]) * np.sin(FREQ * d[:, 2])
    return Mesh.from_arrays(d * r[:, None], u.faces)


def shade_lowpoly(mesh: Mesh, normal_tex: Texture | None, hits, light: np.ndarray) -> np.ndarray:
    """n·l per pixel of ray-cast views of `mesh`, its normal taken from the normal map (sampled
    bilinearly at the hit UV and decoded in the interpolated tangent frame) or from its vertex normals."""
    ok = hits.face >= 0
    f, b = hits.face[ok], hits.bary[ok].astype(np.float64)
    nv = mesh.vertex_normals().astype(np.float64)
    n = np.einsum("kj,kjc->kc", b, nv[mesh.faces[f]])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    if normal_tex is not None:
        surf = TexelSurface(np.zeros(len(f), np.int64), f, b, np.zeros_like(n), n, n, 0, 0)
        frame = texel_tangent_frames(mesh, surf)
        uv = np.einsum("kj,kjc->kc", b, mesh.uvs[0][mesh.faces[f]].astype(np.float64))
        t = sample_texture(normal_tex.image.astype(np.float64) / 255.0, uv) * 2 - 1
        n = t[:, :1] * frame.t + t[:, 1:2] * frame.b + t[:, 2:3] * frame.n
        n /= np.linalg.norm(n, axis=1, keepdims=True)
    out = np.zeros(ok.shape)
    out[ok] = np.clip(n @ light, 0, None)
    return out


def facing(mesh: Mesh, hits, cams: Cameras, min_cos: float = 0.5) -> np.ndarray:
    """(N,H,W) bool: pixels whose hit on `mesh` faces the camera (cos(view angle) > min_cos), so
    parallax between the dense and the low-poly surface stays small."""
    out = np.zeros(hits.face.shape, bool)
    nv = mesh.vertex_normals().astype(np.float64)
    for k in range(len(cams)):
        ok = hits.face[k] >= 0
        f, b = hits.face[k][ok], hits.bary[k][ok].astype(np.float64)
        p = np.einsum("kj,kjc->kc", b, mesh.vertices[mesh.faces[f]])
        n = np.einsum("kj,kjc->kc", b, nv[mesh.faces[f]])
        v = cams.centers[k] - p
        cos = np.einsum("kc,kc->k", v, n) / np.linalg.norm(v, axis=1) / np.linalg.norm(n, axis=1)
        out[k][ok] = cos > min_cos
    return out


def test_normal_map_of_bumpy_sphere_reproduces_bumps():
    dense = bumpy_sphere()
    smooth = trimesh.creation.icosphere(4, radius=R)
    low = decimate(as_mesh(smooth), 1200)
    low_uv, _ = unwrap(low, UVParams(resolution=256, padding=4))
    nmap = bake_normal_map(dense, low_uv, 256)
    cams = ring_cameras(n=6, dist=1.0, res=128)
    dense_hits, low_hits = raycast_views(dense, cams), raycast_views(low_uv, cams)
    both = (dense_hits.face >= 0) & facing(low_uv, low_hits, cams)
    light = np.array([0.4, 0.8, 0.45])
    light /= np.linalg.norm(light)
    ref = shade_lowpoly(dense, None, dense_hits, light)[both]
    baked = shade_lowpoly(low_uv, nmap, low_hits, light)[both]
    plain = shade_lowpoly(low_uv, None, low_hits, light)[both]
    c_baked = np.corrcoef(ref, baked)[0, 1]
    c_plain = np.corrcoef(ref, plain)[0, 1]
    # the bumps' own contribution (shading minus the smooth shading) is what the map adds
    c_bumps = np.corrcoef(ref - plain, baked - plain)[0, 1]
    assert c_baked > 0.9, (c_baked, c_plain, c_bumps)
    assert c_plain < 0.85, (c_baked, c_plain, c_bumps)
    assert c_bumps > 0.8, (c_baked, c_plain, c_bumps)
    # a dense mesh wound the other way (inward normals) bakes the same map
    flipped = Mesh.from_arrays(dense.vertices, dense.faces[:, ::-1])
    again = bake_normal_map(flipped, low_uv, 256)
    assert np.abs(again.image.astype(int) - nmap.image.astype(int)).max() <= 1


# ----------------------------------------------------------------------------- AO and material


def test_ambient_occlusion_darkens_concave_region(torus_uv):
    _, mesh, _ = torus_uv
    ao = bake_ambient_occlusion(mesh, 128, rays=32)
    assert ao.image.shape == (128, 128, 3) and ao.image.dtype == np.uint8
    surf = texel_surface(mesh, 128)
    a = ao.image[..., 0].ravel()[surf.texel] / 255.0
    radial = np.linalg.norm(surf.points[:, :2], axis=1)  # the torus axis is z
    inner, outer = a[radial < 0.2], a[radial > 0.4]
    assert outer.mean() > 0.97 and inner.mean() < 0.8
    assert inner.mean() < outer.mean() - 0.2
    # deterministic under the seed
    assert np.array_equal(bake_ambient_occlusion(mesh, 128, rays=32).image, ao.image)


def test_make_pbr_material_packs_orm():
    base = Texture(image=np.full((8, 8, 3), 200, np.uint8))
    normal = Texture(image=np.full((8, 8, 3), [128, 128, 255], np.uint8))
    ao = Texture(image=np.full((8, 8, 3), 77, np.uint8))
    m = make_pbr_material(base, normal, ao, metallic=0.2, roughness=0.8)
    assert m.base_color_texture is base and m.normal_texture is normal
    orm = m.occlusion_texture
    assert orm is m.metallic_roughness_texture
    assert (orm.image[..., 0] == 77).all() and (orm.image[..., 1] == 204).all() and (orm.image[..., 2] == 51).all()
    assert m.metallic_factor == 1.0 and m.roughness_factor == 1.0
    plain = make_pbr_material(base, metallic=0.0, roughness=0.6)
    assert plain.occlusion_texture is None and plain.metallic_roughness_texture is None
    assert plain.metallic_factor == 0.0 and plain.roughness_factor == 0.6
    with pytest.raises(ValueError):
        make_pbr_material(base, roughness=1.5)


# ----------------------------------------------------------------------------- the whole route


def test_procedural_sample_views_to_validated_glb(tmp_path):
    """Procedural sample → ray-cast views → TSDF → decimate → unwrap → bakes → GLB that validates."""
    from studio.assets import Asset
    from studio.assets.io import save
    from studio.assets.tangents import compute_tangents
    from studio.assets.validate import validate
    from studio.pipelines.mesh_extract import TSDFParams, tsdf_fuse
    from studio.pipelines.metrics import chamfer
    from studio.pipelines.procedural import SampleParams, sample_asset, sample_texture_bilinear

    gt = sample_asset(SampleParams(texture_size=256)).meshes[0]
    tex_img = gt.material.base_color_texture.image
    truth = lambda uv: srgb_to_linear(sample_texture_bilinear(tex_img, uv)[:, :3])  # noqa: E731
    cams = ring_cameras(n=16, dist=1.3, res=128, target=(0.0, 0.3, 0.0))  # the sample rests on y = 0
    hits = raycast_views(gt, cams)
    f = np.maximum(hits.face, 0)
    uv = np.einsum("nhwj,nhwjc->nhwc", hits.bary, gt.uvs[0][gt.faces[f]])
    images = np.zeros(hits.face.shape + (3,), np.float32)
    images[hits.face >= 0] = truth(uv[hits.face >= 0])

    dense = tsdf_fuse(hits.depth, cams, images, TSDFParams(voxels_per_diagonal=160))
    low = decimate(dense, 3000)
    low_uv, stats = unwrap(low, UVParams(resolution=512))
    base = bake_base_color(low_uv, images, cams, hits.depth, BakeParams(resolution=512))
    normal = bake_normal_map(dense, low_uv, 512)
    ao = bake_ambient_occlusion(low_uv, 128, rays=16)
    low_uv.tangents = compute_tangents(low_uv.vertices, low_uv.vertex_normals(), low_uv.uvs[0], low_uv.faces)
    low_uv.material = make_pbr_material(base, normal, ao)

    r = chamfer(low_uv, gt, n=30_000)
    assert r.chamfer <= 0.002 * r.diagonal and r.fscore >= 0.99, r
    # baked colours at surface points vs the ground-truth texture at the nearest GT surface point
    pts, fid = trimesh.sample.sample_surface(low_uv.geometry, 20_000, seed=2)
    bary = trimesh.triangles.points_to_barycentric(low_uv.vertices[low_uv.faces[fid]], pts)
    got = sample_texture(srgb_to_linear(to_float(base.image)), np.einsum("kj,kjc->kc", bary, low_uv.uvs[0][low_uv.faces[fid]]))
    import open3d as o3d

    near = raycasting_scene(gt).compute_closest_points(o3d.core.Tensor(pts.astype(np.float32)))
    tri = near["primitive_ids"].numpy().astype(np.int64)
    puv = near["primitive_uvs"].numpy().astype(np.float64)
    gb = np.stack([1 - puv[:, 0] - puv[:, 1], puv[:, 0], puv[:, 1]], 1)
    want = truth(np.einsum("kj,kjc->kc", gb, gt.uvs[0][gt.faces[tri]]))
    value = psnr(got, want)
    print(f"procedural route: {r}, base colour PSNR {value:.2f} dB, {stats}")
    assert value >= 26.0

    path = tmp_path / "recon.glb"
    save(Asset(meshes=[low_uv]), path)
    report = validate(path)
    assert report.ok, str(report)


def test_padding_keeps_mipmaps_from_bleeding(textured_sphere):
    """Sampling a coarse mip level of the baked atlas at surface points: with the seam padding the
    colours stay right; with empty gutters (the raw bake) chart borders darken."""
    sphere, texture, unwrapped = textured_sphere
    cams = ring_cameras()
    images, hits = render_textured(sphere, sphere.uvs[0], texture, cams)
    baked = srgb_to_linear(to_float(bake_base_color(unwrapped, images, cams, hits.depth, BakeParams(resolution=256)).image))
    covered = np.zeros(256 * 256, bool)
    covered[texel_surface(unwrapped, 256).texel] = True
    raw = np.where(covered.reshape(256, 256, 1), baked, 0.0)
    mip = lambda img, k: img.reshape(256 // k, k, 256 // k, k, 3).mean((1, 3))  # noqa: E731  box-filtered level
    pts, fid = trimesh.sample.sample_surface(unwrapped.geometry, 20_000, seed=4)
    bary = trimesh.triangles.points_to_barycentric(unwrapped.vertices[unwrapped.faces[fid]], pts)
    uv = np.einsum("kj,kjc->kc", bary, unwrapped.uvs[0][unwrapped.faces[fid]])
    for k in (4, 8):  # mip levels 2 and 3
        want = sample_texture(mip(baked, 1), uv)  # level 0 of the padded atlas as the reference
        good = psnr(sample_texture(mip(baked, k), uv), want)
        bad = psnr(sample_texture(mip(raw, k), uv), want)
        assert good > bad + 5.0, (k, good, bad)
