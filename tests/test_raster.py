"""The moderngl PBR rasteriser, headless through EGL (llvmpipe on CI): exact colours, depth, masks,
normals, alpha modes, texture transforms, shading trends, splats, bad input, thumbnails, turntables."""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import trimesh
from PIL import Image

from studio.assets.asset import Asset
from studio.assets.cameras import Cameras
from studio.assets.colour import linear_to_srgb
from studio.assets.material import NEAREST, Material, Sampler, Texture, TextureTransform
from studio.assets.mesh import Mesh
from studio.assets.splats import GaussianSplats
from studio.errors import DisplayUnavailableError
from studio.renderers import environment as envmod
from studio.renderers import raster
from studio.renderers.raster import DirectionalLight, RenderWarning, render

QUAD_V = np.array([[-0.5, -0.5, 0.0], [0.5, -0.5, 0.0], [0.5, 0.5, 0.0], [-0.5, 0.5, 0.0]])
QUAD_F = np.array([[0, 1, 2], [0, 2, 3]])
QUAD_UV = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], np.float32)  # glTF: v down, image top at +y


def quad(material: Material | None = None, transform=None, **kw) -> Mesh:
    return Mesh.from_arrays(
        QUAD_V, QUAD_F, material=material or Material(), uvs=[QUAD_UV.copy()], transform=np.eye(4) if transform is None else transform, **kw
    )


def front_camera(size=64, dist=2.0, fov=40.0, width=None, height=None) -> Cameras:
    return Cameras.look_at([[0, 0, dist]], [0, 0, 0], fov_y_deg=fov, width=width or size, height=height or size)


def srgb8(linear) -> np.ndarray:
    return np.round(linear_to_srgb(np.asarray(linear, np.float64)) * 255)


def dark_env() -> envmod.Environment:
    return envmod.Environment(np.zeros((8, 16, 3), np.float32), name="black")


# ---------------------------------------------------------------------------------------------
# exact passes
# ---------------------------------------------------------------------------------------------
def test_unlit_quad_renders_exact_base_colour():
    colour = (0.2, 0.5, 0.8, 1.0)
    res = render(Asset(meshes=[quad(Material(base_color_factor=colour))]), front_camera(), unlit=True, passes=("rgb", "alpha"))
    assert res.rgb.shape == (1, 64, 64, 3) and res.rgb.dtype == np.uint8
    inside = res.alpha[0] == 1.0
    assert inside.sum() > 500
    err = np.abs(res.rgb[0][inside].astype(int) - srgb8(colour[:3]))
    assert err.max() <= 1
    assert (res.alpha[0][0, 0] == 0) and (res.rgb[0][0, 0] == 0).all()  # transparent background
    assert res.depth is None and res.mask is None  # only requested passes


def test_vertex_colours_multiply_base_colour():
    colors = np.tile(np.array([[0.5, 1.0, 0.25, 1.0]], np.float32), (4, 1))
    m = quad(Material(base_color_factor=(0.8, 0.4, 1.0, 1.0)), colors=colors)
    res = render(Asset(meshes=[m]), front_camera(), unlit=True, passes=("rgb", "alpha"))
    inside = res.alpha[0] == 1.0
    assert np.abs(res.rgb[0][inside].astype(int) - srgb8([0.4, 0.4, 0.25])).max() <= 1


def _tilted_plane_asset():
    # a plane through (0,0,0) tilted 35° about Y and 20° about X, large enough to fill the view
    rot = trimesh.transformations.euler_matrix(np.radians(20), np.radians(35), 0)
    return Asset(meshes=[quad(Material(double_sided=True), transform=rot @ np.diag([12, 12, 12, 1.0]))]), rot


def test_depth_equals_analytic_plane_depth():
    asset, rot = _tilted_plane_asset()
    K = np.array([[70.0, 0, 50.3], [0, 75.0, 40.7], [0, 0, 1]])  # off-centre principal point, non-square
    c2w = Cameras.look_at([[0.3, 0.2, 3.0]], [0, 0, 0]).cam_to_world
    cams = Cameras(K[None], c2w, 96, 80)
    res = render(asset, cams, passes=("depth", "mask"))
    n = rot[:3, :3] @ np.array([0, 0, 1.0])
    # ray through each pixel centre (u+0.5, v+0.5) in OpenCV camera space, intersected with n·X = 0
    uu, vv = np.meshgrid(np.arange(96) + 0.5, np.arange(80) + 0.5)
    rays_c = np.stack([uu, vv, np.ones_like(uu)], -1) @ np.linalg.inv(K).T  # z = 1
    R, t = c2w[0, :3, :3], c2w[0, :3, 3]
    rays_w = rays_c @ R.T
    s = -(t @ n) / (rays_w @ n)  # camera z along the ray (ray has z = 1)
    m = res.mask[0]
    assert m.mean() > 0.95
    rel = np.abs(res.depth[0][m] - s[m]) / s[m]
    assert rel.max() < 1e-4
    assert (res.depth[0][~m] == 0).all()


