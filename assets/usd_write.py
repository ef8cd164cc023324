"""Write an Asset as USD (.usda / .usdc / .usd) or a USDZ package, with usd-core.

Stage layout (upAxis Y, metersPerUnit 1, metres)::

    /<Root>                       Xform, kind=component, the default prim
        /Geom/<mesh>              Xform carrying Mesh.transform (xformOp:transform)
            /Mesh                 UsdGeom.Mesh (triangles, vertex normals, primvars:st, st1, ...)
        /Materials/<material>     UsdShade.Material → UsdPreviewSurface network
        /Splats                   UsdVol.ParticleField3DGaussianSplat (when the asset has splats)

Texture coordinates: the studio keeps glTF UVs (origin top-left, v down); USD `st` has its
origin bottom-left, so st = (u, 1 - v). Textures are PNG files (or the original JPEG): beside
the layer in `<stem>_textures/` for .usda/.usdc/.usd, inside the archive for .usdz.

KHR_texture_transform → UsdTransform2d (see `gltf_to_usd_transform2d` for the derivation).
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .asset import Asset
from .atomic import atomic_path, write_bytes_atomic
from .material import CLAMP_TO_EDGE, MIRRORED_REPEAT, REPEAT, Material, Texture, TextureTransform
from .mesh import Mesh
from .splats import GaussianSplats

WRAP_TO_USD = {REPEAT: "repeat", CLAMP_TO_EDGE: "clamp", MIRRORED_REPEAT: "mirror"}
WRAP_FROM_USD = {v: k for k, v in WRAP_TO_USD.items()}

#: Sampler filters have no UsdUVTexture input; they are kept in the texture shader's customData.
CUSTOM_PREFIX = "studio:"


def st_name(index: int) -> str:
    """Primvar name of texture coordinate set `index`: st, st1, st2, ..."""
    return "st" if index == 0 else f"st{index}"


def gltf_to_usd_transform2d(tr: TextureTransform) -> tuple[float, tuple[float, float], tuple[float, float]]:
    """KHR_texture_transform → UsdTransform2d (rotation degrees, scale, translation).

    glTF (uv, v down):      uv' = T(o) · R_g(θ) · S(s) · uv, with R_g = [[c, s], [-s, c]]
    UsdTransform2d (st):    st' = R_ccw(φ) · S(σ) · st + t,  R_ccw = [[c, -s], [s, c]], φ in degrees
    Coordinates:            st = F(uv) with F(u, v) = (u, 1 - v) = D·uv + (0, 1), D = diag(1, -1), F = F⁻¹

    The USD lookup must sample the same texel: st' = F(uv') = D·(A·(D·st + e) + o) + e with
    A = R_g·S, e = (0, 1). The linear part D·A·D = (D·R_g·D)·(D·S·D) = R_ccw(θ)·S, so
    φ = degrees(θ) and σ = s. The constant part is t = D·A·e + D·o + e, i.e.

        t_x = o_x + s_y·sin θ
        t_y = 1 - o_y - s_y·cos θ

    (identity → t = (0, 0)). `usd_to_gltf_transform` inverts this.
    """
    th = float(tr.rotation)
    sx, sy = float(tr.scale[0]), float(tr.scale[1])
    ox, oy = float(tr.offset[0]), float(tr.offset[1])
    t = (ox + sy * math.sin(th), 1.0 - oy - sy * math.cos(th))
    return math.degrees(th), (sx, sy), t


def usd_to_gltf_transform(rotation_deg: float, scale: tuple[float, float], translation: tuple[float, float]) -> TextureTransform:
    """Inverse of `gltf_to_usd_transform2d`."""
    th = math.radians(float(rotation_deg))
    sx, sy = float(scale[0]), float(scale[1])
    tx, ty = float(translation[0]), float(translation[1])
    return TextureTransform(offset=(tx - sy * math.sin(th), 1.0 - ty - sy * math.cos(th)), rotation=th, scale=(sx, sy))


def bake_normal_scale(tex: Texture, scale: float) -> Texture:
    """A copy of a tangent-space normal map with glTF's normal_scale applied to x, y:
    t' = ((2t - 1)·s + 1) / 2 for the R, G channels (clipped to [0, 1]), re-encoded as PNG."""
    img = tex.image.astype(np.float64) / 255.0
    out = img.copy()
    out[:, :, :2] = np.clip(((2.0 * img[:, :, :2] - 1.0) * scale + 1.0) / 2.0, 0.0, 1.0)
    px = np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)
    return Texture(image=px, texcoord=tex.texcoord, transform=tex.transform, sampler=tex.sampler,
                   name=(tex.name.rsplit(".", 1)[0] + "_scaled") if tex.name else "normal_scaled")


