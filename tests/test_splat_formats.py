"""Gaussian splat formats: Inria PLY (exact), antimatter15 .splat and spz (within each format's
quantisation), the spz codec against Niantic's reference C++ (built from the alspz sdist), bad
input, and the structural validators.

Tolerances, derived from each format's quantisation (q = quantisation step):
- PLY: float32 stored as is → exact.
- .splat: positions f32 exact; scales stored linear f32 → log within 1e-6; colour and alpha bytes
  rounded → colour within 0.5/255 after the [0,1] clamp, opacity within 0.5/255; rotations bytes
  (q·128+128) → each component within 0.5/128 → angle within 1°.
- spz: positions 24-bit fixed point at 12 fractional bits → |Δ| ≤ 0.5·2⁻¹²; log scale u8 at 1/16 →
  |Δ| ≤ 1/32; opacity u8 → 0.5/255; SH DC u8 at 1/(255·0.15) → 0.5/(255·0.15); SH band 1 at 5 bits
  (bucket 8 of 1/128) → (0.5+4)/128; bands ≥ 2 at 4 bits → (0.5+8)/128; rotations v3 (smallest
  three, 9-bit magnitudes of √½) → angle ≤ 0.25°; v2 (xyz bytes, w derived) → ≤ 15° worst case
  (w near 0 amplifies the byte error), median ≤ 1° (2·√3·(0.5/127.5) rad ≈ 0.78° when w is not small).
"""
from __future__ import annotations

import gzip
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from studio.assets import Asset, GaussianSplats
from studio.assets.io import load, save
from studio.assets.splat_antimatter import decode_splat, encode_splat, read_splat, viewer_order, write_splat
from studio.assets.splat_ply import read_ply_header, read_splat_ply, splat_property_names, write_splat_ply
from studio.assets.spz import decode_spz, encode_spz, read_spz, write_spz
from studio.assets.validate import validate
from studio.errors import InvalidAssetError, NothingToExportError

N = 2000
SH_C0 = 0.28209479177387814


def random_splats(n: int = N, degree: int = 3, seed: int = 0, extent: float = 5.0) -> GaussianSplats:
    rng = np.random.default_rng(seed)
    k = (degree + 1) ** 2
    return GaussianSplats(
        means=rng.uniform(-extent, extent, (n, 3)),
        quats=rng.normal(size=(n, 4)),
        log_scales=rng.uniform(-8, 2, (n, 3)),
        opacity_logits=rng.normal(0, 2, n),
        sh=np.concatenate([rng.uniform(-1.7, 1.7, (n, 1, 3)), rng.uniform(-0.9, 0.9, (n, k - 1, 3))], axis=1),
    )


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    qa = a / np.linalg.norm(a, axis=1, keepdims=True)
    qb = b / np.linalg.norm(b, axis=1, keepdims=True)
    d = np.clip(np.abs((qa.astype(np.float64) * qb).sum(1)), 0, 1)
    return np.degrees(2 * np.arccos(d))


def assert_within_spz(a: GaussianSplats, b: GaussianSplats, version: int = 3) -> None:
    assert np.abs(a.means - b.means).max() <= 0.5 / 4096 + 1e-6
    assert np.abs(a.log_scales - b.log_scales).max() <= 1 / 32 + 1e-6
    assert np.abs(a.opacities - b.opacities).max() <= 0.5 / 255 + 1e-6
    assert np.abs(a.sh[:, 0] - b.sh[:, 0]).max() <= 0.5 / (255 * 0.15) + 1e-5
    if a.sh.shape[1] > 1:
        assert np.abs(a.sh[:, 1:4] - b.sh[:, 1:4]).max() <= 4.5 / 128 + 1e-6
        assert np.abs(a.sh[:, 4:] - b.sh[:, 4:]).max() <= 8.5 / 128 + 1e-6
    ang = angle_deg(a.quats, b.quats)
    if version >= 3:
        assert ang.max() <= 0.25
    else:
        assert ang.max() <= 15.0 and np.median(ang) <= 1.0


def no_new_files(folder: Path, before: set[str]) -> None:
    assert set(os.listdir(folder)) == before


