"""glTF/GLB import and export over the shared Khronos samples: exact geometry, materials, textures, validator.

Geometry is checked against an independent decoder written here (pygltflib for the JSON, plain
numpy.frombuffer row by row for the bytes, sparse substitution included), not against the reader itself.
"""
from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pygltflib
import pytest
from PIL import Image

from studio.assets import Asset, AssetMetadata, Material, Mesh, Sampler, Texture, TextureTransform
from studio.assets import io as asset_io
from studio.assets.gltf_io import read_gltf, write_gltf
from studio.assets.gltf_validator import validate_gltf


def _conftest():
    spec = importlib.util.spec_from_file_location("_studio_tests_conftest", Path(__file__).with_name("conftest.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


MANIFEST = _conftest().gltf_manifest()
IDS = [e["name"] for e in MANIFEST]
BY_NAME = {e["name"]: e for e in MANIFEST}


# ------------------------------------------------------------------------------------------------
# independent reference decoder (deliberately simple: one np.frombuffer per element)

DT = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
NC = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


class RefDoc:
    def __init__(self, path: Path):
        self.path = path
        self.g = pygltflib.GLTF2().load(str(path))
        self.blob = self.g.binary_blob() if path.suffix == ".glb" else None

    def buffer(self, i: int) -> bytes:
        b = self.g.buffers[i]
        return self.blob if b.uri is None else (self.path.parent / b.uri).read_bytes()

    def base(self, i: int) -> np.ndarray:
        """Accessor i from its bufferView only (no sparse)."""
        a = self.g.accessors[i]
        dt, n = np.dtype(DT[a.componentType]), NC[a.type]
        if a.bufferView is None:
            return np.zeros((a.count, n), dt)
        bv = self.g.bufferViews[a.bufferView]
        data = self.buffer(bv.buffer)
        stride = bv.byteStride or dt.itemsize * n
        start = (bv.byteOffset or 0) + (a.byteOffset or 0)
        return np.stack([np.frombuffer(data, dt, n, start + k * stride) for k in range(a.count)])

    def accessor(self, i: int) -> np.ndarray:
        a = self.g.accessors[i]
        out = self.base(i).copy()
        if a.sparse is not None:
            s = a.sparse
            iv = self.g.bufferViews[s.indices.bufferView]
            vv = self.g.bufferViews[s.values.bufferView]
            idx = np.frombuffer(self.buffer(iv.buffer), DT[s.indices.componentType], s.count,
                                (iv.byteOffset or 0) + (s.indices.byteOffset or 0))
            vals = np.frombuffer(self.buffer(vv.buffer), out.dtype, s.count * out.shape[1],
                                 (vv.byteOffset or 0) + (s.values.byteOffset or 0)).reshape(s.count, -1)
            for k, j in enumerate(idx):
                out[j] = vals[k]
        if a.normalized:
            out = (out.astype(np.float64) / np.iinfo(out.dtype).max).astype(np.float32)
        return out

    def scene_primitives(self) -> list[dict]:
        """Distinct (mesh, primitive) pairs in depth-first scene order, decoded."""
        g = self.g
        order, seen = [], set()
        stack = list(reversed(g.scenes[g.scene or 0].nodes))
        while stack:
            ni = stack.pop()
            node = g.nodes[ni]
            if node.mesh is not None:
                for pi, p in enumerate(g.meshes[node.mesh].primitives):
                    if (node.mesh, pi) not in seen:
                        seen.add((node.mesh, pi))
                        order.append(p)
            stack.extend(reversed(node.children or []))
        out = []
        for p in order:
            at = p.attributes
            d = {"POSITION": self.accessor(at.POSITION)}
            nv = len(d["POSITION"])
            d["indices"] = (self.accessor(p.indices).reshape(-1).astype(np.int64) if p.indices is not None
                            else np.arange(nv))
            for k, v in vars(at).items():
                if v is not None and k != "POSITION":
                    d[k] = self.accessor(v)
            out.append(d)
        return out


def _unique_meshes(asset: Asset) -> list[Mesh]:
    seen, out = set(), []
    for m in asset.meshes:
        if id(m.geometry) not in seen:
            seen.add(id(m.geometry))
            out.append(m)
    return out


def _source(testdata: Path, name: str) -> Path:
    return testdata / "gltf" / BY_NAME[name]["path"]


def _json(path: Path) -> dict:
    if path.suffix == ".glb":
        g = pygltflib.GLTF2().load(str(path))
        return json.loads(g.to_json())
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------------------------
# reading


@pytest.mark.parametrize("entry", MANIFEST, ids=IDS)
def test_read_counts_match_manifest(testdata: Path, entry: dict) -> None:
    asset = read_gltf(testdata / "gltf" / entry["path"])
    assert asset.triangle_count == entry["triangles"]
    assert asset.vertex_count == entry["vertices"]
    unique = _unique_meshes(asset)
    assert sum(len(m.faces) for m in unique) == entry["mesh_triangles"]
    assert sum(len(m.vertices) for m in unique) == entry["mesh_vertices"]
    assert sorted({m.alpha_mode for m in asset.materials() if m.name or entry["materials"]}) == sorted(entry["alpha_modes"])


@pytest.mark.parametrize("entry", MANIFEST, ids=IDS)
def test_geometry_equals_independent_decoding(testdata: Path, entry: dict) -> None:
    path = testdata / "gltf" / entry["path"]
    ref = RefDoc(path).scene_primitives()
    got = _unique_meshes(read_gltf(path))
    assert len(got) == len(ref)
    for m, r in zip(got, ref):
        np.testing.assert_array_equal(m.vertices, r["POSITION"].astype(np.float64))
        np.testing.assert_array_equal(m.faces.reshape(-1), r["indices"])
        if "NORMAL" in r:
            np.testing.assert_array_equal(m.normals, r["NORMAL"])
        else:
            assert m.normals is None
        if "TANGENT" in r:
            np.testing.assert_array_equal(m.tangents, r["TANGENT"])
        n_uv = sum(1 for k in r if k.startswith("TEXCOORD_"))
        assert len(m.uvs) == n_uv
        for k in range(n_uv):
            np.testing.assert_array_equal(m.uvs[k], r[f"TEXCOORD_{k}"].astype(np.float32))
        if "COLOR_0" in r:
            c = r["COLOR_0"].astype(np.float32)
            if c.shape[1] == 3:
                c = np.concatenate([c, np.ones((len(c), 1), np.float32)], 1)
            np.testing.assert_array_equal(m.colors, c)


def test_sparse_accessor_is_applied(testdata: Path) -> None:
    path = _source(testdata, "SimpleSparseAccessor")
    doc = RefDoc(path)
    pos_acc = doc.g.meshes[0].primitives[0].attributes.POSITION
    base, applied = doc.base(pos_acc), doc.accessor(pos_acc)
    assert not np.array_equal(base, applied)  # the file really substitutes values
    mesh = read_gltf(path).meshes[0]
    np.testing.assert_array_equal(mesh.vertices, applied.astype(np.float64))
    assert not np.array_equal(mesh.vertices, base.astype(np.float64))
    np.testing.assert_array_equal(mesh.vertices.max(0), doc.g.accessors[pos_acc].max)  # y tops out at 4


def test_interleaved_buffer_view_is_strided(testdata: Path) -> None:
    path = _source(testdata, "BoxInterleaved")
    doc = RefDoc(path)
    prim = doc.g.meshes[0].primitives[0]
    views = {doc.g.accessors[i].bufferView for i in (prim.attributes.POSITION, prim.attributes.NORMAL)}
    assert len(views) == 1 and doc.g.bufferViews[views.pop()].byteStride  # the file interleaves them
    mesh = read_gltf(path).meshes[0]
    np.testing.assert_array_equal(mesh.normals, doc.accessor(prim.attributes.NORMAL))
    assert np.allclose(np.linalg.norm(mesh.normals, axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("entry", [e for e in MANIFEST if e["name"] not in ("SimpleSparseAccessor",)], ids=lambda e: e["name"])
def test_scene_bounds_match_trimesh(testdata: Path, entry: dict) -> None:
    """World transforms: our instance bounds equal trimesh's scene bounds (it agrees where it has no bug)."""
    import trimesh

    path = testdata / "gltf" / entry["path"]
    scene = trimesh.load(str(path), force="scene")
    np.testing.assert_allclose(read_gltf(path).bounds(), scene.bounds, atol=1e-5)


def test_trimesh_ignores_sparse_but_we_do_not(testdata: Path) -> None:
    import trimesh

    path = _source(testdata, "SimpleSparseAccessor")
    ours = read_gltf(path).bounds()
    assert ours[1, 1] == 4.0
    assert trimesh.load(str(path), force="scene").bounds[1, 1] < 4.0


def test_vertex_colors(testdata: Path) -> None:
    path = _source(testdata, "BoxVertexColors")
    doc = RefDoc(path)
    mesh = read_gltf(path).meshes[0]
    c = doc.accessor(doc.g.meshes[0].primitives[0].attributes.COLOR_0).astype(np.float32)
    assert mesh.colors is not None and mesh.colors.dtype == np.float32 and mesh.colors.shape[1] == 4
    np.testing.assert_array_equal(mesh.colors[:, : c.shape[1]], c)
    assert len(np.unique(mesh.colors, axis=0)) > 1


def test_materials_and_textures_read(testdata: Path) -> None:
    path = _source(testdata, "WaterBottle")
    mat = read_gltf(path).meshes[0].material
    assert set(mat.textures()) == set(Material.TEXTURE_SLOTS)
    raw = json.loads(path.read_text())
    for slot, tex in mat.textures().items():
        assert tex.encoded is not None and tex.mime_type == "image/png"
        # pixels equal an independent PIL decode of the file the JSON names for that slot
        info = {
            "base_color_texture": raw["materials"][0]["pbrMetallicRoughness"]["baseColorTexture"],
            "metallic_roughness_texture": raw["materials"][0]["pbrMetallicRoughness"]["metallicRoughnessTexture"],
            "normal_texture": raw["materials"][0]["normalTexture"],
            "occlusion_texture": raw["materials"][0]["occlusionTexture"],
            "emissive_texture": raw["materials"][0]["emissiveTexture"],
        }[slot]
        uri = raw["images"][raw["textures"][info["index"]]["source"]]["uri"]
        expected = np.asarray(Image.open(path.parent / uri))
        np.testing.assert_array_equal(tex.image.reshape(expected.shape), expected)


def test_texture_transforms_read(testdata: Path) -> None:
    path = _source(testdata, "TextureTransformTest")
    raw = json.loads(path.read_text())
    asset = read_gltf(path)
    by_name = {m.name: m for m in asset.materials()}
    checked = 0
    for rm in raw["materials"]:
        info = rm["pbrMetallicRoughness"]["baseColorTexture"]
        ext = info.get("extensions", {}).get("KHR_texture_transform")
        tex = by_name[rm["name"]].base_color_texture
        if ext is None:
            assert tex.transform is None
            continue
        checked += 1
        assert tex.transform.offset == tuple(ext.get("offset", (0.0, 0.0)))
        assert tex.transform.rotation == ext.get("rotation", 0.0)
        assert tex.transform.scale == tuple(ext.get("scale", (1.0, 1.0)))
        assert tex.transform.texcoord == ext.get("texCoord")
        sampler = raw["textures"][info["index"]].get("sampler")
        if sampler is not None:
            s = raw["samplers"][sampler]
            assert tex.sampler == Sampler(s.get("magFilter"), s.get("minFilter"), s["wrapS"], s["wrapT"])
    assert checked >= 5


def test_skins_and_animations_dropped_with_notes(testdata: Path) -> None:
    rigged = read_gltf(_source(testdata, "RiggedSimple"))
    assert rigged.triangle_count == BY_NAME["RiggedSimple"]["triangles"]
    assert any(n.startswith("skin 'Armature' dropped: 1 skinned mesh kept in bind pose") for n in rigged.dropped)
    assert any(n.startswith("animation") and "dropped" in n for n in rigged.dropped)
    truck = read_gltf(_source(testdata, "CesiumMilkTruck"))
    assert any(n.startswith("animation") and "dropped" in n for n in truck.dropped)
    assert not any("skin" in n for n in truck.dropped)
    assert read_gltf(_source(testdata, "Box")).dropped == []


def test_metadata_from_asset_fields(testdata: Path) -> None:
    md = read_gltf(_source(testdata, "MultiUVTest")).metadata
    raw = json.loads(_source(testdata, "MultiUVTest").read_text())["asset"]
    assert md.generator == raw["generator"]
    assert md.extras["copyright"] == raw["copyright"]


# ------------------------------------------------------------------------------------------------
# export


def _texture_images(asset: Asset) -> list[np.ndarray]:
    return [t.image for m in asset.materials() for t in m.textures().values()]


@pytest.mark.parametrize("entry", MANIFEST, ids=IDS)
def test_glb_export_validates_and_preserves(testdata: Path, tmp_path: Path, entry: dict) -> None:
    src = read_gltf(testdata / "gltf" / entry["path"])
    out = tmp_path / "out.glb"
    write_gltf(src, out)
    report = validate_gltf(out)
    source_codes = entry["validator"]["codes"]
    assert report.errors <= entry["validator"]["errors"], str(report)
    assert set(report.codes("error")) <= set(source_codes), str(report)
    assert report.warnings == 0, str(report)  # AlphaBlendModeTest's source warning is gone: tangents are written
    back = read_gltf(out)
    assert back.triangle_count == entry["triangles"]
    assert back.vertex_count == entry["vertices"]
    doc = _json(out)
    assert len(doc.get("materials", [])) == entry["materials"]
    assert len(doc.get("images", [])) <= entry["images"]
    assert doc["asset"]["generator"] == "studio"
    assert sorted({m.get("alphaMode", "OPAQUE") for m in doc.get("materials", [])}) == sorted(entry["alpha_modes"])
    a, b = _texture_images(src), _texture_images(back)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    for m0, m1 in zip(src.meshes, back.meshes):
        np.testing.assert_allclose(m1.transform, m0.transform, atol=1e-12)
        np.testing.assert_array_equal(m1.vertices, m0.vertices)
        np.testing.assert_array_equal(m1.faces, m0.faces)
        assert len(m1.uvs) == len(m0.uvs)
        for u0, u1 in zip(m0.uvs, m1.uvs):
            np.testing.assert_array_equal(u1, u0)
        if m0.normals is not None:
            np.testing.assert_allclose(m1.normals, m0.normals, atol=1e-5)
        assert m1.material.alpha_mode == m0.material.alpha_mode
        assert m1.material.alpha_cutoff == m0.material.alpha_cutoff
        assert m1.material.double_sided == m0.material.double_sided


@pytest.mark.parametrize("entry", MANIFEST, ids=IDS)
def test_round_trip_is_stable(testdata: Path, tmp_path: Path, entry: dict) -> None:
    """GLB → read → GLB → read: identical arrays, and the second GLB is byte-identical to the first."""
    first, second = tmp_path / "a.glb", tmp_path / "b.glb"
    write_gltf(read_gltf(testdata / "gltf" / entry["path"]), first)
    a = read_gltf(first)
    write_gltf(a, second)
    b = read_gltf(second)
    assert first.read_bytes() == second.read_bytes()
    assert len(a.meshes) == len(b.meshes)
    for m0, m1 in zip(a.meshes, b.meshes):
        for x, y in ((m0.vertices, m1.vertices), (m0.faces, m1.faces), (m0.normals, m1.normals),
                     (m0.colors, m1.colors), (m0.tangents, m1.tangents), (m0.transform, m1.transform)):
            if x is None:
                assert y is None
            else:
                np.testing.assert_array_equal(x, y)
        for u0, u1 in zip(m0.uvs, m1.uvs, strict=True):
            np.testing.assert_array_equal(u0, u1)


def test_texture_transform_and_samplers_survive_export(testdata: Path, tmp_path: Path) -> None:
    src = read_gltf(_source(testdata, "TextureTransformTest"))
    write_gltf(src, tmp_path / "t.glb")
    doc = _json(tmp_path / "t.glb")
    assert "KHR_texture_transform" in doc["extensionsUsed"]
    back = {m.name: m for m in read_gltf(tmp_path / "t.glb").materials()}
    for m in src.materials():
        t0, t1 = m.base_color_texture, back[m.name].base_color_texture
        assert t1.transform == t0.transform
        assert t1.sampler == t0.sampler
        assert t1.texcoord == t0.texcoord
    assert sum(1 for m in src.materials() if m.base_color_texture.transform is not None) >= 5


def test_second_uv_set_survives_export(testdata: Path, tmp_path: Path) -> None:
    src = read_gltf(_source(testdata, "MultiUVTest"))
    assert len(src.meshes[0].uvs) == 2 and src.meshes[0].material.emissive_texture.texcoord == 1
    write_gltf(src, tmp_path / "m.glb")
    prim = _json(tmp_path / "m.glb")["meshes"][0]["primitives"][0]
    assert "TEXCOORD_1" in prim["attributes"]
    back = read_gltf(tmp_path / "m.glb").meshes[0]
    np.testing.assert_array_equal(back.uvs[1], src.meshes[0].uvs[1])
    assert not np.array_equal(back.uvs[0], back.uvs[1])
    assert back.material.emissive_texture.texcoord == 1
    assert back.material.base_color_texture.texcoord == 0


def test_vertex_colors_survive_export(testdata: Path, tmp_path: Path) -> None:
    src = read_gltf(_source(testdata, "BoxVertexColors"))
    write_gltf(src, tmp_path / "c.glb")
    back = read_gltf(tmp_path / "c.glb")
    np.testing.assert_array_equal(back.meshes[0].colors, src.meshes[0].colors)


def test_images_deduplicated_by_content(testdata: Path, tmp_path: Path) -> None:
    src = read_gltf(_source(testdata, "CesiumMilkTruck"))
    write_gltf(src, tmp_path / "t.glb")
    assert len(_json(tmp_path / "t.glb")["images"]) == 1  # two textures, one image
    # two separately decoded copies of the same PNG still give one image
    png = src.materials()[0].base_color_texture.file_bytes()[0]
    mats = [Material(name=f"m{i}", base_color_texture=Texture.from_file_bytes(png)) for i in range(2)]
    tri = dict(vertices=np.eye(3), faces=[[0, 1, 2]], uvs=[np.zeros((3, 2), np.float32)])
    write_gltf(Asset(meshes=[Mesh.from_arrays(**tri, material=m) for m in mats]), tmp_path / "d.glb")
    doc = _json(tmp_path / "d.glb")
    assert len(doc["images"]) == 1 and len(doc["materials"]) == 2
    assert validate_gltf(tmp_path / "d.glb").errors == 0


def test_separate_files_gltf_round_trip(testdata: Path, tmp_path: Path) -> None:
    src = read_gltf(_source(testdata, "WaterBottle"))
    out = tmp_path / "bottle.gltf"
    write_gltf(src, out)
    doc = json.loads(out.read_text())
    files = {doc["buffers"][0]["uri"], *(im["uri"] for im in doc["images"])}
    assert all((tmp_path / f).is_file() for f in files) and len(doc["images"]) == 4
    assert not list(tmp_path.glob("*.part*"))
    report = validate_gltf(out)
    assert report.errors == 0 and report.warnings == 0, str(report)
    back = read_gltf(out)
    m0, m1 = src.meshes[0], back.meshes[0]
    np.testing.assert_array_equal(m1.vertices, m0.vertices)
    np.testing.assert_array_equal(m1.tangents, m0.tangents)
    np.testing.assert_array_equal(m1.uvs[0], m0.uvs[0])
    for slot, tex in m0.material.textures().items():
        t1 = getattr(m1.material, slot)
        np.testing.assert_array_equal(t1.image, tex.image)
        assert t1.encoded == tex.encoded  # original PNG bytes, not re-encoded


def test_save_dispatch_and_validate(testdata: Path, tmp_path: Path) -> None:
    asset = asset_io.load(_source(testdata, "AlphaBlendModeTest"))
    out = asset_io.save(asset, tmp_path / "x.glb", validate=True)
    assert out.is_file() and asset_io.load(out).triangle_count == asset.triangle_count


# ------------------------------------------------------------------------------------------------
# writer details on hand-made assets


def _quad(**kw) -> Mesh:
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float64)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    return Mesh.from_arrays(v, f, **kw)


def _png(rgb: tuple[int, int, int], size: int = 4) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), rgb, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_writer_materials_extensions_metadata(tmp_path: Path) -> None:
    uv = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], np.float32)
    tex = Texture.from_file_bytes(_png((200, 10, 10)), transform=TextureTransform(offset=(0.25, 0.5), rotation=0.5, scale=(2.0, 3.0), texcoord=1),
                                  sampler=Sampler(9728, 9728, 33071, 33648), texcoord=0)
    emis = Texture.from_file_bytes(_png((0, 255, 0)), texcoord=1)
    mat = Material(name="glow", base_color_texture=tex, emissive_texture=emis, emissive_factor=(1.0, 0.5, 0.0),
                   emissive_strength=4.0, alpha_mode="MASK", alpha_cutoff=0.25, double_sided=True,
                   metallic_factor=0.0, roughness_factor=0.4, extras={"baked_by": "studio", "n": np.int64(3)})
    md = AssetMetadata(name="demo", prompt="a red cube", seed=7, pipeline="text_to_asset", extras={"copyright": "me"})
    flat = Material(name="flat", unlit=True, base_color_factor=(0.2, 0.3, 0.4, 1.0), emissive_strength=2.0)
    asset = Asset(meshes=[_quad(material=mat, uvs=[uv, uv[::-1].copy()]), _quad(material=flat)], metadata=md)
    out = tmp_path / "m.glb"
    write_gltf(asset, out)
    report = validate_gltf(out)
    assert report.errors == 0 and report.warnings == 0, str(report)
    doc = _json(out)
    assert set(doc["extensionsUsed"]) == {"KHR_texture_transform", "KHR_materials_emissive_strength", "KHR_materials_unlit"}
    assert doc["asset"]["extras"]["prompt"] == "a red cube" and doc["asset"]["copyright"] == "me"
    m, f = (x.material for x in read_gltf(out).meshes)
    assert f.name == "flat" and f.unlit and f.base_color_factor == pytest.approx((0.2, 0.3, 0.4, 1.0))
    assert "KHR_materials_emissive_strength" not in doc["materials"][1].get("extensions", {})  # unlit: no emission
    assert m.name == "glow" and not m.unlit and m.emissive_strength == 4.0 and m.double_sided
    assert (m.alpha_mode, m.alpha_cutoff) == ("MASK", 0.25)
    assert m.base_color_texture.transform == tex.transform and m.base_color_texture.sampler == tex.sampler
    assert m.emissive_texture.texcoord == 1 and m.extras == {"baked_by": "studio", "n": 3}
    assert m.roughness_factor == pytest.approx(0.4) and m.metallic_factor == 0.0
    back = read_gltf(out).metadata
    assert (back.name, back.prompt, back.seed, back.pipeline) == ("demo", "a red cube", 7, "text_to_asset")