def _identifier(name: str, fallback: str) -> str:
    from pxr import Tf

    name = Tf.MakeValidIdentifier(name) if name else ""
    return name if name and name.strip("_") else fallback


class _Names:
    """Unique, valid prim names within one parent."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def __call__(self, name: str, fallback: str) -> str:
        base = _identifier(name, fallback)
        out, i = base, 1
        while out in self.used:
            out = f"{base}_{i}"
            i += 1
        self.used.add(out)
        return out


@dataclass
class _TexFile:
    """A texture file to write: relative asset path (as authored) and its bytes."""

    rel: str
    data: bytes


class _Textures:
    """Collects texture files, de-duplicated by identity of the Texture object and by content."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.files: dict[str, _TexFile] = {}
        self.by_key: dict[tuple, str] = {}
        self.names = _Names()

    def add(self, tex: Texture, slot: str) -> str:
        data, mime = tex.file_bytes()
        if tex.image.shape[2] in (1, 2):
            # UsdUVTexture's g/b outputs on 1-channel images are renderer-defined; glTF means r=g=b.
            from PIL import Image

            img = tex.image
            rgb = np.repeat(img[:, :, :1], 3, axis=2)
            if img.shape[2] == 2:
                rgb = np.concatenate([rgb, img[:, :, 1:2]], axis=2)
            buf = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG")
            data, mime = buf.getvalue(), "image/png"
        key = (hashlib.sha1(data).hexdigest(), mime)
        if key in self.by_key:
            return self.by_key[key]
        ext = ".jpg" if mime == "image/jpeg" else ".png"
        stem = self.names(tex.name.rsplit(".", 1)[0] if tex.name else slot.replace("_texture", ""), slot)
        rel = f"{self.folder}/{stem}{ext}"
        self.files[rel] = _TexFile(rel, data)
        self.by_key[key] = rel
        return rel


def _vt(arr: np.ndarray, kind: str):
    from pxr import Vt

    a = np.ascontiguousarray(arr)
    return {
        "v3f": lambda: Vt.Vec3fArray.FromNumpy(a.astype(np.float32).reshape(-1, 3)),
        "v2f": lambda: Vt.Vec2fArray.FromNumpy(a.astype(np.float32).reshape(-1, 2)),
        "f": lambda: Vt.FloatArray.FromNumpy(a.astype(np.float32).reshape(-1)),
        "i": lambda: Vt.IntArray.FromNumpy(a.astype(np.int32).reshape(-1)),
    }[kind]()


def _author_mesh(stage, parent_path, name: str, mesh: Mesh, material_prim) -> None:
    from pxr import Gf, Sdf, UsdGeom, UsdShade

    xf = UsdGeom.Xform.Define(stage, parent_path.AppendChild(name))
    xf.AddTransformOp().Set(Gf.Matrix4d(np.asarray(mesh.transform, np.float64).T.tolist()))
    gm = UsdGeom.Mesh.Define(stage, xf.GetPath().AppendChild("Mesh"))
    v = np.asarray(mesh.vertices, np.float64)
    f = np.asarray(mesh.faces, np.int64)
    gm.CreatePointsAttr(_vt(v, "v3f"))
    gm.CreateFaceVertexCountsAttr(_vt(np.full(len(f), 3), "i"))
    gm.CreateFaceVertexIndicesAttr(_vt(f, "i"))
    gm.CreateOrientationAttr(UsdGeom.Tokens.rightHanded)
    gm.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
    gm.CreateDoubleSidedAttr(bool(mesh.material.double_sided))
    if len(v):
        gm.CreateExtentAttr(_vt(np.stack([v.min(0), v.max(0)]), "v3f"))
    if len(v):
        gm.CreateNormalsAttr(_vt(mesh.vertex_normals(), "v3f"))
        gm.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
    pv_api = UsdGeom.PrimvarsAPI(gm)
    for i, uv in enumerate(mesh.uvs):
        st = np.asarray(uv, np.float64).copy()
        st[:, 1] = 1.0 - st[:, 1]
        pv = pv_api.CreatePrimvar(st_name(i), Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.vertex)
        pv.Set(_vt(st, "v2f"))
    if mesh.colors is not None:
        c = np.asarray(mesh.colors, np.float32)
        pv = gm.CreateDisplayColorPrimvar(UsdGeom.Tokens.vertex)
        pv.Set(_vt(c[:, :3], "v3f"))
        if np.any(c[:, 3] < 1.0):
            gm.CreateDisplayOpacityPrimvar(UsdGeom.Tokens.vertex).Set(_vt(c[:, 3], "f"))
    else:
        r, g, b, _a = mesh.material.base_color_factor
        gm.CreateDisplayColorPrimvar(UsdGeom.Tokens.constant).Set(_vt(np.array([r, g, b]), "v3f"))
    if mesh.tangents is not None:
        pv = pv_api.CreatePrimvar("tangents", Sdf.ValueTypeNames.Float4Array, UsdGeom.Tokens.vertex)
        from pxr import Vt

        pv.Set(Vt.Vec4fArray.FromNumpy(np.ascontiguousarray(mesh.tangents, np.float32)))
    if material_prim is not None:
        api = UsdShade.MaterialBindingAPI.Apply(gm.GetPrim())
        api.Bind(UsdShade.Material(material_prim))