def _cube(size=0.6, **matkw) -> Mesh:
    box = trimesh.creation.box(extents=(size, size, size))
    box.unmerge_vertices()  # flat faces: each face its own vertices, so computed normals are face normals
    return Mesh.from_arrays(box.vertices, box.faces, material=Material(**matkw))


@pytest.mark.parametrize(
    "K,w,h",
    [
        (np.array([[60.0, 0, 32], [0, 60.0, 32], [0, 0, 1]]), 64, 64),
        (np.array([[90.0, 0, 41.2], [0, 85.0, 30.9], [0, 0, 1]]), 100, 72),
    ],
)
def test_mask_matches_projected_silhouette(K, w, h):
    from scipy.spatial import ConvexHull
    from skimage.draw import polygon2mask

    rot = trimesh.transformations.euler_matrix(0.4, 0.7, 0.2)
    m = _cube()
    m.transform = rot
    asset = Asset(meshes=[m])
    c2w = Cameras.look_at([[0.4, 0.5, 2.2]], [0.05, 0, 0]).cam_to_world
    cams = Cameras(K[None], c2w, w, h)
    res = render(asset, cams, passes=("mask",))
    uv, z = cams.project(m.world_vertices())
    hull = ConvexHull(uv[0])
    poly = uv[0][hull.vertices]
    # polygon2mask tests integer (row, col) positions; OpenCV pixel (r, c) has its centre at (c+.5, r+.5)
    expect = polygon2mask((h, w), np.stack([poly[:, 1] - 0.5, poly[:, 0] - 0.5], axis=1))
    got = res.mask[0]
    iou = (got & expect).sum() / (got | expect).sum()
    assert iou > 0.98, iou


def test_normals_pass_matches_analytic_normal():
    asset, rot = _tilted_plane_asset()
    res = render(asset, front_camera(48, dist=3.0), passes=("normals", "mask"))
    n = rot[:3, :3] @ np.array([0, 0, 1.0])
    got = res.normals[0][res.mask[0]]
    assert np.abs(got - n).max() < 1e-3
    # a cube face: the +X face seen from +X
    cams = Cameras.look_at([[2.0, 0, 0]], [0, 0, 0], width=32, height=32)
    res = render(Asset(meshes=[_cube()]), cams, passes=("normals", "mask"))
    assert np.abs(res.normals[0][res.mask[0]] - [1, 0, 0]).max() < 1e-3


def test_mesh_without_normals_gets_computed_ones():
    m = quad()
    assert m.normals is None
    res = render(Asset(meshes=[m]), front_camera(32), passes=("normals", "mask"))
    assert res.mask[0].sum() > 100
    assert np.abs(res.normals[0][res.mask[0]] - [0, 0, 1]).max() < 1e-4


def test_msaa_antialiases_edges():
    rot = trimesh.transformations.rotation_matrix(0.3, [0, 0, 1])
    asset = Asset(meshes=[quad(Material(base_color_factor=(1, 1, 1, 1)), transform=rot)])
    a4 = render(asset, front_camera(64), unlit=True, msaa=4, passes=("alpha",)).alpha[0]
    a1 = render(asset, front_camera(64), unlit=True, msaa=1, passes=("alpha",)).alpha[0]
    assert set(np.unique(a1)) <= {0.0, 1.0}
    partial = (a4 > 0.05) & (a4 < 0.95)
    assert partial.sum() > 40  # the slanted edges get fractional coverage
    assert abs(a4.sum() - a1.sum()) / a1.sum() < 0.03  # same area


# ---------------------------------------------------------------------------------------------
# materials
# ---------------------------------------------------------------------------------------------
def _alpha_texture() -> Texture:
    img = np.zeros((4, 4, 4), np.uint8)
    img[..., :3] = 255
    img[:, :2, 3] = 51  # left half alpha 0.2
    img[:, 2:, 3] = 230  # right half alpha 0.9
    return Texture(img, sampler=Sampler(mag_filter=NEAREST, min_filter=NEAREST))