# --------------------------------------------------------------------------------------------- PLY


def test_ply_round_trip_is_exact(tmp_path: Path) -> None:
    s = random_splats()
    save(Asset(splats=s), tmp_path / "a.ply")
    r = load(tmp_path / "a.ply").splats
    assert r is not None and not load(tmp_path / "a.ply").meshes
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        assert np.array_equal(getattr(s, name), getattr(r, name)), name


def test_ply_header_and_row_follow_inria_layout(tmp_path: Path) -> None:
    s = random_splats(n=3, degree=3)
    write_splat_ply(s, tmp_path / "a.ply")
    data = (tmp_path / "a.ply").read_bytes()
    head, body = data.split(b"end_header\n", 1)
    lines = head.decode().splitlines()
    assert lines[:3] == ["ply", "format binary_little_endian 1.0", "element vertex 3"]
    names = [ln.split()[2] for ln in lines[3:]]
    assert all(ln.startswith("property float ") for ln in lines[3:])
    rest = [f"f_rest_{i}" for i in range(45)]
    assert names == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", *rest,
                     "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]  # fmt: skip
    rows = np.frombuffer(body, "<f4").reshape(3, 62)
    i = 1
    col = {n: rows[i, j] for j, n in enumerate(names)}
    assert (col["x"], col["y"], col["z"]) == tuple(s.means[i])
    assert (col["nx"], col["ny"], col["nz"]) == (0, 0, 0)
    assert col["rot_0"] == s.quats[i, 0] and col["rot_3"] == s.quats[i, 3]  # w first
    assert col["opacity"] == s.opacity_logits[i] and col["scale_2"] == s.log_scales[i, 2]
    # f_rest is channel-major: all 15 red coefficients, then green, then blue.
    for c in range(3):
        for j in range(15):
            assert col[f"f_rest_{c * 15 + j}"] == s.sh[i, 1 + j, c]


def test_ply_reads_ascii_big_endian_extra_properties_and_elements(tmp_path: Path) -> None:
    s = random_splats(n=50, degree=1, seed=3)
    names = splat_property_names(1)
    rows = np.concatenate([s.means, np.zeros((50, 3)), s.sh[:, 0], s.sh[:, 1:].transpose(0, 2, 1).reshape(50, 9),
                           s.opacity_logits[:, None], s.log_scales, s.quats], axis=1).astype(np.float32)  # fmt: skip
    # ascii, properties shuffled, an extra uchar property and an extra element after the vertices
    perm = np.random.default_rng(0).permutation(len(names))
    head = "ply\r\nformat ascii 1.0\r\ncomment from a test\r\nelement vertex 50\r\n"
    head += "".join(f"property float {names[p]}\r\n" for p in perm) + "property uchar flag\r\n"
    head += "element camera 1\r\nproperty float fx\r\nend_header\r\n"
    body = "".join(" ".join(repr(float(v)) for v in r[perm]) + " 7\n" for r in rows) + "500.5\n"
    (tmp_path / "a.ply").write_text(head + body)
    r = read_splat_ply(tmp_path / "a.ply")
    assert np.array_equal(r.sh, s.sh) and np.array_equal(r.quats, s.quats) and np.array_equal(r.means, s.means)
    # binary big endian, a fixed-size element before the vertices, a double property
    head = ("ply\nformat binary_big_endian 1.0\nelement info 2\nproperty int a\nelement vertex 50\n"
            + "".join(f"property float {n}\n" for n in names) + "property double extra\nend_header\n").encode()  # fmt: skip
    rec = np.zeros(50, [(n, ">f4") for n in names] + [("extra", ">f8")])
    for j, n in enumerate(names):
        rec[n] = rows[:, j]
    (tmp_path / "b.ply").write_bytes(head + np.arange(2, dtype=">i4").tobytes() + rec.tobytes())
    r = read_splat_ply(tmp_path / "b.ply")
    assert np.array_equal(r.sh, s.sh) and np.array_equal(r.log_scales, s.log_scales)
    assert read_ply_header(tmp_path / "b.ply").is_splat()


