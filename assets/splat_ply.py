"""PLY: a small numpy reader for any PLY file, and the 3DGS (Inria) Gaussian splat PLY layout.

Reading: `read_ply_header` + `read_ply_elements` parse ascii, binary_little_endian and
binary_big_endian files into numpy arrays (structured dtypes, no per-row Python for fixed-size
elements or uniform lists such as triangles). Every inconsistency (bad header, truncated data,
counts that do not match the data) raises InvalidAssetError naming the file.

Splat layout (as the Inria 3DGS code writes it), one `vertex` element of float32 properties, in order:
  x y z nx ny nz f_dc_0..2 f_rest_0..(3·(K−1)−1) opacity scale_0..2 rot_0..3
- f_rest is channel-major: all K−1 red coefficients, then green, then blue; our `sh` is (N,K,3)
  so f_rest[c·(K−1)+j] = sh[:, 1+j, c].
- rot_0..3 is the quaternion wxyz (rot_0 = w), not normalised; scale_* are natural-log
  standard deviations; opacity is the logit. Normals are written as zeros and ignored on read.
Frame: values are stored exactly as the GaussianSplats holds them (the asset frame); no axis
conversion is made (tools that assume the COLMAP/OpenCV "RDF" frame for PLY see what the fit saw).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from studio.errors import InvalidAssetError

from .atomic import atomic_path
from .splats import GaussianSplats

PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
FORMATS = {"ascii": "", "binary_little_endian": "<", "binary_big_endian": ">"}
MAX_HEADER = 1 << 20  # bytes; a longer header is not a PLY file
SPLAT_MARKERS = ("f_dc_0", "opacity", "scale_0", "rot_0")


@dataclass
class PlyProperty:
    name: str
    dtype: str  # numpy kind+size without byte order, e.g. "f4"
    count_dtype: str | None = None  # set for list properties


@dataclass
class PlyElement:
    name: str
    count: int
    properties: list[PlyProperty] = field(default_factory=list)

    @property
    def has_lists(self) -> bool:
        return any(p.count_dtype for p in self.properties)

    def names(self) -> list[str]:
        return [p.name for p in self.properties]


@dataclass
class PlyHeader:
    """Parsed header: `format` is ascii / binary_little_endian / binary_big_endian; `data_offset`
    is the byte offset of the body."""

    format: str
    elements: list[PlyElement]
    comments: list[str]
    data_offset: int

    @property
    def byte_order(self) -> str:
        return FORMATS[self.format]

    def element(self, name: str) -> PlyElement | None:
        return next((e for e in self.elements if e.name == name), None)

    def is_splat(self) -> bool:
        """True when the vertex element carries the 3DGS splat properties."""
        v = self.element("vertex")
        return v is not None and all(m in v.names() for m in SPLAT_MARKERS)


def _read_head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(MAX_HEADER)


def read_ply_header(path: str | Path, head: bytes | None = None) -> PlyHeader:
    """Parse the header of PLY file `path` (raises InvalidAssetError when it is not a valid PLY header)."""
    path = Path(path)
    head = _read_head(path) if head is None else head
    if len(head) == 0:
        raise InvalidAssetError(path, "file is empty (0 bytes)")
    if not head.startswith(b"ply"):
        raise InvalidAssetError(path, "not a PLY file (missing 'ply' magic)")
    m = re.search(rb"end_header[ \t]*(\r\n|\n|\r)", head)
    if m is None:
        raise InvalidAssetError(path, "PLY header has no 'end_header' line (truncated or not PLY)")
    try:
        text = head[: m.start()].decode("ascii")
    except UnicodeDecodeError:
        raise InvalidAssetError(path, "PLY header contains non-ASCII bytes") from None
    lines = [ln.strip() for ln in re.split(r"\r\n|\n|\r", text)]
    fmt: str | None = None
    elements: list[PlyElement] = []
    comments: list[str] = []
    for i, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        parts = line.split()
        key = parts[0]
        if key in ("comment", "obj_info"):
            comments.append(line[len(key) :].strip())
        elif key == "format":
            if len(parts) != 3 or parts[1] not in FORMATS:
                raise InvalidAssetError(path, f"PLY header line {i}: unsupported format '{line[:80]}'")
            fmt = parts[1]
        elif key == "element":
            if len(parts) != 3 or not parts[2].isdigit():
                raise InvalidAssetError(path, f"PLY header line {i}: bad element line '{line[:80]}'")
            elements.append(PlyElement(parts[1], int(parts[2])))
        elif key == "property":
            if not elements:
                raise InvalidAssetError(path, f"PLY header line {i}: property before any element")
            if len(parts) == 5 and parts[1] == "list":
                ct, vt = PLY_TYPES.get(parts[2]), PLY_TYPES.get(parts[3])
                if ct is None or vt is None or ct[0] == "f":
                    raise InvalidAssetError(path, f"PLY header line {i}: bad list property '{line[:80]}'")
                elements[-1].properties.append(PlyProperty(parts[4], vt, ct))
            elif len(parts) == 3 and parts[1] in PLY_TYPES:
                elements[-1].properties.append(PlyProperty(parts[2], PLY_TYPES[parts[1]]))
            else:
                raise InvalidAssetError(path, f"PLY header line {i}: bad property '{line[:80]}'")
        else:
            raise InvalidAssetError(path, f"PLY header line {i}: unknown keyword '{key[:40]}'")
    if fmt is None:
        raise InvalidAssetError(path, "PLY header has no 'format' line")
    for e in elements:
        names = e.names()
        if len(set(names)) != len(names):
            raise InvalidAssetError(path, f"PLY element '{e.name}' repeats a property name")
    return PlyHeader(fmt, elements, comments, m.end())


# ---------------------------------------------------------------------------------------------
# Body


def _read_binary_element(path: Path, buf: memoryview, off: int, el: PlyElement, bo: str):
    """Returns ({name: array}, new offset). Scalar properties → (count,) arrays; a list property →
    (count, n) array when all rows have n items, else a list of 1-D arrays."""
    remaining = len(buf) - off
    if not el.has_lists:
        dt = np.dtype([(p.name, bo + p.dtype) for p in el.properties])
        need = dt.itemsize * el.count
        if need > remaining:
            raise InvalidAssetError(
                path,
                f"PLY data truncated: element '{el.name}' needs {el.count} × {dt.itemsize} bytes, "
                f"only {max(remaining, 0)} left",
            )
        arr = np.frombuffer(buf, dtype=dt, count=el.count, offset=off)
        return {p.name: arr[p.name] for p in el.properties}, off + need
    if el.count == 0:
        return {p.name: (np.zeros((0, 0), bo + p.dtype) if p.count_dtype else np.zeros(0, bo + p.dtype))
                for p in el.properties}, off  # fmt: skip
    # Fast path: every list holds as many items as the first row's list (triangles, quads).
    fields, o = [], off
    for p in el.properties:
        if p.count_dtype:
            ct = np.dtype(bo + p.count_dtype)
            if o + ct.itemsize > len(buf):
                raise InvalidAssetError(path, f"PLY data truncated in element '{el.name}'")
            n = int(np.frombuffer(buf, ct, 1, o)[0])
            fields.append((p.name + "__n", ct.str))
            fields.append((p.name, bo + p.dtype, (n,)))
            o += ct.itemsize + n * np.dtype(p.dtype).itemsize
        else:
            fields.append((p.name, bo + p.dtype))
            o += np.dtype(p.dtype).itemsize
    dt = np.dtype(fields)
    if dt.itemsize * el.count <= remaining:
        arr = np.frombuffer(buf, dtype=dt, count=el.count, offset=off)
        if all((arr[p.name + "__n"] == arr.dtype[p.name].shape[0]).all() for p in el.properties if p.count_dtype):
            out = {}
            for p in el.properties:
                a = arr[p.name]
                out[p.name] = a.reshape(el.count, -1) if p.count_dtype else a
            return out, off + dt.itemsize * el.count
    # Slow path: variable-length lists, row by row.
    cols: dict[str, list] = {p.name: [] for p in el.properties}
    o = off
    try:
        for _ in range(el.count):
            for p in el.properties:
                if p.count_dtype:
                    ct = np.dtype(bo + p.count_dtype)
                    n = int(np.frombuffer(buf, ct, 1, o)[0])
                    o += ct.itemsize
                    if n < 0:
                        raise InvalidAssetError(path, f"PLY element '{el.name}' has a negative list length")
                    cols[p.name].append(np.frombuffer(buf, bo + p.dtype, n, o))
                    o += n * np.dtype(p.dtype).itemsize
                else:
                    cols[p.name].append(np.frombuffer(buf, bo + p.dtype, 1, o)[0])
                    o += np.dtype(p.dtype).itemsize
    except ValueError:
        raise InvalidAssetError(path, f"PLY data truncated in element '{el.name}'") from None
    out = {}
    for p in el.properties:
        out[p.name] = cols[p.name] if p.count_dtype else np.asarray(cols[p.name], dtype=p.dtype)
    return out, o


def _parse_ascii(path: Path, body: bytes, header: PlyHeader) -> dict[str, dict[str, object]]:
    lines = body.split(b"\n")
    out: dict[str, dict[str, object]] = {}
    li = 0
    for el in header.elements:
        rows = []
        while len(rows) < el.count:
            if li >= len(lines):
                raise InvalidAssetError(
                    path, f"PLY data truncated: element '{el.name}' declares {el.count} rows, found {len(rows)}"
                )
            ln = lines[li].strip()
            li += 1
            if ln:
                rows.append(ln.split())
        try:
            out[el.name] = _ascii_rows(el, rows)
        except (ValueError, IndexError):
            raise InvalidAssetError(
                path,
                f"PLY element '{el.name}' has malformed ascii rows (non-numbers or the wrong number of values; "
                "do the header's element counts match the data?)",
            ) from None
    rest = b"".join(lines[li:]).strip()
    if rest:
        raise InvalidAssetError(path, "PLY ascii data has more rows than the header declares")
    return out


def _ascii_rows(el: PlyElement, rows: list[list[bytes]]) -> dict[str, object]:
    if not el.has_lists:
        width = len(el.properties)
        if any(len(r) != width for r in rows):
            raise ValueError("wrong token count")
        a = np.array(rows, dtype=np.float64).reshape(len(rows), width)
        return {p.name: a[:, i].astype(p.dtype) for i, p in enumerate(el.properties)}
    cols: dict[str, list] = {p.name: [] for p in el.properties}
    for r in rows:
        k = 0
        for p in el.properties:
            if p.count_dtype:
                n = int(r[k])
                if n < 0:
                    raise ValueError("negative list length")
                cols[p.name].append(np.array(r[k + 1 : k + 1 + n], dtype=np.float64).astype(p.dtype))
                if len(cols[p.name][-1]) != n:
                    raise ValueError("short list")
                k += 1 + n
            else:
                cols[p.name].append(float(r[k]))
                k += 1
        if k != len(r):
            raise ValueError("extra tokens")
    out: dict[str, object] = {}
    for p in el.properties:
        v = cols[p.name]
        if p.count_dtype:
            lens = {len(x) for x in v}
            out[p.name] = np.stack(v) if len(lens) == 1 and v else v
        else:
            out[p.name] = np.asarray(v, dtype=np.float64).astype(p.dtype)
    return out


def read_ply_elements(path: str | Path, header: PlyHeader | None = None) -> tuple[PlyHeader, dict[str, dict[str, object]]]:
    """Read every element of a PLY file: {element: {property: array}}.

    Scalar properties are (count,) arrays in the file's dtype (native byte order); a list property is
    a (count, n) array when all rows have n items, else a list of 1-D arrays.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InvalidAssetError(path, f"cannot read file: {e.strerror or e}") from None
    header = read_ply_header(path, data[:MAX_HEADER]) if header is None else header
    body = data[header.data_offset :]
    if header.format == "ascii":
        if not body.isascii():
            raise InvalidAssetError(path, "PLY ascii data contains non-ASCII bytes")
        return header, _parse_ascii(path, body, header)
    buf = memoryview(body)
    off = 0
    out: dict[str, dict[str, object]] = {}
    for el in header.elements:
        cols, off = _read_binary_element(path, buf, off, el, header.byte_order)
        out[el.name] = {k: (v.astype(v.dtype.newbyteorder("=")) if isinstance(v, np.ndarray) else v) for k, v in cols.items()}
    if off != len(buf) and len(buf) - off > 2:  # allow a trailing newline or two
        raise InvalidAssetError(
            path, f"PLY binary data has {len(buf) - off} bytes more than the header's element counts describe"
        )
    return header, out