def test_alpha_mask_cuts_below_cutoff():
    mat = Material(base_color_texture=_alpha_texture(), alpha_mode="MASK", alpha_cutoff=0.5)
    res = render(Asset(meshes=[quad(mat)]), front_camera(64), unlit=True, passes=("alpha", "mask"))
    a, m = res.alpha[0], res.mask[0]
    assert m[:, :31].sum() == 0 and a[:, :31].max() == 0  # left half (alpha 0.2) cut
    assert m[:, 33:].sum() > 300 and a[m].min() == 1.0  # right half kept, fully opaque
    # OPAQUE ignores texture alpha
    res = render(Asset(meshes=[quad(mat.replace(alpha_mode="OPAQUE"))]), front_camera(64), unlit=True, passes=("mask",))
    assert res.mask[0][:, :31].sum() > 300


@pytest.mark.parametrize("near_first", [False, True])
def test_blend_sorted_back_to_front(near_first):
    red = quad(Material(base_color_factor=(1, 0, 0, 0.5), alpha_mode="BLEND"), transform=trimesh.transformations.translation_matrix([0, 0, 0.5]))
    blue = quad(Material(base_color_factor=(0, 0, 1, 0.5), alpha_mode="BLEND"))
    meshes = [red, blue] if near_first else [blue, red]
    res = render(Asset(meshes=meshes), front_camera(64, dist=3.0), unlit=True, passes=("rgb", "alpha"))
    c = res.rgb[0, 32, 32].astype(int)
    # blue (far) first, then red over it: premultiplied (0.5, 0, 0.25), alpha 0.75 → straight (2/3, 0, 1/3)
    assert abs(res.alpha[0, 32, 32] - 0.75) <= 1 / 255
    assert np.abs(c - [170, 0, 85]).max() <= 2, c


def test_double_sided_back_face_visible_only_when_double_sided():
    flip = trimesh.transformations.rotation_matrix(np.pi, [0, 1, 0])  # quad now faces -Z, camera at +Z
    one = render(Asset(meshes=[quad(Material(), transform=flip)]), front_camera(32), passes=("mask",))
    assert one.mask[0].sum() == 0
    two = render(Asset(meshes=[quad(Material(double_sided=True), transform=flip)]), front_camera(32), passes=("mask", "normals"))
    assert two.mask[0].sum() > 100
    assert np.abs(two.normals[0][two.mask[0]] - [0, 0, 1]).max() < 1e-4  # flipped towards the viewer


def _stripe_texture() -> Texture:
    img = np.zeros((1, 16, 3), np.uint8)
    img[:, 4:6] = 255
    return Texture(img, sampler=Sampler(mag_filter=NEAREST, min_filter=NEAREST))


def _stripe_centre(offset: float, texcoord_override: int | None = None) -> float:
    tex = _stripe_texture()
    tex.transform = TextureTransform(offset=(offset, 0.0), texcoord=texcoord_override)
    m = quad(Material(base_color_texture=tex))
    if texcoord_override is not None:  # TEXCOORD_1 mirrored in u: override must pick it
        m.uvs = [QUAD_UV.copy(), np.stack([1 - QUAD_UV[:, 0], QUAD_UV[:, 1]], 1).astype(np.float32)]
    res = render(Asset(meshes=[m]), front_camera(128, dist=2.0), unlit=True, msaa=1, passes=("rgb",))
    row = res.rgb[0, 64, :, 0].astype(float)
    cols = np.nonzero(row > 128)[0]
    return float(cols.mean())


def test_texture_transform_offset_moves_pattern():
    f = 0.5 * 128 / np.tan(np.radians(20))
    quad_px = f * 1.0 / 2.0  # 1 m wide quad at 2 m
    c0 = _stripe_centre(0.0)
    assert abs(c0 - (64 - quad_px / 2 + 5 / 16 * quad_px)) < 1.0  # stripe texels 4-5 of 16
    c1 = _stripe_centre(0.125)  # uv' = uv + 0.125 → pattern moves left by 0.125 of the quad
    assert abs((c1 - c0) - (-0.125 * quad_px)) < 1.0
    c2 = _stripe_centre(0.0, texcoord_override=1)  # KHR_texture_transform texCoord override → mirrored set
    assert abs(c2 - (128 - c0)) < 1.5