def test_writer_transforms_indices_normals(tmp_path: Path) -> None:
    shear = np.eye(4)
    shear[0, 1] = 0.5  # not T·R·S: must be baked into the vertices
    trs = np.eye(4)
    trs[:3, :3] = np.diag([2.0, 3.0, 4.0])
    trs[:3, 3] = (1, 2, 3)
    n = np.tile(np.array([[0, 0, 2.0]], np.float32), (4, 1))  # not unit: written normalised
    meshes = [_quad(), _quad(transform=trs, normals=n), _quad(transform=shear)]
    grid = 260  # 67,600 vertices: uint32 indices
    xs, ys = np.meshgrid(np.arange(grid), np.arange(grid))
    verts = np.stack([xs.ravel(), ys.ravel(), np.zeros(grid * grid)], 1).astype(np.float64)
    i = (ys[:-1, :-1] * grid + xs[:-1, :-1]).ravel()
    faces = np.concatenate([np.stack([i, i + 1, i + grid], 1), np.stack([i + 1, i + grid + 1, i + grid], 1)])
    meshes.append(Mesh.from_arrays(verts, faces))
    out = tmp_path / "t.glb"
    write_gltf(Asset(meshes=meshes), out)
    report = validate_gltf(out)
    assert report.errors == 0 and report.warnings == 0, str(report)
    doc = _json(out)
    assert "matrix" not in doc["nodes"][0] and "matrix" in doc["nodes"][1] and "matrix" not in doc["nodes"][2]
    idx_types = [doc["accessors"][m["primitives"][0]["indices"]]["componentType"] for m in doc["meshes"]]
    assert idx_types == [5123, 5123, 5123, 5125]
    assert all(bv["byteOffset"] % 4 == 0 for bv in doc["bufferViews"])
    back = read_gltf(out)
    for m0, m1 in zip(meshes, back.meshes):
        np.testing.assert_allclose(m1.world_vertices(), m0.world_vertices(), atol=1e-5)
    np.testing.assert_array_equal(back.meshes[1].normals, np.tile([[0, 0, 1.0]], (4, 1)).astype(np.float32))
    np.testing.assert_array_equal(back.meshes[3].faces, faces)


