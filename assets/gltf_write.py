"""glTF 2.0 / GLB writer: an Asset → a pygltflib document with one aligned binary buffer.

Layout: one node per Mesh (its `transform` as the node matrix, omitted when identity), one glTF mesh per
distinct (geometry, attributes, material) so instances that share data share a mesh, one bufferView per
attribute (4-byte aligned, with targets), uint16 indices when they fit else uint32. Materials carry every
texture slot, samplers, KHR_texture_transform, KHR_materials_emissive_strength and KHR_materials_unlit
(declared in extensionsUsed). A mesh whose material has a normal map but that has no tangents gets
tangents from its UV gradients (`studio.assets.tangents.compute_tangents`, same frame as MikkTSpace exporters on smooth meshes),
so viewers need not generate a tangent space. Images keep their original PNG/JPEG bytes (`Texture.file_bytes()`) and are
de-duplicated by content.

.glb: everything in one file. .gltf: the JSON plus `<stem>.bin` and `<stem>_image<k>.png|jpg` beside it;
each file is written atomically, the sidecars first and the .gltf last (a failure removes the new sidecars).

An unlit material is written without KHR_materials_emissive_strength (unlit shading has no emission and the
validator warns about the pair). Splats are not written: the Khronos validator (2.0.0-dev.3.10) knows no KHR_gaussian_splatting and rejects
its attribute names, so a glTF with splats could not pass with 0 errors; export splats as PLY/.splat/spz.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import struct
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from studio.errors import UnsupportedFormatError, safe_name

from .tangents import compute_tangents
from .asset import Asset
from .atomic import atomic_path
from .material import Material, Sampler, Texture
from .mesh import Mesh

ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
FLOAT, UNSIGNED_SHORT, UNSIGNED_INT = 5126, 5123, 5125
_TYPES = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4"}
_DEFAULT_MATERIAL = Material()
_UNIT_TOL = 1e-5
log = logging.getLogger(__name__)


def write_gltf(asset: Asset, path: Path) -> None:
    """Write `asset` as .glb (single file) or .gltf (+ .bin and image files beside it), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".glb", ".gltf"):
        raise UnsupportedFormatError(f"{safe_name(path)}: write_gltf writes .glb or .gltf, not '{suffix}'")
    glb = suffix == ".glb"
    builder = _Builder(asset, stem=path.stem, embed=glb)
    doc, blob, images = builder.build()
    if glb:
        data = glb_bytes(doc, blob)
        _write_atomic(path, data)
        return
    written: list[Path] = []
    try:
        if blob:
            name = f"{path.stem}.bin"
            doc["buffers"][0]["uri"] = quote(name)
            _write_atomic(path.parent / name, blob)
            written.append(path.parent / name)
        for name, data in images.items():
            _write_atomic(path.parent / name, data)
            written.append(path.parent / name)
        _write_atomic(path, json.dumps(doc, indent=1).encode("utf-8"))
    except BaseException:
        for p in written:
            with contextlib.suppress(OSError):
                p.unlink()
        raise


def _write_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def glb_bytes(doc: dict, blob: bytes) -> bytes:
    """Assemble a GLB container: 12-byte header, JSON chunk (space padded), BIN chunk (zero padded)."""
    js = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    js += b" " * (-len(js) % 4)
    out = [struct.pack("<II", len(js), 0x4E4F534A), js]
    if blob:
        b = bytes(blob) + b"\x00" * (-len(blob) % 4)
        out += [struct.pack("<II", len(b), 0x004E4942), b]
    body = b"".join(out)
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def _jsonable(obj: Any) -> Any:
    """Metadata/extras made JSON-safe (numpy scalars and arrays to Python, unknown objects to str)."""

    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, (set, tuple)):
            return list(o)
        return str(o)

    return json.loads(json.dumps(obj, default=default, allow_nan=False))


def _prune(obj: Any) -> Any:
    """Drop None, [] and {} recursively, except inside `extras` (user data) and extension objects (may be {})."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            if k == "extras":
                if v not in (None, {}):
                    out[k] = v
            elif k == "extensions" and isinstance(v, dict):
                exts = {name: _prune(e) if e is not None else {} for name, e in v.items()}
                if exts:
                    out[k] = exts
            else:
                pv = _prune(v)
                if pv not in (None, [], {}):
                    out[k] = pv
        return out
    if isinstance(obj, list):
        return [_prune(v) for v in obj]
    return obj


def _is_default_material(m: Material) -> bool:
    """True when `m` renders exactly like glTF's default material (so no material needs writing)."""
    return all(getattr(m, f.name) == getattr(_DEFAULT_MATERIAL, f.name) for f in dataclasses.fields(Material))