# --------------------------------------------------------------------------------------------- .splat


def test_splat_round_trip_within_byte_quantisation(tmp_path: Path) -> None:
    s = random_splats(degree=0)
    write_splat(Asset(splats=s), tmp_path / "a.splat")
    assert (tmp_path / "a.splat").stat().st_size == 32 * N
    r = read_splat(tmp_path / "a.splat").splats
    assert r is not None and r.sh_degree == 0
    o = s.subset(viewer_order(s))  # the writer sorts
    assert np.array_equal(r.means, o.means)
    assert np.abs(r.log_scales - o.log_scales).max() <= 1e-6
    assert np.abs(r.colors - o.colors).max() <= 0.5 / 255 + 1e-6
    assert np.abs(r.opacities - o.opacities).max() <= 0.5 / 255 + 1e-6
    assert angle_deg(r.quats, o.quats).max() <= 1.0
    # higher SH bands are dropped, the DC colour kept
    r3 = decode_splat(encode_splat(random_splats(degree=3), sort=False))
    assert np.abs(r3.colors - random_splats(degree=3).colors).max() <= 0.5 / 255 + 1e-6


def test_splat_record_layout_and_viewer_order() -> None:
    s = GaussianSplats(
        means=[[1, 2, 3], [4, 5, 6]],
        quats=[[2, 0, 0, 0], [0, 0, 0, -1]],
        log_scales=[np.log([0.1, 0.2, 0.3]), np.log([1.0, 1.0, 1.0])],
        opacity_logits=[0.0, 10.0],
        sh=np.array([[[(1.0 - 0.5) / SH_C0, -5.0, 0.0]], [[0.0, 0.0, 0.0]]]),
    )
    data = encode_splat(s)
    assert len(data) == 64
    # splat 1 is bigger and more opaque → first (descending exp(Σ log s)·opacity)
    pos, scale = np.frombuffer(data[:24], "<f4")[:3], np.frombuffer(data[:24], "<f4")[3:]
    assert pos.tolist() == [4, 5, 6] and np.allclose(scale, 1)
    assert list(data[24:28]) == [128, 128, 128, 255]  # colour 0.5 grey, opacity ≈ 1
    assert list(data[28:32]) == [128, 128, 128, 0]  # (0,0,0,-1)·128+128
    assert list(data[56:60]) == [255, 0, 128, 128]  # colour clamps to [0,1]; opacity 0.5
    assert list(data[60:64]) == [255, 128, 128, 128]  # w = 1 → 256 clamps to 255
    assert np.allclose(np.frombuffer(data[32:56], "<f4"), [1, 2, 3, 0.1, 0.2, 0.3])


# --------------------------------------------------------------------------------------------- spz


@pytest.mark.parametrize("version", [2, 3, 4])
def test_spz_round_trip_within_quantisation(tmp_path: Path, version: int) -> None:
    s = random_splats()
    write_spz(Asset(splats=s), tmp_path / "a.spz", version=version)
    a = read_spz(tmp_path / "a.spz")
    assert a.metadata.extras["spz_version"] == version and a.splats is not None and a.splats.sh_degree == 3
    assert_within_spz(a.splats, s, version)


def test_spz_header_fields(tmp_path: Path) -> None:
    s = random_splats(n=10, degree=2)
    save(Asset(splats=s), tmp_path / "a.spz")
    raw = gzip.decompress((tmp_path / "a.spz").read_bytes())
    magic, version, n, deg, fb, flags, reserved = struct.unpack_from("<IIIBBBB", raw)
    assert (magic, version, n, deg, fb, flags, reserved) == (0x5053474E, 3, 10, 2, 12, 0, 0)
    assert raw[:4] == b"NGSP"
    # positions 9 + alpha 1 + colour 3 + scale 3 + rotation 4 + sh 8·3 bytes per point
    assert len(raw) == 16 + 10 * (9 + 1 + 3 + 3 + 4 + 24)


