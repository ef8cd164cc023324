"""Plain mesh files: OBJ (+MTL + texture), PLY and STL round trips, interop with trimesh's writers,
splat/mesh PLY sniffing, bad input (InvalidAssetError naming the file, nothing written) and the
structural validator."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import trimesh

from studio.assets import Asset, GaussianSplats, Material, Mesh, Texture
from studio.assets.colour import linear_to_srgb, srgb_to_linear, to_uint8
from studio.assets.io import load, save
from studio.assets.mesh_io import read_ply, write_ply
from studio.assets.validate import validate
from studio.errors import InvalidAssetError, NothingToExportError


def sphere_mesh(seed: int = 0, name: str = "sphere", textured: bool = True) -> Mesh:
    """An icosphere with float32-exact positions, normals, UVs and 8-bit-exact vertex colours."""
    rng = np.random.default_rng(seed)
    sph = trimesh.creation.icosphere(subdivisions=2)
    v = sph.vertices.astype(np.float32).astype(np.float64)
    srgb8 = rng.integers(0, 256, (len(v), 3))
    colors = np.concatenate([srgb_to_linear(srgb8 / 255.0), np.ones((len(v), 1))], axis=1).astype(np.float32)
    img = rng.integers(0, 256, (8, 16, 3), dtype=np.uint8)
    mat = Material(
        name=f"{name} material",
        base_color_factor=(0.5, 0.25, 1.0, 1.0),
        base_color_texture=Texture(img) if textured else None,
        metallic_factor=0.0,
        roughness_factor=0.75,
    )
    return Mesh.from_arrays(
        v, sph.faces, material=mat, uvs=[rng.random((len(v), 2)).astype(np.float32)],
        normals=sph.vertex_normals.astype(np.float32), colors=colors, name=name,
    )  # fmt: skip


def files(folder: Path) -> set[str]:
    return set(os.listdir(folder))


# --------------------------------------------------------------------------------------------- OBJ


def test_obj_round_trip_equal_arrays(tmp_path: Path) -> None:
    m1 = sphere_mesh(0, "ball")
    m2 = Mesh.from_arrays(m1.vertices[:5] + 3.0, np.array([[0, 1, 2], [2, 3, 4]]), name="bits")
    save(Asset(meshes=[m1, m2]), tmp_path / "a.obj")
    assert files(tmp_path) == {"a.obj", "a.mtl", "a_ball_material.png"}
    a = load(tmp_path / "a.obj")
    assert a.dropped == [] and [m.name for m in a.meshes] == ["ball", "bits"]
    r = a.meshes[0]
    assert np.array_equal(r.vertices, m1.vertices) and np.array_equal(r.faces, m1.faces)
    assert np.array_equal(r.normals, m1.normals) and np.array_equal(r.uvs[0], m1.uvs[0])
    assert np.abs(r.colors - m1.colors).max() <= 1e-6
    assert r.material.base_color_factor == m1.material.base_color_factor
    assert (r.material.metallic_factor, r.material.roughness_factor) == (0.0, 0.75)
    assert np.array_equal(r.material.base_color_texture.image, m1.material.base_color_texture.image)
    r2 = a.meshes[1]
    assert np.array_equal(r2.vertices, m2.vertices) and np.array_equal(r2.faces, m2.faces)
    assert r2.uvs == [] and r2.normals is None and r2.colors is None


def test_obj_bakes_transforms_and_flips_v(tmp_path: Path) -> None:
    m = Mesh.from_arrays([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]], uvs=[np.array([[0.25, 0.25], [1, 0], [0, 1]], np.float32)],
                         normals=np.array([[0, 0, 1]] * 3, np.float32))  # fmt: skip
    t = trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0])
    t[:3, 3] = [10, 0, 0]
    m.transform = t
    save(Asset(meshes=[m]), tmp_path / "t.obj")
    text = (tmp_path / "t.obj").read_text()
    assert "vt 0.25 0.75\n" in text  # glTF v-down 0.25 → OBJ v-up 0.75
    r = load(tmp_path / "t.obj").meshes[0]
    assert np.allclose(r.vertices, [[10, 0, 0], [11, 0, 0], [10, 0, 1]], atol=1e-12)
    assert np.allclose(r.normals, [[0, -1, 0]] * 3, atol=1e-6)
    assert np.allclose(r.uvs[0][0], [0.25, 0.25])


def test_obj_from_trimesh_exporter(tmp_path: Path) -> None:
    """A third-party writer: trimesh's OBJ export of a textured box reads back with its geometry."""
    box = trimesh.creation.box()
    uv = np.random.default_rng(1).random((len(box.vertices), 2))
    img = np.random.default_rng(2).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    from PIL import Image

    box.visual = trimesh.visual.TextureVisuals(uv=uv, material=trimesh.visual.material.SimpleMaterial(image=Image.fromarray(img)))
    text, extra = trimesh.exchange.obj.export_obj(box, return_texture=True, mtl_name="box.mtl")
    (tmp_path / "box.obj").write_text(text)
    for name, data in extra.items():
        (tmp_path / name).write_bytes(data)
    r = load(tmp_path / "box.obj")
    assert r.dropped == [] and len(r.meshes) == 1
    m = r.meshes[0]
    assert np.allclose(m.vertices, box.vertices) and np.array_equal(m.faces, box.faces)
    assert np.allclose(m.uvs[0][:, 0], uv[:, 0], atol=1e-6) and np.allclose(m.uvs[0][:, 1], 1 - uv[:, 1], atol=1e-6)
    assert np.array_equal(m.material.base_color_texture.image, img)