class _MaterialBuilder:
    """Authors one UsdPreviewSurface network per studio Material."""

    def __init__(self, stage, scope_path, textures: _Textures) -> None:
        self.stage = stage
        self.scope_path = scope_path
        self.textures = textures
        self.names = _Names()
        self.done: dict[int, object] = {}

    def get(self, mat: Material):
        if id(mat) not in self.done:
            self.done[id(mat)] = self._build(mat)
        return self.done[id(mat)]

    def _reader(self, mpath, cache: dict, texcoord: int):
        from pxr import Sdf, UsdShade

        if texcoord not in cache:
            sh = UsdShade.Shader.Define(self.stage, mpath.AppendChild(f"PrimvarReader_{st_name(texcoord)}"))
            sh.CreateIdAttr("UsdPrimvarReader_float2")
            sh.CreateInput("varname", Sdf.ValueTypeNames.String).Set(st_name(texcoord))
            cache[texcoord] = sh.CreateOutput("result", Sdf.ValueTypeNames.Float2)
        return cache[texcoord]

    def _texture(self, mpath, slot: str, tex: Texture, readers: dict, *, srgb: bool, scale, bias=None):
        from pxr import Gf, Sdf, UsdShade

        name = {"base_color_texture": "BaseColorTexture", "metallic_roughness_texture": "MetallicRoughnessTexture",
                "normal_texture": "NormalTexture", "occlusion_texture": "OcclusionTexture",
                "emissive_texture": "EmissiveTexture"}[slot]
        tr = tex.transform
        texcoord = tr.texcoord if (tr is not None and tr.texcoord is not None) else tex.texcoord
        st_out = self._reader(mpath, readers, texcoord)
        if tr is not None:
            rot, sc, t = gltf_to_usd_transform2d(tr)
            t2 = UsdShade.Shader.Define(self.stage, mpath.AppendChild(f"{name}Transform"))
            t2.CreateIdAttr("UsdTransform2d")
            t2.CreateInput("in", Sdf.ValueTypeNames.Float2).ConnectToSource(st_out)
            t2.CreateInput("rotation", Sdf.ValueTypeNames.Float).Set(float(rot))
            t2.CreateInput("scale", Sdf.ValueTypeNames.Float2).Set(Gf.Vec2f(*sc))
            t2.CreateInput("translation", Sdf.ValueTypeNames.Float2).Set(Gf.Vec2f(*t))
            st_out = t2.CreateOutput("result", Sdf.ValueTypeNames.Float2)
        sh = UsdShade.Shader.Define(self.stage, mpath.AppendChild(name))
        sh.CreateIdAttr("UsdUVTexture")
        sh.CreateInput("file", Sdf.ValueTypeNames.Asset).Set(Sdf.AssetPath(self.textures.add(tex, slot)))
        sh.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(st_out)
        sh.CreateInput("wrapS", Sdf.ValueTypeNames.Token).Set(WRAP_TO_USD.get(tex.sampler.wrap_s, "repeat"))
        sh.CreateInput("wrapT", Sdf.ValueTypeNames.Token).Set(WRAP_TO_USD.get(tex.sampler.wrap_t, "repeat"))
        sh.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set("sRGB" if srgb else "raw")
        sh.CreateInput("scale", Sdf.ValueTypeNames.Float4).Set(Gf.Vec4f(*[float(x) for x in scale]))
        if bias is not None:
            sh.CreateInput("bias", Sdf.ValueTypeNames.Float4).Set(Gf.Vec4f(*[float(x) for x in bias]))
        if tex.sampler.mag_filter is not None or tex.sampler.min_filter is not None:
            sh.GetPrim().SetCustomDataByKey(CUSTOM_PREFIX + "magFilter", int(tex.sampler.mag_filter or 0))
            sh.GetPrim().SetCustomDataByKey(CUSTOM_PREFIX + "minFilter", int(tex.sampler.min_filter or 0))
        if tex.name:
            sh.GetPrim().SetCustomDataByKey(CUSTOM_PREFIX + "name", tex.name)
        return sh

    def _build(self, mat: Material):
        from pxr import Gf, Sdf, UsdShade

        mpath = self.scope_path.AppendChild(self.names(mat.name, "Material"))
        m = UsdShade.Material.Define(self.stage, mpath)
        ps = UsdShade.Shader.Define(self.stage, mpath.AppendChild("PreviewSurface"))
        ps.CreateIdAttr("UsdPreviewSurface")
        m.CreateSurfaceOutput().ConnectToSource(ps.ConnectableAPI(), "surface")
        ps.CreateInput("useSpecularWorkflow", Sdf.ValueTypeNames.Int).Set(0)
        inp = lambda n, t: ps.CreateInput(n, t)  # noqa: E731
        F, C3 = Sdf.ValueTypeNames.Float, Sdf.ValueTypeNames.Color3f
        N3, F3 = Sdf.ValueTypeNames.Normal3f, Sdf.ValueTypeNames.Float3  # UsdUVTexture outputs:rgb is float3
        readers: dict = {}
        r, g, b, a = (float(x) for x in mat.base_color_factor)
        alpha_used = mat.alpha_mode != "OPAQUE"

        # base colour + opacity
        if mat.base_color_texture is not None:
            tx = self._texture(mpath, "base_color_texture", mat.base_color_texture, readers, srgb=True, scale=(r, g, b, a))
            inp("diffuseColor", C3).ConnectToSource(tx.ConnectableAPI(), "rgb", UsdShade.AttributeType.Output, F3)
            if alpha_used:
                inp("opacity", F).ConnectToSource(tx.ConnectableAPI(), "a", UsdShade.AttributeType.Output, F)
        else:
            inp("diffuseColor", C3).Set(Gf.Vec3f(r, g, b))
            if alpha_used:
                inp("opacity", F).Set(a)
        if mat.alpha_mode == "MASK":
            inp("opacityThreshold", F).Set(float(mat.alpha_cutoff))
        m.GetPrim().SetCustomDataByKey(CUSTOM_PREFIX + "alphaMode", mat.alpha_mode)
        if mat.unlit:
            m.GetPrim().SetCustomDataByKey(CUSTOM_PREFIX + "unlit", True)

        # metallic (B) / roughness (G)
        if mat.metallic_roughness_texture is not None:
            tx = self._texture(mpath, "metallic_roughness_texture", mat.metallic_roughness_texture, readers, srgb=False,
                               scale=(1.0, mat.roughness_factor, mat.metallic_factor, 1.0))
            inp("metallic", F).ConnectToSource(tx.ConnectableAPI(), "b", UsdShade.AttributeType.Output, F)
            inp("roughness", F).ConnectToSource(tx.ConnectableAPI(), "g", UsdShade.AttributeType.Output, F)
        else:
            inp("metallic", F).Set(float(mat.metallic_factor))
            inp("roughness", F).Set(float(mat.roughness_factor))

        # normal: UsdValidation wants 8-bit normal maps read with scale (2,2,2,1), bias (-1,-1,-1,0),
        # and many viewers ignore other values, so glTF's normal_scale (n.xy · s) is baked into the pixels.
        if mat.normal_texture is not None:
            ntex = mat.normal_texture
            if float(mat.normal_scale) != 1.0:
                ntex = bake_normal_scale(ntex, float(mat.normal_scale))
                m.GetPrim().SetCustomDataByKey(CUSTOM_PREFIX + "normalScaleBaked", float(mat.normal_scale))
            tx = self._texture(mpath, "normal_texture", ntex, readers, srgb=False,
                               scale=(2.0, 2.0, 2.0, 1.0), bias=(-1.0, -1.0, -1.0, 0.0))
            inp("normal", N3).ConnectToSource(tx.ConnectableAPI(), "rgb", UsdShade.AttributeType.Output, F3)

        # occlusion: 1 + k·(r - 1) = k·r + (1 - k)
        if mat.occlusion_texture is not None:
            k = float(mat.occlusion_strength)
            tx = self._texture(mpath, "occlusion_texture", mat.occlusion_texture, readers, srgb=False,
                               scale=(k, k, k, 1.0), bias=(1.0 - k, 1.0 - k, 1.0 - k, 0.0))
            inp("occlusion", F).ConnectToSource(tx.ConnectableAPI(), "r", UsdShade.AttributeType.Output, F)

        # emissive × factor × strength
        em = np.asarray(mat.emissive_factor, np.float64) * float(mat.emissive_strength)
        if mat.emissive_texture is not None:
            tx = self._texture(mpath, "emissive_texture", mat.emissive_texture, readers, srgb=True, scale=(*em, 1.0))
            inp("emissiveColor", C3).ConnectToSource(tx.ConnectableAPI(), "rgb", UsdShade.AttributeType.Output, F3)
        elif np.any(em > 0):
            inp("emissiveColor", C3).Set(Gf.Vec3f(*[float(x) for x in em]))
        if mat.emissive_strength != 1.0:
            m.GetPrim().SetCustomDataByKey(CUSTOM_PREFIX + "emissiveStrength", float(mat.emissive_strength))
        return m.GetPrim()