# ---------------------------------------------------------------------------------------------
# Gaussian splats


def splat_property_names(degree: int) -> list[str]:
    """The Inria 3DGS vertex property order for SH `degree`."""
    k = (degree + 1) ** 2
    return (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(3 * (k - 1))]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )


class _Table:
    """Vertex columns by name: either a dict of 1-D arrays or one (N, P) matrix with its column names."""

    def __init__(self, cols: dict[str, np.ndarray] | None = None, matrix: np.ndarray | None = None, names: list[str] | None = None):
        self.cols, self.matrix = cols, matrix
        self.index = {n: i for i, n in enumerate(names or [])}

    def __contains__(self, name: str) -> bool:
        return name in (self.index if self.matrix is not None else self.cols)

    def __len__(self) -> int:
        return len(self.matrix) if self.matrix is not None else len(next(iter(self.cols.values())))

    def take(self, names: list[str]) -> np.ndarray:
        """(N, len(names)) float32."""
        if self.matrix is not None:
            idx = [self.index[n] for n in names]
            if idx == list(range(idx[0], idx[0] + len(idx))):  # a run of columns: slice, one copy
                return np.array(self.matrix[:, idx[0] : idx[0] + len(idx)], dtype=np.float32)
            return np.asarray(self.matrix[:, idx], dtype=np.float32)
        return np.stack([np.asarray(self.cols[n], np.float32) for n in names], axis=1)


