"""spz: Niantic's compressed Gaussian splat format, written from the reference loader's definition.

Source of truth: nianticlabs/spz `src/cc/load-spz.cc`, `splat-utils.h` (as carried by the
`alspz` 0.2.0 sdist in `extern/spz`). Two containers exist:

- v1–v3 (gzip): one gzip stream holding a 16-byte header
  `<u32 magic 0x5053474e "NGSP", u32 version, u32 numPoints, u8 shDegree, u8 fractionalBits,
  u8 flags (1 = antialiased, 2 = has extensions), u8 reserved>` followed by the attribute blocks
  positions | alphas | colors | scales | rotations | sh (non-interleaved, per-point rows inside).
- v4: uncompressed 32-byte header `<magic, version, numPoints, shDegree, fractionalBits, flags,
  u8 numStreams, u32 tocByteOffset, 12 reserved>`, optional extension bytes, a table of
  `numStreams × (u64 compressedSize, u64 uncompressedSize)` at tocByteOffset, then one zstd
  frame per non-empty attribute block, same order as above.

Attribute encodings (decode shown; encode is the rounding inverse):
- positions: 3 × 24-bit signed little-endian fixed point, value = int / 2^fractionalBits
  (v1: 3 × float16). Our writer uses 12 fractional bits (≈0.24 mm) like the reference and
  fewer only when a coordinate would overflow ±2^23 units.
- alphas: u8, opacity = a/255 (logit taken on read; 0 and 255 are clamped to 1e-4 / 1−1e-4).
- colors: u8, sh_dc = (c/255 − 0.5) / 0.15 (the reference's `colorScale`, not SH_C0).
- scales: u8, log scale = s/16 − 10.
- rotations: v2: 3 × u8 xyz of the unit quaternion with w ≥ 0, xyz = r/127.5 − 1, w derived;
  v3+: "smallest three" in one little-endian u32: top 2 bits = index of the largest |component|
  (x,y,z,w order), then three 10-bit fields (sign bit + 9-bit magnitude · √½/511) for the other
  components, highest index in the lowest bits; the largest is derived and positive.
- sh: u8 per coefficient, (N, K−1, 3) row-major (coefficient-major, channel fastest) — the same
  layout as our `sh[:, 1:]`; value = (q − 128)/128. Writers quantise band 1 to 5 bits and
  bands ≥ 2 to 4 bits by default (bucket centres), like the reference's PackOptions.

Coordinates: spz stores RUB (x right, y up, z back — three.js/glTF axes); the reference converts
to and from other systems only on request (PLY files are assumed RDF by its PLY tools). The
studio's asset frame is +Y up, right-handed with glTF's axes, which *is* RUB, so read_spz and
write_spz apply no conversion: a viewer that loads spz as RUB (the reference's default with
`to=RUB`, three.js-based viewers) sees the asset upright.

Writer: version 3 by default (gzip container, smallest-three quaternions — the newest version the
deployed gzip-only loaders read); version=2 and version=4 (zstd, needs `backports.zstd` on
Python < 3.14) are available.
"""
from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio.errors import InvalidAssetError, NothingToExportError, ToolUnavailableError

from .asset import Asset, AssetMetadata
from .atomic import write_bytes_atomic
from .splat_ply import check_splats_finite
from .splats import GaussianSplats

MAGIC = 0x5053474E  # "NGSP" little-endian
LATEST_VERSION = 4
COLOR_SCALE = np.float32(0.15)
SQRT1_2 = np.float32(0.707106781186547524401)
FLAG_ANTIALIASED = 0x1
FLAG_HAS_EXTENSIONS = 0x2
LEGACY_HEADER = struct.Struct("<IIIBBBB")  # 16 bytes
NGSP_HEADER = struct.Struct("<IIIBBBBI12x")  # 32 bytes
OPACITY_EPS = 1e-4
DEFAULT_FRACTIONAL_BITS = 12
MAX_POINTS = 2**31 - 1
MAX_EXTENSION_BYTES = 1 << 24
# For a header's numPoints against the file size (as the reference): a packed point needs ≥ 9 bytes
# and zstd/gzip will not compress these streams by more than 1024×.
MAX_COMPRESSION_RATIO = 1024
MIN_BYTES_PER_POINT = 9
_ORDER = ("positions", "alphas", "colors", "scales", "rotations", "sh")