def test_default_material_not_written_but_instances_share_mesh(testdata: Path, tmp_path: Path) -> None:
    sparse = read_gltf(_source(testdata, "SimpleSparseAccessor"))
    write_gltf(sparse, tmp_path / "s.glb")
    assert "materials" not in _json(tmp_path / "s.glb")
    truck = read_gltf(_source(testdata, "CesiumMilkTruck"))
    write_gltf(truck, tmp_path / "t.glb")
    doc = _json(tmp_path / "t.glb")
    assert len(doc["nodes"]) == len(truck.meshes) and len(doc["meshes"]) < len(doc["nodes"])  # wheels instanced


def test_strips_fans_points_lines(tmp_path: Path) -> None:
    """Triangle strips and fans become triangles (glTF winding rules); points and lines are dropped with a note."""
    import base64

    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [2, 0, 0]], np.float32)
    data = pos.tobytes()
    doc = {
        "asset": {"version": "2.0"},
        "buffers": [{"byteLength": len(data), "uri": "data:application/octet-stream;base64," + base64.b64encode(data).decode()}],
        "bufferViews": [{"buffer": 0, "byteLength": len(data)}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 5, "type": "VEC3",
                       "min": [0, 0, 0], "max": [2, 1, 0]}],
        "meshes": [{"name": "m", "primitives": [{"attributes": {"POSITION": 0}, "mode": mode} for mode in (5, 6, 0, 1)]}],
        "nodes": [{"mesh": 0}],
        "scenes": [{"nodes": [0]}],
    }
    path = tmp_path / "modes.gltf"
    path.write_text(json.dumps(doc))
    asset = read_gltf(path)
    assert [m.faces.tolist() for m in asset.meshes] == [
        [[0, 1, 2], [1, 3, 2], [2, 3, 4]],  # strip: {v_i, v_(i+1+i%2), v_(i+2-i%2)} (glTF 2.0 §3.7.2.1)
        [[1, 2, 0], [2, 3, 0], [3, 4, 0]],  # fan: {v_(i+1), v_(i+2), v_0}
    ]
    assert any("POINTS" in n and "dropped" in n for n in asset.dropped)
    assert any("LINES" in n and "dropped" in n for n in asset.dropped)


