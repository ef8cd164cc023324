"""USD / USDZ export, import and UsdValidation: round trips checked through usd-core itself."""
from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import trimesh

from studio.assets import io as studio_io
from studio.assets.asset import Asset, AssetMetadata
from studio.assets.material import CLAMP_TO_EDGE, MIRRORED_REPEAT, Material, Sampler, Texture, TextureTransform
from studio.assets.mesh import Mesh
from studio.assets.splats import GaussianSplats
from studio.assets.usd_io import gltf_to_usd_transform2d, read_usd, usd_to_gltf_transform, write_usd
from studio.assets.usd_validator import validate_usd
from studio.assets.validate import validate
from studio.errors import InvalidAssetError

from pxr import Sdf, Usd, UsdGeom, UsdShade



def _gltf_manifest() -> list[dict]:
    """tests/conftest.py's gltf_manifest() (conftest is not importable by name under --import-mode=importlib)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_usd_tests_conftest", Path(__file__).with_name("conftest.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.gltf_manifest()


SLOT_INPUTS = {  # studio slot → (UsdPreviewSurface input, UsdUVTexture output)
    "base_color_texture": ("diffuseColor", "rgb"),
    "metallic_roughness_texture": ("metallic", "b"),
    "normal_texture": ("normal", "rgb"),
    "occlusion_texture": ("occlusion", "r"),
    "emissive_texture": ("emissiveColor", "rgb"),
}


def _img(rng, c, h=16, w=8):
    return rng.integers(0, 256, (h, w, c), dtype=np.uint8)


def textured_cube(seed: int = 0) -> Asset:
    """Unwelded unit cube (24→36 corners), all 5 PBR maps, 2 UV sets, vertex colours, a texture transform,
    a non-identity transform."""
    rng = np.random.default_rng(seed)
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    v = box.vertices[box.faces].reshape(-1, 3)
    f = np.arange(len(v)).reshape(-1, 3)
    nrm = np.repeat(box.face_normals, 3, axis=0).astype(np.float32)
    mat = Material(
        name="Cube Material",
        base_color_factor=(0.9, 0.8, 0.7, 0.6),
        base_color_texture=Texture(
            _img(rng, 4),
            transform=TextureTransform(offset=(0.1, 0.2), rotation=0.3, scale=(2.0, 3.0)),
            sampler=Sampler(wrap_s=CLAMP_TO_EDGE, wrap_t=MIRRORED_REPEAT),
        ),
        metallic_factor=0.5,
        roughness_factor=0.25,
        metallic_roughness_texture=Texture(_img(rng, 3)),
        normal_texture=Texture(_img(rng, 3), texcoord=1),
        occlusion_texture=Texture(_img(rng, 1)),
        occlusion_strength=0.8,
        emissive_texture=Texture(_img(rng, 3)),
        emissive_factor=(1.0, 0.5, 0.25),
        emissive_strength=2.0,
        alpha_mode="MASK",
        alpha_cutoff=0.4,
    )
    T = trimesh.transformations.compose_matrix(scale=(1.0, 2.0, 1.0), angles=(0.1, 0.2, 0.3), translate=(1.0, 2.0, 3.0))
    mesh = Mesh.from_arrays(
        v, f, material=mat, normals=nrm,
        uvs=[rng.random((len(v), 2)).astype(np.float32), rng.random((len(v), 2)).astype(np.float32)],
        colors=rng.random((len(v), 4)).astype(np.float32), transform=T, name="cube",
    )
    return Asset(meshes=[mesh], metadata=AssetMetadata(name="test cube", prompt="a cube", seed=3))


def bound_maps(stage, mesh_prim) -> dict[str, str]:
    """Walk material surface output → UsdPreviewSurface inputs → UsdUVTexture; {input name: file path}."""
    mat, _ = UsdShade.MaterialBindingAPI(mesh_prim).ComputeBoundMaterial()
    assert mat, f"{mesh_prim.GetPath()} has no bound material"
    surf, _, _ = mat.ComputeSurfaceSource()
    assert surf and surf.GetShaderId() == "UsdPreviewSurface"
    out = {}
    for inp in surf.GetInputs():
        srcs = inp.GetConnectedSources()[0]
        if not srcs:
            continue
        tex = UsdShade.Shader(srcs[0].source.GetPrim())
        if tex.GetShaderId() == "UsdUVTexture":
            out[f"{inp.GetBaseName()}:{srcs[0].sourceName}"] = tex.GetInput("file").Get().path
    return out


def usd_meshes(stage) -> list:
    return [p for p in stage.Traverse() if p.IsA(UsdGeom.Mesh)]


@pytest.fixture(scope="module")
def cube() -> Asset:
    return textured_cube()


@pytest.fixture(scope="module")
def exported(cube, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("usd")
    out = {}
    for s in ("usda", "usdc", "usd", "usdz"):
        out[s] = d / f"cube.{s}"
        studio_io.save(cube, out[s])
    return out


@pytest.mark.parametrize("suffix", ["usda", "usdc", "usd", "usdz"])
def test_export_validates_and_reopens(exported, cube, suffix):
    path = exported[suffix]
    report = validate(path)  # dispatch through the VALIDATORS table
    assert report.errors == 0 and report.warnings == 0, str(report)
    assert "validators" in report.codes("info") and "UsdValidation" in report.tool
    stage = Usd.Stage.Open(str(path))
    assert UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.y
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0
    dp = stage.GetDefaultPrim()
    assert dp and dp.GetName() == "test_cube" and Usd.ModelAPI(dp).GetKind() == "component"
    assert stage.GetRootLayer().customLayerData["studio"]["prompt"] == "a cube"
    meshes = usd_meshes(stage)
    assert len(meshes) == 1
    gm = UsdGeom.Mesh(meshes[0])
    assert len(gm.GetPointsAttr().Get()) == len(cube.meshes[0].vertices)
    assert list(gm.GetFaceVertexCountsAttr().Get()) == [3] * len(cube.meshes[0].faces)
    assert gm.GetSubdivisionSchemeAttr().Get() == "none"
    assert gm.GetNormalsInterpolation() == "vertex"
    pv = UsdGeom.PrimvarsAPI(gm)
    assert pv.GetPrimvar("st").GetTypeName() == Sdf.ValueTypeNames.TexCoord2fArray
    assert pv.GetPrimvar("st1").GetInterpolation() == "vertex"
    assert pv.GetPrimvar("displayColor").GetInterpolation() == "vertex"
    # world positions through usd-core's own xform evaluation
    world = np.asarray(UsdGeom.XformCache().GetLocalToWorldTransform(meshes[0]), np.float64).T
    pts = np.asarray(gm.GetPointsAttr().Get(), np.float64)
    got = trimesh.transform_points(pts, world)
    np.testing.assert_allclose(got, cube.meshes[0].world_vertices(), atol=1e-5)
    # st is the v-flipped glTF uv
    st = np.asarray(pv.GetPrimvar("st").Get(), np.float64)
    np.testing.assert_allclose(st[:, 0], cube.meshes[0].uvs[0][:, 0], atol=1e-6)
    np.testing.assert_allclose(st[:, 1], 1.0 - cube.meshes[0].uvs[0][:, 1], atol=1e-6)
    maps = bound_maps(stage, meshes[0])
    assert set(maps) == {"diffuseColor:rgb", "opacity:a", "metallic:b", "roughness:g", "normal:rgb",
                         "occlusion:r", "emissiveColor:rgb"}, maps
    assert maps["metallic:b"] == maps["roughness:g"]
    if suffix == "usdz":
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            assert Path(names[0]).suffix == ".usdc"
            assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
            assert {m for m in maps.values()} <= set(names)
    else:
        for rel in maps.values():
            assert rel.startswith("cube_textures/") and (path.parent / rel).is_file()


def test_shader_network_values(exported):
    stage = Usd.Stage.Open(str(exported["usda"]))
    mroot = stage.GetDefaultPrim().GetPath().AppendChild("Materials")
    mat = [p for p in stage.GetPrimAtPath(mroot).GetChildren()][0]
    sh = {p.GetName(): UsdShade.Shader(p) for p in mat.GetChildren()}
    base = sh["BaseColorTexture"]
    assert base.GetInput("sourceColorSpace").Get() == "sRGB"
    assert tuple(base.GetInput("scale").Get()) == pytest.approx((0.9, 0.8, 0.7, 0.6))
    assert (base.GetInput("wrapS").Get(), base.GetInput("wrapT").Get()) == ("clamp", "mirror")
    nm = sh["NormalTexture"]
    assert nm.GetInput("sourceColorSpace").Get() == "raw"
    assert tuple(nm.GetInput("scale").Get()) == (2, 2, 2, 1) and tuple(nm.GetInput("bias").Get()) == (-1, -1, -1, 0)
    rd = UsdShade.Shader(nm.GetInput("st").GetConnectedSources()[0][0].source.GetPrim())
    assert rd.GetShaderId() == "UsdPrimvarReader_float2" and rd.GetInput("varname").Get() == "st1"
    mr = sh["MetallicRoughnessTexture"]
    assert tuple(mr.GetInput("scale").Get()) == pytest.approx((1.0, 0.25, 0.5, 1.0))
    em = sh["EmissiveTexture"]
    assert tuple(em.GetInput("scale").Get()) == pytest.approx((2.0, 1.0, 0.5, 1.0))
    ps = sh["PreviewSurface"]
    assert ps.GetInput("opacityThreshold").Get() == pytest.approx(0.4)
    t2 = UsdShade.Shader(base.GetInput("st").GetConnectedSources()[0][0].source.GetPrim())
    assert t2.GetShaderId() == "UsdTransform2d"


def _usd_transform2d(st: np.ndarray, rot_deg: float, scale, trans) -> np.ndarray:
    """UsdTransform2d as the UsdPreviewSurface spec defines it: CCW rotation of the scaled input, then translation."""
    a = math.radians(rot_deg)
    r = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return (st * np.asarray(scale)) @ r.T + np.asarray(trans)


@pytest.mark.parametrize("tr", [
    TextureTransform(),
    TextureTransform(offset=(0.5, -0.25)),
    TextureTransform(scale=(2.0, 3.0)),
    TextureTransform(rotation=math.pi / 2),
    TextureTransform(offset=(0.1, 0.2), rotation=0.3, scale=(2.0, 3.0)),
    TextureTransform(offset=(-1.5, 0.7), rotation=-2.1, scale=(0.5, -1.5)),
])
def test_texture_transform_samples_same_texel(tr):
    """glTF samples the image at uv' (origin top-left); USD at st' (origin bottom-left): same texel."""
    uv = np.random.default_rng(1).random((50, 2)) * 3 - 1
    h = np.c_[uv, np.ones(len(uv))]
    uv_t = (h @ tr.matrix().T)[:, :2]
    rot, sc, t = gltf_to_usd_transform2d(tr)
    st = np.c_[uv[:, 0], 1.0 - uv[:, 1]]
    st_t = _usd_transform2d(st, rot, sc, t)
    W, H = 64, 32
    np.testing.assert_allclose(np.c_[uv_t[:, 0] * W, uv_t[:, 1] * H], np.c_[st_t[:, 0] * W, (1.0 - st_t[:, 1]) * H], atol=1e-9)
    back = usd_to_gltf_transform(rot, sc, t)
    np.testing.assert_allclose(back.matrix(), tr.matrix(), atol=1e-12)


@pytest.mark.parametrize("suffix", ["usda", "usdc", "usdz"])
def test_read_round_trip(exported, cube, suffix):
    back = read_usd(exported[suffix])
    assert back.metadata.name == "test cube" and back.metadata.prompt == "a cube" and back.metadata.seed == 3
    assert len(back.meshes) == 1
    m0, m1 = cube.meshes[0], back.meshes[0]
    np.testing.assert_array_equal(m1.faces, m0.faces)
    np.testing.assert_allclose(m1.world_vertices(), m0.world_vertices(), atol=1e-6)
    np.testing.assert_allclose(m1.transform, m0.transform, atol=1e-12)
    np.testing.assert_allclose(m1.normals, m0.normals, atol=1e-6)
    assert len(m1.uvs) == 2
    for a, b in zip(m0.uvs, m1.uvs):
        np.testing.assert_allclose(b, a, atol=1e-6)
    np.testing.assert_allclose(m1.colors, m0.colors, atol=1e-7)
    a, b = m0.material, m1.material
    for slot, t0 in a.textures().items():
        t1 = getattr(b, slot)
        assert t1 is not None, slot
        if t0.image.shape[2] == 1:  # grey maps travel as RGB (UsdUVTexture g/b on 1-channel images are undefined)
            assert t1.image.shape[2] == 3 and all(np.array_equal(t1.image[:, :, c], t0.image[:, :, 0]) for c in range(3))
        else:
            np.testing.assert_array_equal(t1.image, t0.image)
        assert t1.texcoord == t0.texcoord and t1.sampler.wrap_s == t0.sampler.wrap_s and t1.sampler.wrap_t == t0.sampler.wrap_t
    assert b.metallic_roughness_texture is not None and b.metallic_roughness_texture is not b.base_color_texture
    tr = b.base_color_texture.transform
    assert tr is not None
    np.testing.assert_allclose(tr.matrix(), a.base_color_texture.transform.matrix(), atol=1e-6)
    assert b.base_color_factor == pytest.approx(a.base_color_factor, abs=1e-6)
    assert (b.metallic_factor, b.roughness_factor) == pytest.approx((0.5, 0.25))
    assert b.occlusion_strength == pytest.approx(0.8) and b.normal_scale == pytest.approx(1.0)
    assert b.emissive_factor == pytest.approx(a.emissive_factor) and b.emissive_strength == pytest.approx(2.0)
    assert (b.alpha_mode, b.alpha_cutoff) == ("MASK", pytest.approx(0.4))


def test_normal_scale_is_baked_and_validates(tmp_path):
    asset = textured_cube()
    asset.meshes[0].material.normal_scale = 0.5
    p = tmp_path / "n.usdz"
    write_usd(asset, p)
    rep = validate_usd(p)
    assert rep.errors == 0 and rep.warnings == 0, str(rep)
    back = read_usd(p).meshes[0].material
    src = asset.meshes[0].material.normal_texture.image.astype(np.float64) / 255
    want = np.round(np.clip(((2 * src[:, :, :2] - 1) * 0.5 + 1) / 2, 0, 1) * 255)
    np.testing.assert_array_equal(back.normal_texture.image[:, :, :2], want.astype(np.uint8))
    np.testing.assert_array_equal(back.normal_texture.image[:, :, 2], asset.meshes[0].material.normal_texture.image[:, :, 2])


def test_splats_as_particle_field(tmp_path):
    rng = np.random.default_rng(2)
    n = 40
    g = GaussianSplats(rng.normal(size=(n, 3)), rng.normal(size=(n, 4)), rng.normal(size=(n, 3)) - 3,
                       rng.normal(size=n), rng.normal(size=(n, 4, 3)))
    asset = textured_cube()
    asset.splats = g
    p = tmp_path / "s.usdz"
    write_usd(asset, p)
    rep = validate_usd(p)
    assert rep.errors == 0, str(rep)
    stage = Usd.Stage.Open(str(p))
    prim = stage.GetDefaultPrim().GetChild("Splats")
    assert prim.GetTypeName() == "ParticleField3DGaussianSplat"
    np.testing.assert_allclose(np.asarray(prim.GetAttribute("opacities").Get()), g.opacities, atol=1e-6)
    np.testing.assert_allclose(np.asarray(prim.GetAttribute("scales").Get()), g.scales, rtol=1e-6)
    dc = np.asarray(UsdGeom.PrimvarsAPI(prim).GetPrimvar("displayColor").Get())
    np.testing.assert_allclose(dc, g.colors, atol=1e-6)
    h = read_usd(p).splats
    np.testing.assert_array_equal(h.means, g.means)
    np.testing.assert_allclose(h.quats, g.normalized_quats(), atol=1e-7)
    np.testing.assert_allclose(h.log_scales, g.log_scales, atol=1e-5)
    np.testing.assert_allclose(h.opacity_logits, g.opacity_logits, atol=1e-4)
    np.testing.assert_array_equal(h.sh, g.sh)


def test_polygons_fan_triangulated_and_z_up(tmp_path):
    """A hand-made Z-up centimetre stage with a quad and a pentagon, faceVarying st, no material."""
    p = tmp_path / "poly.usda"
    stage = Usd.Stage.CreateNew(str(p))
    UsdGeom.SetStageUpAxis(stage, "Z")
    UsdGeom.SetStageMetersPerUnit(stage, 0.01)
    gm = UsdGeom.Mesh.Define(stage, "/M")
    pts = [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0), (2, 0, 0), (3, 0, 0), (3, 1, 0), (2.5, 2, 0), (2, 1, 0)]
    gm.CreatePointsAttr().Set(pts, 1.0)  # animated (time samples only): the first sample is read
    gm.CreateFaceVertexCountsAttr([4, 5])
    gm.CreateFaceVertexIndicesAttr([0, 1, 2, 3, 4, 5, 6, 7, 8])
    st = UsdGeom.PrimvarsAPI(gm).CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.faceVarying)
    st.Set([(float(i) / 9, 0.25) for i in range(9)])
    stage.Save()
    a = read_usd(p)
    m = a.meshes[0]
    assert len(m.faces) == 2 + 3
    w = m.world_vertices()
    # Z-up centimetres → Y-up metres: (x, y, z) → (x, z, -y) · 0.01
    src = np.array(pts, np.float64)
    want = np.c_[src[:, 0], src[:, 2], -src[:, 1]] * 0.01
    assert {tuple(np.round(r, 9)) for r in w} == {tuple(np.round(r, 9)) for r in want}
    np.testing.assert_allclose(m.uvs[0][:, 1], 0.75, atol=1e-7)
    area = trimesh.Trimesh(w, m.faces, process=False).area
    assert area == pytest.approx((1.0 + 1.5) * 1e-4)  # quad 1 + pentagon 1.5 (cm² → m²)


def test_geom_subsets_split_by_material(tmp_path):
    """Per-face materials through GeomSubsets (family materialBind) become one Mesh per material."""
    p = tmp_path / "subsets.usda"
    stage = Usd.Stage.CreateNew(str(p))
    UsdGeom.SetStageUpAxis(stage, "Y")
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    gm = UsdGeom.Mesh.Define(stage, "/M")
    stage.SetDefaultPrim(gm.GetPrim())
    gm.CreatePointsAttr([(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0), (2, 0, 0), (2, 1, 0)])
    gm.CreateFaceVertexCountsAttr([4, 4])
    gm.CreateFaceVertexIndicesAttr([0, 1, 2, 3, 1, 4, 5, 2])
    mats = []
    for name, col in (("Red", (1, 0, 0)), ("Blue", (0, 0, 1))):
        m = UsdShade.Material.Define(stage, f"/Mats/{name}")
        ps = UsdShade.Shader.Define(stage, f"/Mats/{name}/PS")
        ps.CreateIdAttr("UsdPreviewSurface")
        ps.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).Set(col)
        m.CreateSurfaceOutput().ConnectToSource(ps.ConnectableAPI(), "surface")
        mats.append(m)
    api = UsdShade.MaterialBindingAPI.Apply(gm.GetPrim())
    for i, m in enumerate(mats):
        sub = api.CreateMaterialBindSubset(f"s{i}", [i])
        UsdShade.MaterialBindingAPI.Apply(sub.GetPrim()).Bind(m)
    stage.Save()
    rep = validate_usd(p)
    assert rep.errors == 0, str(rep)
    a = read_usd(p)
    assert [m.material.name for m in a.meshes] == ["Red", "Blue"]
    assert [len(m.faces) for m in a.meshes] == [2, 2]
    assert a.meshes[0].material.base_color_factor == pytest.approx((1, 0, 0, 1))
    assert a.meshes[1].vertices[:, 0].max() == pytest.approx(2.0)


# --- broken input -------------------------------------------------------------------------------


def test_bad_inputs_raise_invalid_asset(tmp_path, exported):
    empty = tmp_path / "empty.usda"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.usdc"
    garbage.write_bytes(b"this is not a crate file" * 10)
    notzip = tmp_path / "notzip.usdz"
    notzip.write_bytes(b"PK\x03\x04 not really")
    trunc = tmp_path / "trunc.usdz"
    data = exported["usdz"].read_bytes()
    trunc.write_bytes(data[: len(data) // 2])
    for bad in (empty, garbage, notzip, trunc):
        with pytest.raises(InvalidAssetError) as ei:
            read_usd(bad)
        assert bad.name in str(ei.value)
        rep = validate_usd(bad)
        assert rep.errors >= 1 and rep.messages[0].code == "UsdOpen"
    # missing referenced texture
    folder = tmp_path / "missing"
    folder.mkdir()
    p = folder / "m.usda"
    write_usd(textured_cube(), p)
    (folder / "m_textures" / "normal.png").unlink()
    with pytest.raises(InvalidAssetError, match=r"m\.usda.*normal\.png.*not found"):
        read_usd(p)
    assert any("UnresolvableDependency" in c for c in validate_usd(p).codes("error"))
    # a texture path escaping the asset's folder is refused
    esc = folder / "esc.usda"
    esc.write_text(p.read_text().replace("@m_textures/normal.png@", "@../outside.png@"))
    (tmp_path / "outside.png").write_bytes((folder / "m_textures" / "emissive.png").read_bytes())
    with pytest.raises(InvalidAssetError, match="outside"):
        read_usd(esc)


def test_failed_usdz_write_leaves_nothing(tmp_path, monkeypatch):
    """A failure after the archive was zipped (here: fsync) leaves neither the target nor temporaries."""
    import studio.assets.usd_write as uw

    target = tmp_path / "a.usdz"
    target.write_bytes(b"previous version")

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(uw.os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        write_usd(textured_cube(), target)
    assert [q.name for q in tmp_path.iterdir()] == ["a.usdz"] and target.read_bytes() == b"previous version"


# --- the validator catches real errors ---------------------------------------------------------


def test_validator_flags_bad_material_binding(tmp_path):
    p = tmp_path / "bad.usda"
    stage = Usd.Stage.CreateNew(str(p))
    UsdGeom.SetStageUpAxis(stage, "Y")
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    root = UsdGeom.Xform.Define(stage, "/R")
    stage.SetDefaultPrim(root.GetPrim())
    mat = UsdShade.Material.Define(stage, "/R/Mat")
    m1 = UsdGeom.Mesh.Define(stage, "/R/M1")  # binding relationship without MaterialBindingAPI
    m1.GetPrim().CreateRelationship("material:binding").AddTarget(mat.GetPath())
    m2 = UsdGeom.Mesh.Define(stage, "/R/M2")  # binding as an attribute
    m2.GetPrim().CreateAttribute("material:binding", Sdf.ValueTypeNames.Token).Set("oops")
    stage.Save()
    rep = validate_usd(p)
    codes = rep.codes("error")
    assert any("MissingMaterialBindingAPI" in c for c in codes), str(rep)
    assert any("MaterialBindingPropNotARel" in c for c in codes), str(rep)
    assert not rep.ok


def test_validator_flags_usdz_with_unsupported_file(tmp_path, exported):
    txt = tmp_path / "notes.txt"
    txt.write_text("not allowed in a usdz")
    p = tmp_path / "bad.usdz"
    with zipfile.ZipFile(exported["usdz"]) as zf:
        zf.extractall(tmp_path / "x")
        names = zf.namelist()
    zw = Sdf.ZipFileWriter.CreateNew(str(p))
    for n in names:
        zw.AddFile(str(tmp_path / "x" / n), n)
    zw.AddFile(str(txt), "notes.txt")
    zw.Save()
    rep = validate_usd(p)
    assert any("UnsupportedFileExtensionInPackage" in c for c in rep.codes("error")), str(rep)
    # stage metadata missing → usdGeom StageMetadataChecker
    q = tmp_path / "nometa.usda"
    s = Usd.Stage.CreateNew(str(q))
    s.SetDefaultPrim(UsdGeom.Xform.Define(s, "/R").GetPrim())
    s.Save()
    assert any("StageMetadataChecker" in c for c in validate_usd(q).codes("error"))


def test_validator_reports_all_registered_validators(exported):
    from pxr import UsdValidation

    n = len(UsdValidation.ValidationRegistry().GetOrLoadAllValidators())
    rep = validate_usd(exported["usdz"])
    assert f"({n} validators)" in rep.tool and n >= 25
    names = rep.messages[-1].message
    for family in ("usdGeomValidators", "usdShadeValidators", "usdSkelValidators", "usdUtilsValidators:UsdzPackageValidator"):
        assert family in names


# --- real glTF sample models -------------------------------------------------------------------

MANIFEST = _gltf_manifest()


@pytest.mark.parametrize("model", MANIFEST, ids=[m["name"] for m in MANIFEST])
def test_gltf_sample_to_usdz(model, testdata, tmp_path):
    asset = studio_io.load(testdata / "gltf" / model["path"])
    p = tmp_path / f"{model['name']}.usdz"
    studio_io.save(asset, p, validate=True)  # raises ValidationFailedError on any UsdValidation error
    rep = validate_usd(p)
    assert rep.errors == 0, str(rep)
    stage = Usd.Stage.Open(str(p))
    prims = usd_meshes(stage)
    tris = sum(len(UsdGeom.Mesh(q).GetFaceVertexCountsAttr().Get()) for q in prims)
    assert tris == model["triangles"] == asset.triangle_count
    with zipfile.ZipFile(p) as zf:
        packaged = set(zf.namelist())
    assert len(prims) == len(asset.meshes)
    for prim, mesh in zip(prims, asset.meshes):
        maps = bound_maps(stage, prim)
        for slot in mesh.material.textures():
            inp, out = SLOT_INPUTS[slot]
            assert f"{inp}:{out}" in maps, (model["name"], slot, maps)
            assert maps[f"{inp}:{out}"] in packaged
    back = read_usd(p)
    assert back.triangle_count == model["triangles"] and len(back.meshes) == len(asset.meshes)
    np.testing.assert_allclose(back.bounds(), asset.bounds(), atol=1e-5)
    for m0, m1 in zip(asset.meshes, back.meshes):
        # corner positions are independent of vertex renumbering
        np.testing.assert_allclose(m1.world_vertices()[m1.faces], m0.world_vertices()[m0.faces], atol=1e-5)
        a, b = m0.material, m1.material
        assert b.base_color_factor == pytest.approx(a.base_color_factor, abs=1e-6)
        assert b.alpha_mode == a.alpha_mode
        for slot, t0 in a.textures().items():
            t1 = getattr(b, slot)
            img0 = np.repeat(t0.image, 3, axis=2) if t0.image.shape[2] == 1 else t0.image
            np.testing.assert_array_equal(t1.image[:, :, : img0.shape[2]], img0)
            tr0 = t0.transform.matrix() if t0.transform is not None else np.eye(3)
            tr1 = t1.transform.matrix() if t1.transform is not None else np.eye(3)
            np.testing.assert_allclose(tr1, tr0, atol=1e-6)
            want_tc = t0.transform.texcoord if t0.transform is not None and t0.transform.texcoord is not None else t0.texcoord
            assert t1.texcoord == want_tc
            for uv0, uv1 in ((m0.uvs[want_tc], m1.uvs[want_tc]),):
                np.testing.assert_allclose(uv1[m1.faces], uv0[m0.faces], atol=1e-6)