@dataclass(frozen=True)
class SpzInfo:
    """Header fields of an spz file."""

    version: int
    num_points: int
    sh_degree: int
    fractional_bits: int
    antialiased: bool
    has_extensions: bool


def _zstd():
    try:
        from compression import zstd  # Python ≥ 3.14
    except ImportError:
        try:
            from backports import zstd  # type: ignore[no-redef]
        except ImportError:
            raise ToolUnavailableError(
                "spz version 4 is zstd-compressed; install 'backports.zstd' (pip install backports.zstd) to read or write it"
            ) from None
    return zstd


def _dim(degree: int) -> int:
    return (degree + 1) ** 2 - 1


def _round_away(x: np.ndarray) -> np.ndarray:
    """C's std::round: halves away from zero (numpy rounds halves to even)."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(_round_away(x), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Packing


def _pack_rotations_smallest_three(q_xyzw: np.ndarray) -> np.ndarray:
    """(N,4) unit quaternions xyzw → (N,4) u8 (little-endian u32 per point)."""
    q = q_xyzw.astype(np.float32)
    n = len(q)
    largest = np.argmax(np.abs(q), axis=1)  # first index wins ties, as the reference's strict '>'
    negate = q[np.arange(n), largest] < 0
    comp = largest.astype(np.uint32)
    for i in range(4):
        use = largest != i
        negbit = ((q[:, i] < 0) ^ negate).astype(np.uint32)
        mag = (np.float32(511.0) * (np.abs(q[:, i]) / SQRT1_2) + np.float32(0.5)).astype(np.uint32)
        mag = np.minimum(mag, 511)
        comp = np.where(use, (comp << np.uint32(10)) | (negbit << np.uint32(9)) | mag, comp)
    return comp.astype("<u4").view(np.uint8).reshape(n, 4)


def _unpack_rotations_smallest_three(r: np.ndarray) -> np.ndarray:
    """(N,4) u8 → (N,4) float32 xyzw."""
    comp = np.ascontiguousarray(r).view("<u4").reshape(-1).astype(np.uint32)
    n = len(comp)
    largest = (comp >> np.uint32(30)).astype(np.intp)
    # Non-largest indices in descending order; slot j holds bits [10j, 10j+10).
    table = np.array([[3, 2, 1], [3, 2, 0], [3, 1, 0], [2, 1, 0]])[largest]
    out = np.zeros((n, 4), np.float32)
    rows = np.arange(n)
    for j in range(3):
        field = (comp >> np.uint32(10 * j)) & np.uint32(0x3FF)
        mag = (field & np.uint32(0x1FF)).astype(np.float32)
        val = SQRT1_2 * mag / np.float32(511.0)
        val = np.where((field >> np.uint32(9)) & np.uint32(1), -val, val)
        out[rows, table[:, j]] = val
    out[rows, largest] = np.sqrt(np.maximum(np.float32(0.0), np.float32(1.0) - (out**2).sum(1)))
    return out


def _pack_rotations_first_three(q_xyzw: np.ndarray) -> np.ndarray:
    q = q_xyzw.astype(np.float32)
    q = q * np.where(q[:, 3:] < 0, np.float32(-127.5), np.float32(127.5)) + np.float32(127.5)
    return _to_u8(q[:, :3])


def _unpack_rotations_first_three(r: np.ndarray) -> np.ndarray:
    xyz = r.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    w = np.sqrt(np.maximum(np.float32(0.0), np.float32(1.0) - (xyz**2).sum(1)))
    return np.concatenate([xyz, w[:, None]], axis=1)


def _quantize_sh(x: np.ndarray, bits: int) -> np.ndarray:
    """The reference's quantizeSH: q = round(x·128) + 128 (halves away from zero), snapped to the
    centre of a 2^(8−bits) bucket, clamped to 0..255. In-place float32 work (C's truncating integer
    division equals floor here: negative sums clamp to 0 either way)."""
    bucket = float(1 << (8 - bits))
    y = np.multiply(x, np.float32(128.0), dtype=np.float32)
    a = np.abs(y)
    a += np.float32(0.5)
    np.floor(a, out=a)
    np.copysign(a, y, out=a)
    a += np.float32(128.0 + bucket // 2)
    np.floor_divide(a, np.float32(bucket), out=a)
    a *= np.float32(bucket)
    np.clip(a, 0, 255, out=a)
    return a.astype(np.uint8)


def choose_fractional_bits(means: np.ndarray) -> int:
    """12 (the reference's choice, ≈0.24 mm) unless the largest |coordinate| needs fewer to fit 24 bits."""
    m = float(np.abs(means).max()) if len(means) else 0.0
    fb = DEFAULT_FRACTIONAL_BITS
    while fb > 0 and m * (1 << fb) > 2**23 - 1:
        fb -= 1
    return fb


def pack_blocks(
    s: GaussianSplats, version: int, fractional_bits: int, sh1_bits: int = 5, sh_rest_bits: int = 4
) -> dict[str, bytes]:
    """The six attribute blocks (positions, alphas, colors, scales, rotations, sh) as bytes."""
    n = len(s)
    fixed = _round_away(s.means.astype(np.float32) * np.float32(1 << fractional_bits)).astype(np.int64)
    if np.abs(fixed).max(initial=0) > 2**23 - 1:
        raise InvalidAssetError(None, f"splat positions exceed spz's 24-bit range at {fractional_bits} fractional bits")
    fixed = fixed.astype(np.int32).reshape(-1)
    pos = np.stack([fixed & 0xFF, (fixed >> 8) & 0xFF, (fixed >> 16) & 0xFF], axis=1).astype(np.uint8)
    alphas = _to_u8(s.opacities.astype(np.float32) * np.float32(255.0))
    colors = _to_u8(s.sh[:, 0] * (COLOR_SCALE * np.float32(255.0)) + np.float32(0.5 * 255.0))
    scales = _to_u8((s.log_scales + np.float32(10.0)) * np.float32(16.0))
    q = s.quats.astype(np.float32)
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.where(norm > 0, q / np.where(norm > 0, norm, 1), np.array([1, 0, 0, 0], np.float32))
    q_xyzw = q[:, [1, 2, 3, 0]]
    rot = _pack_rotations_smallest_three(q_xyzw) if version >= 3 else _pack_rotations_first_three(q_xyzw)
    rest = s.sh[:, 1:]  # (N, K-1, 3)
    sh = np.empty(rest.shape, np.uint8)
    if rest.shape[1]:
        sh[:, :3] = _quantize_sh(rest[:, :3], sh1_bits)
        sh[:, 3:] = _quantize_sh(rest[:, 3:], sh_rest_bits)
    blocks = dict(positions=pos, alphas=alphas, colors=colors, scales=scales, rotations=rot, sh=sh)
    assert len(pos) == 3 * n
    return {k: np.ascontiguousarray(v).tobytes() for k, v in blocks.items()}


def encode_spz(
    splats: GaussianSplats,
    version: int = 3,
    antialiased: bool = False,
    fractional_bits: int | None = None,
    sh1_bits: int = 5,
    sh_rest_bits: int = 4,
    compresslevel: int = 6,
) -> bytes:
    """spz bytes for `splats` (version 2, 3 or 4; see the module docstring for the layout).

    compresslevel: gzip level for v2/v3 (6 = zlib's default, as the reference; 1 is ~3× faster
    and ~10% larger on typical scenes). v4 uses zstd level 12, as the reference.
    """
    if version not in (2, 3, 4):
        raise ValueError(f"spz version must be 2, 3 or 4, got {version}")
    if not (1 <= sh1_bits <= 8 and 1 <= sh_rest_bits <= 8):
        raise ValueError("SH quantisation bits must be in 1..8")
    if len(splats) > MAX_POINTS:
        raise ValueError("too many splats for spz (u32 count, int32 in the reference)")
    fb = choose_fractional_bits(splats.means) if fractional_bits is None else int(fractional_bits)
    blocks = pack_blocks(splats, version, fb, sh1_bits, sh_rest_bits)
    flags = FLAG_ANTIALIASED if antialiased else 0
    if version < 4:
        head = LEGACY_HEADER.pack(MAGIC, version, len(splats), splats.sh_degree, fb, flags, 0)
        raw = head + b"".join(blocks[k] for k in _ORDER)
        return gzip.compress(raw, compresslevel=compresslevel, mtime=0)
    zstd = _zstd()
    chunks = [(zstd.compress(blocks[k], level=12), len(blocks[k])) for k in _ORDER if len(blocks[k])]
    toc = b"".join(struct.pack("<QQ", len(c), u) for c, u in chunks)
    head = NGSP_HEADER.pack(MAGIC, 4, len(splats), splats.sh_degree, fb, flags, len(chunks), NGSP_HEADER.size)
    return head + toc + b"".join(c for c, _ in chunks)


# ---------------------------------------------------------------------------------------------
# Unpacking


def _block_sizes(n: int, degree: int, version: int) -> dict[str, int]:
    return dict(
        positions=n * 3 * (2 if version == 1 else 3),
        alphas=n,
        colors=n * 3,
        scales=n * 3,
        rotations=n * (4 if version >= 3 else 3),
        sh=n * _dim(degree) * 3,
    )


def _check_header(path: Path | None, version: int, n: int, degree: int, size: int, lo: int, hi: int) -> None:
    if not lo <= version <= hi:
        raise InvalidAssetError(path, f"spz version {version} is not supported (this container holds versions {lo}–{hi})")
    if n == 0:
        raise InvalidAssetError(path, "spz file holds 0 Gaussians")
    if n > MAX_POINTS or n > size * MAX_COMPRESSION_RATIO // MIN_BYTES_PER_POINT:
        raise InvalidAssetError(path, f"spz header claims {n} Gaussians, impossible for a {size}-byte file")
    if degree > 4:
        raise InvalidAssetError(path, f"spz SH degree {degree} is not supported (0..4)")


def _gunzip_bounded(path: Path | None, data: bytes) -> bytes:
    """Decompress a gzip spz, never producing more than the header says the payload holds."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    tail = data

    def pull(limit: int) -> None:
        nonlocal tail
        while len(out) < limit and tail and not d.eof:
            part = d.decompress(tail, limit - len(out))
            stuck = not part and d.unconsumed_tail == tail
            tail = d.unconsumed_tail
            out.extend(part)
            if stuck:
                break

    try:
        pull(LEGACY_HEADER.size)
        if len(out) < LEGACY_HEADER.size:
            raise InvalidAssetError(path, "spz gzip stream ends before the 16-byte header")
        magic, version, n, degree, fb, flags, _ = LEGACY_HEADER.unpack_from(out)
        if magic != MAGIC:
            raise InvalidAssetError(path, f"spz header magic is {magic:#010x}, expected {MAGIC:#010x} ('NGSP')")
        _check_header(path, version, n, degree, len(data), 1, 3)
        need = sum(_block_sizes(n, degree, version).values())
        pull(LEGACY_HEADER.size + need + (MAX_EXTENSION_BYTES if flags & FLAG_HAS_EXTENSIONS else 1))
    except zlib.error as e:
        raise InvalidAssetError(path, f"spz gzip stream is corrupt: {e}") from None
    if len(out) - LEGACY_HEADER.size < need:
        raise InvalidAssetError(
            path,
            f"spz data truncated: {n} Gaussians need {need} bytes after the header, stream holds {len(out) - LEGACY_HEADER.size}",
        )
    if len(out) > LEGACY_HEADER.size + need and not flags & FLAG_HAS_EXTENSIONS:
        raise InvalidAssetError(path, "spz stream holds more data than its header describes")
    return bytes(out)


def _parse_legacy(path: Path | None, data: bytes) -> tuple[SpzInfo, dict[str, bytes]]:
    body = _gunzip_bounded(path, data)
    magic, version, n, degree, fb, flags, _ = LEGACY_HEADER.unpack_from(body)
    sizes = _block_sizes(n, degree, version)
    blocks, off = {}, LEGACY_HEADER.size
    for k in _ORDER:
        blocks[k] = body[off : off + sizes[k]]
        off += sizes[k]
    info = SpzInfo(version, n, degree, fb, bool(flags & FLAG_ANTIALIASED), bool(flags & FLAG_HAS_EXTENSIONS))
    return info, blocks


def _parse_ngsp(path: Path | None, data: bytes) -> tuple[SpzInfo, dict[str, bytes]]:
    if len(data) < NGSP_HEADER.size:
        raise InvalidAssetError(path, "spz v4 file is shorter than its 32-byte header")
    magic, version, n, degree, fb, flags, nstreams, toc_off = NGSP_HEADER.unpack_from(data)
    _check_header(path, version, n, degree, len(data), 4, LATEST_VERSION)
    sizes = _block_sizes(n, degree, version)
    names = [k for k in _ORDER if sizes[k]]
    if nstreams != len(names):
        raise InvalidAssetError(path, f"spz v4 header lists {nstreams} streams, expected {len(names)}")
    toc_end = toc_off + 16 * nstreams
    if toc_off < NGSP_HEADER.size or toc_end > len(data):
        raise InvalidAssetError(path, "spz v4 table of contents lies outside the file")
    zstd = _zstd()
    blocks = {k: b"" for k in _ORDER}
    off = toc_end
    for i, k in enumerate(names):
        csize, usize = struct.unpack_from("<QQ", data, toc_off + 16 * i)
        if usize != sizes[k]:
            raise InvalidAssetError(path, f"spz v4 stream '{k}' holds {usize} bytes, expected {sizes[k]}")
        if csize > len(data) - off:
            raise InvalidAssetError(path, f"spz v4 stream '{k}' extends past the end of the file (truncated)")
        try:
            raw = zstd.decompress(data[off : off + csize])
        except Exception as e:  # zstd.ZstdError and friends
            raise InvalidAssetError(path, f"spz v4 stream '{k}' is corrupt: {e}") from None
        if len(raw) != usize:
            raise InvalidAssetError(path, f"spz v4 stream '{k}' decompressed to {len(raw)} bytes, expected {usize}")
        blocks[k] = raw
        off += csize
    if off != len(data):
        raise InvalidAssetError(path, f"spz v4 file has {len(data) - off} bytes after its last stream")
    info = SpzInfo(version, n, degree, fb, bool(flags & FLAG_ANTIALIASED), bool(flags & FLAG_HAS_EXTENSIONS))
    return info, blocks


def unpack_blocks(info: SpzInfo, blocks: dict[str, bytes], path: Path | None = None) -> GaussianSplats:
    """GaussianSplats (RUB = asset frame, no conversion) from the six attribute blocks."""
    n = info.num_points
    if info.version == 1:
        means = np.frombuffer(blocks["positions"], "<f2").reshape(n, 3).astype(np.float32)
    else:
        b = np.frombuffer(blocks["positions"], np.uint8).reshape(n * 3, 3).astype(np.int32)
        fixed = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        fixed = (fixed ^ 0x800000) - 0x800000  # sign-extend 24 bits
        means = (fixed.astype(np.float64) / float(1 << info.fractional_bits)).astype(np.float32).reshape(n, 3)
    alpha = np.frombuffer(blocks["alphas"], np.uint8).astype(np.float64) / 255.0
    alpha = np.clip(alpha, OPACITY_EPS, 1.0 - OPACITY_EPS)
    colors = np.frombuffer(blocks["colors"], np.uint8).reshape(n, 3).astype(np.float32)
    sh0 = (colors / np.float32(255.0) - np.float32(0.5)) / COLOR_SCALE
    log_scales = np.frombuffer(blocks["scales"], np.uint8).reshape(n, 3).astype(np.float32) / np.float32(16.0) - np.float32(10.0)
    if info.version >= 3:
        q_xyzw = _unpack_rotations_smallest_three(np.frombuffer(blocks["rotations"], np.uint8).reshape(n, 4))
    else:
        q_xyzw = _unpack_rotations_first_three(np.frombuffer(blocks["rotations"], np.uint8).reshape(n, 3))
    k = _dim(info.sh_degree) + 1
    sh = np.empty((n, k, 3), np.float32)
    sh[:, 0] = sh0
    if k > 1:
        rest = sh[:, 1:]
        rest[...] = np.frombuffer(blocks["sh"], np.uint8).reshape(n, k - 1, 3)
        rest -= np.float32(128.0)
        rest *= np.float32(1.0 / 128.0)  # exact: a power of two, same as the reference's (q−128)/128
    s = GaussianSplats(
        means=means,
        quats=q_xyzw[:, [3, 0, 1, 2]],
        log_scales=log_scales,
        opacity_logits=np.log(alpha / (1.0 - alpha)),
        sh=sh,
    )
    check_splats_finite(path, s)
    return s


def decode_spz(data: bytes, path: Path | None = None) -> tuple[GaussianSplats, SpzInfo]:
    """Decode spz bytes (versions 1–3 gzip, 4 zstd) into (GaussianSplats, header info)."""
    if len(data) == 0:
        raise InvalidAssetError(path, "file is empty (0 bytes)")
    if data[:2] == b"\x1f\x8b":
        info, blocks = _parse_legacy(path, data)
    elif len(data) >= 4 and struct.unpack_from("<I", data)[0] == MAGIC:
        info, blocks = _parse_ngsp(path, data)
    else:
        raise InvalidAssetError(path, "not an spz file (neither a gzip stream nor an 'NGSP' header)")
    return unpack_blocks(info, blocks, path), info


def read_spz_splats(path: str | Path) -> tuple[GaussianSplats, SpzInfo]:
    """Read an .spz file: (GaussianSplats in the asset frame, header info)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InvalidAssetError(path, f"cannot read file: {e.strerror or e}") from None
    return decode_spz(data, path)


def write_spz_splats(splats: GaussianSplats, path: str | Path, version: int = 3, antialiased: bool = False, **kw) -> Path:
    """Write `splats` as .spz (atomically). Keyword options as `encode_spz`."""
    path = Path(path)
    if len(splats) == 0:
        raise NothingToExportError(path, "splat set is empty; spz needs at least one Gaussian")
    try:
        data = encode_spz(splats, version=version, antialiased=antialiased, **kw)
    except InvalidAssetError as e:
        raise InvalidAssetError(path, e.reason) from None
    write_bytes_atomic(path, data)
    return path


def read_spz(path: str | Path) -> Asset:
    """Asset with `splats` from an .spz file. The antialiased flag and version go to
    metadata.extras ("spz_antialiased", "spz_version")."""
    path = Path(path)
    splats, info = read_spz_splats(path)
    meta = AssetMetadata(name=path.stem, extras={"spz_antialiased": info.antialiased, "spz_version": info.version})
    dropped = ["spz extensions (not interpreted)"] if info.has_extensions else []
    return Asset(splats=splats, metadata=meta, dropped=dropped)


def write_spz(asset: Asset, path: str | Path, version: int = 3) -> Path:
    """Write the asset's splats as .spz version 3 (by default). Meshes are not stored by this format.

    Raises NothingToExportError when the asset has no splats.
    """
    if asset.splats is None or len(asset.splats) == 0:
        raise NothingToExportError(path, "asset has no Gaussian splats to write as .spz")
    aa = bool(asset.metadata.extras.get("spz_antialiased", False))
    return write_spz_splats(asset.splats, path, version=version, antialiased=aa)