def test_obj_polygons_negative_indices_and_missing_library(tmp_path: Path) -> None:
    (tmp_path / "q.obj").write_text(
        "mtllib nowhere.mtl\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nusemtl red\nf -4 -3 -2 -1\n"
    )
    a = load(tmp_path / "q.obj")
    assert a.meshes[0].faces.tolist() == [[0, 1, 2], [0, 2, 3]]
    assert any("nowhere.mtl" in d for d in a.dropped) and any("red" in d for d in a.dropped)


def test_obj_texture_path_cannot_escape_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.obj").write_text("mtllib e.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nusemtl m\nf 1 2 3\n")
    (tmp_path / "sub" / "e.mtl").write_text("newmtl m\nKd 1 0 0\nmap_Kd ../../etc/passwd\n")
    a = load(tmp_path / "sub" / "e.obj")
    assert a.meshes[0].material.base_color_texture is None
    assert a.meshes[0].material.base_color_factor == (1.0, 0.0, 0.0, 1.0)
    assert any("UnsafePathError" in d for d in a.dropped)


# --------------------------------------------------------------------------------------------- PLY / STL


def test_mesh_ply_round_trip(tmp_path: Path) -> None:
    m = sphere_mesh(3, "ply", textured=True)
    save(Asset(meshes=[m]), tmp_path / "m.ply")
    assert files(tmp_path) == {"m.ply", "m.png"}
    r = load(tmp_path / "m.ply").meshes[0]
    assert np.array_equal(r.vertices, m.vertices) and np.array_equal(r.faces, m.faces)
    assert np.array_equal(r.normals, m.normals)
    assert np.abs(r.uvs[0] - m.uvs[0]).max() <= 2**-24  # v ↦ 1−v stored as float32: one ulp at 1.0
    assert np.array_equal(r.colors, m.colors)  # 8-bit sRGB colours survive exactly
    assert np.array_equal(r.material.base_color_texture.image, m.material.base_color_texture.image)


def test_mesh_ply_from_trimesh_ascii_and_binary(tmp_path: Path) -> None:
    box = trimesh.creation.box()
    box.visual.vertex_colors = np.random.default_rng(0).integers(0, 256, (8, 4), dtype=np.uint8)
    for enc in ("ascii", "binary"):
        (tmp_path / f"{enc}.ply").write_bytes(trimesh.exchange.ply.export_ply(box, encoding=enc))
        m = load(tmp_path / f"{enc}.ply").meshes[0]
        assert np.allclose(m.vertices, box.vertices) and np.array_equal(m.faces, box.faces)
        assert m.colors.shape == (8, 4)
        assert np.array_equal(to_uint8(linear_to_srgb(m.colors[:, :3].astype(np.float64))), box.visual.vertex_colors[:, :3])
        assert np.array_equal(to_uint8(m.colors[:, 3]), box.visual.vertex_colors[:, 3])


