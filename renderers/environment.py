"""Lighting environments for image-based lighting: built-in procedural ones, user equirect images,
a Radiance .hdr reader/writer, and the CPU parts of IBL prefiltering (SH9 irradiance, BRDF LUT).

Equirectangular convention (the same as three.js's `equirectUv`, so a .hdr written here and loaded
with RGBELoader lights a three.js scene identically): image (H, W, 3) float32 linear radiance, row 0
is the top (+Y, up). Column centre u = (x + 0.5) / W maps to azimuth phi = (u - 0.5) · 2π and
row centre v = (y + 0.5) / H to elevation lat = (0.5 - v) · π; the direction is
(cos lat · cos phi, sin lat, cos lat · sin phi). So the image centre looks along +X and u = 0.75
along +Z. `Environment.rotation` turns the environment about +Y (radians, counter-clockwise seen
from above).
"""
from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio.errors import InvalidAssetError, UnsupportedFormatError

BUILTINS = ("studio", "sky", "white")


@dataclass(eq=False)
class Environment:
    """An equirectangular lighting environment.

    image: (H, W, 3) float32 linear radiance, H*2 == W recommended (see module docstring for axes).
    intensity: multiplier on the radiance (three.js `scene.environmentIntensity`).
    rotation: radians about +Y.
    """

    image: np.ndarray
    name: str = ""
    intensity: float = 1.0
    rotation: float = 0.0

    def __post_init__(self) -> None:
        img = np.asarray(self.image, dtype=np.float32)
        if img.ndim != 3 or img.shape[2] < 3 or img.shape[0] < 2 or img.shape[1] < 2:
            raise ValueError(f"environment image must be (H,W,3), got {img.shape}")
        img = np.ascontiguousarray(img[:, :, :3])
        self.image = np.nan_to_num(np.maximum(img, 0.0), nan=0.0, posinf=65000.0)

    @functools.cached_property
    def digest(self) -> str:
        """Content hash of the pixels (the IBL cache key together with the GPU context)."""
        return hashlib.sha1(self.image.tobytes() + str(self.image.shape).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# directions
# ---------------------------------------------------------------------------------------------


def equirect_directions(height: int, width: int) -> np.ndarray:
    """(H, W, 3) float64 unit world directions of the texel centres (module convention)."""
    u = (np.arange(width) + 0.5) / width
    v = (np.arange(height) + 0.5) / height
    phi = (u - 0.5) * 2 * np.pi
    lat = (0.5 - v) * np.pi
    cl = np.cos(lat)[:, None]
    return np.stack(
        [cl * np.cos(phi)[None, :], np.broadcast_to(np.sin(lat)[:, None], (height, width)), cl * np.sin(phi)[None, :]],
        axis=-1,
    )


def direction_to_uv(d: np.ndarray) -> np.ndarray:
    """(…, 3) unit directions → (…, 2) equirect uv in [0,1] (u right, v down from the top row)."""
    d = np.asarray(d, dtype=np.float64)
    u = np.arctan2(d[..., 2], d[..., 0]) / (2 * np.pi) + 0.5
    v = 0.5 - np.arcsin(np.clip(d[..., 1], -1, 1)) / np.pi
    return np.stack([u, v], axis=-1)


# ---------------------------------------------------------------------------------------------
# built-in environments
# ---------------------------------------------------------------------------------------------


def _softbox(d: np.ndarray, centre: np.ndarray, size: float, power: float) -> np.ndarray:
    c = centre / np.linalg.norm(centre)
    cosang = np.clip(d @ c, -1, 1)
    ang = np.arccos(cosang)
    return power * (1.0 / (1.0 + np.exp((ang - size) * 60.0)))


def studio_environment(width: int = 512) -> Environment:
    """A photo-studio look: dark floor, grey walls, a big soft key light, a fill and a rim light."""
    h = width // 2
    d = equirect_directions(h, width)
    y = d[..., 1]
    wall = 0.35 + 0.25 * np.clip(y, 0, 1)
    floor = 0.12 + 0.08 * np.clip(1 + y, 0, 1)
    base = np.where(y >= 0, wall, floor)[..., None] * np.array([1.0, 1.0, 1.0])
    key = _softbox(d, np.array([0.6, 0.7, 0.8]), 0.35, 6.0)[..., None] * np.array([1.0, 0.97, 0.92])
    fill = _softbox(d, np.array([-0.8, 0.3, 0.5]), 0.45, 1.6)[..., None] * np.array([0.9, 0.95, 1.0])
    rim = _softbox(d, np.array([-0.2, 0.5, -1.0]), 0.25, 4.0)[..., None]
    img = base + key + fill + rim
    return Environment(img.astype(np.float32), name="studio")


def sky_environment(width: int = 512) -> Environment:
    """An outdoor look: blue sky gradient, a bright sun, a warm brown ground."""
    h = width // 2
    d = equirect_directions(h, width)
    y = d[..., 1]
    t = np.clip(y, 0, 1)[..., None]
    zenith = np.array([0.18, 0.35, 0.85])
    horizon = np.array([0.75, 0.85, 1.0])
    sky = horizon * (1 - t) ** 3 + zenith * (1 - (1 - t) ** 3)
    ground = np.array([0.18, 0.14, 0.10]) * (0.6 + 0.4 * np.clip(1 + y, 0, 1))[..., None]
    img = np.where(y[..., None] >= 0, sky, ground)
    sun_dir = np.array([0.5, 0.6, 0.4])
    img = img + _softbox(d, sun_dir, 0.05, 60.0)[..., None] * np.array([1.0, 0.95, 0.85])
    return Environment(img.astype(np.float32), name="sky")


def white_environment(width: int = 64, value: float = 1.0) -> Environment:
    """A uniform environment of constant radiance (a furnace test: a white diffuse surface shows `value`)."""
    return Environment(np.full((width // 2, width, 3), value, np.float32), name="white")


@functools.lru_cache(maxsize=8)
def _builtin_cached(name: str, width: int) -> Environment:
    if name == "studio":
        return studio_environment(width)
    if name == "sky":
        return sky_environment(width)
    if name == "white":
        return white_environment(width)
    raise ValueError(f"unknown built-in environment {name!r}; choose one of {BUILTINS}")


def builtin_environment(name: str = "studio", width: int = 512) -> Environment:
    """One of BUILTINS by name (cached, so repeated calls share the IBL cache)."""
    return _builtin_cached(name, width)


def default_environment() -> Environment:
    return builtin_environment("studio")


def resolve_environment(spec: "str | Path | Environment | None") -> Environment:
    """An Environment from a built-in name (BUILTINS), an equirect image path, an Environment, or
    None (the default studio environment). Unknown names that are not files raise InvalidAssetError."""
    if spec is None:
        return default_environment()
    if isinstance(spec, Environment):
        return spec
    if isinstance(spec, str) and spec in BUILTINS:
        return builtin_environment(spec)
    path = Path(spec)
    if not path.is_file():
        raise InvalidAssetError(path, f"not a built-in environment ({', '.join(BUILTINS)}) nor an image file")
    return load_environment(path)


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------


def load_environment(path: str | Path, intensity: float = 1.0, rotation: float = 0.0) -> Environment:
    """Load an equirectangular image: Radiance .hdr (own reader), OpenEXR (FFmpeg's decoder via av),
    8/16-bit PNG/JPEG (sRGB → linear), or another format through imageio when a plugin reads it."""
    from studio.assets.colour import srgb_to_linear

    path = Path(path)
    if not path.is_file():
        raise InvalidAssetError(path, "environment image not found")
    suffix = path.suffix.lower()
    if suffix in (".hdr", ".pic", ".rgbe"):
        img = read_hdr(path)
    elif suffix in (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tga"):
        from PIL import Image

        try:
            with Image.open(path) as im:
                if im.mode in ("I;16", "I;16B", "I", "I;16L"):
                    arr = np.asarray(im).astype(np.float64) / 65535.0
                    arr = np.repeat(arr[..., None], 3, axis=2)
                else:
                    arr = np.asarray(im.convert("RGB")).astype(np.float64) / 255.0
        except Exception as exc:  # noqa: BLE001 - any decoder failure is a broken file
            raise InvalidAssetError(path, f"cannot decode environment image: {exc}") from exc
        img = srgb_to_linear(arr).astype(np.float32)
    elif suffix == ".exr":
        img = read_exr(path)
    else:
        try:
            import imageio.v3 as iio

            arr = np.asarray(iio.imread(path))
        except Exception as exc:  # noqa: BLE001
            raise UnsupportedFormatError(
                f"{path.name}: cannot read this environment image ({exc}); convert it to Radiance .hdr or PNG"
            ) from exc
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        img = arr[..., :3].astype(np.float32)
        if arr.dtype == np.uint8:
            img = srgb_to_linear(img / 255.0).astype(np.float32)
    if img.ndim != 3 or img.shape[0] < 2 or img.shape[1] < 2:
        raise InvalidAssetError(path, f"environment image has unusable shape {img.shape}")
    return Environment(img, name=path.stem, intensity=intensity, rotation=rotation)


def read_exr(path: str | Path) -> np.ndarray:
    """Read an OpenEXR image → (H, W, 3) float32 linear, through FFmpeg's EXR decoder in `av`
    (half/float, any compression FFmpeg supports; alpha dropped)."""
    import av

    path = Path(path)
    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
            gbr = frame.to_ndarray(format="gbrpf32le")  # (H, W, 3) in G, B, R order
    except (av.error.FFmpegError, StopIteration, ValueError, OSError) as exc:
        raise InvalidAssetError(path, f"not a readable OpenEXR image: {exc}") from exc
    return np.ascontiguousarray(gbr[..., [2, 0, 1]], dtype=np.float32)


_HDR_RES = re.compile(rb"^([-+])Y\s+(\d+)\s+([-+])X\s+(\d+)\s*$")


def read_hdr(path: str | Path) -> np.ndarray:
    """Read a Radiance RGBE .hdr file → (H, W, 3) float32 linear (flat and RLE scanlines)."""
    path = Path(path)
    data = path.read_bytes()
    try:
        pos = 0
        first = True
        while True:
            end = data.index(b"\n", pos)
            line = data[pos:end].strip()
            pos = end + 1
            if first:
                if not line.startswith(b"#?"):
                    raise ValueError("missing #? signature")
                first = False
                continue
            if line == b"":
                break
            if line.startswith(b"FORMAT=") and b"32-bit_rle_rgbe" not in line:
                raise ValueError(f"unsupported {line.decode(errors='replace')}")
        end = data.index(b"\n", pos)
        m = _HDR_RES.match(data[pos:end].strip())
        if not m:
            raise ValueError("bad resolution line")
        pos = end + 1
        h, w = int(m.group(2)), int(m.group(4))
        flip_y, flip_x = m.group(1) == b"+", m.group(3) == b"-"
        buf = np.frombuffer(data, np.uint8, offset=pos)
        out = np.empty((h, w, 4), np.uint8)
        p = 0
        for y in range(h):
            if 8 <= w < 32768 and buf[p] == 2 and buf[p + 1] == 2 and not (buf[p + 2] & 0x80):
                if (int(buf[p + 2]) << 8 | int(buf[p + 3])) != w:
                    raise ValueError(f"scanline {y} width mismatch")
                p += 4
                for c in range(4):
                    x = 0
                    row = out[y, :, c]
                    while x < w:
                        n = int(buf[p])
                        p += 1
                        if n > 128:
                            n -= 128
                            row[x : x + n] = buf[p]
                            p += 1
                        else:
                            if n == 0:
                                raise ValueError("zero-length run")
                            row[x : x + n] = buf[p : p + n]
                            p += n
                        x += n
            else:
                out[y] = buf[p : p + 4 * w].reshape(w, 4)
                p += 4 * w
    except (ValueError, IndexError) as exc:
        raise InvalidAssetError(path, f"not a readable Radiance .hdr file: {exc}") from exc
    e = out[..., 3].astype(np.int32)
    scale = np.where(e > 0, np.ldexp(1.0, e - 136), 0.0).astype(np.float32)
    img = out[..., :3].astype(np.float32) * scale[..., None]
    if flip_y:
        img = img[::-1]
    if flip_x:
        img = img[:, ::-1]
    return np.ascontiguousarray(img)


def _to_rgbe(img: np.ndarray) -> np.ndarray:
    img = np.maximum(np.nan_to_num(np.asarray(img, np.float64)[..., :3], nan=0.0, posinf=1e30), 0.0)
    m = img.max(axis=-1)
    mant, ex = np.frexp(m)
    scale = np.where(m > 1e-32, mant * 256.0 / np.maximum(m, 1e-300), 0.0)
    rgbe = np.zeros(img.shape[:-1] + (4,), np.uint8)
    rgbe[..., :3] = np.clip(np.floor(img * scale[..., None]), 0, 255).astype(np.uint8)
    rgbe[..., 3] = np.where(m > 1e-32, np.clip(ex + 128, 0, 255), 0).astype(np.uint8)
    return rgbe


def write_hdr(path: str | Path, img: np.ndarray) -> Path:
    """Write (H, W, 3) float linear radiance as a Radiance .hdr (new-style RLE, as three.js's RGBELoader
    and every HDR tool read), atomically. Row 0 is written first (the top)."""
    from studio.assets.atomic import write_bytes_atomic

    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] < 3:
        raise ValueError(f"write_hdr wants (H,W,3) float, got {img.shape}")
    h, w = img.shape[:2]
    rgbe = _to_rgbe(img)
    parts = [b"#?RADIANCE\n# written by studio\nFORMAT=32-bit_rle_rgbe\n\n", f"-Y {h} +X {w}\n".encode()]
    if 8 <= w < 32768:
        # new-style scanlines: each channel as literal chunks of <=128 bytes (valid RLE, no runs)
        nchunk = (w + 127) // 128
        counts = np.full(nchunk, 128, np.uint8)
        counts[-1] = w - 128 * (nchunk - 1)
        head = np.array([2, 2, w >> 8, w & 255], np.uint8).tobytes()
        for y in range(h):
            parts.append(head)
            for c in range(4):
                ch = rgbe[y, :, c]
                for k in range(nchunk):
                    parts.append(bytes((int(counts[k]),)))
                    parts.append(ch[128 * k : 128 * k + int(counts[k])].tobytes())
    else:
        parts.append(rgbe.tobytes())
    path = Path(path)
    write_bytes_atomic(path, b"".join(parts))
    return path


# ---------------------------------------------------------------------------------------------
# IBL: CPU parts (irradiance SH9 and the split-sum BRDF LUT); the GGX prefilter runs on the GPU
# ---------------------------------------------------------------------------------------------


def sh9_basis(d: np.ndarray) -> np.ndarray:
    """(…, 3) unit directions → (…, 9) real SH basis values (bands 0-2); GLSL `sh9` matches it."""
    x, y, z = d[..., 0], d[..., 1], d[..., 2]
    return np.stack(
        [
            np.full_like(x, 0.282095),
            0.488603 * y,
            0.488603 * z,
            0.488603 * x,
            1.092548 * x * y,
            1.092548 * y * z,
            0.315392 * (3 * z * z - 1),
            1.092548 * x * z,
            0.546274 * (x * x - y * y),
        ],
        axis=-1,
    )


def irradiance_sh9(image: np.ndarray, max_width: int = 256) -> np.ndarray:
    """(9, 3) float32 SH coefficients of the Lambertian-convolved radiance divided by π, so that
    `sh9_basis(n) @ coeffs` is the outgoing radiance of a white Lambertian surface with normal n."""
    img = np.asarray(image, np.float64)
    h, w = img.shape[:2]
    step = max(1, w // max_width)
    if step > 1:
        h2, w2 = h // step, w // step
        img = img[: h2 * step, : w2 * step].reshape(h2, step, w2, step, 3).mean(axis=(1, 3))
        h, w = h2, w2
    d = equirect_directions(h, w)
    lat = (0.5 - (np.arange(h) + 0.5) / h) * np.pi
    domega = (2 * np.pi / w) * (np.pi / h) * np.cos(lat)
    basis = sh9_basis(d) * domega[:, None, None]
    coeffs = np.einsum("hwk,hwc->kc", basis, img)
    band = np.array([np.pi] + [2 * np.pi / 3] * 3 + [np.pi / 4] * 5)
    return (coeffs * band[:, None] / np.pi).astype(np.float32)


def _hammersley(n: int) -> np.ndarray:
    i = np.arange(n, dtype=np.uint32)
    b = i.copy()
    b = ((b << 16) | (b >> 16)) & 0xFFFFFFFF
    b = ((b & 0x55555555) << 1) | ((b & 0xAAAAAAAA) >> 1)
    b = ((b & 0x33333333) << 2) | ((b & 0xCCCCCCCC) >> 2)
    b = ((b & 0x0F0F0F0F) << 4) | ((b & 0xF0F0F0F0) >> 4)
    b = ((b & 0x00FF00FF) << 8) | ((b & 0xFF00FF00) >> 8)
    return np.stack([i / n, (b & 0xFFFFFFFF).astype(np.float64) / 2**32], axis=1)


@functools.lru_cache(maxsize=1)
def brdf_lut(size: int = 64, samples: int = 512) -> np.ndarray:
    """(size, size, 2) float32 split-sum GGX LUT (scale, bias) indexed [roughness row, NdotV column],
    texel centres at (i + 0.5)/size; Smith height-correlated visibility (as the Khronos sample viewer)."""
    nv = (np.arange(size) + 0.5) / size
    rough = (np.arange(size) + 0.5) / size
    xi = _hammersley(samples)
    a = rough[:, None] ** 2  # (R,1) alpha
    a2 = a * a
    phi = 2 * np.pi * xi[None, :, 0]
    cos_t = np.sqrt((1 - xi[None, :, 1]) / (1 + (a2 - 1) * xi[None, :, 1]))  # (R,S)
    sin_t = np.sqrt(1 - cos_t**2)
    hx, hz = sin_t * np.cos(phi), cos_t  # hy not needed (V in xz plane)
    vx, vz = np.sqrt(1 - nv**2), nv  # (V,)
    vdh = vx[None, :, None] * hx[:, None, :] + vz[None, :, None] * hz[:, None, :]  # (R,V,S)
    lz = 2 * vdh * hz[:, None, :] - vz[None, :, None]
    ndl = np.clip(lz, 0, 1)
    ndh = np.clip(hz, 0, 1)[:, None, :]
    vdh = np.clip(vdh, 0, 1)
    nvv = nv[None, :, None]
    a2b = a2[:, :, None]
    ggxv = ndl * np.sqrt(nvv * nvv * (1 - a2b) + a2b)
    ggxl = nvv * np.sqrt(ndl * ndl * (1 - a2b) + a2b)
    vis = np.where(ggxv + ggxl > 0, 0.5 / np.maximum(ggxv + ggxl, 1e-12), 0.0)
    g = np.where(ndl > 0, vis * 4 * ndl * vdh / np.maximum(ndh, 1e-12), 0.0) / 1.0
    # pdf-weighted estimator: G_vis = V · 4 · NdotL · VdotH / NdotH
    fc = (1 - vdh) ** 5
    scale = ((1 - fc) * g).mean(axis=2)
    bias = (fc * g).mean(axis=2)
    return np.stack([scale, bias], axis=-1).astype(np.float32)