def splats_from_columns(path: Path, cols: dict[str, np.ndarray] | _Table) -> GaussianSplats:
    """Build GaussianSplats from Inria vertex columns (raises InvalidAssetError on missing/odd ones)."""
    t = cols if isinstance(cols, _Table) else _Table(cols=cols)
    need = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
            "rot_0", "rot_1", "rot_2", "rot_3"]  # fmt: skip
    missing = [n for n in need if n not in t]
    if missing:
        raise InvalidAssetError(path, f"splat PLY lacks vertex properties: {', '.join(missing)}")
    n_rest = 0
    while f"f_rest_{n_rest}" in t:
        n_rest += 1
    k = n_rest // 3 + 1
    deg = int(round(np.sqrt(k))) - 1
    if n_rest % 3 or (deg + 1) ** 2 != k or deg > 4:
        raise InvalidAssetError(path, f"splat PLY has {n_rest} f_rest properties: not 3·((d+1)²−1) for a degree d ≤ 4")
    n = len(t)
    sh = np.empty((n, k, 3), np.float32)
    sh[:, 0] = t.take(["f_dc_0", "f_dc_1", "f_dc_2"])
    if k > 1:
        rest = t.take([f"f_rest_{i}" for i in range(n_rest)])  # (N, 3·(K−1)) channel-major
        sh[:, 1:] = rest.reshape(n, 3, k - 1).transpose(0, 2, 1)
    splats = GaussianSplats(
        means=t.take(["x", "y", "z"]),
        quats=t.take(["rot_0", "rot_1", "rot_2", "rot_3"]),
        log_scales=t.take(["scale_0", "scale_1", "scale_2"]),
        opacity_logits=t.take(["opacity"])[:, 0],
        sh=sh,
    )
    check_splats_finite(path, splats)
    return splats