def test_stl_round_trip(tmp_path: Path) -> None:
    m = sphere_mesh(4, textured=False)
    save(Asset(meshes=[m]), tmp_path / "s.stl")
    r = load(tmp_path / "s.stl").meshes[0]
    assert np.array_equal(r.vertices[r.faces], m.vertices[m.faces])  # unshared corners, float32-exact


def test_ply_sniffs_splats_and_writes_splats_only_without_meshes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    s = GaussianSplats(rng.normal(size=(30, 3)), rng.normal(size=(30, 4)), rng.normal(size=(30, 3)), rng.normal(size=30),
                       rng.normal(size=(30, 4, 3)))  # fmt: skip
    write_ply(Asset(splats=s), tmp_path / "s.ply")
    a = read_ply(tmp_path / "s.ply")
    assert a.meshes == [] and np.array_equal(a.splats.sh, s.sh)
    write_ply(Asset(meshes=[sphere_mesh(textured=False)], splats=s), tmp_path / "m.ply")
    b = read_ply(tmp_path / "m.ply")
    assert b.splats is None and len(b.meshes) == 1 and len(b.meshes[0].faces) == 320


@pytest.mark.parametrize("suffix", [".obj", ".stl"])
def test_mesh_writers_refuse_an_asset_without_meshes(tmp_path: Path, suffix: str) -> None:
    with pytest.raises(NothingToExportError, match="no meshes"):
        save(Asset(), tmp_path / f"a{suffix}")
    assert files(tmp_path) == set()


# --------------------------------------------------------------------------------------------- bad input


def _good_binary_ply() -> bytes:
    m = Mesh.from_arrays([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], [[0, 1, 2], [1, 3, 2]])
    from studio.assets.mesh_io import mesh_ply_bytes

    return mesh_ply_bytes(Asset(meshes=[m]))


ASCII_PLY = "ply\nformat ascii 1.0\nelement vertex {n}\nproperty float x\nproperty float y\nproperty float z\n" \
            "element face {f}\nproperty list uchar int vertex_indices\nend_header\n"  # fmt: skip


def _bad_cases() -> dict[str, bytes]:
    good = _good_binary_ply()
    head_end = good.index(b"end_header\n") + 11
    nan = bytearray(good)
    struct.pack_into("<f", nan, head_end + 4, float("inf"))
    past = bytearray(good)
    struct.pack_into("<i", past, len(good) - 4, 99)
    tri = "0 0 0\n1 0 0\n0 1 0\n"
    return {
        "zero.obj": b"",
        "zero.ply": b"",
        "zero.stl": b"",
        "truncated.ply": good[:-7],
        "count_binary.ply": good.replace(b"element vertex 4", b"element vertex 5"),
        "count_ascii.ply": (ASCII_PLY.format(n=4, f=1) + tri + "3 0 1 2\n").encode(),
        "extra_ascii.ply": (ASCII_PLY.format(n=2, f=1) + tri + "3 0 1 2\n").encode(),
        "nan_binary.ply": bytes(nan),
        "nan_ascii.ply": (ASCII_PLY.format(n=3, f=1) + "0 nan 0\n1 0 0\n0 1 0\n3 0 1 2\n").encode(),
        "past_binary.ply": bytes(past),
        "past_ascii.ply": (ASCII_PLY.format(n=3, f=1) + tri + "3 0 1 3\n").encode(),
        "negative_ascii.ply": (ASCII_PLY.format(n=3, f=1) + tri + "3 0 -1 2\n").encode(),
        "garbage_text.ply": b"Lorem ipsum dolor sit amet\n" * 50,
        "garbage_bytes.ply": bytes(range(256)) * 8,
        "header_only.ply": b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\n",
        "nan.obj": b"v 0 0 0\nv nan 0 0\nv 0 1 0\nf 1 2 3\n",
        "inf.obj": b"v 0 0 0\nv 1 inf 0\nv 0 1 0\nf 1 2 3\n",
        "past.obj": b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n",
        "zero_index.obj": b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n",
        "malformed.obj": b"v 0 0\nf 1 2 3\n",
        "garbage_text.obj": b"Lorem ipsum dolor sit amet, consectetur adipiscing elit\n" * 50,
        "garbage_bytes.obj": bytes(range(256)) * 8,
        "no_faces.obj": b"v 0 0 0\nv 1 0 0\nv 0 1 0\n",
        "truncated.stl": trimesh.exchange.stl.export_stl(trimesh.creation.box())[:-20],
        "garbage_text.stl": b"solid x\n this is not facet data at all\nendsolid\n",
        "nan.stl": b"\0" * 80 + struct.pack("<I", 1) + struct.pack("<12fH", 0, 0, 1, float("nan"), 0, 0, 1, 0, 0, 0, 1, 0, 0),
    }


