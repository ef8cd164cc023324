"""Read USD (.usd/.usda/.usdc) and USDZ into an Asset with usd-core.

Meshes become triangle Meshes (fan triangulation of polygons, leftHanded winding flipped),
one per UsdGeom.Mesh (or per material-bound GeomSubset), with the composed world transform
converted to the studio frame (+Y up, metres: upAxis Z and metersPerUnit are applied).
Texture coordinate primvars go back to glTF (u, 1 - v). UsdPreviewSurface networks become
glTF metallic-roughness Materials; textures are read from the package (USDZ) or from files
inside the layer's folder. ParticleField3DGaussianSplat prims become GaussianSplats.
"""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np

from studio.errors import InvalidAssetError

from .asset import Asset, AssetMetadata
from .material import REPEAT, Material, Sampler, Texture
from .mesh import Mesh
from .splats import GaussianSplats
from .usd_write import WRAP_FROM_USD, usd_to_gltf_transform

_EXTS = (".usd", ".usda", ".usdc", ".usdz")


def _T():
    """Time for a static import: the default value, or the first sample of animated attributes."""
    from pxr import Usd

    return Usd.TimeCode.EarliestTime()


def tf_message(exc: BaseException) -> str:
    """The human part of a Tf error ("Error in 'pxr…' at line … : 'message'") on one line."""
    text = " ".join(str(exc).split())
    quoted = re.findall(r" : '(.*?)'(?= Error in |$)", text)
    return ("; ".join(quoted) if quoted else text)[:600]


def _open_stage(path: Path):
    from pxr import Tf, Usd

    if path.suffix.lower() == ".usdz":
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
                bad = zf.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise InvalidAssetError(path, f"not a readable USDZ (zip) archive: {exc}") from None
        if bad is not None:
            raise InvalidAssetError(path, f"USDZ archive member '{bad}' is corrupt (CRC mismatch)")
        if not names or Path(names[0]).suffix.lower() not in (".usd", ".usda", ".usdc"):
            raise InvalidAssetError(path, "USDZ archive does not start with a USD layer")
    try:
        stage = Usd.Stage.Open(str(path), Usd.Stage.LoadAll)
    except Tf.ErrorException as exc:
        raise InvalidAssetError(path, f"usd-core cannot open it: {tf_message(exc)}") from None
    if stage is None:
        raise InvalidAssetError(path, "usd-core cannot open it")
    return stage


def _stage_correction(stage) -> np.ndarray:
    """(4,4) matrix taking the stage's frame to the studio's (+Y up, metres)."""
    from pxr import UsdGeom

    c = np.eye(4) * float(UsdGeom.GetStageMetersPerUnit(stage))
    c[3, 3] = 1.0
    if UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.z:
        rot = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
        c = rot @ c
    return c