def _author_splats(stage, path, splats: GaussianSplats) -> str:
    """UsdVol.ParticleField3DGaussianSplat (usd-core ≥ 26) or, lacking it, UsdGeom.Points. Returns the schema used.

    ParticleField attributes are linear: scales = exp(log_scales), opacities = sigmoid(logits),
    orientations quatf (real, i, j, k) = our wxyz; SH flattened per particle, K = (deg+1)² float3.
    displayColor carries the DC colour so viewers without splat support show coloured points.
    """
    from pxr import UsdGeom, Vt

    n = len(splats)
    means = splats.means
    colors = splats.colors
    ext = np.stack([means.min(0), means.max(0)]) if n else np.zeros((2, 3))
    try:
        from pxr import UsdVol

        schema = UsdVol.ParticleField3DGaussianSplat
    except (ImportError, AttributeError):
        schema = None
    if schema is not None:
        pf = schema.Define(stage, path)
        pf.CreatePositionsAttr(_vt(means, "v3f"))
        q = splats.normalized_quats()
        pf.CreateOrientationsAttr(Vt.QuatfArray.FromNumpy(np.ascontiguousarray(q[:, [1, 2, 3, 0]])))  # (i, j, k, real)
        pf.CreateScalesAttr(_vt(splats.scales, "v3f"))
        pf.CreateOpacitiesAttr(_vt(splats.opacities, "f"))
        pf.CreateRadianceSphericalHarmonicsDegreeAttr(int(splats.sh_degree))
        pf.CreateRadianceSphericalHarmonicsCoefficientsAttr(_vt(splats.sh.reshape(-1, 3), "v3f"))
        # extent: means padded by 3 sigma of the largest axis
        pad = 3.0 * float(splats.scales.max()) if n else 0.0
        pf.CreateExtentAttr(_vt(ext + np.array([[-pad], [pad]]), "v3f"))
        UsdGeom.PrimvarsAPI(pf).CreatePrimvar("displayColor", _color3_type(), UsdGeom.Tokens.vertex).Set(_vt(colors, "v3f"))
        return "UsdVol.ParticleField3DGaussianSplat"
    pts = UsdGeom.Points.Define(stage, path)
    pts.CreatePointsAttr(_vt(means, "v3f"))
    pts.CreateWidthsAttr(_vt(2.0 * splats.scales.max(axis=1), "f"))
    pts.SetWidthsInterpolation(UsdGeom.Tokens.vertex)
    pts.CreateDisplayColorPrimvar(UsdGeom.Tokens.vertex).Set(_vt(colors, "v3f"))
    pts.CreateDisplayOpacityPrimvar(UsdGeom.Tokens.vertex).Set(_vt(splats.opacities, "f"))
    pts.CreateExtentAttr(_vt(ext, "v3f"))
    return "UsdGeom.Points"