@pytest.mark.parametrize(
    "wrap,expect",
    [
        (10497, "RBRB"),  # REPEAT
        (33648, "RBBR"),  # MIRRORED_REPEAT
        (33071, "RBBB"),  # CLAMP_TO_EDGE
    ],
)
def test_sampler_wrap_modes(wrap, expect):
    img = np.zeros((2, 2, 3), np.uint8)
    img[:, 0] = (255, 0, 0)
    img[:, 1] = (0, 0, 255)
    tex = Texture(img, sampler=Sampler(mag_filter=NEAREST, min_filter=NEAREST, wrap_s=wrap, wrap_t=wrap))
    tex.transform = TextureTransform(scale=(2.0, 1.0))  # u runs 0..2 across the quad
    res = render(Asset(meshes=[quad(Material(base_color_texture=tex))]), front_camera(128, dist=2.0), unlit=True, msaa=1)
    f = 0.5 * 128 / np.tan(np.radians(20))
    left = 64 - f / 4
    cols = [int(left + (k + 0.5) * f / 8) for k in range(4)]  # centres of the four quarter-width bands
    got = "".join("R" if res.rgb[0, 64, c, 0] > 200 else "B" if res.rgb[0, 64, c, 2] > 200 else "?" for c in cols)
    assert got == expect


@pytest.mark.parametrize("nt,axis", [((0.5, 0.0, 1.0), 0), ((0.0, 0.5, 1.0), 1)])
def test_normal_map_tangent_frame(nt, axis):
    # glTF: tangent-space +X follows +u, +Y points up the image (towards -v); the quad's image top is +Y
    n = np.array(nt) / np.linalg.norm(nt)
    img = np.tile(np.round((n * 0.5 + 0.5) * 255).astype(np.uint8), (4, 4, 1))
    m = quad(Material(normal_texture=Texture(img)))
    res = render(Asset(meshes=[m]), front_camera(32), passes=("normals", "mask"))
    got = res.normals[0][res.mask[0]]
    assert np.abs(got - n).max() < 0.02, got.mean(0)
    assert got[:, axis].min() > 0.4


def test_occlusion_darkens_indirect_light_and_unlit_extension():
    env = envmod.white_environment(16, 0.8)
    mat = Material(base_color_factor=(0.8, 0.8, 0.8, 1), metallic_factor=0.0, roughness_factor=0.9)
    black = Texture(np.zeros((2, 2, 3), np.uint8))
    full = render(Asset(meshes=[quad(mat)]), front_camera(32), environment=env).rgb[0, 16, 16].astype(int)
    half = render(Asset(meshes=[quad(mat.replace(occlusion_texture=black, occlusion_strength=0.5))]), front_camera(32), environment=env).rgb[0, 16, 16].astype(int)
    none = render(Asset(meshes=[quad(mat.replace(occlusion_texture=black))]), front_camera(32), environment=env).rgb[0, 16, 16].astype(int)
    assert (full > half).all() and (half > none).all() and none.max() <= 3
    # KHR_materials_unlit: lit render shows the base colour exactly
    unlit = render(Asset(meshes=[quad(Material(base_color_factor=(0.3, 0.6, 0.1, 1), unlit=True))]), front_camera(32), environment=env)
    assert np.abs(unlit.rgb[0, 16, 16].astype(int) - srgb8([0.3, 0.6, 0.1])).max() <= 1


def test_alpha_is_coverage_whatever_the_background():
    asset = Asset(meshes=[quad(Material(base_color_factor=(1, 0, 0, 1)))])
    for bg in (None, (0.2, 0.4, 0.6), "environment"):
        res = render(asset, front_camera(32), unlit=True, background=bg, passes=("rgb", "alpha"))
        assert res.alpha[0, 0, 0] == 0 and res.alpha[0, 16, 16] == 1
    assert (res.rgb[0, 16, 16] == [255, 0, 0]).all()
    solid = render(asset, front_camera(32), unlit=True, background=(0.2, 0.4, 0.6)).rgb[0, 0, 0]
    assert np.abs(solid.astype(int) - [51, 102, 153]).max() <= 1


def _sphere_asset(**matkw) -> Asset:
    s = trimesh.creation.icosphere(4, radius=0.5)
    return Asset(meshes=[Mesh.from_arrays(s.vertices, s.faces, normals=np.asarray(s.vertex_normals, np.float32), material=Material(**matkw))])


def _lum(img: np.ndarray) -> np.ndarray:
    return linear_to_srgb(img / 255.0) @ np.array([0.2126, 0.7152, 0.0722]) if False else (img.astype(float) / 255) @ np.array([0.2126, 0.7152, 0.0722])


