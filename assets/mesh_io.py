"""Plain mesh files: OBJ (+MTL + base colour texture), STL and PLY (mesh or 3DGS splat PLY).

- OBJ: own reader (trimesh 5.2's OBJ loader reorders objects, renames them after their
  material and drops vertex colours on textured meshes, so it cannot round-trip). One Mesh per
  (object/group, material) run, in file order; vertices are the distinct (v, vt, vn) corners
  sorted by position index, so a file whose faces use `i/i/i` keeps its vertex order.
  Unreferenced vertices are dropped. `v x y z r g b` colours are read as sRGB → linear RGBA.
  MTL: Kd + d (base colour factor, linear as stored), map_Kd (base colour texture, resolved
  safely inside the OBJ's folder), Ke, Pr/Pm (PBR extension; metallic defaults to 0).
  Missing MTL or texture files are noted in `Asset.dropped`, not fatal.
- STL: trimesh (process=False: three unshared vertices per triangle, as stored).
- PLY: own numpy reader (splat_ply). A header with f_dc_0/opacity/scale_0/rot_0 is a 3DGS splat
  PLY → Asset(splats=…); otherwise a mesh: x y z, nx ny nz, s t / u v / texture_u texture_v,
  red green blue [alpha] (uchar sRGB or float), face vertex_indices lists (polygons fan-split).

UVs: OBJ and PLY store v up (origin bottom-left); the studio keeps glTF's v down, so v ↦ 1 − v
on read and write. Writers bake every mesh's transform into world space (normals by the inverse
transpose), write atomically (OBJ: .obj, .mtl and each PNG atomically per file), positions as
float32 in PLY/STL and 17 significant digits in OBJ.
Broken input raises InvalidAssetError naming the file and the problem.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import trimesh

from studio.errors import InvalidAssetError, NothingToExportError, UnsafePathError
from studio.paths import safe_child

from .asset import Asset, AssetMetadata
from .atomic import write_bytes_atomic
from .colour import linear_to_srgb, srgb_to_linear, to_uint8
from .material import Material, Texture
from .mesh import Mesh
from .splat_ply import read_ply_elements, read_ply_header, read_splat_ply, write_splat_ply

# ---------------------------------------------------------------------------------------------
# Shared checks


def _check_mesh_arrays(path: Path, vertices: np.ndarray, faces: np.ndarray, what: str = "") -> None:
    """Raise InvalidAssetError for non-finite vertices or faces outside [0, V)."""
    pre = f"{what}: " if what else ""
    bad = ~np.isfinite(vertices).all(axis=1)
    if bad.any():
        raise InvalidAssetError(path, f"{pre}{int(bad.sum())} vertices have NaN/Inf coordinates (first at index {int(np.argmax(bad))})")
    if faces.size:
        lo, hi = int(faces.min()), int(faces.max())
        if lo < 0 or hi >= len(vertices):
            raise InvalidAssetError(
                path, f"{pre}face indices run from {lo} to {hi} but there are {len(vertices)} vertices (index past the vertex list)"
            )


def _fan(polys: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """Triangulate polygons (lists of vertex indices) as fans → (F,3) int64."""
    if isinstance(polys, np.ndarray):
        if polys.ndim == 2 and polys.shape[1] >= 3:
            n = polys.shape[1]
            return np.concatenate([polys[:, [0, i, i + 1]] for i in range(1, n - 1)]).astype(np.int64) if n > 3 else polys.astype(np.int64)
        if polys.size == 0:
            return np.zeros((0, 3), np.int64)
    tris = [[p[0], p[i], p[i + 1]] for p in polys for i in range(1, len(p) - 1)]
    return np.asarray(tris, np.int64).reshape(-1, 3)


def _world(mesh: Mesh) -> tuple[np.ndarray, np.ndarray | None]:
    """World-space vertices (V,3) float64 and normals (V,3) float32 (None when the mesh has none)."""
    v = mesh.world_vertices()
    n = None
    if mesh.normals is not None:
        lin = mesh.transform[:3, :3]
        nt = mesh.normals.astype(np.float64) @ np.linalg.inv(lin)  # rows: (L⁻ᵀ n)ᵀ = nᵀ L⁻¹
        n = (nt / np.maximum(np.linalg.norm(nt, axis=1, keepdims=True), 1e-20)).astype(np.float32)
        if np.allclose(lin, np.eye(3)):
            n = mesh.normals.astype(np.float32)
    return v, n


def _flip_v(uv: np.ndarray, dtype=np.float32) -> np.ndarray:
    """v ↦ 1 − v, computed in float64 (exact for float32 input) and returned as `dtype`."""
    out = np.array(uv, np.float64, copy=True)
    out[:, 1] = 1.0 - out[:, 1]
    return out.astype(dtype)


def _clean_name(name: str, fallback: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]+", "_", name or "").strip("._")
    return s or fallback


# ---------------------------------------------------------------------------------------------
# OBJ / MTL reading


def _parse_mtl(path: Path, base: Path, dropped: list[str]) -> dict[str, Material]:
    out: dict[str, Material] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        dropped.append(f"material library {path.name} (missing)")
        return out
    cur: dict | None = None

    def done() -> None:
        if cur is not None:
            out[cur["name"]] = _material_from_mtl(cur, base, dropped)

    for raw in text.splitlines():
        parts = raw.strip().split()
        if not parts or parts[0].startswith("#"):
            continue
        key, args = parts[0], parts[1:]
        if key == "newmtl":
            done()
            cur = {"name": " ".join(args)}
        elif cur is not None and args:
            cur[key] = args
    done()
    return out


def _floats(args: list[str], n: int, default: tuple) -> tuple:
    try:
        vals = [float(a) for a in args[:n]]
    except ValueError:
        return default
    return tuple(vals + list(default[len(vals) :])) if vals else default


def _material_from_mtl(d: dict, base: Path, dropped: list[str]) -> Material:
    kd = _floats(d.get("Kd", []), 3, (1.0, 1.0, 1.0))
    alpha = _floats(d["d"], 1, (1.0,))[0] if "d" in d else (1.0 - _floats(d["Tr"], 1, (0.0,))[0] if "Tr" in d else 1.0)
    mat = Material(
        name=d["name"],
        base_color_factor=(*[float(np.clip(c, 0, 1)) for c in kd], float(np.clip(alpha, 0, 1))),
        metallic_factor=float(np.clip(_floats(d.get("Pm", []), 1, (0.0,))[0], 0, 1)),
        roughness_factor=float(np.clip(_floats(d.get("Pr", []), 1, (1.0,))[0], 0, 1)),
        emissive_factor=tuple(float(np.clip(c, 0, 1)) for c in _floats(d.get("Ke", []), 3, (0.0, 0.0, 0.0))),
        alpha_mode="BLEND" if alpha < 1.0 else "OPAQUE",
    )
    if "map_Kd" in d:
        name = d["map_Kd"][-1]  # options (-s, -o, …) come before the file name
        try:
            tex_path = safe_child(base, name.replace("\\", "/"))
            mat.base_color_texture = Texture.from_file_bytes(tex_path.read_bytes(), name=Path(name).stem)
        except (OSError, UnsafePathError) as e:
            dropped.append(f"base colour texture {name!r} of material {d['name']!r} ({type(e).__name__})")
        except Exception:  # PIL cannot decode it
            dropped.append(f"base colour texture {name!r} of material {d['name']!r} (not a readable image)")
    return mat


def _obj_index(tok: str, n: int, path: Path, lineno: int) -> int:
    i = int(tok)
    if i == 0:
        raise InvalidAssetError(path, f"line {lineno}: OBJ index 0 (indices start at 1)")
    j = i - 1 if i > 0 else n + i
    if j < 0 or j >= n:
        raise InvalidAssetError(path, f"line {lineno}: face index {i} is past the {n} elements defined so far")
    return j


def read_obj(path: str | Path) -> Asset:
    """Read an OBJ (+ MTL + textures) into an Asset of meshes (one per object/group × material run)."""
    path = Path(path)
    data = path.read_bytes()
    if not data.strip():
        raise InvalidAssetError(path, "file is empty")
    if b"\x00" in data[:4096]:
        raise InvalidAssetError(path, "binary data, not an OBJ text file")
    text = data.decode("utf-8", errors="replace")
    pos: list[list[float]] = []
    col: list[list[float] | None] = []
    tex: list[list[float]] = []
    nor: list[list[float]] = []
    groups: dict[tuple, list] = {}
    order: list[tuple] = []
    obj_name, grp_name, mtl_name = "", "", None
    libs: list[str] = []
    n_bad = 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        parts = raw.split()
        if not parts or parts[0].startswith("#"):
            continue
        key = parts[0]
        try:
            if key == "v":
                vals = [float(x) for x in parts[1:]]
                if len(vals) < 3:
                    raise ValueError
                pos.append(vals[:3])
                col.append(vals[3:6] if len(vals) >= 6 else None)
            elif key == "vt":
                vals = [float(x) for x in parts[1:3]]
                tex.append(vals + [0.0] * (2 - len(vals)))
            elif key == "vn":
                vals = [float(x) for x in parts[1:4]]
                if len(vals) != 3:
                    raise ValueError
                nor.append(vals)
            elif key == "f":
                if len(parts) < 4:
                    raise InvalidAssetError(path, f"line {lineno}: face with fewer than 3 corners")
                corners = []
                for tok in parts[1:]:
                    sub = tok.split("/")
                    vi = _obj_index(sub[0], len(pos), path, lineno)
                    ti = _obj_index(sub[1], len(tex), path, lineno) if len(sub) > 1 and sub[1] else -1
                    ni = _obj_index(sub[2], len(nor), path, lineno) if len(sub) > 2 and sub[2] else -1
                    corners.append((vi, ti, ni))
                gkey = (obj_name, grp_name, mtl_name)
                if gkey not in groups:
                    groups[gkey] = []
                    order.append(gkey)
                g = groups[gkey]
                for i in range(1, len(corners) - 1):
                    g.extend((corners[0], corners[i], corners[i + 1]))
            elif key == "o":
                obj_name, grp_name = " ".join(parts[1:]), ""
            elif key == "g":
                grp_name = " ".join(parts[1:])
            elif key == "usemtl":
                mtl_name = " ".join(parts[1:])
            elif key == "mtllib":
                libs.extend(parts[1:])
            elif key in ("s", "l", "p", "vp", "cstype", "deg", "curv", "surf", "parm", "end", "usemap", "maplib", "lod", "mg", "bevel", "c_interp", "d_interp", "shadow_obj", "trace_obj"):
                pass
            else:
                n_bad += 1
                if n_bad > 10 and n_bad > 0.5 * lineno:
                    raise InvalidAssetError(path, f"line {lineno}: not OBJ text (unknown statement {key[:20]!r})")
        except ValueError:
            raise InvalidAssetError(path, f"line {lineno}: malformed '{key[:10]}' statement") from None
    if not pos:
        raise InvalidAssetError(path, "OBJ defines no vertices")
    if not order:
        raise InvalidAssetError(path, "OBJ defines no faces")
    dropped: list[str] = []
    materials: dict[str, Material] = {}
    for lib in libs:
        try:
            materials.update(_parse_mtl(safe_child(path.parent, lib.replace("\\", "/")), path.parent, dropped))
        except UnsafePathError:
            dropped.append(f"material library {lib!r} (outside the OBJ's folder)")
    P = np.asarray(pos, np.float64)
    _check_mesh_arrays(path, P, np.zeros((0, 3), np.int64))
    T = np.asarray(tex, np.float64).reshape(-1, 2)
    N = np.asarray(nor, np.float32).reshape(-1, 3)
    have_col = any(c is not None for c in col)
    C = np.asarray([c if c is not None else [1.0, 1.0, 1.0] for c in col], np.float64) if have_col else None
    C_set = np.asarray([c is not None for c in col]) if have_col else None
    if (T.size and not np.isfinite(T).all()) or (N.size and not np.isfinite(N).all()) or (C is not None and not np.isfinite(C).all()):
        raise InvalidAssetError(path, "OBJ has NaN/Inf texture coordinates, normals or colours")
    meshes = []
    default_mat: Material | None = None
    for gkey in order:
        corners = np.asarray(groups[gkey], np.int64)  # (3F, 3) vi, ti, ni
        uniq, inv = np.unique(corners, axis=0, return_inverse=True)
        faces = inv.reshape(-1, 3)
        vi, ti, ni = uniq[:, 0], uniq[:, 1], uniq[:, 2]
        mname = gkey[2]
        if mname is not None and mname in materials:
            mat = materials[mname]
        else:
            if mname is not None:
                dropped.append(f"material {mname!r} (not defined in any MTL file)")
            default_mat = default_mat or Material(name=mname or "default", metallic_factor=0.0)
            mat = default_mat
        uvs = [_flip_v(T[ti])] if (ti >= 0).all() and len(T) else []
        normals = N[ni] if (ni >= 0).all() and len(N) else None
        colors = None
        if C is not None and C_set[vi].any():
            rgb = srgb_to_linear(np.clip(C[vi], 0, 1))
            colors = np.concatenate([rgb, np.ones((len(vi), 1))], axis=1).astype(np.float32)
        name = gkey[0] if not gkey[1] else (f"{gkey[0]}/{gkey[1]}" if gkey[0] else gkey[1])
        name = name or (path.stem if len(order) == 1 else f"{path.stem}_{len(meshes)}")
        meshes.append(Mesh.from_arrays(P[vi], faces, material=mat, uvs=uvs, normals=normals, colors=colors, name=name))
    return Asset(meshes=meshes, metadata=AssetMetadata(name=path.stem), dropped=dropped)


# ---------------------------------------------------------------------------------------------
# OBJ / MTL writing


def _fmt_rows(prefix: str, arr: np.ndarray, fmt: str) -> str:
    line = prefix + " " + " ".join([fmt] * arr.shape[1]) + "\n"
    return "".join(line % tuple(r) for r in arr.tolist())


def write_obj(asset: Asset, path: str | Path) -> Path:
    """Write all meshes (baked to world) as OBJ + MTL (+ `<stem>_<material>.png` base colour textures)."""
    path = Path(path)
    if not asset.meshes:
        raise NothingToExportError(path, "asset has no meshes to write as OBJ")
    mtl_path = path.with_suffix(".mtl")
    mats: dict[int, tuple[str, Material]] = {}
    used: set[str] = set()
    for i, m in enumerate(asset.meshes):
        if id(m.material) not in mats:
            name = _clean_name(m.material.name, f"material_{len(mats)}")
            while name in used:
                name += "_"
            used.add(name)
            mats[id(m.material)] = (name, m.material)
    obj = [f"# written by studio\nmtllib {mtl_path.name}\n"]
    mtl = ["# written by studio\n"]
    textures: dict[str, bytes] = {}
    for name, mat in mats.values():
        r, g, b, a = mat.base_color_factor
        ke = mat.emissive_factor
        mtl.append(
            f"newmtl {name}\nKd {r:.9g} {g:.9g} {b:.9g}\nd {a:.9g}\nKe {ke[0]:.9g} {ke[1]:.9g} {ke[2]:.9g}\n"
            f"Pr {mat.roughness_factor:.9g}\nPm {mat.metallic_factor:.9g}\nillum 2\n"
        )
        if mat.base_color_texture is not None:
            tex_name = f"{_clean_name(path.stem, 'mesh')}_{name}.png"
            textures[tex_name] = mat.base_color_texture.png_bytes()
            mtl.append(f"map_Kd {tex_name}\n")
        mtl.append("\n")
    # OBJ indices are global per attribute: v, vt and vn each count separately (a mesh without
    # UVs adds vertices but no texture coordinates).
    base_v = base_vt = base_vn = 0
    for i, m in enumerate(asset.meshes):
        v, n = _world(m)
        obj.append(f"o {_clean_name(m.name, f'mesh_{i}')}\nusemtl {mats[id(m.material)][0]}\n")
        if m.colors is not None:
            rgb = linear_to_srgb(np.clip(m.colors[:, :3].astype(np.float64), 0, 1))
            obj.append(_fmt_rows("v", np.concatenate([v, rgb], axis=1), "%.17g"))
        else:
            obj.append(_fmt_rows("v", v, "%.17g"))
        has_uv, has_n = bool(m.uvs), n is not None
        if has_uv:
            obj.append(_fmt_rows("vt", _flip_v(m.uvs[0], np.float64), "%.17g"))
        if has_n:
            obj.append(_fmt_rows("vn", n, "%.9g"))
        fv = m.faces + base_v + 1
        ft = m.faces + base_vt + 1
        fn = m.faces + base_vn + 1
        if has_uv and has_n:
            rows = np.stack([fv, ft, fn], axis=2).reshape(len(fv), 9)
            obj.append("".join("f %d/%d/%d %d/%d/%d %d/%d/%d\n" % tuple(r) for r in rows.tolist()))
        elif has_uv:
            rows = np.stack([fv, ft], axis=2).reshape(len(fv), 6)
            obj.append("".join("f %d/%d %d/%d %d/%d\n" % tuple(r) for r in rows.tolist()))
        elif has_n:
            rows = np.stack([fv, fn], axis=2).reshape(len(fv), 6)
            obj.append("".join("f %d//%d %d//%d %d//%d\n" % tuple(r) for r in rows.tolist()))
        else:
            obj.append(_fmt_rows("f", fv, "%d"))
        base_v += len(v)
        base_vt += len(v) if has_uv else 0
        base_vn += len(v) if has_n else 0
    for tex_name, data in textures.items():
        write_bytes_atomic(path.parent / tex_name, data)
    write_bytes_atomic(mtl_path, "".join(mtl).encode("utf-8"))
    write_bytes_atomic(path, "".join(obj).encode("utf-8"))
    return path


# ---------------------------------------------------------------------------------------------
# STL


def read_stl(path: str | Path) -> Asset:
    """Read ascii or binary STL (vertices unshared, as stored)."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) == 0:
        raise InvalidAssetError(path, "file is empty (0 bytes)")
    if not data.lstrip().startswith(b"solid"):
        if len(data) < 84:
            raise InvalidAssetError(path, f"binary STL shorter than its 84-byte header ({len(data)} bytes)")
        n = int(np.frombuffer(data, "<u4", 1, 80)[0])
        if len(data) != 84 + 50 * n:
            raise InvalidAssetError(path, f"binary STL header says {n} triangles ({84 + 50 * n} bytes) but the file has {len(data)} bytes")
    try:
        kw = trimesh.exchange.stl.load_stl(io.BytesIO(data))
    except Exception as e:  # trimesh raises assorted types on garbage
        raise InvalidAssetError(path, f"not a readable STL file ({type(e).__name__}: {str(e)[:120]})") from None
    v = np.asarray(kw.get("vertices", []), np.float64).reshape(-1, 3)
    f = np.asarray(kw.get("faces", []), np.int64).reshape(-1, 3)
    if len(f) == 0:
        raise InvalidAssetError(path, "STL holds no triangles")
    _check_mesh_arrays(path, v, f)
    mesh = Mesh.from_arrays(v, f, material=Material(name="default", metallic_factor=0.0), name=path.stem)
    return Asset(meshes=[mesh], metadata=AssetMetadata(name=path.stem))


