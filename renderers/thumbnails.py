"""Thumbnails, contact sheets and turntable videos of an Asset, framed automatically on its bounds.

Every writer is atomic. Turntables are H.264 (libx264 through `av`), yuv420p, so any player and
browser plays them; frame sizes are rounded up to even numbers as yuv420p needs.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from studio.assets.asset import Asset
from studio.assets.atomic import atomic_path
from studio.assets.cameras import Cameras

from .environment import Environment, resolve_environment
from .raster import Renderer, default_renderer

Progress = Callable[[float, str], None]

DEFAULT_BACKGROUND = (0.18, 0.18, 0.2)  # sRGB, for outputs without alpha (MP4, contact sheets)


def framing(asset: Asset, fov_y_deg: float = 40.0, margin: float = 1.1) -> tuple[np.ndarray, float]:
    """(centre (3,), camera distance) so the asset's bounding sphere fits the vertical field of view."""
    b = asset.bounds()
    if not (asset.meshes or (asset.splats is not None and len(asset.splats))):
        raise ValueError("the asset has no meshes or splats to frame")
    centre = b.mean(axis=0)
    radius = max(float(np.linalg.norm(b[1] - b[0])) / 2.0, 1e-6)
    dist = radius / math.sin(math.radians(fov_y_deg) / 2.0) * margin
    return centre, dist


def orbit_cameras(
    asset: Asset,
    n: int,
    size: int | tuple[int, int] = 512,
    elevation_deg: float = 20.0,
    start_azimuth_deg: float = 30.0,
    fov_y_deg: float = 40.0,
    margin: float = 1.1,
) -> Cameras:
    """n cameras evenly spaced on a circle around +Y (world up) looking at the centre of the asset's
    bounds, at `elevation_deg` above the horizon, all at the one distance at which the bounding box
    fits every view (`fit_distance`, so a turntable keeps a constant radius). The first camera sits
    at `start_azimuth_deg` measured from +Z towards +X. size: square side or (w, h)."""
    az = np.radians(start_azimuth_deg) + 2 * np.pi * np.arange(n) / max(n, 1)
    el = np.radians(elevation_deg)
    dirs = np.stack([np.cos(el) * np.sin(az), np.full(n, np.sin(el)), np.cos(el) * np.cos(az)], axis=1)
    return cameras_along(asset, dirs, size, fov_y_deg, margin)


def cameras_along(asset: Asset, dirs: np.ndarray, size: int | tuple[int, int] = 512, fov_y_deg: float = 40.0,
                  margin: float = 1.1) -> Cameras:
    """Cameras at unit directions `dirs` (N,3) from the centre of the asset's bounds, looking at it
    with world +Y up, all at the one distance at which the bounding box fits every view."""
    w, h = (size, size) if isinstance(size, int) else size
    centre, _ = framing(asset, fov_y_deg, margin)
    dist = max(fit_distance(asset.bounds(), d, fov_y_deg, w / h, margin) for d in dirs)
    return Cameras.look_at(centre + dist * dirs, centre, fov_y_deg=fov_y_deg, width=w, height=h)


def fit_distance(bounds: np.ndarray, direction: np.ndarray, fov_y_deg: float, aspect: float, margin: float = 1.1) -> float:
    """Smallest distance from the centre of `bounds` (2,3) along unit `direction` (towards the camera)
    at which all 8 box corners project inside the view (with `margin` ≥ 1 of slack), camera looking
    at the centre with world +Y up."""
    lo, hi = np.asarray(bounds, np.float64)
    centre = (lo + hi) / 2
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]) - centre
    fwd = -np.asarray(direction, np.float64) / np.linalg.norm(direction)
    right = np.cross(fwd, [0.0, 1.0, 0.0])
    if np.linalg.norm(right) < 1e-9:
        right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    ty = np.tan(np.radians(fov_y_deg) / 2) / margin
    tx = ty * aspect
    x, y, z = corners @ right, corners @ up, corners @ fwd
    need = np.maximum(np.abs(x) / tx - z, np.abs(y) / ty - z)
    radius = max(float(np.linalg.norm(hi - lo)) / 2, 1e-6)
    return float(max(need.max(), z.max() + 0.05 * radius, 1e-6))


def _renderer(renderer: Renderer | None) -> Renderer:
    return renderer if renderer is not None else default_renderer()


def thumbnail(
    asset: Asset,
    path: str | Path,
    size: int = 512,
    *,
    background: Any = None,
    environment: Environment | str | None = None,
    tone_mapping: str = "aces",
    renderer: Renderer | None = None,
) -> Path:
    """Write one PNG of the asset from the default 3/4 view. background None → RGBA with a
    transparent background; otherwise an sRGB colour or "environment" (RGB PNG)."""
    from PIL import Image

    cams = orbit_cameras(asset, 1, size)
    environment = resolve_environment(environment)
    res = _renderer(renderer).render(
        asset, cams, environment=environment, tone_mapping=tone_mapping, background=background, passes=("rgb", "alpha")
    )
    img = Image.fromarray(res.rgba()[0]) if background is None else Image.fromarray(res.rgb[0])
    return _save_png(img, path)


