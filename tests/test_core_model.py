"""Asset model basics, colour conversions, safe paths, atomic writes and the procedural sample."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

from studio.assets import Asset, GaussianSplats, Material, Mesh, Texture, TextureTransform
from studio.assets.atomic import atomic_path, write_bytes_atomic
from studio.assets.colour import linear_to_srgb, rgb_to_sh0, sh0_to_rgb, srgb_to_linear
from studio.errors import UnsafePathError
from studio.paths import safe_child, sanitize_upload_name
from studio.pipelines.procedural import SampleParams, sample_asset, sample_texture_bilinear, surface_splats


def test_srgb_round_trip_and_known_values():
    x = np.linspace(0, 1, 1001)
    assert np.allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-12)
    assert srgb_to_linear(np.array([0.5]))[0] == pytest.approx(0.21404114, abs=1e-7)
    assert linear_to_srgb(np.array([0.0031308]))[0] == pytest.approx(0.04045, abs=1e-5)
    import torch

    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    assert torch.allclose(linear_to_srgb(srgb_to_linear(t)), t, atol=1e-9)
    assert np.allclose(sh0_to_rgb(rgb_to_sh0(x)), x)


@pytest.mark.parametrize(
    "name",
    ["../etc/passwd", "a/../../b", "/abs/path", "bad\x00name", "tab\tname", "x" * 300, "C:\\windows"],
)
def test_safe_child_refuses_hostile_names(tmp_path, name):
    with pytest.raises(UnsafePathError):
        safe_child(tmp_path, name)


def test_safe_child_accepts_nested(tmp_path):
    assert safe_child(tmp_path, "textures/a b.png") == (tmp_path / "textures" / "a b.png").resolve()
    assert sanitize_upload_name("../../evil\x01.png") == "evil_.png"


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.glb"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    write_bytes_atomic(target, b"whole")
    assert target.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [target]


def test_mesh_rejects_mismatched_attributes():
    with pytest.raises(ValueError):
        Mesh.from_arrays(np.zeros((3, 3)), [[0, 1, 2]], uvs=[np.zeros((4, 2), np.float32)])


def test_texture_transform_matrix_matches_khr_definition():
    tt = TextureTransform(offset=(0.25, 0.5), rotation=np.pi / 2, scale=(2.0, 3.0))
    uv = np.array([1.0, 0.0, 1.0])
    # KHR_texture_transform: scale, then rotate (rotation matrix [[c, s], [-s, c]]), then offset.
    s = np.array([2.0, 0.0])
    r = np.array([[0.0, 1.0], [-1.0, 0.0]]) @ s
    assert np.allclose(tt.matrix() @ uv, [r[0] + 0.25, r[1] + 0.5, 1.0])


def test_splats_validate_shapes_and_degree():
    n = 10
    with pytest.raises(ValueError):
        GaussianSplats(np.zeros((n, 3)), np.zeros((n, 4)), np.zeros((n, 3)), np.zeros(n), np.zeros((n, 5, 3)))
    s = GaussianSplats(np.zeros((n, 3)), np.tile([1, 0, 0, 0], (n, 1)), np.zeros((n, 3)), np.zeros(n), np.zeros((n, 16, 3)))
    assert s.sh_degree == 3 and s.with_sh_degree(0).sh.shape == (n, 1, 3)
    assert np.allclose(s.opacities, 0.5)


def test_procedural_sample_geometry_is_a_closed_sphere_with_all_maps():
    p = SampleParams(segments=48, rings=24, texture_size=128)
    asset = sample_asset(p)
    (mesh,) = asset.meshes
    tri = mesh.vertices[mesh.faces]
    assert trimesh.triangles.area(tri).min() > 0, "no degenerate triangles"
    centre = np.array([0, p.radius, 0])
    r = np.linalg.norm(mesh.vertices - centre, axis=1)
    assert np.allclose(r, p.radius)
    # Outward winding everywhere.
    assert ((mesh.geometry.face_normals * (mesh.geometry.triangles_center - centre)).sum(1) > 0).all()
    # Watertight once the seam/pole duplicates are merged.
    merged = trimesh.Trimesh(mesh.vertices, mesh.faces, process=True)
    assert merged.is_watertight
    assert set(mesh.material.textures()) == set(Material.TEXTURE_SLOTS)
    assert np.allclose(asset.bounds(), [[-p.radius, 0, -p.radius], [p.radius, 2 * p.radius, p.radius]], atol=1e-9)


def test_surface_splats_lie_on_the_surface_with_texture_colours():
    asset = sample_asset(SampleParams(segments=64, rings=32, texture_size=128))
    s = surface_splats(asset, count=3000, seed=1)
    r = np.linalg.norm(s.means - [0, 0.3, 0], axis=1)
    assert np.abs(r - 0.3).max() < 0.3 * (1 - np.cos(np.pi / 32)) + 1e-6  # chord sag of the tessellation
    # The disc's thin axis (local z) is the surface normal.
    from scipy.spatial.transform import Rotation

    z = Rotation.from_quat(s.quats[:, [1, 2, 3, 0]]).apply([0, 0, 1])
    n = (s.means - [0, 0.3, 0]) / r[:, None]
    assert np.abs((z * n).sum(1)).min() > 0.97
    # Same seed, same splats.
    assert np.array_equal(s.means, surface_splats(asset, count=3000, seed=1).means)
    tex = asset.meshes[0].material.base_color_texture.image
    assert sample_texture_bilinear(tex, np.array([[0.5, 0.5]])).shape == (1, 4)


def test_asset_bounds_include_transforms_and_splats():
    m = Mesh.from_arrays([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]], transform=np.diag([2, 2, 2, 1.0]))
    s = GaussianSplats([[5, 5, 5]], [[1, 0, 0, 0]], [[0, 0, 0]], [0], np.zeros((1, 1, 3)))
    a = Asset(meshes=[m], splats=s)
    assert np.allclose(a.bounds(), [[0, 0, 0], [5, 5, 5]])
    assert a.triangle_count == 1 and a.vertex_count == 3
    assert Texture(np.zeros((4, 4), np.uint8)).image.shape == (4, 4, 1)


def test_tangents_follow_u_and_bitangent_points_up_the_image():
    from studio.assets.tangents import compute_tangents

    asset = sample_asset(SampleParams(segments=48, rings=24, texture_size=16))
    m = asset.meshes[0]
    t = compute_tangents(m.vertices, m.normals, m.uvs[0], m.faces)
    assert t.shape == (len(m.vertices), 4) and t.dtype == np.float32
    v = m.vertices - [0, 0.3, 0]
    phi = np.arctan2(-v[:, 2], v[:, 0])
    du = np.stack([-np.sin(phi), 0 * phi, -np.cos(phi)], 1)  # analytic ∂P/∂u direction of the UV sphere
    ring = np.abs(m.normals[:, 1]) < 0.9
    assert (t[ring, :3] * du[ring]).sum(1).min() > 0.99
    assert np.allclose(np.linalg.norm(t[:, :3], axis=1), 1, atol=1e-5)
    assert np.abs((t[:, :3] * m.normals).sum(1)).max() < 1e-5
    b = np.cross(m.normals, t[:, :3]) * t[:, 3:]
    assert b[ring, 1].min() > 0.4, "bitangent must point up the image (towards v = 0, the north pole)"
    # Mirrored UVs flip the handedness.
    mirrored = m.uvs[0] * [-1, 1]
    assert (compute_tangents(m.vertices, m.normals, mirrored, m.faces)[:, 3] == -1).all()


def test_unproject_inverts_project():
    from studio.assets import Cameras

    cams = Cameras.look_at([[2.0, 1.0, 3.0], [-1.0, 0.5, 2.0]], [0.0, 0.2, 0.0], width=64, height=48)
    pts = np.random.default_rng(0).uniform(-0.3, 0.3, (50, 3))
    uv, z = cams.project(pts)
    for k in range(len(cams)):
        assert np.allclose(cams.unproject(k, uv[k], z[k]), pts, atol=1e-9)