def test_spz_far_coordinates_use_fewer_fractional_bits() -> None:
    s = random_splats(n=100, degree=0, extent=5000.0)
    r, info = decode_spz(encode_spz(s))
    assert info.fractional_bits == 10  # 5000·2¹⁰ < 2²³ ≤ 5000·2¹¹
    assert np.abs(r.means - s.means).max() <= 0.5 / 1024


def test_formats_chain_ply_spz_splat(tmp_path: Path) -> None:
    s = random_splats(degree=3)
    write_splat_ply(s, tmp_path / "a.ply")
    save(load(tmp_path / "a.ply"), tmp_path / "b.spz")
    save(load(tmp_path / "b.spz"), tmp_path / "c.ply")
    c = read_splat_ply(tmp_path / "c.ply")
    assert_within_spz(c, s)
    # spz → .splat → spz: the .splat bytes decode to the spz values within .splat's quantisation
    save(load(tmp_path / "b.spz"), tmp_path / "d.splat")
    d = load(tmp_path / "d.splat").splats
    b = load(tmp_path / "b.spz").splats.with_sh_degree(0)
    b = b.subset(viewer_order(b))
    assert np.array_equal(d.means, b.means)
    assert np.abs(d.colors - b.colors).max() <= 0.5 / 255 + 1e-6
    save(load(tmp_path / "d.splat"), tmp_path / "e.spz")
    e = load(tmp_path / "e.spz").splats
    assert_within_spz(e, d)


# --------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("suffix", [".ply", ".splat", ".spz"])
def test_writers_refuse_an_asset_without_splats(tmp_path: Path, suffix: str) -> None:
    with pytest.raises(NothingToExportError, match="splats"):
        save(Asset(), tmp_path / f"a{suffix}")
    empty = GaussianSplats(np.zeros((0, 3)), np.zeros((0, 4)), np.zeros((0, 3)), np.zeros(0), np.zeros((0, 1, 3)))
    with pytest.raises(NothingToExportError):
        save(Asset(splats=empty), tmp_path / f"a{suffix}")
    assert os.listdir(tmp_path) == []