def test_splats_are_left_out_of_gltf(testdata: Path, tmp_path: Path) -> None:
    from studio.assets import GaussianSplats

    asset = read_gltf(_source(testdata, "Box"))
    n = 5
    asset.splats = GaussianSplats(
        means=np.zeros((n, 3), np.float32), quats=np.tile(np.array([[1, 0, 0, 0]], np.float32), (n, 1)),
        log_scales=np.zeros((n, 3), np.float32), opacity_logits=np.zeros(n, np.float32), sh=np.zeros((n, 1, 3), np.float32))
    write_gltf(asset, tmp_path / "s.glb")
    assert validate_gltf(tmp_path / "s.glb").errors == 0
    doc = _json(tmp_path / "s.glb")
    assert "KHR_gaussian_splatting" not in json.dumps(doc)
    assert len(doc["meshes"]) == 1


def test_tangents_generated_for_normal_maps(testdata: Path, tmp_path: Path) -> None:
    """Without TANGENT, a normal-mapped mesh gets tangents from its UVs: they match the ones WaterBottle ships."""
    src = read_gltf(_source(testdata, "WaterBottle"))
    m = src.meshes[0]
    shipped = m.tangents
    m.tangents = None
    write_gltf(src, tmp_path / "b.glb")
    report = validate_gltf(tmp_path / "b.glb")
    assert report.errors == 0 and report.warnings == 0, str(report)
    made = read_gltf(tmp_path / "b.glb").meshes[0].tangents
    assert made is not None
    np.testing.assert_array_equal(made[:, 3], shipped[:, 3])  # same handedness everywhere
    cos = np.sum(made[:, :3] * shipped[:, :3], axis=1)
    assert np.percentile(cos, 5) > 0.99 and np.allclose(np.linalg.norm(made[:, :3], axis=1), 1, atol=1e-6)
    multi = read_gltf(_source(testdata, "MultiUVTest")).meshes[0]  # its tangents follow TEXCOORD_1
    from studio.assets.tangents import compute_tangents

    t1 = compute_tangents(multi.vertices, multi.normals, multi.uvs[1], multi.faces)
    assert np.all(np.sum(t1[:, :3] * multi.tangents[:, :3], axis=1) > 0.999)


