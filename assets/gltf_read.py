"""glTF 2.0 / GLB reader: a strict container parser, an own numpy accessor decoder and the scene walk.

Why not trimesh's loader: it ignores sparse accessors, loses materials' texture transforms and second
UV sets, and fails on broken input with raw IndexError/KeyError/JSONDecodeError. Here pygltflib holds the
JSON document, numpy decodes every accessor (all component types, normalized integers, byteStride /
interleaved views, sparse substitution, data: URIs, external files resolved inside the file's folder),
and every problem with the input becomes `InvalidAssetError(path, reason)`.

Result: one `Mesh` per primitive *instance* of the default scene (geometry in mesh-local coordinates,
the node's world matrix in `Mesh.transform`), so counts summed over instances equal what a renderer
draws. Instances of one glTF mesh share their geometry and attribute arrays (treat them as read-only).
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
import re
import struct
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np

from studio.errors import InvalidAssetError, StudioError, UnsafePathError, UnsupportedFormatError, safe_name
from studio.paths import safe_child

from .asset import Asset, AssetMetadata
from .material import Material, Sampler, Texture, TextureTransform
from .mesh import Mesh

GLB_MAGIC = b"glTF"
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942

COMPONENT_DTYPES = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
TYPE_SIZES = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
MODES = {0: "POINTS", 1: "LINES", 2: "LINE_LOOP", 3: "LINE_STRIP", 4: "TRIANGLES", 5: "TRIANGLE_STRIP", 6: "TRIANGLE_FAN"}

# Extensions whose content the reader keeps (or that need no action to keep the static asset right).
SUPPORTED_EXTENSIONS = {
    "KHR_texture_transform",
    "KHR_materials_emissive_strength",
    "KHR_materials_unlit",
    "KHR_mesh_quantization",
    "EXT_texture_webp",
}
MAX_ACCESSOR_BYTES = 1 << 31  # refuse absurd allocations from hostile counts
MAX_NODE_VISITS = 1_000_000


def read_gltf(path: Path) -> Asset:
    """Read a .gltf or .glb file into an Asset.

    Raises InvalidAssetError (naming the file and the problem) for any broken, truncated, hostile or
    inconsistent input, and UnsupportedFormatError for glTF 1.0 or required extensions the studio cannot
    decode (Draco, meshopt, KTX2). Dropped features (skins, animations, morph targets, cameras, lights,
    unknown extensions, point/line primitives) are listed in `Asset.dropped`.
    """
    path = Path(path)
    try:
        return _Reader(path).read()
    except StudioError as e:
        if isinstance(e, (InvalidAssetError, UnsupportedFormatError)):
            raise
        raise InvalidAssetError(path, str(e)) from e
    except (
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        struct.error,
        OverflowError,
        RecursionError,
        UnicodeError,
    ) as e:  # anything the structural checks did not anticipate is still a broken file, not a crash
        raise InvalidAssetError(path, f"malformed glTF ({type(e).__name__}: {e})") from e
    except MemoryError as e:
        raise InvalidAssetError(path, "declares more data than fits in memory") from e


# ----------------------------------------------------------------------------------------------
# container


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_container(path: Path, data: bytes) -> tuple[dict, bytes | None]:
    """Split a file's bytes into (JSON document dict, GLB BIN chunk or None). Strict about the GLB layout."""

    def bad(reason: str) -> InvalidAssetError:
        return InvalidAssetError(path, reason)

    if len(data) == 0:
        raise bad("file is empty (0 bytes)")
    binary: bytes | None = None
    if data[:4] == GLB_MAGIC:
        if len(data) < 12:
            raise bad(f"truncated GLB header: {len(data)} bytes, a GLB header needs 12")
        _, version, length = struct.unpack_from("<4sII", data, 0)
        if version != 2:
            raise UnsupportedFormatError(f"{safe_name(path)}: GLB container version {version} (only 2 is supported)")
        if length != len(data):
            kind = "truncated: " if length > len(data) else ""
            raise bad(f"{kind}GLB length mismatch: header declares {length} bytes but the file has {len(data)}")
        off, chunks = 12, []
        while off < length:
            if off + 8 > length:
                raise bad(f"truncated chunk header at byte {off}: {length - off} bytes left, a chunk header needs 8")
            clen, ctype = struct.unpack_from("<II", data, off)
            if off + 8 + clen > length:
                raise bad(f"truncated GLB chunk at byte {off}: declares {clen} bytes but only {length - off - 8} remain")
            chunks.append((ctype, data[off + 8 : off + 8 + clen]))
            off += 8 + clen
        if not chunks or chunks[0][0] != CHUNK_JSON:
            raise bad("GLB has no JSON chunk first")
        raw = chunks[0][1]
        if len(chunks) > 1 and chunks[1][0] == CHUNK_BIN:
            binary = chunks[1][1]
        where = "JSON chunk"
    elif path.suffix.lower() == ".glb":
        raise bad(f"not a GLB file: wrong magic {data[:4]!r} (expected b'glTF')")
    else:
        raw = data
        where = "glTF JSON"
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise bad(f"{where} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        doc = json.loads(text.rstrip(" \x00"), parse_constant=_reject_constant)
    except (json.JSONDecodeError, ValueError) as e:
        raise bad(f"{where} is not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise bad(f"{where} is not a JSON object")
    return doc, binary


# ----------------------------------------------------------------------------------------------
# helpers


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _quat_matrix(q: list[float]) -> np.ndarray:
    x, y, z, w = (float(c) for c in q)
    n = math.sqrt(x * x + y * y + z * z + w * w)
    if n == 0 or not math.isfinite(n):
        return np.eye(3)
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def node_local_matrix(node: Any) -> np.ndarray:
    """(4,4) float64 local matrix of a pygltflib Node (matrix, or T·R·S)."""
    if node.matrix is not None:
        m = np.asarray(node.matrix, dtype=np.float64)
        if m.shape != (16,):
            raise ValueError(f"node matrix has {m.size} values, expected 16")
        return m.reshape(4, 4).T  # glTF stores column-major
    m = np.eye(4)
    if node.scale is not None:
        m = np.diag([*np.asarray(node.scale, dtype=np.float64).reshape(3), 1.0])
    if node.rotation is not None:
        r = np.eye(4)
        r[:3, :3] = _quat_matrix(list(np.asarray(node.rotation, dtype=np.float64).reshape(4)))
        m = r @ m
    if node.translation is not None:
        t = np.eye(4)
        t[:3, 3] = np.asarray(node.translation, dtype=np.float64).reshape(3)
        m = t @ m
    return m


def _normalize_ints(a: np.ndarray) -> np.ndarray:
    """glTF normalized integers → float32 (spec §3.11: signed max(c/(2^(b-1)-1), -1), unsigned c/(2^b-1))."""
    info = np.iinfo(a.dtype)
    out = a.astype(np.float64) / float(info.max)
    if info.min < 0:
        out = np.maximum(out, -1.0)
    return out.astype(np.float32)


def triangles_from_mode(idx: np.ndarray, mode: int) -> np.ndarray:
    """(F,3) triangles from a TRIANGLES / TRIANGLE_STRIP / TRIANGLE_FAN index list (glTF winding rules)."""
    if mode == 4:
        n = len(idx) - len(idx) % 3
        return idx[:n].reshape(-1, 3)
    if len(idx) < 3:
        return np.zeros((0, 3), dtype=np.int64)
    i = np.arange(len(idx) - 2)
    if mode == 5:  # strip: {v_i, v_{i+(1+i%2)}, v_{i+(2-i%2)}}
        return np.stack([idx[i], idx[i + 1 + i % 2], idx[i + 2 - i % 2]], axis=1)
    return np.stack([idx[i + 1], idx[i + 2], np.full_like(i, idx[0])], axis=1)  # fan


# ----------------------------------------------------------------------------------------------
# reader


class _Reader:
    def __init__(self, path: Path):
        self.path = path
        self.folder = path.parent
        self.dropped: list[str] = []
        self._buffers: dict[int, bytes] = {}
        self._accessors: dict[int, np.ndarray] = {}
        self._images: dict[int, Texture | None] = {}
        self._image_bytes: dict[int, bytes] = {}
        self._materials: dict[int, Material] = {}
        self._default_material: Material | None = None
        self._prims: dict[tuple[int, int], dict | None] = {}

    def fail(self, reason: str) -> InvalidAssetError:
        return InvalidAssetError(self.path, reason)

    def note(self, text: str) -> None:
        if text not in self.dropped:
            self.dropped.append(text)

    # --- top level -----------------------------------------------------------------------------
    def read(self) -> Asset:
        import pygltflib

        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            raise self.fail("file not found") from None
        except OSError as e:
            raise self.fail(f"cannot be read ({e.strerror or e})") from None
        doc, self.glb_bin = parse_container(self.path, data)
        asset_info = doc.get("asset")
        if not isinstance(asset_info, dict) or not isinstance(asset_info.get("version"), str):
            raise self.fail("no asset.version: not a glTF 2.0 document")
        if not asset_info["version"].startswith("2."):
            raise UnsupportedFormatError(
                f"{safe_name(self.path)}: glTF version {safe_name(asset_info['version'])} (only 2.x is supported)"
            )
        for key in ("buffers", "bufferViews", "accessors", "meshes", "nodes", "materials", "textures", "images",
                    "samplers", "scenes", "skins", "animations", "cameras"):
            if key in doc and not isinstance(doc[key], list):
                raise self.fail(f"'{key}' must be a JSON array")
        with warnings.catch_warnings():  # dataclasses_json warns about optional fields it types as required
            warnings.simplefilter("ignore")
            self.g = pygltflib.GLTF2.from_dict(doc)
        self.raw = doc
        self._check_extensions()
        self._check_layout()
        self._load_buffers()
        meshes = self._walk_scene()
        self._note_unsupported()
        return Asset(meshes=meshes, metadata=self._metadata(asset_info), dropped=self.dropped)

    def _metadata(self, info: dict) -> AssetMetadata:
        extras = info.get("extras")
        md = AssetMetadata.from_dict(extras) if isinstance(extras, dict) else AssetMetadata()
        if not (isinstance(extras, dict) and "generator" in extras) and isinstance(info.get("generator"), str):
            md.generator = info["generator"]
        if isinstance(info.get("copyright"), str):
            md.extras.setdefault("copyright", info["copyright"])
        return md

    def _check_extensions(self) -> None:
        required = self.raw.get("extensionsRequired") or []
        missing = [e for e in required if e not in SUPPORTED_EXTENSIONS]
        if missing:
            raise UnsupportedFormatError(
                f"{safe_name(self.path)}: requires glTF extension(s) the studio cannot decode: "
                f"{', '.join(safe_name(str(m)) for m in missing)}"
            )

    def _note_unsupported(self) -> None:
        g = self.g
        if g.skins:
            for si, skin in enumerate(g.skins):
                users = sum(1 for n in g.nodes if n.skin == si and n.mesh is not None)
                self.note(
                    f"skin '{safe_name(skin.name or si)}' dropped: {users} skinned mesh"
                    f"{'es' if users != 1 else ''} kept in bind pose"
                )
        for ai, anim in enumerate(g.animations or []):
            self.note(f"animation '{safe_name(anim.name or ai)}' dropped ({len(anim.channels or [])} channels); static pose kept")
        if g.cameras:
            self.note(f"{len(g.cameras)} camera{'s' if len(g.cameras) != 1 else ''} dropped")
        lights = ((self.raw.get("extensions") or {}).get("KHR_lights_punctual") or {}).get("lights") or []
        if lights:
            self.note(f"{len(lights)} KHR_lights_punctual light{'s' if len(lights) != 1 else ''} dropped")
        for ext in self.raw.get("extensionsUsed") or []:
            if ext not in SUPPORTED_EXTENSIONS:
                self.note(f"extension '{safe_name(str(ext))}' ignored")

    # --- structure: declared sizes, before any data is touched ---------------------------------------
    def _check_raw_types(self) -> None:
        """Integer fields must be JSON integers (pygltflib would coerce "3" to 3 silently)."""
        fields = {
            "buffers": ("byteLength",),
            "bufferViews": ("buffer", "byteOffset", "byteLength", "byteStride", "target"),
            "accessors": ("bufferView", "byteOffset", "componentType", "count"),
            "images": ("bufferView",),
            "textures": ("source", "sampler"),
            "nodes": ("mesh", "skin", "camera"),
        }
        for kind, keys in fields.items():
            for i, obj in enumerate(self.raw.get(kind) or []):
                if not isinstance(obj, dict):
                    raise self.fail(f"{kind}[{i}] is not a JSON object")
                for k in keys:
                    if k in obj and not _is_int(obj[k]):
                        raise self.fail(f"{kind}[{i}].{k} is not an integer: {safe_name(repr(obj[k]))[:40]}")

    def _check_layout(self) -> None:
        self._check_raw_types()
        g = self.g
        nbuf = len(g.buffers or [])
        for i, b in enumerate(g.buffers or []):
            if not _is_int(b.byteLength) or b.byteLength < 0:
                raise self.fail(f"buffer {i} has an invalid byteLength {b.byteLength!r}")
        for i, bv in enumerate(g.bufferViews or []):
            if not _is_int(bv.buffer) or not 0 <= bv.buffer < nbuf:
                raise self.fail(f"bufferView {i} refers to buffer {bv.buffer!r}, which does not exist")
            off = bv.byteOffset or 0
            if not _is_int(off) or off < 0 or not _is_int(bv.byteLength) or bv.byteLength < 0:
                raise self.fail(f"bufferView {i} has an invalid byteOffset/byteLength")
            if off + bv.byteLength > g.buffers[bv.buffer].byteLength:
                raise self.fail(
                    f"bufferView {i} (bytes {off}..{off + bv.byteLength}) runs past the end of buffer {bv.buffer} "
                    f"({g.buffers[bv.buffer].byteLength} bytes)"
                )
            if bv.byteStride is not None and (not _is_int(bv.byteStride) or not 4 <= bv.byteStride <= 252):
                raise self.fail(f"bufferView {i} has an invalid byteStride {bv.byteStride!r}")
        for i, acc in enumerate(g.accessors or []):
            self._check_accessor(i, acc)

    def _elem_layout(self, acc: Any, i: int) -> tuple[np.dtype, int, int]:
        """(dtype, components, element bytes incl. matrix column padding)."""
        if acc.componentType not in COMPONENT_DTYPES:
            raise self.fail(f"accessor {i} has an unknown componentType {acc.componentType!r}")
        if acc.type not in TYPE_SIZES:
            raise self.fail(f"accessor {i} has an unknown type {safe_name(str(acc.type))}")
        dt = np.dtype(COMPONENT_DTYPES[acc.componentType]).newbyteorder("<")
        n = TYPE_SIZES[acc.type]
        if acc.type.startswith("MAT"):
            cols = int(acc.type[3])
            colbytes = -(-cols * dt.itemsize // 4) * 4
            return dt, n, cols * colbytes
        return dt, n, n * dt.itemsize

    def _check_accessor(self, i: int, acc: Any) -> None:
        g = self.g
        dt, n, esize = self._elem_layout(acc, i)
        if not _is_int(acc.count) or acc.count < 0:
            raise self.fail(f"accessor {i} has an invalid count {acc.count!r}")
        if acc.count * esize > MAX_ACCESSOR_BYTES:
            raise self.fail(f"accessor {i} declares {acc.count} elements ({acc.count * esize} bytes): too large")
        off = acc.byteOffset or 0
        if not _is_int(off) or off < 0:
            raise self.fail(f"accessor {i} has an invalid byteOffset {off!r}")
        if acc.bufferView is not None:
            if not _is_int(acc.bufferView) or not 0 <= acc.bufferView < len(g.bufferViews or []):
                raise self.fail(f"accessor {i} refers to bufferView {acc.bufferView!r}, which does not exist")
            bv = g.bufferViews[acc.bufferView]
            stride = bv.byteStride or esize
            if off % dt.itemsize or ((bv.byteOffset or 0) + off) % dt.itemsize:
                raise self.fail(
                    f"accessor {i} is misaligned: byte offset {off} (view offset {bv.byteOffset or 0}) is not a "
                    f"multiple of its {dt.itemsize}-byte component size"
                )
            if stride < esize or stride % dt.itemsize:
                raise self.fail(f"accessor {i}: byteStride {stride} does not fit its {esize}-byte elements")
            need = off + (stride * (acc.count - 1) + esize if acc.count else 0)
            if need > bv.byteLength:
                raise self.fail(
                    f"accessor {i} is too long: {acc.count} elements need {need} bytes but bufferView "
                    f"{acc.bufferView} has {bv.byteLength}"
                )
        elif off:
            raise self.fail(f"accessor {i} has a byteOffset but no bufferView")
        sp = acc.sparse
        if sp is not None:
            if not _is_int(sp.count) or not 0 < sp.count <= acc.count:
                raise self.fail(f"accessor {i}: sparse count {sp.count!r} is not within 1..{acc.count}")
            ind, val = sp.indices, sp.values
            if ind is None or val is None:
                raise self.fail(f"accessor {i}: sparse without indices or values")
            if ind.componentType not in (5121, 5123, 5125):
                raise self.fail(f"accessor {i}: sparse indices componentType {ind.componentType!r} is not unsigned")
            isize = np.dtype(COMPONENT_DTYPES[ind.componentType]).itemsize
            for what, view, voff, nbytes, align in (
                ("indices", ind.bufferView, ind.byteOffset or 0, sp.count * isize, isize),
                ("values", val.bufferView, val.byteOffset or 0, sp.count * esize, dt.itemsize),
            ):
                if not _is_int(view) or not 0 <= view < len(g.bufferViews or []):
                    raise self.fail(f"accessor {i}: sparse {what} refer to bufferView {view!r}, which does not exist")
                bv = g.bufferViews[view]
                if not _is_int(voff) or voff < 0 or voff + nbytes > bv.byteLength:
                    raise self.fail(f"accessor {i}: sparse {what} run past the end of bufferView {view}")
                if ((bv.byteOffset or 0) + voff) % align:
                    raise self.fail(f"accessor {i}: sparse {what} are misaligned")

    # --- data ------------------------------------------------------------------------------------------
    def _load_uri(self, uri: Any, what: str) -> bytes:
        if not isinstance(uri, str) or not uri:
            raise self.fail(f"{what} has an invalid uri")
        if uri.startswith("data:"):
            head, sep, payload = uri.partition(",")
            if not sep:
                raise self.fail(f"{what} has a malformed data: URI")
            try:
                if head.endswith(";base64"):
                    return base64.b64decode(payload, validate=True)
                return unquote(payload).encode("latin-1")
            except (binascii.Error, ValueError, UnicodeError) as e:
                raise self.fail(f"{what} has a data: URI that does not decode ({e})") from None
        if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:", uri) and not re.match(r"^[A-Za-z]:[\\/]", uri):
            raise self.fail(f"{what} points to an external URI {safe_name(uri)}: only files beside the asset are read")
        name = unquote(uri)
        try:
            target = safe_child(self.folder, name)
        except UnsafePathError as e:
            raise self.fail(f"{what} URI is unsafe: {e}") from None
        try:
            return target.read_bytes()
        except FileNotFoundError:
            raise self.fail(f"{what}: missing external file '{safe_name(name)}' (not found next to the asset)") from None
        except OSError as e:
            raise self.fail(f"{what}: external file '{safe_name(name)}' cannot be read ({e.strerror or e})") from None

    def _load_buffers(self) -> None:
        for i, b in enumerate(self.g.buffers or []):
            if b.uri is None:
                if i != 0 or self.glb_bin is None:
                    raise self.fail(f"buffer {i} has no uri and there is no GLB BIN chunk to hold it")
                data = self.glb_bin
            else:
                data = self._load_uri(b.uri, f"buffer {i}")
            if len(data) < b.byteLength:
                raise self.fail(f"buffer {i} is truncated: declares {b.byteLength} bytes but holds {len(data)}")
            self._buffers[i] = data
        # Images are part of the asset: a missing or hostile image URI is refused up front as well.
        for i, im in enumerate(self.g.images or []):
            if im.uri is None and im.bufferView is None:
                raise self.fail(f"image {i} has neither uri nor bufferView")
            if im.bufferView is not None and not (_is_int(im.bufferView) and 0 <= im.bufferView < len(self.g.bufferViews or [])):
                raise self.fail(f"image {i} refers to bufferView {im.bufferView!r}, which does not exist")
            if im.bufferView is None:
                self._image_bytes[i] = self._load_uri(im.uri, f"image {i}")

    def _view_bytes(self, view: int) -> tuple[bytes, int]:
        bv = self.g.bufferViews[view]
        return self._buffers[bv.buffer], bv.byteOffset or 0

    def accessor(self, i: Any, what: str) -> np.ndarray:
        """Decode accessor i → (count, components) array; ints stay ints unless normalized (→ float32)."""
        if not _is_int(i) or not 0 <= i < len(self.g.accessors or []):
            raise self.fail(f"{what} refers to accessor {i!r}, which does not exist")
        if i in self._accessors:
            return self._accessors[i]
        acc = self.g.accessors[i]
        dt, n, esize = self._elem_layout(acc, i)
        shape: tuple[int, ...]
        if acc.type.startswith("MAT"):
            cols = int(acc.type[3])
            colbytes = esize // cols
            shape, inner = (acc.count, cols, cols), (colbytes, dt.itemsize)
        else:
            shape, inner = (acc.count, n), (dt.itemsize,)
        if acc.bufferView is None:
            out = np.zeros(shape, dtype=dt.newbyteorder("="))
        else:
            buf, base = self._view_bytes(acc.bufferView)
            stride = self.g.bufferViews[acc.bufferView].byteStride or esize
            out = np.ndarray(shape, dtype=dt, buffer=buf, offset=base + (acc.byteOffset or 0), strides=(stride, *inner))
            out = out.astype(dt.newbyteorder("="), copy=True)
        if acc.sparse is not None:
            sp = acc.sparse
            ibuf, ibase = self._view_bytes(sp.indices.bufferView)
            idt = np.dtype(COMPONENT_DTYPES[sp.indices.componentType]).newbyteorder("<")
            idx = np.frombuffer(ibuf, dtype=idt, count=sp.count, offset=ibase + (sp.indices.byteOffset or 0))
            if len(idx) and int(idx.max()) >= acc.count:
                raise self.fail(f"accessor {i}: sparse index {int(idx.max())} is past its count {acc.count}")
            vbuf, vbase = self._view_bytes(sp.values.bufferView)
            vals = np.ndarray(
                (sp.count, *shape[1:]),
                dtype=dt,
                buffer=vbuf,
                offset=vbase + (sp.values.byteOffset or 0),
                strides=(esize, *inner),
            )
            out[idx.astype(np.int64)] = vals
        out = out.reshape(acc.count, n)
        if acc.normalized and dt.kind in "iu":
            out = _normalize_ints(out)
        self._accessors[i] = out
        return out

    # --- images, textures, materials -------------------------------------------------------------------
    def _image(self, i: int) -> Texture | None:
        if i in self._images:
            return self._images[i]
        im = self.g.images[i]
        what = f"image {i}" + (f" '{safe_name(im.name)}'" if im.name else "")
        if im.bufferView is not None:
            buf, base = self._view_bytes(im.bufferView)
            data = bytes(buf[base : base + self.g.bufferViews[im.bufferView].byteLength])
        else:
            data = self._image_bytes[i]
        try:
            tex: Texture | None = Texture.from_file_bytes(data, name=im.name or "")
        except Exception as e:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError, …)
            mime = im.mimeType or (im.uri or "")[:40]
            if "ktx2" in str(mime):
                self.note(f"{what} (KTX2) dropped: not decodable here")
                tex = None
            else:
                raise self.fail(f"{what} could not be decoded as an image ({type(e).__name__}: {e})") from None
        self._images[i] = tex
        return tex

    def _texture(self, info: Any, slot: str, mat_name: str) -> Texture | None:
        if info is None:
            return None
        g = self.g
        ti = info.index
        if not _is_int(ti) or not 0 <= ti < len(g.textures or []):
            raise self.fail(f"material '{mat_name}' {slot} refers to texture {ti!r}, which does not exist")
        t = g.textures[ti]
        source = t.source
        exts = t.extensions or {}
        if "EXT_texture_webp" in exts and isinstance(exts["EXT_texture_webp"], dict):
            source = exts["EXT_texture_webp"].get("source", source)
        if source is None:
            self.note(f"texture {ti} of material '{mat_name}' has no image it can decode; {slot} dropped")
            return None
        if not _is_int(source) or not 0 <= source < len(g.images or []):
            raise self.fail(f"texture {ti} refers to image {source!r}, which does not exist")
        base = self._image(source)
        if base is None:
            return None
        sampler = Sampler()
        if t.sampler is not None:
            if not _is_int(t.sampler) or not 0 <= t.sampler < len(g.samplers or []):
                raise self.fail(f"texture {ti} refers to sampler {t.sampler!r}, which does not exist")
            s = g.samplers[t.sampler]
            sampler = Sampler(mag_filter=s.magFilter, min_filter=s.minFilter, wrap_s=s.wrapS or 10497, wrap_t=s.wrapT or 10497)
        transform = None
        tt = (info.extensions or {}).get("KHR_texture_transform")
        if isinstance(tt, dict):
            tc = tt.get("texCoord")
            transform = TextureTransform(
                offset=tuple(float(v) for v in tt.get("offset", (0.0, 0.0))),
                rotation=float(tt.get("rotation", 0.0)),
                scale=tuple(float(v) for v in tt.get("scale", (1.0, 1.0))),
                texcoord=int(tc) if tc is not None else None,
            )
        texcoord = info.texCoord or 0
        if not _is_int(texcoord) or texcoord < 0:
            raise self.fail(f"material '{mat_name}' {slot} has an invalid texCoord {texcoord!r}")
        return dataclasses.replace(
            base, texcoord=texcoord, transform=transform, sampler=sampler, name=t.name or base.name
        )

    def material(self, mi: Any) -> Material:
        if mi is None:
            if self._default_material is None:
                self._default_material = Material()
            return self._default_material
        if not _is_int(mi) or not 0 <= mi < len(self.g.materials or []):
            raise self.fail(f"a primitive refers to material {mi!r}, which does not exist")
        if mi in self._materials:
            return self._materials[mi]
        m = self.g.materials[mi]
        name = m.name or f"material_{mi}"
        pbr = m.pbrMetallicRoughness
        exts = m.extensions or {}
        kw: dict[str, Any] = {}
        if pbr is not None:
            if pbr.baseColorFactor is not None:
                kw["base_color_factor"] = tuple(float(v) for v in pbr.baseColorFactor)
            if pbr.metallicFactor is not None:
                kw["metallic_factor"] = float(pbr.metallicFactor)
            if pbr.roughnessFactor is not None:
                kw["roughness_factor"] = float(pbr.roughnessFactor)
            kw["base_color_texture"] = self._texture(pbr.baseColorTexture, "baseColorTexture", name)
            kw["metallic_roughness_texture"] = self._texture(pbr.metallicRoughnessTexture, "metallicRoughnessTexture", name)
        if m.normalTexture is not None:
            kw["normal_texture"] = self._texture(m.normalTexture, "normalTexture", name)
            kw["normal_scale"] = float(m.normalTexture.scale if m.normalTexture.scale is not None else 1.0)
        if m.occlusionTexture is not None:
            kw["occlusion_texture"] = self._texture(m.occlusionTexture, "occlusionTexture", name)
            kw["occlusion_strength"] = float(m.occlusionTexture.strength if m.occlusionTexture.strength is not None else 1.0)
        kw["emissive_texture"] = self._texture(m.emissiveTexture, "emissiveTexture", name)
        if m.emissiveFactor is not None:
            kw["emissive_factor"] = tuple(float(v) for v in m.emissiveFactor)
        es = exts.get("KHR_materials_emissive_strength")
        if isinstance(es, dict):
            kw["emissive_strength"] = float(es.get("emissiveStrength", 1.0))
        alpha_mode = m.alphaMode or "OPAQUE"
        if alpha_mode not in ("OPAQUE", "MASK", "BLEND"):
            raise self.fail(f"material '{name}' has an unknown alphaMode {safe_name(str(alpha_mode))}")
        for ext in exts:
            if ext not in SUPPORTED_EXTENSIONS:
                self.note(f"material '{safe_name(name)}': extension '{safe_name(str(ext))}' ignored")
        mat = Material(
            name=m.name or "",
            alpha_mode=alpha_mode,
            alpha_cutoff=float(m.alphaCutoff) if m.alphaCutoff is not None else 0.5,
            double_sided=bool(m.doubleSided),
            unlit="KHR_materials_unlit" in exts,
            extras=dict(m.extras) if isinstance(m.extras, dict) else {},
            **kw,
        )
        self._materials[mi] = mat
        return mat

    # --- meshes ----------------------------------------------------------------------------------------
    def _float_attr(self, ai: Any, what: str, width: tuple[int, ...], prim_name: str) -> np.ndarray:
        a = self.accessor(ai, what)
        if a.shape[1] not in width:
            raise self.fail(f"{prim_name}: {what} accessor {ai} has {a.shape[1]} components, expected {width}")
        a = a.astype(np.float32, copy=False)
        bad = ~np.isfinite(a)
        if bad.any():
            self.note(f"{prim_name}: {bad.sum()} non-finite {what} values replaced by 0")
            a = np.where(bad, 0.0, a).astype(np.float32)
        return a

    def primitive(self, mesh_i: int, prim_i: int) -> dict | None:
        key = (mesh_i, prim_i)
        if key in self._prims:
            return self._prims[key]
        self._prims[key] = None
        gm = self.g.meshes[mesh_i]
        p = gm.primitives[prim_i]
        mname = safe_name(gm.name or f"mesh_{mesh_i}")
        pname = f"mesh '{mname}' primitive {prim_i}"
        mode = 4 if p.mode is None else p.mode
        if mode not in MODES:
            raise self.fail(f"{pname} has an unknown mode {mode!r}")
        if mode not in (4, 5, 6):
            self.note(f"{pname} ({MODES[mode]}) dropped: only triangles are kept")
            return None
        raw_attrs = p.attributes if isinstance(p.attributes, dict) else vars(p.attributes)
        attrs = {k: v for k, v in raw_attrs.items() if v is not None}
        if "POSITION" not in attrs:
            self.note(f"{pname} dropped: it has no POSITION")
            return None
        pos = self.accessor(attrs["POSITION"], f"{pname} POSITION")
        if pos.shape[1] != 3:
            raise self.fail(f"{pname}: POSITION accessor has {pos.shape[1]} components, expected 3")
        pos = pos.astype(np.float64)
        nonfinite = int((~np.isfinite(pos)).sum())
        if nonfinite:
            raise self.fail(
                f"{pname}: POSITION accessor {attrs['POSITION']} holds {nonfinite} non-finite values (NaN/Inf)"
            )
        nv = len(pos)
        if p.indices is not None:
            idx = self.accessor(p.indices, f"{pname} indices")
            acc = self.g.accessors[p.indices]
            if acc.type != "SCALAR" or acc.componentType not in (5121, 5123, 5125) or acc.normalized:
                raise self.fail(f"{pname}: indices accessor {p.indices} is not unsigned-integer SCALAR")
            idx = idx.reshape(-1).astype(np.int64)
        else:
            idx = np.arange(nv, dtype=np.int64)
        if len(idx) and int(idx.max()) >= nv:
            raise self.fail(
                f"{pname}: index {int(idx.max())} is past the vertex count {nv} "
                f"(indices accessor {p.indices}, POSITION accessor {attrs['POSITION']})"
            )
        faces = triangles_from_mode(idx, mode)
        if len(faces) == 0:
            self.note(f"{pname} dropped: it has no triangles")
            return None
        tri = pos[faces]
        area2 = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
        if not (area2 > 0).any():
            self.note(f"{pname} dropped: all {len(faces)} triangles are degenerate")
            self.degenerate_dropped = getattr(self, "degenerate_dropped", 0) + 1
            return None

        def check_len(a: np.ndarray, what: str) -> np.ndarray:
            if len(a) != nv:
                raise self.fail(f"{pname}: {what} has {len(a)} elements but POSITION has {nv}")
            return a

        out: dict[str, Any] = {"vertices": pos, "faces": faces, "uvs": [], "name": mname}
        if "NORMAL" in attrs:
            out["normals"] = check_len(self._float_attr(attrs["NORMAL"], "NORMAL", (3,), pname), "NORMAL")
        if "TANGENT" in attrs:
            out["tangents"] = check_len(self._float_attr(attrs["TANGENT"], "TANGENT", (4,), pname), "TANGENT")
        n_uv = 0
        while f"TEXCOORD_{n_uv}" in attrs:
            uv = self._float_attr(attrs[f"TEXCOORD_{n_uv}"], f"TEXCOORD_{n_uv}", (2,), pname)
            out["uvs"].append(check_len(uv, f"TEXCOORD_{n_uv}"))
            n_uv += 1
        if "COLOR_0" in attrs:
            c = check_len(self._float_attr(attrs["COLOR_0"], "COLOR_0", (3, 4), pname), "COLOR_0")
            if c.shape[1] == 3:
                c = np.concatenate([c, np.ones((nv, 1), np.float32)], axis=1)
            out["colors"] = c
        kept = {"POSITION", "NORMAL", "TANGENT", "COLOR_0", *(f"TEXCOORD_{k}" for k in range(n_uv))}
        other = sorted(k for k in attrs if k not in kept and not k.startswith(("JOINTS_", "WEIGHTS_")))
        if other:
            self.note(f"{pname}: attribute{'s' if len(other) > 1 else ''} {', '.join(map(safe_name, other))} dropped")
        if p.targets:
            self.note(f"mesh '{mname}': {len(p.targets)} morph target(s) dropped; base shape kept")
        out["material"] = self.material(p.material)
        if p.extensions:
            for ext in p.extensions:
                self.note(f"{pname}: extension '{safe_name(str(ext))}' ignored")
        self._prims[key] = out
        return out

    def _skin_bind_matrix(self, skin_i: Any, world: dict[int, np.ndarray]) -> np.ndarray | None:
        """World matrix that puts a skinned mesh in its bind pose: joint_world · inverseBind of joint 0."""
        g = self.g
        if not _is_int(skin_i) or not 0 <= skin_i < len(g.skins or []):
            raise self.fail(f"a node refers to skin {skin_i!r}, which does not exist")
        skin = g.skins[skin_i]
        if not skin.joints or skin.inverseBindMatrices is None or skin.joints[0] not in world:
            return None
        ibm = self.accessor(skin.inverseBindMatrices, f"skin {skin_i} inverseBindMatrices")
        if ibm.shape[1] != 16 or len(ibm) < 1:
            raise self.fail(f"skin {skin_i}: inverseBindMatrices is not MAT4")
        m = world[skin.joints[0]] @ ibm[0].astype(np.float64).reshape(4, 4).T
        return m if np.isfinite(m).all() else None

    def _instance(self, prim: dict, transform: np.ndarray, label: str, pi: int, nprims: int) -> Mesh:
        """A Mesh for one placement of a decoded primitive (geometry and attribute arrays shared)."""
        geom = prim.get("geometry")
        if geom is None:
            import trimesh

            geom = trimesh.Trimesh(vertices=prim["vertices"], faces=prim["faces"], process=False, validate=False)
            prim["geometry"] = geom
        return Mesh(
            geometry=geom,
            material=prim["material"],
            normals=prim.get("normals"),
            uvs=list(prim["uvs"]),
            colors=prim.get("colors"),
            tangents=prim.get("tangents"),
            transform=transform.copy(),
            name=f"{label}_{pi}" if nprims > 1 else label,
        )

    def _walk_scene(self) -> list[Mesh]:
        g = self.g
        nodes = g.nodes or []
        n = len(nodes)
        if g.scenes:
            si = g.scene if g.scene is not None else 0
            if not _is_int(si) or not 0 <= si < len(g.scenes):
                raise self.fail(f"default scene {si!r} does not exist")
            roots = list(g.scenes[si].nodes or [])
        else:
            children = {c for nd in nodes for c in (nd.children or [])}
            roots = [i for i in range(n) if i not in children]
        world: dict[int, np.ndarray] = {}
        order: list[int] = []
        stack = [(r, np.eye(4), ()) for r in reversed(roots)]
        visits = 0
        while stack:
            ni, parent, ancestors = stack.pop()
            if not _is_int(ni) or not 0 <= ni < n:
                raise self.fail(f"the scene refers to node {ni!r}, which does not exist")
            if ni in ancestors:
                raise self.fail(f"node {ni} is its own ancestor (cycle in the node hierarchy)")
            visits += 1
            if visits > MAX_NODE_VISITS:
                raise self.fail("node hierarchy is too large (shared subtrees explode)")
            local = node_local_matrix(nodes[ni])
            w = parent @ local
            if not np.isfinite(w).all():
                raise self.fail(f"node {ni} has a non-finite transform")
            world.setdefault(ni, w)
            order.append(ni)
            for c in reversed(nodes[ni].children or []):
                stack.append((c, w, (*ancestors, ni)))
        meshes: list[Mesh] = []
        seen_pairs: set[tuple[int, int]] = set()
        for ni in order:
            node = nodes[ni]
            if node.mesh is None:
                continue
            if not _is_int(node.mesh) or not 0 <= node.mesh < len(g.meshes or []):
                raise self.fail(f"node {ni} refers to mesh {node.mesh!r}, which does not exist")
            transform = world[ni]
            if node.skin is not None:
                bind = self._skin_bind_matrix(node.skin, world)
                if bind is not None:
                    transform = bind
            if (node.extensions or {}).get("EXT_mesh_gpu_instancing") is not None:
                self.note(f"node {ni}: EXT_mesh_gpu_instancing ignored (one instance kept)")
            gm = g.meshes[node.mesh]
            for pi in range(len(gm.primitives or [])):
                seen_pairs.add((node.mesh, pi))
                prim = self.primitive(node.mesh, pi)
                if prim is None:
                    continue
                label = safe_name(node.name) if node.name else prim["name"]
                meshes.append(self._instance(prim, transform, label, pi, len(gm.primitives)))
        if not nodes and g.meshes:  # no node graph at all: place each mesh once at the origin
            for mi, gm in enumerate(g.meshes):
                for pi in range(len(gm.primitives or [])):
                    seen_pairs.add((mi, pi))
                    prim = self.primitive(mi, pi)
                    if prim is not None:
                        meshes.append(self._instance(prim, np.eye(4), prim["name"], pi, len(gm.primitives)))
            if meshes:
                self.note("the file has no nodes: each mesh placed once at the origin")
        # Meshes outside the default scene are not drawn, but their data is still checked: a broken file is broken.
        for mi, gm in enumerate(g.meshes or []):
            unused = [pi for pi in range(len(gm.primitives or [])) if (mi, pi) not in seen_pairs]
            for pi in unused:
                self.primitive(mi, pi)
            if unused and len(unused) == len(gm.primitives):
                self.note(f"mesh '{safe_name(gm.name or mi)}' is not in the default scene: not loaded")
        if not meshes and getattr(self, "degenerate_dropped", 0):
            raise self.fail("every triangle in the file is degenerate (zero area): no usable geometry")
        return meshes
