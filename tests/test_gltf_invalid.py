"""Broken, truncated and hostile glTF/GLB input: always InvalidAssetError naming the file and the problem,
never a raw IndexError/KeyError/struct.error/JSONDecodeError, and never a half-written export."""
from __future__ import annotations

import base64
import importlib.util
import json
import random
import struct
from pathlib import Path

import numpy as np
import pytest

from studio.assets import io as asset_io
from studio.assets.gltf_io import read_gltf
from studio.errors import InvalidAssetError, UnsupportedFormatError


def _conftest():
    spec = importlib.util.spec_from_file_location("_studio_tests_conftest", Path(__file__).with_name("conftest.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


INVALID = _conftest().invalid_manifest()

# What each shared broken file's error message must say (regex, case-insensitive). A new file in the
# manifest must get an entry here: the test fails until it does.
EXPECTED = {
    "empty_zero_bytes.glb": r"empty|0 bytes",
    "truncated_half.glb": r"truncated.*2880.*1440",
    "wrong_magic.glb": r"magic",
    "json_chunk_not_json.glb": r"JSON chunk is not valid JSON",
    "nan_positions.glb": r"POSITION.*non-finite",
    "index_past_vertex_count.glb": r"index 1024 is past the vertex count 24",
    "missing_external_bin.gltf": r"missing external file 'Box0\.bin'",
    "invalid_json_syntax.gltf": r"not valid JSON",
    "glb_length_mismatch.glb": r"length mismatch.*49.*48",
    "glb_truncated_chunk_header.glb": r"truncated chunk header",
    "index_buffer_oob.gltf": r"index 5 is past the vertex count 4",
    "accessor_too_long.gltf": r"accessor 0 is misaligned",
}


def _assert_refused(path: Path, pattern: str, tmp_path: Path, exc: type = InvalidAssetError) -> Exception:
    with pytest.raises(exc) as info:
        asset_io.load(path)
    msg = str(info.value)
    assert path.name in msg or repr(path.name)[1:-1] in msg, msg
    assert __import__("re").search(pattern, msg, flags=__import__("re").I), msg
    assert msg.isprintable()
    out = tmp_path / "never.glb"
    with pytest.raises(exc):
        asset_io.save(asset_io.load(path), out)
    assert not out.exists() and not list(tmp_path.glob("*.part*"))
    return info.value


@pytest.mark.parametrize("entry", INVALID, ids=[e["file"] for e in INVALID])
def test_shared_broken_files_are_refused(testdata: Path, tmp_path: Path, entry: dict) -> None:
    assert entry["file"] in EXPECTED, f"add the expected message for {entry['file']} ({entry['what_is_wrong']})"
    err = _assert_refused(testdata / "gltf-invalid" / entry["file"], EXPECTED[entry["file"]], tmp_path)
    assert err.path is not None and Path(err.path).name == entry["file"]


def test_every_shared_broken_file_is_covered() -> None:
    assert len(INVALID) >= 12 and {e["file"] for e in INVALID} == set(EXPECTED)


# ------------------------------------------------------------------------------------------------
# hand-made broken documents (a valid triangle, then one thing broken)


def _tri_bytes() -> bytes:
    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32).tobytes()
    idx = np.array([0, 1, 2], np.uint16).tobytes() + b"\x00\x00"
    return pos + idx


def _doc() -> dict:
    data = _tri_bytes()
    return {
        "asset": {"version": "2.0"},
        "buffers": [{"byteLength": len(data), "uri": "data:application/octet-stream;base64," + base64.b64encode(data).decode()}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": 36, "target": 34962},
            {"buffer": 0, "byteOffset": 36, "byteLength": 6, "target": 34963},
        ],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3", "min": [0, 0, 0], "max": [1, 1, 0]},
            {"bufferView": 1, "componentType": 5123, "count": 3, "type": "SCALAR"},
        ],
        "meshes": [{"name": "tri", "primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
        "nodes": [{"mesh": 0, "name": "n"}],
        "scenes": [{"nodes": [0]}],
        "scene": 0,
    }


def _write(tmp_path: Path, doc: dict | str | bytes, name: str = "bad.gltf") -> Path:
    p = tmp_path / name
    if isinstance(doc, dict):
        doc = json.dumps(doc)
    p.write_bytes(doc if isinstance(doc, bytes) else doc.encode())
    return p


def test_valid_base_document_loads(tmp_path: Path) -> None:
    asset = read_gltf(_write(tmp_path, _doc(), "ok.gltf"))
    assert asset.triangle_count == 1 and asset.vertex_count == 3


def _external(doc: dict, uri: str) -> dict:
    doc["buffers"][0]["uri"] = uri
    return doc


def _mutate(fn):
    d = _doc()
    fn(d)
    return d


def _set(path: list, value):
    def fn(d: dict) -> None:
        node = d
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return fn


def _b64(data: bytes) -> str:
    return "data:application/octet-stream;base64," + base64.b64encode(data).decode()


CASES = {
    "uri_escapes_folder": (_set(["buffers", 0, "uri"], "../outside.bin"), r"unsafe.*outside"),
    "uri_escapes_percent_encoded": (_set(["buffers", 0, "uri"], "%2E%2E/outside.bin"), r"unsafe.*outside"),
    "uri_absolute": (_set(["buffers", 0, "uri"], "/etc/passwd"), r"unsafe.*absolute"),
    "uri_http": (_set(["buffers", 0, "uri"], "http://example.com/a.bin"), r"external URI"),
    "uri_file_scheme": (_set(["buffers", 0, "uri"], "file:///etc/passwd"), r"external URI"),
    "uri_control_chars": (_set(["buffers", 0, "uri"], "a\u001b[2Jb.bin"), r"control characters"),
    "uri_too_long": (_set(["buffers", 0, "uri"], "x" * 300 + ".bin"), r"too long"),
    "missing_image": (lambda d: d.update(images=[{"uri": "nothere.png"}]), r"missing external file 'nothere\.png'"),
    "image_escapes_folder": (lambda d: d.update(images=[{"uri": "../img.png"}]), r"image 0 URI is unsafe"),
    "image_not_an_image": (
        lambda d: d.update(images=[{"uri": _b64(b"not a png at all")}], textures=[{"source": 0}],
                           materials=[{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}])
        or d["meshes"][0]["primitives"][0].update(material=0),
        r"image 0 could not be decoded",
    ),
    "accessor_index_missing": (_set(["meshes", 0, "primitives", 0, "attributes", "POSITION"], 99), r"accessor 99, which does not exist"),
    "buffer_view_past_buffer": (_set(["bufferViews", 1, "byteLength"], 600), r"bufferView 1 .* runs past the end of buffer 0"),
    "accessor_past_view": (_set(["accessors", 0, "count"], 4), r"accessor 0 is too long"),
    "accessor_misaligned": (_set(["accessors", 0, "byteOffset"], 2), r"misaligned"),
    "negative_count": (_set(["accessors", 0, "count"], -3), r"invalid count"),
    "string_count": (_set(["accessors", 0, "count"], "3"), r"accessors\[0\]\.count is not an integer"),
    "unknown_component_type": (_set(["accessors", 0, "componentType"], 1234), r"unknown componentType"),
    "position_vec2": (_set(["accessors", 0, "type"], "VEC2"), r"POSITION accessor has 2 components|too long"),
    "float_indices": (_set(["accessors", 1, "componentType"], 5126), r"indices|misaligned|too long"),
    "buffer_data_short": (_set(["buffers", 0, "uri"], _b64(_tri_bytes()[:20])), r"buffer 0 is truncated"),
    "bad_base64": (_set(["buffers", 0, "uri"], "data:application/octet-stream;base64,@@@"), r"does not decode"),
    "buffer_without_uri": (lambda d: d["buffers"][0].pop("uri"), r"no uri"),
    "node_cycle": (lambda d: d["nodes"].append({"children": [2]}) or d["nodes"].append({"children": [1]})
                   or d["scenes"][0]["nodes"].append(1), r"cycle"),
    "node_missing": (_set(["scenes", 0, "nodes"], [5]), r"node 5, which does not exist"),
    "mesh_missing": (_set(["nodes", 0, "mesh"], 7), r"mesh 7, which does not exist"),
    "material_missing": (_set(["meshes", 0, "primitives", 0, "material"], 3), r"material 3, which does not exist"),
    "scene_missing": (_set(["scene"], 4), r"default scene 4 does not exist"),
    "accessors_not_array": (_set(["accessors"], {"0": 1}), r"'accessors' must be a JSON array"),
    "no_asset": (lambda d: d.pop("asset"), r"asset\.version"),
    "degenerate_faces": (_set(["buffers", 0, "uri"], _b64(np.zeros(9, np.float32).tobytes() + _tri_bytes()[36:])),
                         r"degenerate"),
    "infinite_positions": (
        _set(["buffers", 0, "uri"], _b64(np.array([0, 0, 0, np.inf, 0, 0, 0, 1, 0], np.float32).tobytes() + _tri_bytes()[36:])),
        r"non-finite",
    ),
    "bad_matrix": (_set(["nodes", 0, "matrix"], [1, 2, 3]), r"matrix"),
    "unknown_mode": (_set(["meshes", 0, "primitives", 0, "mode"], 9), r"unknown mode"),
    "bad_alpha_mode": (lambda d: d.update(materials=[{"alphaMode": "SOMETIMES"}]) or
                       d["meshes"][0]["primitives"][0].update(material=0), r"alphaMode"),
}


def _sparse_past(d: dict) -> None:
    """Sparse indices stored in an extra buffer: index 7 into a 3-element accessor."""
    extra = np.array([7, 0], np.uint16).tobytes() + np.zeros(3, np.float32).tobytes()
    d["buffers"].append({"byteLength": len(extra), "uri": _b64(extra)})
    d["bufferViews"] += [{"buffer": 1, "byteOffset": 0, "byteLength": 2}, {"buffer": 1, "byteOffset": 4, "byteLength": 12}]
    d["accessors"][0]["sparse"] = {"count": 1, "indices": {"bufferView": 2, "componentType": 5123},
                                   "values": {"bufferView": 3}}


CASES["sparse_index_past_count"] = (_sparse_past, r"sparse index 7 is past its count 3")


@pytest.mark.parametrize("case", sorted(CASES))
def test_hand_made_broken_documents(tmp_path: Path, case: str) -> None:
    fn, pattern = CASES[case]
    (tmp_path / "outside.bin").write_bytes(_tri_bytes())  # exists, but is not inside the asset's folder
    (tmp_path / "img.png").write_bytes(b"")
    sub = tmp_path / "asset"
    sub.mkdir()
    doc = _doc()
    fn(doc)
    _assert_refused(_write(sub, doc), pattern, sub)


def test_non_json_and_non_utf8(tmp_path: Path) -> None:
    _assert_refused(_write(tmp_path, b"\xff\xfe{\x00", "u.gltf"), r"not UTF-8", tmp_path)
    _assert_refused(_write(tmp_path, '{"asset": {"version": "2.0"}, "x": NaN}', "n.gltf"), r"not valid JSON", tmp_path)
    _assert_refused(_write(tmp_path, "[1, 2]", "a.gltf"), r"not a JSON object", tmp_path)


def _glb(doc: dict, bin_: bytes | None, first_chunk: int = 0x4E4F534A) -> bytes:
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    body = struct.pack("<II", len(js), first_chunk) + js
    if bin_ is not None:
        bin_ += b"\x00" * (-len(bin_) % 4)
        body += struct.pack("<II", len(bin_), 0x004E4942) + bin_
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def test_glb_structure_errors(tmp_path: Path) -> None:
    doc = _doc()
    doc["buffers"][0].pop("uri")
    ok = _glb(doc, _tri_bytes())
    assert read_gltf(_write(tmp_path, ok, "ok.glb")).triangle_count == 1
    _assert_refused(_write(tmp_path, _glb(doc, _tri_bytes(), first_chunk=0x004E4942), "c.glb"), r"no JSON chunk", tmp_path)
    _assert_refused(_write(tmp_path, _glb(doc, None), "nobin.glb"), r"no uri and there is no GLB BIN chunk", tmp_path)
    _assert_refused(_write(tmp_path, _glb(doc, _tri_bytes()[:30]), "short.glb"), r"buffer 0 is truncated", tmp_path)
    _assert_refused(_write(tmp_path, ok[:10], "hdr.glb"), r"truncated GLB header", tmp_path)
    bad_chunk = bytearray(ok)
    struct.pack_into("<I", bad_chunk, 12, 10_000)  # JSON chunk length runs past the end
    _assert_refused(_write(tmp_path, bytes(bad_chunk), "chunk.glb"), r"truncated GLB chunk", tmp_path)
    v1 = bytearray(ok)
    struct.pack_into("<I", v1, 4, 1)
    _assert_refused(_write(tmp_path, bytes(v1), "v1.glb"), r"version 1", tmp_path, exc=UnsupportedFormatError)
    _assert_refused(_write(tmp_path, b"{}", "json.glb"), r"magic", tmp_path)


def test_unsupported_but_valid_files(tmp_path: Path) -> None:
    d = _doc()
    d["extensionsUsed"] = d["extensionsRequired"] = ["KHR_draco_mesh_compression"]
    _assert_refused(_write(tmp_path, d, "draco.gltf"), r"KHR_draco_mesh_compression", tmp_path, exc=UnsupportedFormatError)
    _assert_refused(_write(tmp_path, {"asset": {"version": "1.0"}}, "old.gltf"), r"version 1\.0", tmp_path,
                    exc=UnsupportedFormatError)


def test_hostile_names_are_escaped(tmp_path: Path) -> None:
    """A control-character file name and hostile object names never reach a message unescaped."""
    p = _write(tmp_path, b"", "evil\x1b[31m\n.glb")
    with pytest.raises(InvalidAssetError) as info:
        asset_io.load(p)
    assert str(info.value).isprintable() and "\\x1b" in str(info.value)
    d = _doc()
    d["meshes"][0]["name"] = "\x1b]0;pwned\x07" + "m" * 5000
    d["nodes"][0]["name"] = None
    nan = np.full(9, np.nan, np.float32).tobytes() + _tri_bytes()[36:]  # breaks the mesh: its name is in the message
    d["buffers"][0]["uri"] = _b64(nan)
    with pytest.raises(InvalidAssetError) as info:
        read_gltf(_write(tmp_path, d, "names.gltf"))
    assert str(info.value).isprintable() and len(str(info.value)) < 600


def test_extra_objects_do_not_crash(tmp_path: Path) -> None:
    """Cameras, lights, morph targets, unknown extensions and extra attributes: kept static geometry + notes."""
    d = _doc()
    d["cameras"] = [{"type": "perspective", "perspective": {"yfov": 1.0, "znear": 0.1}}]
    d["extensionsUsed"] = ["KHR_lights_punctual", "EXT_made_up"]
    d["extensions"] = {"KHR_lights_punctual": {"lights": [{"type": "point"}]}}
    prim = d["meshes"][0]["primitives"][0]
    prim["targets"] = [{"POSITION": 0}]
    prim["attributes"]["_CUSTOM"] = 0
    prim["attributes"]["COLOR_1"] = 0
    asset = read_gltf(_write(tmp_path, d, "extra.gltf"))
    assert asset.triangle_count == 1
    text = "\n".join(asset.dropped)
    for word in ("camera", "KHR_lights_punctual light", "EXT_made_up", "morph target", "_CUSTOM", "COLOR_1"):
        assert word in text, text


def test_fuzzed_glb_never_crashes(testdata: Path, tmp_path: Path) -> None:
    """Truncations and random byte flips of a real GLB: a clean InvalidAssetError or a correct load, nothing else."""
    src = (testdata / "gltf" / "BoxVertexColors" / "BoxVertexColors.glb").read_bytes()
    rng = random.Random(1234)
    variants = [src[:n] for n in range(1, len(src), 97)]
    for _ in range(300):
        b = bytearray(src)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        variants.append(bytes(b))
    p = tmp_path / "fuzz.glb"
    outcomes = {"refused": 0, "loaded": 0}
    for v in variants:
        p.write_bytes(v)
        try:
            asset = read_gltf(p)
        except (InvalidAssetError, UnsupportedFormatError) as e:
            assert "fuzz.glb" in str(e)
            outcomes["refused"] += 1
        else:
            assert all(np.isfinite(m.vertices).all() for m in asset.meshes)
            assert all(m.faces.max(initial=-1) < len(m.vertices) for m in asset.meshes)
            outcomes["loaded"] += 1
    assert outcomes["refused"] > 20 and outcomes["loaded"] > 20, outcomes