def _color3_type():
    from pxr import Sdf

    return Sdf.ValueTypeNames.Color3fArray


def build_stage(asset: Asset, texture_folder: str):
    """Author `asset` into a new in-memory stage. Returns (stage, {relative path: bytes} of textures)."""
    from pxr import Kind, Sdf, Usd, UsdGeom

    stage = Usd.Stage.CreateInMemory()
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    root_name = _identifier(asset.metadata.name, "Root")
    root = UsdGeom.Xform.Define(stage, Sdf.Path.absoluteRootPath.AppendChild(root_name))
    stage.SetDefaultPrim(root.GetPrim())
    Usd.ModelAPI(root.GetPrim()).SetKind(Kind.Tokens.component)
    layer = stage.GetRootLayer()
    meta = asset.metadata.to_dict()
    if asset.dropped:
        meta["dropped"] = list(asset.dropped)
    meta = _json_safe(meta)
    if meta:
        layer.customLayerData = {"studio": meta}
    layer.documentation = f"Written by studio ({asset.metadata.generator})"

    textures = _Textures(texture_folder)
    mats = None
    if asset.meshes:
        geom = UsdGeom.Scope.Define(stage, root.GetPath().AppendChild("Geom"))
        mscope = UsdGeom.Scope.Define(stage, root.GetPath().AppendChild("Materials"))
        mats = _MaterialBuilder(stage, mscope.GetPath(), textures)
        names = _Names()
        for i, mesh in enumerate(asset.meshes):
            _author_mesh(stage, geom.GetPath(), names(mesh.name, f"Mesh_{i}"), mesh, mats.get(mesh.material))
    if asset.splats is not None and len(asset.splats):
        used = _author_splats(stage, root.GetPath().AppendChild("Splats"), asset.splats)
        root.GetPrim().SetCustomDataByKey(CUSTOM_PREFIX + "splatSchema", used)
    return stage, {rel: tf.data for rel, tf in textures.files.items()}