def _baked(asset: Asset) -> tuple[np.ndarray, np.ndarray]:
    vs, fs, base = [], [], 0
    for m in asset.meshes:
        vs.append(m.world_vertices())
        fs.append(m.faces + base)
        base += len(m.vertices)
    return np.concatenate(vs), np.concatenate(fs)


def write_stl(asset: Asset, path: str | Path) -> Path:
    """Write all meshes baked to world as one binary STL (float32, face normals)."""
    path = Path(path)
    if not asset.meshes:
        raise NothingToExportError(path, "asset has no meshes to write as STL")
    v, f = _baked(asset)
    data = trimesh.exchange.stl.export_stl(trimesh.Trimesh(v, f, process=False, validate=False))
    write_bytes_atomic(path, data)
    return path


# ---------------------------------------------------------------------------------------------
# PLY


_UV_NAMES = (("s", "t"), ("u", "v"), ("texture_u", "texture_v"), ("texture_s", "texture_t"))


def read_mesh_ply(path: str | Path) -> Asset:
    """Read a mesh PLY (ascii/binary) into an Asset with one Mesh."""
    path = Path(path)
    header, els = read_ply_elements(path)
    if "vertex" not in els:
        raise InvalidAssetError(path, "PLY has no 'vertex' element")
    vx = els["vertex"]
    if not all(k in vx for k in "xyz"):
        raise InvalidAssetError(path, "PLY vertex element lacks x, y or z")
    v = np.stack([np.asarray(vx[k], np.float64) for k in "xyz"], axis=1)
    faces = np.zeros((0, 3), np.int64)
    fe = els.get("face", {})
    key = next((k for k in ("vertex_indices", "vertex_index") if k in fe), None)
    if key is not None:
        polys = fe[key]
        if isinstance(polys, list) and any(len(p) < 3 for p in polys):
            raise InvalidAssetError(path, "PLY face data is malformed (a face with fewer than 3 vertices; do the header's element counts match the data?)")
        if isinstance(polys, np.ndarray) and polys.ndim == 2 and 0 <= polys.shape[1] < 3 and len(polys):
            raise InvalidAssetError(path, "PLY face data is malformed (faces with fewer than 3 vertices; do the header's element counts match the data?)")
        faces = _fan(polys if isinstance(polys, list) else np.asarray(polys, np.int64))
    _check_mesh_arrays(path, v, faces)
    normals = None
    if all(k in vx for k in ("nx", "ny", "nz")):
        normals = np.stack([np.asarray(vx[k], np.float32) for k in ("nx", "ny", "nz")], axis=1)
    uvs = []
    for a, b in _UV_NAMES:
        if a in vx and b in vx:
            uvs = [_flip_v(np.stack([np.asarray(vx[a], np.float32), np.asarray(vx[b], np.float32)], axis=1))]
            break
    colors = None
    if all(k in vx for k in ("red", "green", "blue")):
        names = ["red", "green", "blue"] + (["alpha"] if "alpha" in vx else [])
        raw = np.stack([np.asarray(vx[k]) for k in names], axis=1)
        c = raw.astype(np.float64) / 255.0 if raw.dtype.kind in "ui" else raw.astype(np.float64)
        c = np.clip(c, 0, 1)
        rgb = srgb_to_linear(c[:, :3])
        a = c[:, 3:4] if c.shape[1] == 4 else np.ones((len(c), 1))
        colors = np.concatenate([rgb, a], axis=1).astype(np.float32)
    for nm, arr in (("normals", normals), ("texture coordinates", uvs[0] if uvs else None), ("colours", colors)):
        if arr is not None and not np.isfinite(arr).all():
            raise InvalidAssetError(path, f"PLY vertex {nm} contain NaN/Inf")
    mat = Material(name="default", metallic_factor=0.0)
    dropped: list[str] = []
    for c in header.comments:
        if c.startswith("TextureFile"):
            name = c[len("TextureFile") :].strip()
            try:
                mat.base_color_texture = Texture.from_file_bytes(safe_child(path.parent, name).read_bytes(), name=Path(name).stem)
            except Exception as e:
                dropped.append(f"texture {name!r} ({type(e).__name__})")
    mesh = Mesh.from_arrays(v, faces, material=mat, normals=normals, uvs=uvs, colors=colors, name=path.stem)
    return Asset(meshes=[mesh], metadata=AssetMetadata(name=path.stem), dropped=dropped)