class _TextureSource:
    """Reads texture bytes referenced by a stage, inside the USDZ or inside the layer's folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.resolve().parent
        self.images: dict[str, Texture] = {}

    def read(self, asset_path, where: str) -> Texture:
        resolved = asset_path.resolvedPath
        if not resolved:
            raise InvalidAssetError(self.path, f"texture '{asset_path.path}' (used by {where}) not found")
        if resolved in self.images:
            return self.images[resolved]
        data = self._bytes(resolved, asset_path.path, where)
        try:
            tex = Texture.from_file_bytes(data, name=Path(asset_path.path).name)
        except Exception as exc:  # PIL raises many types for broken images
            raise InvalidAssetError(self.path, f"texture '{asset_path.path}' (used by {where}) is not a readable image: {exc}") from None
        self.images[resolved] = tex
        return tex

    def _bytes(self, resolved: str, authored: str, where: str) -> bytes:
        m = re.fullmatch(r"(.*?\.usdz)\[(.*)\]", resolved, flags=re.IGNORECASE)
        if m:
            pkg, inner = m.group(1), m.group(2)
            if "[" in inner:
                raise InvalidAssetError(self.path, f"texture '{authored}' is in a nested package, which is not supported")
            try:
                with zipfile.ZipFile(pkg) as zf:
                    return zf.read(inner)
            except (KeyError, zipfile.BadZipFile, OSError) as exc:
                raise InvalidAssetError(self.path, f"texture '{authored}' (used by {where}) unreadable in package: {exc}") from None
        target = Path(resolved).resolve()
        if self.base not in target.parents:
            raise InvalidAssetError(
                self.path, f"texture '{authored}' (used by {where}) lies outside the asset's folder; refusing to read it"
            )
        try:
            return target.read_bytes()
        except OSError as exc:
            raise InvalidAssetError(self.path, f"texture '{authored}' (used by {where}) cannot be read: {exc}") from None


def _producer(inp):
    """('value', v) or ('output', shader, output name) or ('none',) for a UsdShade input."""
    from pxr import UsdShade

    if not inp:
        return ("none",)
    attrs = inp.GetValueProducingAttributes()
    if not attrs:
        return ("none",)
    a = attrs[0]
    if UsdShade.Output.IsOutput(a):
        return ("output", UsdShade.Shader(a.GetPrim()), UsdShade.Output(a).GetBaseName())
    v = a.Get(_T())
    return ("none",) if v is None else ("value", v)


def _value(inp, default):
    p = _producer(inp)
    return p[1] if p[0] == "value" else default


class _MaterialReader:
    def __init__(self, src: _TextureSource, dropped: list[str]) -> None:
        self.src = src
        self.dropped = dropped
        self.cache: dict[str, Material] = {}
        self.varnames: dict[str, int] = {}

    def texcoord_index(self, varname: str) -> int:
        """st → 0, stN → N; other names get indices in order of first use (after st indices)."""
        m = re.fullmatch(r"st(\d*)", varname)
        if m:
            return int(m.group(1) or 0)
        if varname not in self.varnames:
            self.varnames[varname] = 0 if not self.varnames else max(self.varnames.values()) + 1
        return self.varnames[varname]

    def _tex(self, shader, slot: str) -> tuple[Texture, np.ndarray, np.ndarray]:
        """Texture for a UsdUVTexture shader plus its (4,) scale and bias."""
        where = str(shader.GetPath())
        file_value = _value(shader.GetInput("file"), None)
        if file_value is None or not getattr(file_value, "path", ""):
            raise InvalidAssetError(self.src.path, f"UsdUVTexture {where} has no inputs:file")
        base = self.src.read(file_value, where)
        scale = np.array(_value(shader.GetInput("scale"), (1, 1, 1, 1)), dtype=np.float64)
        bias = np.array(_value(shader.GetInput("bias"), (0, 0, 0, 0)), dtype=np.float64)
        wrap_s = WRAP_FROM_USD.get(str(_value(shader.GetInput("wrapS"), "repeat")), REPEAT)
        wrap_t = WRAP_FROM_USD.get(str(_value(shader.GetInput("wrapT"), "repeat")), REPEAT)
        cd = shader.GetPrim().GetCustomData().get("studio", {})
        mag = cd.get("magFilter") or None
        mn = cd.get("minFilter") or None
        transform, varname = None, "st"
        p = _producer(shader.GetInput("st"))
        if p[0] == "output" and p[1].GetShaderId() == "UsdTransform2d":
            t2 = p[1]
            transform = usd_to_gltf_transform(
                float(_value(t2.GetInput("rotation"), 0.0)),
                tuple(_value(t2.GetInput("scale"), (1.0, 1.0))),
                tuple(_value(t2.GetInput("translation"), (0.0, 0.0))),
            )
            p = _producer(t2.GetInput("in"))
        if p[0] == "output" and p[1].GetShaderId() and p[1].GetShaderId().startswith("UsdPrimvarReader"):
            varname = str(_value(p[1].GetInput("varname"), "st"))
        tex = Texture(
            image=base.image, texcoord=self.texcoord_index(varname), transform=transform,
            sampler=Sampler(mag_filter=mag, min_filter=mn, wrap_s=wrap_s, wrap_t=wrap_t),
            name=cd.get("name", base.name), encoded=base.encoded, mime_type=base.mime_type,
        )
        return tex, scale, bias

    def get(self, mat_prim) -> Material:
        key = str(mat_prim.GetPath())
        if key not in self.cache:
            self.cache[key] = self._read(mat_prim)
        return self.cache[key]

    def _read(self, mat_prim) -> Material:
        from pxr import UsdShade

        name = mat_prim.GetName()
        mat = UsdShade.Material(mat_prim)
        shader, _, _ = mat.ComputeSurfaceSource()
        if not shader or shader.GetShaderId() != "UsdPreviewSurface":
            sid = shader.GetShaderId() if shader else None
            self.dropped.append(f"material {name}: surface shader {sid!r} is not UsdPreviewSurface; default material used")
            return Material(name=name)
        cd = mat_prim.GetCustomData().get("studio", {})
        kw: dict = {"name": name}
        texs: dict[str, tuple] = {}  # shader path → (Texture, scale, bias)

        def tex_of(sh, slot):
            k = str(sh.GetPath())
            if k not in texs:
                texs[k] = self._tex(sh, slot)
            return texs[k]

        # base colour and opacity
        diffuse = _producer(shader.GetInput("diffuseColor"))
        opacity = _producer(shader.GetInput("opacity"))
        alpha = 1.0
        rgb = (0.18, 0.18, 0.18)
        if diffuse[0] == "output":
            t, sc, _ = tex_of(diffuse[1], "base_color_texture")
            kw["base_color_texture"] = t
            rgb = tuple(sc[:3])
        elif diffuse[0] == "value":
            rgb = tuple(float(x) for x in diffuse[1])
        if opacity[0] == "output":
            t, sc, _ = tex_of(opacity[1], "base_color_texture")
            if kw.get("base_color_texture") is not t or opacity[2] != "a":
                self.dropped.append(f"material {name}: opacity from a texture other than base colour alpha ignored")
            alpha = float(sc[3])
        elif opacity[0] == "value":
            alpha = float(opacity[1])
        kw["base_color_factor"] = (*(float(x) for x in rgb), alpha)
        threshold = float(_value(shader.GetInput("opacityThreshold"), 0.0))
        mode = cd.get("alphaMode")
        if mode not in ("OPAQUE", "MASK", "BLEND"):
            mode = "MASK" if threshold > 0 else ("BLEND" if opacity[0] == "output" or alpha < 1.0 else "OPAQUE")
        kw["alpha_mode"] = mode
        if mode == "MASK":
            kw["alpha_cutoff"] = threshold if threshold > 0 else 0.5

        # metallic (B) / roughness (G)
        metal = _producer(shader.GetInput("metallic"))
        rough = _producer(shader.GetInput("roughness"))
        kw["metallic_factor"] = float(metal[1]) if metal[0] == "value" else 0.0
        kw["roughness_factor"] = float(rough[1]) if rough[0] == "value" else 0.5
        if metal[0] == "output" or rough[0] == "output":
            mt = tex_of(metal[1], "metallic_roughness_texture") if metal[0] == "output" else None
            rt = tex_of(rough[1], "metallic_roughness_texture") if rough[0] == "output" else None
            if mt is not None and rt is not None and mt[0] is rt[0] and metal[2] == "b" and rough[2] == "g":
                kw["metallic_roughness_texture"] = mt[0]
                kw["metallic_factor"], kw["roughness_factor"] = float(mt[1][2]), float(mt[1][1])
            else:
                packed, mf, rf = _pack_metal_rough(mt, metal, rt, rough, kw["metallic_factor"], kw["roughness_factor"])
                kw["metallic_roughness_texture"] = packed
                kw["metallic_factor"], kw["roughness_factor"] = mf, rf

        # normal: scale (2s, 2s, 2, 1), bias (-s, -s, -1, 0)
        nrm = _producer(shader.GetInput("normal"))
        if nrm[0] == "output":
            t, sc, _ = tex_of(nrm[1], "normal_texture")
            kw["normal_texture"] = t
            kw["normal_scale"] = float(sc[0] / sc[2]) if sc[2] else 1.0

        occ = _producer(shader.GetInput("occlusion"))
        if occ[0] == "output":
            t, sc, _ = tex_of(occ[1], "occlusion_texture")
            kw["occlusion_texture"] = t
            kw["occlusion_strength"] = float(sc[0])
            if occ[2] != "r":
                self.dropped.append(f"material {name}: occlusion read from channel {occ[2]}, glTF uses r")

        em = _producer(shader.GetInput("emissiveColor"))
        emis = np.zeros(3)
        if em[0] == "output":
            t, sc, _ = tex_of(em[1], "emissive_texture")
            kw["emissive_texture"] = t
            emis = sc[:3]
        elif em[0] == "value":
            emis = np.asarray(em[1], np.float64)
        strength = float(cd.get("emissiveStrength", max(1.0, float(np.max(emis)) if len(emis) else 1.0)))
        kw["emissive_factor"] = tuple(float(x) for x in emis / strength)
        kw["emissive_strength"] = strength
        kw["unlit"] = bool(cd.get("unlit", False))
        if _value(shader.GetInput("useSpecularWorkflow"), 0) == 1:
            self.dropped.append(f"material {name}: specular workflow approximated by metallic-roughness")
        return Material(**kw)


def _pack_metal_rough(mt, metal, rt, rough, mf: float, rf: float):
    """Build a glTF metal-rough texture (G rough, B metal) from separate/odd-channel USD textures."""
    from PIL import Image

    chan = {"r": 0, "g": 1, "b": 2, "a": 3}
    ref = (rt or mt)[0]
    h, w = ref.image.shape[:2]
    out = np.full((h, w, 3), 255, np.uint8)
    for src, prod, c in ((rt, rough, 1), (mt, metal, 2)):
        if src is None:
            continue
        img = src[0].image
        if img.shape[:2] != (h, w):
            img = np.asarray(Image.fromarray(img if img.shape[2] > 1 else img[:, :, 0]).resize((w, h)))
            img = img[:, :, None] if img.ndim == 2 else img
        k = min(chan.get(prod[2], 0), img.shape[2] - 1)
        out[:, :, c] = img[:, :, k]
    tex = Texture(image=out, texcoord=ref.texcoord, transform=ref.transform, sampler=ref.sampler, name="metallicRoughness")
    mf = float(mt[1][chan.get(metal[2], 0)]) if mt is not None else mf
    rf = float(rt[1][chan.get(rough[2], 0)]) if rt is not None else rf
    return tex, mf, rf


def _flatten(primvar):
    """(values ndarray, interpolation) for a primvar, indices applied; (None, None) when unauthored."""
    if not primvar or not primvar.HasAuthoredValue():
        return None, None
    v = primvar.ComputeFlattened(_T())
    if v is None:
        return None, None
    return np.asarray(v), str(primvar.GetInterpolation())


def _triangulate(counts: np.ndarray, indices: np.ndarray):
    """Fan triangulation. Returns (tri_corner (T,3) indices into the corner array, tri_face (T,))."""
    counts = counts.astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else np.zeros(0, np.int64)
    ntri = np.maximum(counts - 2, 0)
    tri_face = np.repeat(np.arange(len(counts)), ntri)
    first = np.repeat(starts, ntri)
    k = np.arange(int(ntri.sum())) - np.repeat(np.cumsum(ntri) - ntri, ntri)
    tri = np.stack([first, first + k + 1, first + k + 2], axis=1)
    return tri, tri_face


def _per_corner(values, interp, n_points, tri, tri_face, indices, n_corners, n_faces, what, path):
    """Expand attribute values to (T*3, C) per triangle corner."""
    corner = tri.reshape(-1)
    face = np.repeat(tri_face, 3)
    vals = values.reshape(len(values), -1)
    if interp == "constant":
        return np.repeat(vals[:1], len(corner), axis=0)
    if interp == "uniform":
        need, idx = n_faces, face
    elif interp == "faceVarying":
        need, idx = n_corners, corner
    else:  # vertex, varying
        need, idx = n_points, indices[corner]
    if len(vals) < need:
        raise InvalidAssetError(path, f"{what} has {len(vals)} values, {interp} interpolation needs {need}")
    return vals[idx]


def _read_mesh(prim, world: np.ndarray, path: Path) -> list[dict]:
    """UsdGeom.Mesh → list of dicts (vertices, faces, normals, uvs {name: (V,2)}, colors, face_ids)."""
    from pxr import UsdGeom

    gm = UsdGeom.Mesh(prim)
    t = _T()
    pts = gm.GetPointsAttr().Get(t)
    counts = gm.GetFaceVertexCountsAttr().Get(t)
    idx = gm.GetFaceVertexIndicesAttr().Get(t)
    if pts is None or counts is None or idx is None or len(pts) == 0:
        return []
    pts = np.asarray(pts, np.float64).reshape(-1, 3)
    counts = np.asarray(counts, np.int64)
    idx = np.asarray(idx, np.int64)
    if counts.sum() != len(idx) or (len(idx) and (idx.min() < 0 or idx.max() >= len(pts))):
        raise InvalidAssetError(path, f"mesh {prim.GetPath()} has inconsistent faceVertexCounts/faceVertexIndices")
    tri, tri_face = _triangulate(counts, idx)
    if gm.GetOrientationAttr().Get() == UsdGeom.Tokens.leftHanded:
        tri = tri[:, [0, 2, 1]]
    args = (len(pts), tri, tri_face, idx, len(idx), len(counts))
    cols: dict[str, np.ndarray] = {"position": _per_corner(pts, "vertex", *args, "points", path)}
    interps = {"vertex"}
    pv_api = UsdGeom.PrimvarsAPI(gm)
    nv, ni = _flatten(pv_api.GetPrimvar("normals"))
    if nv is None and gm.GetNormalsAttr().HasAuthoredValue():
        nv, ni = np.asarray(gm.GetNormalsAttr().Get(t)), str(gm.GetNormalsInterpolation())
    if nv is not None and len(nv):
        cols["normal"] = _per_corner(nv, ni, *args, "normals", path)
        interps.add(ni)
    for pv in pv_api.GetPrimvars():
        tn = pv.GetTypeName()
        if tn.scalarType.type.typeName not in ("GfVec2f", "GfVec2d", "GfVec2h"):
            continue
        v, it = _flatten(pv)
        if v is not None and len(v):
            cols["uv:" + pv.GetPrimvarName()] = _per_corner(v, it, *args, f"primvar {pv.GetPrimvarName()}", path)
            interps.add(it)
    cv, ci = _flatten(pv_api.GetPrimvar("displayColor"))
    if cv is not None and len(cv) and ci != "constant":
        cols["color"] = _per_corner(cv, ci, *args, "displayColor", path)
        interps.add(ci)
        ov, oi = _flatten(pv_api.GetPrimvar("displayOpacity"))
        if ov is not None and len(ov):
            cols["alpha"] = _per_corner(ov, oi, *args, "displayOpacity", path)
    # weld corners that share a point and every attribute value
    corner_point = idx[tri.reshape(-1)]
    if interps <= {"vertex", "varying", "constant"}:
        keep, inverse = np.unique(corner_point, return_inverse=True)
    else:
        key = np.concatenate([corner_point[:, None].astype(np.float64)] + [c.astype(np.float64) for k, c in cols.items() if k != "position"], axis=1)
        _, keep_rows, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
        keep = keep_rows
    inverse = inverse.reshape(-1)
    if interps <= {"vertex", "varying", "constant"}:
        # keep indexes points; take the first corner of each point for the corner-expanded columns
        first = np.zeros(len(keep), np.int64)
        first[inverse[::-1]] = np.arange(len(inverse))[::-1]
        rows = first
    else:
        rows = keep
    faces = inverse.reshape(-1, 3)
    out = {
        "vertices": cols["position"][rows],
        "faces": faces,
        "normals": cols["normal"][rows].astype(np.float32) if "normal" in cols else None,
        "uvs": {k[3:]: cols[k][rows].astype(np.float64) for k in cols if k.startswith("uv:")},
        "colors": None,
        "tri_face": tri_face,
        "world": world,
        "name": prim.GetParent().GetName() if prim.GetName() == "Mesh" else prim.GetName(),
    }
    if "color" in cols:
        c = np.ones((len(rows), 4), np.float32)
        c[:, :3] = cols["color"][rows]
        if "alpha" in cols:
            c[:, 3] = cols["alpha"][rows][:, 0]
        out["colors"] = c
    return [out]


def _to_mesh(d: dict, material: Material, mr: _MaterialReader, double_sided: bool, tri_mask=None) -> Mesh | None:
    faces = d["faces"] if tri_mask is None else d["faces"][tri_mask]
    if len(faces) == 0:
        return None
    used, inv = np.unique(faces.reshape(-1), return_inverse=True)
    faces = inv.reshape(-1, 3)
    names = sorted(d["uvs"], key=lambda n: (mr.texcoord_index(n), n))
    uvs = []
    by_index = {mr.texcoord_index(n): n for n in names}
    for i in range(max(by_index, default=-1) + 1):
        n = by_index.get(i, names[0])
        st = d["uvs"][n][used].copy()
        st[:, 1] = 1.0 - st[:, 1]
        uvs.append(st.astype(np.float32))
    if material.double_sided != double_sided:
        material = material.replace(double_sided=double_sided)
    return Mesh.from_arrays(
        d["vertices"][used], faces, material=material,
        normals=None if d["normals"] is None else d["normals"][used],
        uvs=uvs, colors=None if d["colors"] is None else d["colors"][used],
        transform=d["world"], name=d["name"],
    )


def _read_splats(prim, world: np.ndarray) -> GaussianSplats | None:
    from pxr import UsdVol

    pf = UsdVol.ParticleField3DGaussianSplat(prim)

    def get(attr, attr_h, width):
        v = attr.Get(_T())
        if v is None or len(v) == 0:
            v = attr_h.Get(_T())
        return None if v is None or len(v) == 0 else np.asarray(v, np.float32).reshape(-1, width)

    pos = get(pf.GetPositionsAttr(), pf.GetPositionshAttr(), 3)
    if pos is None:
        return None
    n = len(pos)
    q = get(pf.GetOrientationsAttr(), pf.GetOrientationshAttr(), 4)  # numpy layout: i, j, k, real
    quats = np.tile([1, 0, 0, 0], (n, 1)).astype(np.float32) if q is None or len(q) < n else q[:n][:, [3, 0, 1, 2]]
    s = get(pf.GetScalesAttr(), pf.GetScaleshAttr(), 3)
    log_scales = np.zeros((n, 3), np.float32) if s is None or len(s) < n else np.log(np.maximum(s[:n], 1e-12))
    o = get(pf.GetOpacitiesAttr(), pf.GetOpacitieshAttr(), 1)
    op = np.ones(n, np.float32) if o is None or len(o) < n else np.clip(o[:n, 0], 1e-6, 1 - 1e-6)
    logits = np.log(op / (1 - op))
    deg = pf.GetRadianceSphericalHarmonicsDegreeAttr().Get()
    deg = 3 if deg is None else int(deg)
    k = (deg + 1) ** 2
    c = get(pf.GetRadianceSphericalHarmonicsCoefficientsAttr(), pf.GetRadianceSphericalHarmonicsCoefficientshAttr(), 3)
    if c is None or len(c) < n * k:
        sh = np.zeros((n, 1, 3), np.float32)  # DC signal 0.5 (schema default)
    else:
        sh = c[: n * k].reshape(n, k, 3)
    g = GaussianSplats(pos, quats, log_scales, logits, sh)
    if not np.allclose(world, np.eye(4)):
        g = g.transformed(world)
    return g


def read_usd(path: str | Path) -> Asset:
    """Read a USD/USDZ file into an Asset (see module docstring). Broken input → InvalidAssetError."""
    from pxr import Usd, UsdGeom, UsdShade

    path = Path(path)
    if not path.is_file():
        raise InvalidAssetError(path, "file not found")
    if path.stat().st_size == 0:
        raise InvalidAssetError(path, "file is empty (0 bytes)")
    stage = _open_stage(path)
    corr = _stage_correction(stage)
    layer_data = dict(stage.GetRootLayer().customLayerData or {})
    meta_d = _plain(dict(layer_data.get("studio", {})))
    dropped = list(meta_d.pop("dropped", []))
    meta = AssetMetadata.from_dict(meta_d)
    if not meta.name:
        dp = stage.GetDefaultPrim()
        meta.name = dp.GetName() if dp else path.stem
    mr = _MaterialReader(_TextureSource(path), dropped)
    xfc = UsdGeom.XformCache(_T())
    meshes: list[Mesh] = []
    splats = None
    skipped: dict[str, int] = {}
    it = iter(Usd.PrimRange(stage.GetPseudoRoot(), Usd.TraverseInstanceProxies(Usd.PrimDefaultPredicate)))
    for prim in it:
        if prim.IsA(UsdGeom.Imageable):
            img = UsdGeom.Imageable(prim)
            if img.ComputeVisibility() == UsdGeom.Tokens.invisible or img.ComputePurpose() in (UsdGeom.Tokens.guide, UsdGeom.Tokens.proxy):
                it.PruneChildren()
                continue
        if not prim.IsA(UsdGeom.Gprim):
            continue
        world = corr @ np.asarray(xfc.GetLocalToWorldTransform(prim), np.float64).T
        tname = prim.GetTypeName()
        if prim.IsA(UsdGeom.Mesh):
            for d in _read_mesh(prim, world, path):
                ds = bool(UsdGeom.Mesh(prim).GetDoubleSidedAttr().Get())
                bind = UsdShade.MaterialBindingAPI(prim)
                mat_prim = bind.ComputeBoundMaterial()[0]
                base = mr.get(mat_prim.GetPrim()) if mat_prim else _display_material(prim)
                subsets = bind.GetMaterialBindSubsets()
                covered = np.zeros(len(d["faces"]), bool)
                for sub in subsets:
                    smat = UsdShade.MaterialBindingAPI(sub.GetPrim()).ComputeBoundMaterial()[0]
                    fids = np.asarray(sub.GetIndicesAttr().Get() or [], np.int64)
                    mask = np.isin(d["tri_face"], fids) & ~covered
                    covered |= mask
                    m = _to_mesh(d, mr.get(smat.GetPrim()) if smat else base, mr, ds, mask)
                    if m is not None:
                        m.name = f"{d['name']}_{sub.GetPrim().GetName()}"
                        meshes.append(m)
                m = _to_mesh(d, base, mr, ds, ~covered if subsets else None)
                if m is not None:
                    meshes.append(m)
        elif tname == "ParticleField3DGaussianSplat":
            g = _read_splats(prim, world)
            if g is not None:
                splats = g if splats is None else _concat_splats(splats, g)
        else:
            skipped[tname] = skipped.get(tname, 0) + 1
    for t, n in sorted(skipped.items()):
        dropped.append(f"{n} {t} prim(s) not converted (only Mesh and ParticleField3DGaussianSplat are read)")
    return Asset(meshes=meshes, splats=splats, metadata=meta, dropped=dropped)


def _plain(v):
    """customLayerData values (VtArrays, nested dicts) → plain Python lists/dicts."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (str, bytes, int, float, bool)) or v is None:
        return v
    try:
        return [_plain(x) for x in v]
    except TypeError:
        return v


def _display_material(prim) -> Material:
    """Unbound mesh: a material from its constant displayColor (or glTF's default white)."""
    from pxr import UsdGeom

    v, interp = _flatten(UsdGeom.PrimvarsAPI(prim).GetPrimvar("displayColor"))
    if v is not None and len(v) and interp == "constant":
        r, g, b = (float(x) for x in v.reshape(-1, 3)[0])
        return Material(name="displayColor", base_color_factor=(r, g, b, 1.0), metallic_factor=0.0)
    return Material(name="default")


def _concat_splats(a: GaussianSplats, b: GaussianSplats) -> GaussianSplats:
    k = max(a.sh.shape[1], b.sh.shape[1])
    deg = int(round(np.sqrt(k))) - 1
    a, b = a.with_sh_degree(deg), b.with_sh_degree(deg)
    return GaussianSplats(
        np.concatenate([a.means, b.means]), np.concatenate([a.quats, b.quats]),
        np.concatenate([a.log_scales, b.log_scales]), np.concatenate([a.opacity_logits, b.opacity_logits]),
        np.concatenate([a.sh, b.sh]),
    )