def test_bad_mesh_files_raise_invalid_asset_error_and_write_nothing(tmp_path: Path) -> None:
    cases = _bad_cases()
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    before = files(tmp_path)
    for name in cases:
        with pytest.raises(InvalidAssetError) as e:
            load(tmp_path / name)
        assert name in str(e.value), (name, str(e.value))
        if not name.endswith(".stl"):
            rep = validate(tmp_path / name)
            assert not rep.ok and rep.tool == "studio-structural", name
    assert files(tmp_path) == before


def test_bad_input_messages_name_the_problem(tmp_path: Path) -> None:
    cases = _bad_cases()
    expect = {
        "truncated.ply": "truncated", "count_binary.ply": "element counts match", "count_ascii.ply": "element counts match",
        "extra_ascii.ply": "element counts match", "nan_binary.ply": "NaN/Inf", "past_binary.ply": "past the vertex list",
        "past.obj": "past the 3", "nan.obj": "NaN/Inf", "zero.ply": "empty",
    }  # fmt: skip
    for name, word in expect.items():
        (tmp_path / name).write_bytes(cases[name])
        with pytest.raises(InvalidAssetError, match=word):
            load(tmp_path / name)


# --------------------------------------------------------------------------------------------- validator


def test_validate_mesh_files(tmp_path: Path) -> None:
    save(Asset(meshes=[sphere_mesh()]), tmp_path / "ok.obj")
    rep = validate(tmp_path / "ok.obj")
    assert rep.ok and rep.warnings == 0 and rep.tool == "studio-structural", str(rep)
    save(Asset(meshes=[sphere_mesh()]), tmp_path / "ok.ply")
    assert validate(tmp_path / "ok.ply").ok
    (tmp_path / "degen.obj").write_text("v 0 0 0\nv 1 0 0\nv 2 0 0\nv 0 1 0\nf 1 2 3\nf 1 2 4\nf 1 1 4\n")
    rep = validate(tmp_path / "degen.obj")
    assert rep.ok and rep.codes("warning") == {"DEGENERATE_TRIANGLES": 1}
    assert any("2 triangles" in m.message for m in rep.messages)


def test_obj_with_meshes_with_and_without_uvs_keeps_separate_index_counters(tmp_path):
    """v, vt and vn are numbered separately in OBJ: a mesh without UVs must not shift the vt
    indices of the meshes after it (regression: CesiumMilkTruck's glass has no UVs)."""
    from studio.assets import Asset, Mesh
    from studio.assets.io import load, save

    tri = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0.0]])
    uv = np.array([[0, 0], [1, 0], [0, 1]], np.float32)
    a = Asset(meshes=[
        Mesh.from_arrays(tri, [[0, 1, 2]], uvs=[uv], name="a"),
        Mesh.from_arrays(tri + 2, [[0, 1, 2]], name="b"),
        Mesh.from_arrays(tri + 4, [[0, 1, 2]], uvs=[uv * 0.5], name="c"),
    ])
    save(a, tmp_path / "m.obj", validate=True)
    b = load(tmp_path / "m.obj")
    assert [len(m.uvs) for m in b.meshes] == [1, 0, 1]
    assert np.allclose(b.meshes[2].uvs[0], uv * 0.5) and np.allclose(b.meshes[2].vertices, tri + 4)