def test_quantized_attributes_and_data_uris(tmp_path: Path) -> None:
    """Every component type: int16 positions (KHR_mesh_quantization), normalized int8 normals, uint16 UVs,
    uint8 RGB colours, uint8 indices; buffer and PNG image both as data: URIs."""
    import base64

    pos = np.array([[0, 0, 0], [300, 0, 0], [0, -200, 0], [300, -200, 5]], np.int16)
    nrm = np.array([[0, 0, 127, 0]] * 3 + [[0, -128, 0, 0]], np.int8)  # padded to 4 bytes per element
    uv = np.array([[0, 0], [65535, 0], [0, 32768], [65535, 65535]], np.uint16)
    col = np.array([[255, 0, 0, 0], [0, 255, 0, 0], [0, 0, 255, 0], [51, 102, 153, 0]], np.uint8)
    idx = np.array([0, 1, 2, 2, 1, 3, 0, 0], np.uint8)
    pos_strided = b"".join(p.tobytes() + b"\0\0" for p in pos)  # 6-byte int16 VEC3 elements, 8-byte stride
    parts = [pos_strided, nrm.tobytes(), uv.tobytes(), col.tobytes(), idx.tobytes()]
    blob, views = b"", []
    for k, p in enumerate(parts):
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(p), **({"byteStride": 8} if k == 0 else {})})
        blob += p
    acc = [
        {"bufferView": 0, "componentType": 5122, "count": 4, "type": "VEC3", "min": [0, -200, 0], "max": [300, 0, 5]},
        {"bufferView": 1, "componentType": 5120, "count": 4, "type": "VEC3", "normalized": True},
        {"bufferView": 2, "componentType": 5123, "count": 4, "type": "VEC2", "normalized": True},
        {"bufferView": 3, "componentType": 5121, "count": 4, "type": "VEC3", "normalized": True},
        {"bufferView": 4, "componentType": 5121, "count": 6, "type": "SCALAR"},
    ]
    views[1]["byteStride"] = 4
    views[3]["byteStride"] = 4
    png = _png((10, 20, 30))
    doc = {
        "asset": {"version": "2.0"},
        "extensionsUsed": ["KHR_mesh_quantization"],
        "extensionsRequired": ["KHR_mesh_quantization"],
        "buffers": [{"byteLength": len(blob), "uri": "data:application/octet-stream;base64," + base64.b64encode(blob).decode()}],
        "bufferViews": views,
        "accessors": acc,
        "images": [{"uri": "data:image/png;base64," + base64.b64encode(png).decode()}],
        "textures": [{"source": 0}],
        "materials": [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "NORMAL": 1, "TEXCOORD_0": 2, "COLOR_0": 3},
                                    "indices": 4, "material": 0}]}],
        "nodes": [{"mesh": 0, "scale": [0.01, 0.01, 0.01]}],
        "scenes": [{"nodes": [0]}],
    }
    path = tmp_path / "q.gltf"
    path.write_text(json.dumps(doc))
    assert validate_gltf(path).errors == 0
    m = read_gltf(path).meshes[0]
    np.testing.assert_array_equal(m.vertices, pos.astype(np.float64))
    np.testing.assert_array_equal(m.normals, np.maximum(nrm[:, :3].astype(np.float64) / 127, -1).astype(np.float32))
    np.testing.assert_array_equal(m.uvs[0], (uv / 65535.0).astype(np.float32))
    np.testing.assert_array_equal(m.colors[:, :3], (col[:, :3] / 255.0).astype(np.float32))
    np.testing.assert_array_equal(m.colors[:, 3], np.ones(4, np.float32))
    np.testing.assert_array_equal(m.faces, [[0, 1, 2], [2, 1, 3]])
    np.testing.assert_allclose(m.world_vertices()[3], [3.0, -2.0, 0.05])
    assert m.material.base_color_texture.encoded == png
    np.testing.assert_array_equal(m.material.base_color_texture.image[0, 0], [10, 20, 30])
    write_gltf(read_gltf(path), tmp_path / "q.glb")  # re-exported as float attributes: still valid
    report = validate_gltf(tmp_path / "q.glb")
    assert report.errors == 0 and report.warnings == 0, str(report)