def test_roughness_and_metallic_change_shading_monotonically():
    cams = front_camera(64, dist=2.0)
    env = envmod.white_environment(16, 0.05)
    light = DirectionalLight(direction=(-0.3, -0.3, -1.0), intensity=4.0)
    peaks, spreads = [], []
    for rough in (0.15, 0.4, 0.8):
        img = render(_sphere_asset(base_color_factor=(0.3, 0.3, 0.3, 1), metallic_factor=0.0, roughness_factor=rough),
                     cams, environment=env, directional_light=light).rgb[0]
        lum = _lum(img)
        peaks.append(lum.max())
        spreads.append(float((lum > 0.9 * lum.max()).sum()))
    assert peaks[0] > peaks[1] > peaks[2]  # rougher → dimmer, less sharp highlight
    assert spreads[0] < spreads[2]
    tints = []
    dim = DirectionalLight(direction=(-0.3, -0.3, -1.0), intensity=0.08)  # keep the metal's highlight unclipped
    for metal in (0.0, 0.5, 1.0):
        img = render(_sphere_asset(base_color_factor=(1.0, 0.1, 0.1, 1), metallic_factor=metal, roughness_factor=0.3),
                     cams, environment=dark_env(), directional_light=dim).rgb[0].astype(float)
        y, x = np.unravel_index(np.argmax(img.sum(-1)), img.shape[:2])
        tints.append(img[y, x, 1] / max(img[y, x, 0], 1))
    assert tints[0] > tints[1] > tints[2]  # metals tint their highlight with the base colour


def test_emissive_adds_exactly():
    cams = front_camera(32)
    mat = Material(base_color_factor=(0, 0, 0, 1), emissive_factor=(0.2, 0.6, 0.0), emissive_strength=0.5, metallic_factor=0.0)
    res = render(Asset(meshes=[quad(mat)]), cams, environment=dark_env(), passes=("rgb", "alpha"))
    inside = res.alpha[0] == 1
    assert np.abs(res.rgb[0][inside].astype(int) - srgb8([0.1, 0.3, 0.0])).max() <= 1
    # adds on top of lighting
    env = envmod.white_environment(16, 0.3)
    base = render(Asset(meshes=[quad(mat.replace(emissive_factor=(0, 0, 0)))]), cams, environment=env).rgb[0, 16, 16]
    lit = render(Asset(meshes=[quad(mat)]), cams, environment=env).rgb[0, 16, 16]
    assert (lit[:2] > base[:2]).all() and lit[2] == base[2]


def test_white_furnace_and_environment_background():
    env = envmod.white_environment(16, 0.5)
    res = render(_sphere_asset(base_color_factor=(1, 1, 1, 1), metallic_factor=0.0, roughness_factor=1.0), front_camera(32), environment=env, background="environment")
    # a white rough dielectric in a uniform environment reflects it back (energy-conserving, multi-scatter)
    assert np.abs(res.rgb[0][res.alpha[0] == 1].astype(int) - srgb8([0.5] * 3)).max() <= 6
    assert (res.rgb[0][0, 0] == srgb8([0.5] * 3)).all()


def test_tone_mapping_matches_threejs_formulas():
    def aces(c):  # three.js ACESFilmicToneMapping
        c = np.asarray(c, float) / 0.6
        mi = np.array([[0.59719, 0.35458, 0.04823], [0.07600, 0.90834, 0.01566], [0.02840, 0.13383, 0.83777]])
        mo = np.array([[1.60475, -0.53108, -0.07367], [-0.10208, 1.10813, -0.00605], [-0.00327, -0.07276, 1.07602]])
        v = mi @ c
        v = (v * (v + 0.0245786) - 0.000090537) / (v * (0.983729 * v + 0.4329510) + 0.238081)
        return np.clip(mo @ v, 0, 1)

    colour = np.array([0.9, 0.4, 0.1])
    for exposure in (1.0, 2.0):
        res = render(Asset(meshes=[quad(Material(base_color_factor=(*colour, 1)))]), front_camera(16), unlit=True,
                     tone_mapping="aces", exposure=exposure)
        assert np.abs(res.rgb[0, 8, 8].astype(int) - srgb8(aces(colour * exposure))).max() <= 1
    neutral = render(Asset(meshes=[quad(Material(base_color_factor=(0.5, 0.5, 0.5, 1)))]), front_camera(16), unlit=True, tone_mapping="neutral")
    assert np.abs(neutral.rgb[0, 8, 8].astype(int) - srgb8([0.46] * 3)).max() <= 1  # 0.5 - 0.04 offset below the knee
    with pytest.raises(ValueError):
        render(Asset(meshes=[quad()]), front_camera(16), tone_mapping="filmic")


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------
def test_missing_or_corrupt_texture_renders_fallback_with_warning():
    tex = Texture(np.full((4, 4, 3), 200, np.uint8))
    tex.image = None  # the file went missing after loading
    with pytest.warns(RenderWarning, match="magenta"):
        res = render(Asset(meshes=[quad(Material(base_color_texture=tex))]), front_camera(64), unlit=True)
    inside = res.rgb[0][20:44, 20:44].reshape(-1, 3).astype(int)
    magenta = (inside[:, 0] > 240) & (inside[:, 1] < 10) & (inside[:, 2] > 240)
    black = inside.sum(1) < 10
    assert magenta.mean() > 0.3 and black.mean() > 0.3