def check_splats_finite(path: Path | None, s: GaussianSplats) -> None:
    """Raise InvalidAssetError naming the first attribute holding NaN/Inf."""
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        a = getattr(s, name)
        bad = ~np.isfinite(a)
        if bad.any():
            rows = np.nonzero(bad.reshape(len(a), -1).any(1))[0]
            raise InvalidAssetError(path, f"{len(rows)} splats have NaN/Inf {name} (first at index {rows[0]})")


def _fast_columns(path: Path, header: PlyHeader) -> _Table | None:
    """Columns of a binary splat PLY whose elements are all fixed-size (the common case), read with
    one frombuffer over the mapped file; None when the layout needs the general reader."""
    if header.format == "ascii" or any(e.has_lists for e in header.elements):
        return None
    v = header.element("vertex")
    off = header.data_offset
    for e in header.elements:
        if e is v:
            break
        off += sum(np.dtype(p.dtype).itemsize for p in e.properties) * e.count
    dt = np.dtype([(p.name, header.byte_order + p.dtype) for p in v.properties])
    size = os.path.getsize(path)
    if off + dt.itemsize * v.count > size:
        raise InvalidAssetError(
            path,
            f"PLY data truncated: {v.count} vertices × {dt.itemsize} bytes need "
            f"{off + dt.itemsize * v.count} bytes, file has {size}",
        )
    total = header.data_offset + sum(sum(np.dtype(p.dtype).itemsize for p in e.properties) * e.count for e in header.elements)
    if size - total > 2:
        raise InvalidAssetError(path, f"PLY binary data has {size - total} bytes more than the header's element counts describe")
    if all(p.dtype == "f4" for p in v.properties):  # the usual all-float32 layout: one (N, P) matrix
        if v.count == 0:
            return _Table(matrix=np.zeros((0, len(v.properties)), np.float32), names=v.names())
        # memory-map: columns are gathered straight from the page cache (one copy, not two)
        mat = np.memmap(path, dtype=header.byte_order + "f4", mode="r", offset=off, shape=(v.count, len(v.properties)))
        return _Table(matrix=mat, names=v.names())
    arr = np.fromfile(path, dtype=dt, count=v.count, offset=off)
    return _Table(cols={p.name: arr[p.name] for p in v.properties})