def _save_png(img, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path


def contact_sheet(
    asset: Asset,
    path: str | Path,
    views: int = 8,
    size: int = 256,
    columns: int = 4,
    *,
    elevation_deg: float = 20.0,
    background: Any = DEFAULT_BACKGROUND,
    environment: Environment | str | None = None,
    tone_mapping: str = "aces",
    renderer: Renderer | None = None,
) -> Path:
    """Write a PNG grid of `views` renders around the asset (columns × rows, each size²)."""
    from PIL import Image

    cams = orbit_cameras(asset, views, size, elevation_deg=elevation_deg)
    environment = resolve_environment(environment)
    res = _renderer(renderer).render(asset, cams, environment=environment, tone_mapping=tone_mapping, background=background)
    rows = math.ceil(views / columns)
    sheet = np.zeros((rows * size, columns * size, 3), np.uint8)
    if background is not None and not isinstance(background, str):
        c = np.asarray(background, np.float64)
        sheet[:] = np.round((c / 255.0 if c.max() > 1 else c) * 255).astype(np.uint8)
    for i in range(views):
        r, c = divmod(i, columns)
        sheet[r * size : (r + 1) * size, c * size : (c + 1) * size] = res.rgb[i]
    return _save_png(Image.fromarray(sheet), path)


def render_turntable(
    asset: Asset,
    path: str | Path,
    frames: int = 60,
    size: int = 512,
    *,
    fps: int = 30,
    elevation_deg: float = 20.0,
    background: Any = DEFAULT_BACKGROUND,
    environment: Environment | str | None = None,
    tone_mapping: str = "aces",
    crf: int = 20,
    progress: Progress | None = None,
    renderer: Renderer | None = None,
) -> Path:
    """Write an H.264 MP4 of one full orbit (frames evenly spaced over 360°) around the asset.

    progress(fraction, message) is called after every frame. Returns the path."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if background is None:
        background = DEFAULT_BACKGROUND  # MP4 has no alpha
    side = size + (size % 2)
    cams = orbit_cameras(asset, frames, side, elevation_deg=elevation_deg)
    environment = resolve_environment(environment)
    r = _renderer(renderer)

    def rendered():
        for i in range(frames):
            res = r.render(asset, cams[i], environment=environment, tone_mapping=tone_mapping, background=background)
            yield res.rgb[0]
            if progress is not None:
                progress((i + 1) / frames, f"turntable frame {i + 1}/{frames}")

    return write_mp4(rendered(), path, fps=fps, crf=crf)


def write_mp4(frames, path: str | Path, fps: int = 30, crf: int = 20) -> Path:
    """Encode an iterable of (H,W,3) uint8 sRGB frames (all one even size) as H.264 yuv420p MP4
    (libx264 through av), atomically. Returns the path."""
    import av

    path = Path(path)
    with atomic_path(path) as tmp:
        container = av.open(str(tmp), mode="w", format="mp4")
        try:
            stream = None
            for img in frames:
                img = np.ascontiguousarray(img, dtype=np.uint8)
                if stream is None:
                    h, w = img.shape[:2]
                    if h % 2 or w % 2:
                        raise ValueError(f"yuv420p needs even frame sizes, got {w}x{h}")
                    stream = container.add_stream("libx264", rate=int(fps))
                    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                    stream.options = {"crf": str(int(crf)), "preset": "veryfast"}
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    container.mux(packet)
            if stream is None:
                raise ValueError("no frames to encode")
            for packet in stream.encode():
                container.mux(packet)
        finally:
            container.close()
    return path


# ---------------------------------------------------------------------------------------------
# CLI glue (`studio view FILE --out x.png --turntable x.mp4`)
# ---------------------------------------------------------------------------------------------


def view_to_png(path_in: str | Path, path_out: str | Path, size: int = 512, environment: str | Environment | None = None) -> Path:
    """Load any supported asset file and write its thumbnail PNG (transparent background).
    environment: built-in name, equirect image path or None (studio)."""
    from studio.assets.io import load

    return thumbnail(load(path_in), path_out, size=size, environment=environment)


def turntable(
    path_in: str | Path,
    path_out_mp4: str | Path,
    frames: int = 60,
    size: int = 512,
    progress: Progress | None = None,
    environment: str | Environment | None = None,
) -> Path:
    """Load any supported asset file and write a turntable MP4 of it."""
    from studio.assets.io import load

    return render_turntable(load(path_in), path_out_mp4, frames=frames, size=size, progress=progress, environment=environment)


def timed_turntable(asset: Asset, path: str | Path, frames: int = 60, size: int = 512) -> dict[str, float]:
    """Write a turntable and return timings: total seconds and seconds per frame (for bench/)."""
    t0 = time.perf_counter()
    render_turntable(asset, path, frames=frames, size=size)
    total = time.perf_counter() - t0
    return {"total_s": total, "per_frame_s": total / frames}