def _png_bytes(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG") if mode else Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["npot", "16bit", "grey", "grey_alpha"])
def test_unusual_images_load(kind):
    if kind == "npot":
        img = np.zeros((23, 37, 3), np.uint8)
        img[:] = (30, 160, 220)
        tex, expect = Texture(img), [30, 160, 220]
    elif kind == "16bit":
        img = np.full((8, 8), 40000, np.uint16)
        tex = Texture.from_file_bytes(_png_bytes(img))
        expect = [round(40000 / 65535 * 255)] * 3
    elif kind == "grey":
        tex, expect = Texture.from_file_bytes(_png_bytes(np.full((5, 7), 90, np.uint8))), [90, 90, 90]
    else:
        la = np.zeros((6, 6, 2), np.uint8)
        la[..., 0], la[..., 1] = 180, 255
        tex, expect = Texture.from_file_bytes(_png_bytes(la, "LA")), [180, 180, 180]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RenderWarning)
        res = render(Asset(meshes=[quad(Material(base_color_texture=tex))]), front_camera(32), unlit=True)
    assert np.abs(res.rgb[0, 16, 16].astype(int) - expect).max() <= 1


def test_nan_vertices_and_zero_area_triangles_dropped_with_warning():
    v = np.vstack([QUAD_V, [[np.nan, 0, 0], [0.1, 0.1, 0], [0.2, 0.2, 0]]])
    f = np.vstack([QUAD_F, [[0, 4, 1], [0, 5, 6]]])  # one NaN triangle, one degenerate (collinear)
    m = Mesh.from_arrays(v, f, material=Material(base_color_factor=(0, 1, 0, 1)))
    with pytest.warns(RenderWarning) as rec:
        res = render(Asset(meshes=[m]), front_camera(32), unlit=True, passes=("rgb", "mask"))
    msgs = " ".join(str(w.message) for w in rec)
    assert "NaN" in msgs and "zero-area" in msgs
    ref = render(Asset(meshes=[quad()]), front_camera(32), passes=("mask",))
    assert (res.mask[0] == ref.mask[0]).all()


def test_no_egl_raises_display_unavailable(monkeypatch):
    import moderngl

    def boom(*a, **k):
        raise Exception("eglGetDisplay failed")

    monkeypatch.setattr(moderngl, "create_context", boom)
    with pytest.raises(DisplayUnavailableError, match="libegl1 libgl1-mesa-dri"):
        raster.Renderer()


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="passes"):
        render(Asset(meshes=[quad()]), front_camera(16), passes=("colour",))
    with pytest.raises(ValueError, match="lighting"):
        render(Asset(meshes=[quad()]), front_camera(16), lighting="pathtraced")


# ---------------------------------------------------------------------------------------------
# splats
# ---------------------------------------------------------------------------------------------
def test_splat_renders_coloured_blob_where_it_projects():
    mean = np.array([[0.2, -0.1, 0.0]])
    sh = np.zeros((1, 1, 3), np.float32)
    sh[0, 0] = (np.array([0.9, 0.1, 0.1]) - 0.5) / 0.28209479177387814
    g = GaussianSplats(mean, [[1, 0, 0, 0]], np.log([[0.05, 0.05, 0.05]]), [4.0], sh)
    cams = front_camera(64, dist=2.0)
    res = render(Asset(splats=g), cams, passes=("rgb", "alpha"))
    u, v = cams.project(mean)[0][0, 0]
    a = res.alpha[0]
    yy, xx = np.mgrid[:64, :64] + 0.5
    cx, cy = (a * xx).sum() / a.sum(), (a * yy).sum() / a.sum()
    assert abs(cx - u) < 0.5 and abs(cy - v) < 0.5
    peak = res.rgb[0, int(v), int(u)].astype(int)
    assert peak[0] > 200 and peak[1] < 120 and peak[2] < 120
    assert a[int(v), int(u)] > 0.9 and a[0, 0] == 0
    m = render(Asset(splats=g), cams, passes=("mask",)).mask[0]  # splats join the mask where alpha > 0.5
    assert m[int(v), int(u)] and not m[0, 0] and (m == (a > 0.5)).all()
    # an anisotropic Gaussian stretched along world X gives a blob wider than tall
    g2 = GaussianSplats(mean * 0, [[1, 0, 0, 0]], np.log([[0.2, 0.03, 0.03]]), [4.0], sh)
    a2 = render(Asset(splats=g2), cams, passes=("alpha",)).alpha[0] > 0.5
    assert a2.any(axis=0).sum() > 2.5 * a2.any(axis=1).sum()