def read_splat_ply(path: str | Path) -> GaussianSplats:
    """Read a 3DGS/Inria splat PLY (ascii or binary, either endianness; extra properties ignored).

    Returns GaussianSplats with sh (N,K,3) rebuilt from f_dc/f_rest (f_rest channel-major on disk).
    """
    path = Path(path)
    header = read_ply_header(path)
    v = header.element("vertex")
    if v is None:
        raise InvalidAssetError(path, "PLY has no 'vertex' element")
    if any(p.count_dtype for p in v.properties):
        raise InvalidAssetError(path, "splat PLY vertex element has list properties")
    cols = _fast_columns(path, header)
    if cols is None:
        _, els = read_ply_elements(path, header)
        cols = els["vertex"]  # type: ignore[assignment]
    return splats_from_columns(path, cols)


def splat_ply_header(n: int, degree: int) -> bytes:
    """The binary_little_endian header for `n` splats of SH `degree`, properties in Inria order."""
    lines = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    lines += [f"property float {name}" for name in splat_property_names(degree)]
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii")


def splat_ply_rows(s: GaussianSplats) -> np.ndarray:
    """(N, 17 + 3·(K−1)) float32 rows in Inria property order."""
    n, k = len(s), s.sh.shape[1]
    rest = s.sh[:, 1:].transpose(0, 2, 1).reshape(n, 3 * (k - 1))  # channel-major
    return np.concatenate(
        [s.means, np.zeros((n, 3), np.float32), s.sh[:, 0], rest, s.opacity_logits[:, None], s.log_scales, s.quats],
        axis=1,
        dtype=np.float32,
    )


def write_splat_ply(splats: GaussianSplats, path: str | Path) -> Path:
    """Write `splats` as a binary little-endian Inria PLY (atomically). Values are stored unchanged:
    log scales, opacity logits, quaternions wxyz as held, f_rest channel-major."""
    path = Path(path)
    rows = splat_ply_rows(splats).astype("<f4", copy=False)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(splat_ply_header(len(splats), splats.sh_degree))
            f.write(memoryview(np.ascontiguousarray(rows)).cast("B"))
            f.flush()
            os.fsync(f.fileno())
    return path