def _json_safe(d):
    """Metadata → values a VtDictionary holds (str, int, float, bool, lists, dicts)."""
    if isinstance(d, dict):
        return {str(k): _json_safe(v) for k, v in d.items() if v is not None}
    if isinstance(d, (list, tuple)):
        from pxr import Vt

        items = [_json_safe(v) for v in d]
        if all(isinstance(v, str) for v in items):
            return Vt.StringArray(items)
        if all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            return Vt.Int64Array(items)
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
            return Vt.DoubleArray([float(v) for v in items])
        import json

        return json.dumps(d, default=str)  # nested/mixed lists: crate files cannot hold VtValue vectors
    if isinstance(d, (bool, int, float, str)):
        return d
    if isinstance(d, np.generic):
        return d.item()
    return str(d)


def write_usd(asset: Asset, path: Path) -> None:
    """Write `asset` to .usd/.usda/.usdc (textures in `<stem>_textures/` beside it) or .usdz (one package).

    Atomic: the layer is exported to a temporary file and renamed; a USDZ is assembled in a
    temporary folder, zipped (Sdf.ZipFileWriter: uncompressed, 64-byte aligned, root layer
    first) into a temporary archive and renamed.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".usdz":
        _write_usdz(asset, path)
        return
    folder = f"{path.stem}_textures"
    stage, files = build_stage(asset, folder)
    for rel, data in files.items():
        write_bytes_atomic(path.parent / rel, data)
    args = {"format": "usda"} if suffix == ".usda" else {"format": "usdc"} if suffix in (".usdc", ".usd") else {}
    with atomic_path(path) as tmp:
        if not stage.GetRootLayer().Export(str(tmp), args=args):
            raise OSError(f"usd-core could not write {path}")


def _write_usdz(asset: Asset, path: Path) -> None:
    from pxr import Sdf

    stage, files = build_stage(asset, "textures")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.stem[:40]}.", dir=path.parent))
    try:
        root = tmpdir / f"{_identifier(path.stem, 'asset')}.usdc"
        if not stage.GetRootLayer().Export(str(root)):
            raise OSError(f"usd-core could not write the root layer of {path}")
        for rel, data in files.items():
            p = tmpdir / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        with atomic_path(path) as tmp:
            zw = Sdf.ZipFileWriter.CreateNew(str(tmp))
            zw.AddFile(str(root), root.name)
            for rel in files:
                zw.AddFile(str(tmpdir / rel), rel)
            zw.Save()
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