def test_splats_and_mesh_share_depth():
    sh = np.zeros((1, 1, 3), np.float32)
    sh[0, 0] = (np.array([1.0, 0.0, 0.0]) - 0.5) / 0.28209479177387814
    behind = GaussianSplats([[0, 0, -0.5]], [[1, 0, 0, 0]], np.log([[0.1] * 3]), [5.0], sh)
    asset = Asset(meshes=[quad(Material(base_color_factor=(0, 0, 1, 1)))], splats=behind)
    img = render(asset, front_camera(32), unlit=True).rgb[0, 16, 16]
    assert img[2] > 250 and img[0] < 5  # hidden behind the opaque quad


# ---------------------------------------------------------------------------------------------
# environments
# ---------------------------------------------------------------------------------------------
def test_hdr_round_trip_and_irradiance(tmp_path):
    env = envmod.builtin_environment("studio", 64)
    p = envmod.write_hdr(tmp_path / "env.hdr", env.image)
    back = envmod.load_environment(p).image
    assert back.shape == env.image.shape
    rel = np.abs(back - env.image) / np.maximum(env.image, 1e-3)
    assert rel.max() < 0.01  # RGBE keeps 8 mantissa bits
    sh = envmod.irradiance_sh9(np.full((32, 64, 3), 0.7, np.float32))
    n = np.array([[0, 1, 0], [1, 0, 0], [0, 0, -1.0]])
    assert np.allclose(envmod.sh9_basis(n) @ sh, 0.7, atol=2e-3)
    lut = envmod.brdf_lut()
    assert lut.shape == (64, 64, 2)
    assert abs(lut[0, -1].sum() - 1.0) < 0.02  # smooth, head-on: a white (F0 = 1) mirror reflects everything
    assert (lut[..., 0] >= 0).all() and (lut.sum(-1) <= 1.01).all()


def test_exr_environment_loads(tmp_path):
    import av

    img = np.random.default_rng(0).uniform(0, 8, size=(8, 16, 3)).astype(np.float32)
    p = tmp_path / "env.exr"
    with av.open(str(p), "w", format="image2") as c:
        s = c.add_stream("exr", rate=1)
        s.width, s.height, s.pix_fmt = 16, 8, "gbrpf32le"
        for pkt in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img[..., [1, 2, 0]]), format="gbrpf32le")):
            c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    env = envmod.load_environment(p)
    assert env.image.shape == (8, 16, 3) and np.allclose(env.image, img, rtol=1e-3)
    bad = tmp_path / "bad.exr"
    bad.write_bytes(b"\x76\x2f\x31\x01 truncated")
    from studio.errors import InvalidAssetError

    with pytest.raises(InvalidAssetError, match="bad.exr"):
        envmod.load_environment(bad)


def test_bad_environment_files(tmp_path):
    from studio.errors import InvalidAssetError

    bad = tmp_path / "bad.hdr"
    bad.write_bytes(b"not an hdr")
    with pytest.raises(InvalidAssetError, match="bad.hdr"):
        envmod.load_environment(bad)
    with pytest.raises(InvalidAssetError):
        envmod.load_environment(tmp_path / "missing.hdr")
    # names, paths and None resolve; anything else names itself in the error
    assert envmod.resolve_environment("sky") is envmod.builtin_environment("sky")
    assert envmod.resolve_environment(None) is envmod.default_environment()
    png = tmp_path / "env.png"
    Image.fromarray(np.full((8, 16, 3), 188, np.uint8)).save(png)
    assert np.allclose(envmod.resolve_environment(str(png)).image, 0.5, atol=0.01)  # sRGB 188 → linear 0.5
    with pytest.raises(InvalidAssetError, match="nosuchenv"):
        envmod.resolve_environment("nosuchenv")