def _bad_inputs(tmp: Path) -> dict[str, bytes]:
    s = random_splats(n=20, degree=1)
    write_splat_ply(s, tmp / "ok.ply")
    ply = (tmp / "ok.ply").read_bytes()
    splat = encode_splat(s)
    spz = encode_spz(s)
    raw = gzip.decompress(spz)
    nan = bytearray(ply)
    struct.pack_into("<f", nan, ply.index(b"end_header\n") + 11 + 4, float("nan"))
    out = {
        "empty.ply": b"",
        "empty.splat": b"",
        "empty.spz": b"",
        "truncated.ply": ply[:-100],
        "overlong.ply": ply + b"\0" * 248,
        "count.ply": ply.replace(b"element vertex 20", b"element vertex 21"),
        "nan.ply": bytes(nan),
        "garbage.ply": b"hello, this is not a PLY file\n" * 20,
        "noend.ply": b"ply\nformat binary_little_endian 1.0\nelement vertex 3\n",
        "badformat.ply": b"ply\nformat binary_middle_endian 1.0\nelement vertex 1\nproperty float x\nend_header\n",
        "truncated.splat": splat[:-5],
        "nan.splat": struct.pack("<3f", float("nan"), 0, 0) + splat[12:],
        "truncated.spz": spz[: len(spz) // 2],
        "garbage.spz": os.urandom(500),
        "badmagic.spz": gzip.compress(b"XXXX" + raw[4:]),
        "badversion.spz": gzip.compress(raw[:4] + struct.pack("<I", 9) + raw[8:]),
        "toomany.spz": gzip.compress(raw[:8] + struct.pack("<I", 2**31 - 1) + raw[12:]),
        "shortpayload.spz": gzip.compress(raw[:-10]),
        "longpayload.spz": gzip.compress(raw + b"\0" * 10),
        "v4truncated.spz": encode_spz(s, version=4)[:-7],
    }
    (tmp / "ok.ply").unlink()
    return out


def test_bad_splat_files_raise_invalid_asset_error(tmp_path: Path) -> None:
    cases = _bad_inputs(tmp_path)
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    before = set(os.listdir(tmp_path))
    for name in cases:
        with pytest.raises(InvalidAssetError) as e:
            load(tmp_path / name)
        assert name in str(e.value), (name, str(e.value))
        rep = validate(tmp_path / name)
        assert rep.errors >= 1 and not rep.ok and rep.tool == "studio-structural", name
    no_new_files(tmp_path, before)


# --------------------------------------------------------------------------------------------- validators


def test_validators_pass_good_files_and_flag_bad_values(tmp_path: Path) -> None:
    s = random_splats(n=200)
    for suffix in (".ply", ".splat", ".spz"):
        save(Asset(splats=s), tmp_path / f"a{suffix}")
        rep = validate(tmp_path / f"a{suffix}")
        assert rep.ok and rep.errors == 0 and rep.warnings == 0 and rep.tool == "studio-structural", str(rep)
    q = s.quats.copy()
    q[:3] = 0
    ls = s.log_scales.copy()
    ls[5] = 20.0  # e²⁰ m
    bad = GaussianSplats(s.means, q, ls, s.opacity_logits, s.sh)
    write_splat_ply(bad, tmp_path / "bad.ply")
    rep = validate(tmp_path / "bad.ply")
    assert rep.codes("error") == {"ZERO_QUATERNION": 1} and rep.errors == 1
    assert rep.codes("warning") == {"SCALE_HUGE": 1}
    data = bytearray(encode_splat(s, sort=False))  # our writer never stores a zero quaternion: patch 3
    for i in range(3):
        data[32 * i + 28 : 32 * i + 32] = b"\x80\x80\x80\x80"  # (q·128+128) for q = 0
    (tmp_path / "bad.splat").write_bytes(bytes(data))
    rep = validate(tmp_path / "bad.splat")
    assert rep.codes("error") == {"ZERO_QUATERNION": 1}
    assert any(m.code == "ZERO_QUATERNION" and m.message.startswith("3 Gaussians") for m in rep.messages)


# --------------------------------------------------------------------------------------------- reference


REF_MAIN = r"""
// Test CLI around Niantic's spz reference. dump <in.spz> <out.bin> | save <in.bin> <out.spz> <version>
// Dump: int32 numPoints, shDegree, antialiased; float32 positions(N*3) scales(N*3) rotations(N*4, xyzw)
// alphas(N) colors(N*3) sh(N*dim*3). No coordinate conversion on either side.
#include "load-spz.h"
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>
using namespace spz;
static void wv(std::ofstream &o, const std::vector<float> &v) { o.write((const char *)v.data(), v.size() * 4); }
static void rv(std::ifstream &i, std::vector<float> &v, size_t n) { v.resize(n); i.read((char *)v.data(), n * 4); }
int main(int argc, char **argv) {
  if (argc >= 4 && !strcmp(argv[1], "dump")) {
    GaussianCloud g = loadSpz(std::string(argv[2]), UnpackOptions());
    if (g.numPoints == 0) return 2;
    std::ofstream o(argv[3], std::ios::binary);
    int32_t h[3] = {g.numPoints, g.shDegree, g.antialiased ? 1 : 0};
    o.write((const char *)h, 12);
    wv(o, g.positions); wv(o, g.scales); wv(o, g.rotations); wv(o, g.alphas); wv(o, g.colors); wv(o, g.sh);
    return o.good() ? 0 : 3;
  }
  if (argc >= 5 && !strcmp(argv[1], "save")) {
    std::ifstream i(argv[2], std::ios::binary);
    int32_t h[3];
    i.read((char *)h, 12);
    GaussianCloud g;
    g.numPoints = h[0]; g.shDegree = h[1]; g.antialiased = h[2] != 0;
    size_t n = h[0], dim = (h[1] + 1) * (h[1] + 1) - 1;
    rv(i, g.positions, n * 3); rv(i, g.scales, n * 3); rv(i, g.rotations, n * 4);
    rv(i, g.alphas, n); rv(i, g.colors, n * 3); rv(i, g.sh, n * dim * 3);
    if (!i.good()) return 4;
    PackOptions po;
    po.version = (uint32_t)atoi(argv[4]);
    return saveSpz(g, po, std::string(argv[3])) ? 0 : 5;
  }
  return 1;
}
"""

# The reference includes <zstd.h>; Debian's libzstd1 ships the library but not the header, so the
# fixture declares the few stable-ABI calls it uses and links libzstd.so.1 directly.
ZSTD_DECLS = r"""
#pragma once
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif
typedef struct ZSTD_CCtx_s ZSTD_CCtx;
typedef enum { ZSTD_c_compressionLevel = 100 } ZSTD_cParameter;
size_t ZSTD_compressBound(size_t srcSize);
ZSTD_CCtx* ZSTD_createCCtx(void);
size_t ZSTD_freeCCtx(ZSTD_CCtx* cctx);
size_t ZSTD_CCtx_setParameter(ZSTD_CCtx* cctx, ZSTD_cParameter param, int value);
size_t ZSTD_compress2(ZSTD_CCtx* cctx, void* dst, size_t dstCapacity, const void* src, size_t srcSize);
size_t ZSTD_decompress(void* dst, size_t dstCapacity, const void* src, size_t compressedSize);
unsigned ZSTD_isError(size_t code);
#ifdef __cplusplus
}
#endif
"""


def _libzstd() -> str | None:
    import ctypes.util

    for cand in ("/usr/lib/x86_64-linux-gnu/libzstd.so.1", "/lib/x86_64-linux-gnu/libzstd.so.1",
                 "/usr/lib/aarch64-linux-gnu/libzstd.so.1", "/usr/lib/libzstd.so.1"):  # fmt: skip
        if Path(cand).exists():
            return cand
    name = ctypes.util.find_library("zstd")
    return name and (f"-l{name[3:].split('.so')[0]}" if name.startswith("lib") else name)


@pytest.fixture(scope="session")
def spz_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Niantic's spz reference loader, compiled from the alspz 0.2.0 sdist (fetched with pip at test
    time, never committed), wrapped in a small dump/save CLI. Cached under ~/.cache/studio-tests."""
    cache = Path(os.environ.get("STUDIO_TEST_CACHE", Path.home() / ".cache" / "studio-tests")) / "spzref-alspz-0.2.0"
    exe = cache / "spzref"
    if exe.exists():
        return exe
    cxx = shutil.which("g++") or shutil.which("c++")
    zstd = _libzstd()
    if cxx is None or zstd is None:
        pytest.skip("no C++ compiler or libzstd to build the spz reference")
    work = tmp_path_factory.mktemp("spzref")
    env = dict(os.environ)
    try:
        import scikit_build_core  # noqa: F401  (the sdist's build backend: needed to read its metadata)
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(work / "skb"), "scikit-build-core"],
                       check=False, capture_output=True, timeout=120)  # fmt: skip
        env["PYTHONPATH"] = str(work / "skb") + os.pathsep + env.get("PYTHONPATH", "")
    dl = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
         "alspz==0.2.0", "-d", str(work)],
        capture_output=True, text=True, timeout=180, env=env,
    )  # fmt: skip
    sdists = list(work.glob("alspz-0.2.0.tar.gz"))
    if dl.returncode != 0 or not sdists:
        pytest.skip(f"cannot fetch the alspz sdist from PyPI (offline?): {dl.stderr.strip()[-300:]}")
    shutil.unpack_archive(sdists[0], work)
    src = work / "alspz-0.2.0" / "extern" / "spz" / "src" / "cc"
    (work / "inc").mkdir()
    (work / "inc" / "zstd.h").write_text(ZSTD_DECLS)
    (work / "main.cc").write_text(REF_MAIN)
    cache.mkdir(parents=True, exist_ok=True)
    tmp_exe = cache / f"spzref.{os.getpid()}"
    cmd = [cxx, "-O1", "-std=c++17", f"-I{work / 'inc'}", f"-I{src}", str(work / "main.cc"), str(src / "load-spz.cc"),
           str(src / "splat-types.cc"), "-o", str(tmp_exe), "-lz", zstd, "-lpthread"]  # fmt: skip
    build = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, f"the spz reference did not compile:\n{build.stderr[-2000:]}"
    os.replace(tmp_exe, exe)
    return exe


def _ref_dump(exe: Path, spz: Path, tmp: Path) -> tuple[int, int, dict[str, np.ndarray]]:
    subprocess.run([str(exe), "dump", str(spz), str(tmp / "dump.bin")], check=True, capture_output=True, timeout=60)
    b = (tmp / "dump.bin").read_bytes()
    n, deg, aa = struct.unpack_from("<iii", b)
    a = np.frombuffer(b, "<f4", offset=12)
    out, o = {}, 0
    for k, m in (("pos", 3), ("scale", 3), ("rot", 4), ("alpha", 1), ("color", 3), ("sh", ((deg + 1) ** 2 - 1) * 3)):
        out[k] = a[o : o + n * m].reshape(n, m)
        o += n * m
    assert o == len(a)
    return deg, aa, out


@pytest.mark.parametrize("version", [2, 3, 4])
def test_reference_reads_our_spz(spz_reference: Path, tmp_path: Path, version: int) -> None:
    s = random_splats()
    write_spz(Asset(splats=s), tmp_path / "x.spz", version=version)
    ours = load(tmp_path / "x.spz").splats
    deg, aa, ref = _ref_dump(spz_reference, tmp_path / "x.spz", tmp_path)
    assert deg == 3 and aa == 0
    # The reference decodes our bytes to the values our reader gives (float32 rounding aside)…
    assert np.array_equal(ref["pos"], ours.means)
    assert np.array_equal(ref["scale"], ours.log_scales)
    assert np.abs(ref["rot"] - ours.quats[:, [1, 2, 3, 0]]).max() <= 2e-5
    # alpha bytes 0 and 255 decode to ∓inf logits in the reference, to opacity 1e-4 / 1−1e-4 in ours
    ref_opacity = 1.0 / (1.0 + np.exp(-ref["alpha"][:, 0].astype(np.float64)))
    assert np.abs(ref_opacity - ours.opacities).max() <= 1e-4 + 1e-6
    assert np.abs(ref["color"] - ours.sh[:, 0]).max() <= 1e-5
    assert np.array_equal(ref["sh"], ours.sh[:, 1:].reshape(N, -1))
    # …which are within the format's quantisation of what we wrote.
    ref_splats = GaussianSplats(ref["pos"], ref["rot"][:, [3, 0, 1, 2]], ref["scale"], ref["alpha"][:, 0],
                                np.concatenate([ref["color"][:, None], ref["sh"].reshape(N, 15, 3)], axis=1))  # fmt: skip
    assert_within_spz(ref_splats, s, version)


@pytest.mark.parametrize("version", [2, 3, 4])
def test_we_read_reference_spz(spz_reference: Path, tmp_path: Path, version: int) -> None:
    s = random_splats(seed=5)
    q = s.normalized_quats()[:, [1, 2, 3, 0]]
    with open(tmp_path / "in.bin", "wb") as f:
        f.write(struct.pack("<iii", N, 3, 1))
        for a in (s.means, s.log_scales, q, s.opacity_logits, s.sh[:, 0], s.sh[:, 1:].reshape(N, -1)):
            f.write(np.ascontiguousarray(a, "<f4").tobytes())
    subprocess.run([str(spz_reference), "save", str(tmp_path / "in.bin"), str(tmp_path / "ref.spz"), str(version)],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    a = load(tmp_path / "ref.spz")
    assert a.metadata.extras == {"spz_antialiased": True, "spz_version": version}
    assert_within_spz(a.splats, s, version)
    ours = encode_spz(s, version=version, antialiased=True)
    ref = (tmp_path / "ref.spz").read_bytes()
    if version < 4:  # the packed payload is byte-identical to the reference's
        assert gzip.decompress(ours) == gzip.decompress(ref)
    else:  # same streams (zstd frames may differ by library version)
        r, m = decode_spz(ref)[0], decode_spz(ours)[0]
        for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
            assert np.array_equal(getattr(r, name), getattr(m, name)), name