def mesh_ply_bytes(asset: Asset, texture_name: str | None = None) -> bytes:
    """Binary little-endian PLY of all meshes baked to world: float x y z [nx ny nz] [s t]
    [uchar red green blue alpha (sRGB)], faces as `list uchar int vertex_indices`."""
    ms = asset.meshes
    any_n = any(m.normals is not None for m in ms)
    any_uv = any(m.uvs for m in ms)
    any_c = any(m.colors is not None for m in ms)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if any_n:
        fields += [("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")]
    if any_uv:
        fields += [("s", "<f4"), ("t", "<f4")]
    if any_c:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1"), ("alpha", "u1")]
    parts, fparts, base = [], [], 0
    for m in ms:
        v, n = _world(m)
        rec = np.zeros(len(v), fields)
        rec["x"], rec["y"], rec["z"] = v[:, 0], v[:, 1], v[:, 2]
        if any_n:
            nn = n if n is not None else np.asarray(trimesh.Trimesh(v, m.faces, process=False).vertex_normals, np.float32)
            rec["nx"], rec["ny"], rec["nz"] = nn[:, 0], nn[:, 1], nn[:, 2]
        if any_uv and m.uvs:
            uv = _flip_v(m.uvs[0])
            rec["s"], rec["t"] = uv[:, 0], uv[:, 1]
        if any_c:
            if m.colors is not None:
                rgb = to_uint8(linear_to_srgb(np.clip(m.colors[:, :3].astype(np.float64), 0, 1)))
                a = to_uint8(np.clip(m.colors[:, 3], 0, 1))
            else:
                rgb, a = np.full((len(v), 3), 255, np.uint8), np.full(len(v), 255, np.uint8)
            rec["red"], rec["green"], rec["blue"], rec["alpha"] = rgb[:, 0], rgb[:, 1], rgb[:, 2], a
        parts.append(rec)
        fparts.append(m.faces + base)
        base += len(v)
    verts = np.concatenate(parts)
    faces = np.concatenate(fparts).astype("<i4")
    frec = np.empty(len(faces), [("n", "u1"), ("i", "<i4", (3,))])
    frec["n"], frec["i"] = 3, faces
    ply_type = {"<f4": "float", "u1": "uchar"}
    head = ["ply", "format binary_little_endian 1.0", "comment written by studio"]
    if texture_name:
        head.append(f"comment TextureFile {texture_name}")
    head.append(f"element vertex {len(verts)}")
    head += [f"property {ply_type[t]} {nm}" for nm, t in fields]
    head += [f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    return ("\n".join(head) + "\n").encode("ascii") + verts.tobytes() + frec.tobytes()


def read_ply(path: str | Path) -> Asset:
    """Read a PLY: a 3DGS splat PLY becomes Asset(splats=…), anything else a mesh Asset."""
    path = Path(path)
    header = read_ply_header(path)
    if header.is_splat():
        return Asset(splats=read_splat_ply(path), metadata=AssetMetadata(name=path.stem))
    return read_mesh_ply(path)


def write_ply(asset: Asset, path: str | Path) -> Path:
    """Splat PLY when the asset has splats and no meshes, else a mesh PLY of all meshes baked to world
    (vertex colours kept; the first base colour texture is written beside it as `<stem>.png`)."""
    path = Path(path)
    if not asset.meshes:
        if asset.splats is None or len(asset.splats) == 0:
            raise NothingToExportError(path, "asset has neither meshes nor splats to write as PLY")
        return write_splat_ply(asset.splats, path)
    tex = next((m.material.base_color_texture for m in asset.meshes if m.material.base_color_texture is not None), None)
    tex_name = f"{_clean_name(path.stem, 'mesh')}.png" if tex is not None and any(m.uvs for m in asset.meshes) else None
    data = mesh_ply_bytes(asset, tex_name)
    if tex_name:
        write_bytes_atomic(path.parent / tex_name, tex.png_bytes())
    write_bytes_atomic(path, data)
    return path


# ---------------------------------------------------------------------------------------------
# Dispatch (registered in assets/io.py)


def read_mesh(path: str | Path) -> Asset:
    """Read .obj or .stl by suffix."""
    path = Path(path)
    if not path.is_file():
        raise InvalidAssetError(path, "file not found")
    if path.stat().st_size == 0:
        raise InvalidAssetError(path, "file is empty (0 bytes)")
    suffix = path.suffix.lower()
    if suffix == ".obj":
        return read_obj(path)
    if suffix == ".stl":
        return read_stl(path)
    raise InvalidAssetError(path, f"read_mesh handles .obj and .stl, not {suffix!r}")


def write_mesh(asset: Asset, path: str | Path) -> Path:
    """Write .obj (+ .mtl + textures) or .stl by suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".obj":
        return write_obj(asset, path)
    if suffix == ".stl":
        return write_stl(asset, path)
    raise InvalidAssetError(path, f"write_mesh handles .obj and .stl, not {suffix!r}")


__all__ = [
    "read_mesh", "write_mesh", "read_ply", "write_ply", "read_obj", "write_obj", "read_stl", "write_stl",
    "read_mesh_ply", "mesh_ply_bytes",
]  # fmt: skip