# ---------------------------------------------------------------------------------------------
# thumbnails, turntables, real samples
# ---------------------------------------------------------------------------------------------
def test_turntable_mp4_decodes_with_asset_centred(tmp_path):
    import av

    from studio.renderers.thumbnails import render_turntable

    asset = Asset(meshes=[_cube(base_color_factor=(1, 0.8, 0.1, 1))])
    asset.meshes[0].transform = trimesh.transformations.translation_matrix([3.0, 1.0, -2.0])  # off origin
    calls = []
    out = render_turntable(asset, tmp_path / "t.mp4", frames=6, size=64, progress=lambda f, m: calls.append(f))
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264"
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 6 and frames[0].shape == (64, 64, 3)
    assert calls[-1] == 1.0 and len(calls) == 6
    from studio.renderers.thumbnails import write_mp4

    with pytest.raises(ValueError, match="even"):
        write_mp4([np.zeros((63, 64, 3), np.uint8)], tmp_path / "odd.mp4")
    assert not (tmp_path / "odd.mp4").exists()  # atomic: nothing half-written
    for fr in frames:
        fg = np.abs(fr.astype(int) - [46, 46, 51]).sum(-1) > 60
        yy, xx = np.nonzero(fg)
        assert 0.05 < fg.mean() < 0.6
        assert abs(xx.mean() - 31.5) < 5 and abs(yy.mean() - 31.5) < 5


def test_thumbnail_and_contact_sheet(tmp_path):
    from studio.renderers.thumbnails import contact_sheet, thumbnail

    asset = Asset(meshes=[_cube(base_color_factor=(0.1, 0.6, 0.9, 1))])
    p = thumbnail(asset, tmp_path / "th.png", size=48)
    im = np.asarray(Image.open(p))
    assert im.shape == (48, 48, 4) and im[0, 0, 3] == 0 and im[24, 24, 3] == 255
    sky = np.asarray(Image.open(thumbnail(asset, tmp_path / "sky.png", size=48, environment="sky", background="environment")))
    studio = np.asarray(Image.open(thumbnail(asset, tmp_path / "st.png", size=48, environment="studio", background="environment")))
    assert sky.shape == (48, 48, 3) and np.abs(sky.astype(int) - studio).mean() > 20  # the environment name reached the renderer
    p2 = contact_sheet(asset, tmp_path / "sheet.png", views=6, size=32, columns=3)
    assert Image.open(p2).size == (96, 64)


@pytest.mark.parametrize("model", ["WaterBottle/WaterBottle.gltf", "Box/Box.glb"])
def test_real_samples_are_on_screen_and_framed(model, testdata, tmp_path):
    from studio.assets.io import load
    from studio.renderers.thumbnails import orbit_cameras, view_to_png

    asset = load(testdata / "gltf" / model)
    cams = orbit_cameras(asset, 3, 96)
    res = render(asset, cams, passes=("rgb", "mask", "depth"), tone_mapping="aces")
    for i in range(3):
        m = res.mask[i]
        assert 0.05 < m.mean() < 0.8
        assert not (m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any())  # framed, not cut
        yy, xx = np.nonzero(m)
        assert abs((yy.min() + yy.max()) / 2 - 47.5) < 10 and abs((xx.min() + xx.max()) / 2 - 47.5) < 10
        assert res.rgb[i][m].std() > 5  # shaded, not flat
        d = res.depth[i][m]
        dist = np.linalg.norm(cams.centers[i] - asset.bounds().mean(0))
        assert (d > 0).all() and d.min() > dist * 0.5 and d.max() < dist * 1.5
    out = view_to_png(testdata / "gltf" / model, tmp_path / "v.png", size=64)
    assert Image.open(out).size == (64, 64)


def test_renderer_reuses_uploads():
    asset = Asset(meshes=[_cube()])
    with raster.Renderer() as r:
        r.render(asset, front_camera(16))
        gpu = r._upload(asset)
        r.render(asset, front_camera(16, dist=3))
        assert r._upload(asset) is gpu
        r.forget(asset)
        assert r._upload(asset) is not gpu


def test_renderer_survives_another_gl_context_becoming_current():
    """An OpenXR session or a viewer window makes its own context current; the shared renderer must
    switch back to its own before drawing (regression: garbage colours after the OpenXR tests)."""
    from studio.renderers.raster import create_headless_context, default_renderer

    colour = (0.2, 0.5, 0.8, 1.0)
    asset = Asset(meshes=[quad(Material(base_color_factor=colour))])
    default_renderer().render(asset, front_camera(), unlit=True)
    other = create_headless_context()  # becomes the current context of this thread
    try:
        other.clear(1.0, 0.0, 0.0, 1.0)
        res = default_renderer().render(Asset(meshes=[quad(Material(base_color_factor=colour))]), front_camera(),
                                        unlit=True, passes=("rgb", "alpha"))
    finally:
        other.release()
    inside = res.alpha[0] == 1.0
    assert inside.sum() > 500
    assert np.abs(res.rgb[0][inside].astype(int) - srgb8(colour[:3])).max() <= 1