def _trs_decomposable(m: np.ndarray) -> bool:
    """Whether a (4,4) matrix is T·R·S (what glTF allows as a node matrix): no shear, no projection."""
    if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-12):
        return False
    a = m[:3, :3]
    s = np.linalg.norm(a, axis=0)
    if (s < 1e-12).any():
        return False
    r = a / s
    return bool(np.allclose(r.T @ r, np.eye(3), atol=1e-6))


def _unit(v: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Rows of v scaled to unit length where they are off by more than _UNIT_TOL (unit rows kept bit-exact)."""
    v = v.astype(np.float32, copy=True)
    n = np.linalg.norm(v.astype(np.float64), axis=1)
    off = np.abs(n - 1.0) > _UNIT_TOL
    ok = off & (n > 1e-12)
    v[ok] = (v[ok] / n[ok, None]).astype(np.float32)
    zero = off & ~(n > 1e-12)
    if zero.any():
        v[zero] = fallback[zero]
    return v


class _Builder:
    def __init__(self, asset: Asset, stem: str, embed: bool):
        self.asset = asset
        self.stem = stem
        self.embed = embed
        self.blob = bytearray()
        self.d: dict[str, list] = {k: [] for k in (
            "bufferViews", "accessors", "meshes", "nodes", "materials", "textures", "images", "samplers")}
        self.ext_used: set[str] = set()
        self.image_files: dict[str, bytes] = {}
        self._images: dict[str, int] = {}
        self._samplers: dict[Sampler, int] = {}
        self._textures: dict[tuple, int] = {}
        self._materials: dict[int, int | None] = {}
        self._meshes: dict[tuple, int] = {}

    # --- binary -------------------------------------------------------------------------------------
    def view(self, data: bytes, target: int | None = None) -> int:
        self.blob += b"\x00" * (-len(self.blob) % 4)
        bv: dict[str, Any] = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(data)}
        if target is not None:
            bv["target"] = target
        self.blob += data
        self.d["bufferViews"].append(bv)
        return len(self.d["bufferViews"]) - 1

    def accessor(self, arr: np.ndarray, ctype: int, target: int, minmax: bool = False) -> int:
        arr = np.ascontiguousarray(arr)
        n = 1 if arr.ndim == 1 else arr.shape[1]
        acc: dict[str, Any] = {
            "bufferView": self.view(arr.astype(arr.dtype.newbyteorder("<")).tobytes(), target),
            "componentType": ctype,
            "count": int(arr.shape[0]),
            "type": _TYPES[n],
        }
        if minmax and len(arr):
            a2 = arr.reshape(len(arr), n)
            acc["min"] = [float(x) for x in a2.min(0)]
            acc["max"] = [float(x) for x in a2.max(0)]
        self.d["accessors"].append(acc)
        return len(self.d["accessors"]) - 1

    # --- textures and materials -------------------------------------------------------------------
    def image(self, tex: Texture) -> int:
        data, mime = tex.file_bytes()
        key = hashlib.sha256(data).hexdigest()
        if key in self._images:
            return self._images[key]
        img: dict[str, Any] = {"mimeType": mime}
        if tex.name:
            img["name"] = tex.name
        if self.embed:
            img["bufferView"] = self.view(data)
        else:
            name = f"{self.stem}_image{len(self._images)}.{'jpg' if mime == 'image/jpeg' else 'png'}"
            self.image_files[name] = data
            img["uri"] = quote(name)
            del img["mimeType"]
        self.d["images"].append(img)
        self._images[key] = len(self.d["images"]) - 1
        return self._images[key]

    def sampler(self, s: Sampler) -> int | None:
        if s == Sampler():
            return None
        if s not in self._samplers:
            d: dict[str, Any] = {"wrapS": int(s.wrap_s), "wrapT": int(s.wrap_t)}
            if s.mag_filter is not None:
                d["magFilter"] = int(s.mag_filter)
            if s.min_filter is not None:
                d["minFilter"] = int(s.min_filter)
            self.d["samplers"].append(d)
            self._samplers[s] = len(self.d["samplers"]) - 1
        return self._samplers[s]

    def texture_info(self, tex: Texture, **extra: Any) -> dict[str, Any]:
        src, smp = self.image(tex), self.sampler(tex.sampler)
        key = (src, smp, tex.name)
        if key not in self._textures:
            t: dict[str, Any] = {"source": src}
            if smp is not None:
                t["sampler"] = smp
            if tex.name:
                t["name"] = tex.name
            self.d["textures"].append(t)
            self._textures[key] = len(self.d["textures"]) - 1
        info: dict[str, Any] = {"index": self._textures[key], **extra}
        if tex.texcoord:
            info["texCoord"] = int(tex.texcoord)
        tt = tex.transform
        if tt is not None:
            ext: dict[str, Any] = {}
            if tuple(tt.offset) != (0.0, 0.0):
                ext["offset"] = [float(v) for v in tt.offset]
            if tt.rotation != 0.0:
                ext["rotation"] = float(tt.rotation)
            if tuple(tt.scale) != (1.0, 1.0):
                ext["scale"] = [float(v) for v in tt.scale]
            if tt.texcoord is not None:
                ext["texCoord"] = int(tt.texcoord)
            info["extensions"] = {"KHR_texture_transform": ext}
            self.ext_used.add("KHR_texture_transform")
        return info

    def material(self, m: Material) -> int | None:
        if id(m) in self._materials:
            return self._materials[id(m)]
        if _is_default_material(m):
            self._materials[id(m)] = None
            return None
        pbr: dict[str, Any] = {}
        if tuple(m.base_color_factor) != (1.0, 1.0, 1.0, 1.0):
            pbr["baseColorFactor"] = [float(v) for v in m.base_color_factor]
        if m.metallic_factor != 1.0:
            pbr["metallicFactor"] = float(m.metallic_factor)
        if m.roughness_factor != 1.0:
            pbr["roughnessFactor"] = float(m.roughness_factor)
        if m.base_color_texture is not None:
            pbr["baseColorTexture"] = self.texture_info(m.base_color_texture)
        if m.metallic_roughness_texture is not None:
            pbr["metallicRoughnessTexture"] = self.texture_info(m.metallic_roughness_texture)
        out: dict[str, Any] = {}
        if m.name:
            out["name"] = m.name
        if pbr:
            out["pbrMetallicRoughness"] = pbr
        if m.normal_texture is not None:
            extra = {"scale": float(m.normal_scale)} if m.normal_scale != 1.0 else {}
            out["normalTexture"] = self.texture_info(m.normal_texture, **extra)
        if m.occlusion_texture is not None:
            extra = {"strength": float(m.occlusion_strength)} if m.occlusion_strength != 1.0 else {}
            out["occlusionTexture"] = self.texture_info(m.occlusion_texture, **extra)
        if m.emissive_texture is not None:
            out["emissiveTexture"] = self.texture_info(m.emissive_texture)
        if tuple(m.emissive_factor) != (0.0, 0.0, 0.0):
            out["emissiveFactor"] = [float(v) for v in m.emissive_factor]
        exts: dict[str, Any] = {}
        if m.emissive_strength != 1.0 and not m.unlit:  # unlit ignores emission; the validator flags the pair
            exts["KHR_materials_emissive_strength"] = {"emissiveStrength": float(m.emissive_strength)}
        if m.unlit:
            exts["KHR_materials_unlit"] = {}
        if exts:
            out["extensions"] = exts
            self.ext_used.update(exts)
        if m.alpha_mode != "OPAQUE":
            out["alphaMode"] = m.alpha_mode
        if m.alpha_mode == "MASK" and m.alpha_cutoff != 0.5:
            out["alphaCutoff"] = float(m.alpha_cutoff)
        if m.double_sided:
            out["doubleSided"] = True
        if m.extras:
            out["extras"] = _jsonable(m.extras)
        self.d["materials"].append(out)
        self._materials[id(m)] = len(self.d["materials"]) - 1
        return self._materials[id(m)]

    # --- meshes and nodes ---------------------------------------------------------------------------
    def mesh(self, mesh: Mesh, bake: np.ndarray | None) -> int:
        key = (id(mesh.geometry), id(mesh.material), id(mesh.normals), tuple(id(u) for u in mesh.uvs),
               id(mesh.colors), id(mesh.tangents))
        if bake is None and key in self._meshes:
            return self._meshes[key]
        v = mesh.vertices.astype(np.float64)
        computed = None

        def computed_normals() -> np.ndarray:
            nonlocal computed
            if computed is None:
                computed = np.asarray(mesh.geometry.vertex_normals, dtype=np.float32)
                bad = ~(np.linalg.norm(computed, axis=1) > 0.5)
                computed[bad] = (0.0, 0.0, 1.0)
            return computed

        normals = mesh.normals
        tangents = mesh.tangents
        if bake is not None:  # a sheared transform cannot be a glTF node matrix: bake it into the data
            a = bake[:3, :3]
            v = v @ a.T + bake[:3, 3]
            nmat = np.linalg.inv(a).T
            normals = (mesh.vertex_normals().astype(np.float64) @ nmat.T).astype(np.float32)
            if tangents is not None:
                t = tangents.astype(np.float64)
                tangents = np.concatenate([(t[:, :3] @ a.T), t[:, 3:] * np.sign(np.linalg.det(a))], axis=1).astype(np.float32)
        nt = mesh.material.normal_texture
        if tangents is None and nt is not None:  # a normal map needs a tangent frame: write one (no validator warning)
            k = nt.transform.texcoord if nt.transform is not None and nt.transform.texcoord is not None else nt.texcoord
            if k < len(mesh.uvs) and len(v):
                if normals is None:
                    normals = mesh.vertex_normals()
                unit_n = _unit(np.asarray(normals), computed_normals())
                tangents = compute_tangents(v, unit_n, np.asarray(mesh.uvs[k]), mesh.faces)
        attrs: dict[str, int] = {
            "POSITION": self.accessor(v.astype(np.float32), FLOAT, ARRAY_BUFFER, minmax=True)
        }
        if normals is not None:
            nrm = _unit(np.asarray(normals), computed_normals())
            attrs["NORMAL"] = self.accessor(nrm, FLOAT, ARRAY_BUFFER)
        if tangents is not None:
            t = np.asarray(tangents, dtype=np.float32)
            fallback = np.zeros((len(t), 3), np.float32)
            fallback[:, 0] = 1.0
            xyz = _unit(t[:, :3], fallback)
            w = np.where(t[:, 3] < 0, -1.0, 1.0).astype(np.float32)
            attrs["TANGENT"] = self.accessor(np.concatenate([xyz, w[:, None]], axis=1), FLOAT, ARRAY_BUFFER)
        for k, uv in enumerate(mesh.uvs):
            attrs[f"TEXCOORD_{k}"] = self.accessor(np.asarray(uv, dtype=np.float32), FLOAT, ARRAY_BUFFER)
        if mesh.colors is not None:
            c = np.clip(np.nan_to_num(np.asarray(mesh.colors, dtype=np.float32)), 0.0, 1.0)
            attrs["COLOR_0"] = self.accessor(c, FLOAT, ARRAY_BUFFER)
        faces = mesh.faces.reshape(-1)
        if len(faces) and int(faces.max()) < 65535:
            idx = self.accessor(faces.astype(np.uint16), UNSIGNED_SHORT, ELEMENT_ARRAY_BUFFER)
        else:
            idx = self.accessor(faces.astype(np.uint32), UNSIGNED_INT, ELEMENT_ARRAY_BUFFER)
        prim: dict[str, Any] = {"attributes": attrs, "indices": idx, "mode": 4}
        mi = self.material(mesh.material)
        if mi is not None:
            prim["material"] = mi
        gm: dict[str, Any] = {"primitives": [prim]}
        if mesh.name:
            gm["name"] = mesh.name
        self.d["meshes"].append(gm)
        index = len(self.d["meshes"]) - 1
        if bake is None:
            self._meshes[key] = index
        return index

    def build(self) -> tuple[dict, bytes, dict[str, bytes]]:
        """(glTF JSON dict, binary buffer, {image file name: bytes} for .gltf sidecars)."""
        import pygltflib

        if self.asset.splats is not None and len(self.asset.splats):
            log.warning("%d Gaussian splats not written to glTF (no validator-clean KHR_gaussian_splatting); "
                        "export them as .ply, .splat or .spz", len(self.asset.splats))
        for mesh in self.asset.meshes:
            if len(mesh.faces) == 0:
                log.warning("mesh %r has no triangles: not written", mesh.name)
                continue
            m = np.asarray(mesh.transform, dtype=np.float64)
            identity = np.allclose(m, np.eye(4), rtol=0, atol=1e-12)
            bake = None if identity or _trs_decomposable(m) else m
            node: dict[str, Any] = {"mesh": self.mesh(mesh, bake)}
            if mesh.name:
                node["name"] = mesh.name
            if bake is None and not identity:
                node["matrix"] = [float(x) for x in m.T.reshape(-1)]
            self.d["nodes"].append(node)
        md = self.asset.metadata
        info: dict[str, Any] = {"version": "2.0", "generator": "studio"}
        copyright_ = md.extras.get("copyright") if isinstance(md.extras, dict) else None
        if isinstance(copyright_, str) and copyright_:
            info["copyright"] = copyright_
        extras = _jsonable(md.to_dict())
        if extras:
            info["extras"] = extras
        doc: dict[str, Any] = {"asset": info, "scene": 0, "scenes": [{"nodes": list(range(len(self.d["nodes"])))}]}
        doc.update({k: v for k, v in self.d.items() if v})
        if self.blob:
            self.blob += b"\x00" * (-len(self.blob) % 4)
            doc["buffers"] = [{"byteLength": len(self.blob)}]
        if self.ext_used:
            doc["extensionsUsed"] = sorted(self.ext_used)
        # The document goes through pygltflib's glTF model (field names and types), then loses the
        # None/empty placeholders pygltflib adds (the validator rejects e.g. empty `targets` arrays).
        with warnings.catch_warnings():  # dataclasses_json warns about optional fields it types as required
            warnings.simplefilter("ignore")
            doc = _prune(pygltflib.GLTF2.from_dict(doc).to_dict())
        return doc, bytes(self.blob), self.image_files
