"""Posed views rendered from an Asset: the training and held-out views of the demo and of
reconstruction benchmarks (ground truth we know exactly)."""
from __future__ import annotations

import numpy as np

from studio.assets import Asset, Cameras, Views
from studio.assets.colour import srgb_to_linear


def view_rig(asset: Asset, n: int, size: int, elevations=(15.0, 45.0), start_azimuth_deg: float = 0.0,
             fov_y_deg: float = 40.0, margin: float = 1.15) -> Cameras:
    """n cameras on rings around the asset (+Y up), split over `elevations` (degrees)."""
    from studio.renderers.thumbnails import orbit_cameras

    per = [n // len(elevations) + (1 if i < n % len(elevations) else 0) for i in range(len(elevations))]
    rigs = []
    for k, (m, el) in enumerate(zip(per, elevations)):
        if m:
            off = start_azimuth_deg + k * 180.0 / max(m, 1)
            rigs.append(orbit_cameras(asset, m, size, elevation_deg=el, start_azimuth_deg=off,
                                      fov_y_deg=fov_y_deg, margin=margin))
    K = np.concatenate([r.K for r in rigs])
    c2w = np.concatenate([r.cam_to_world for r in rigs])
    return Cameras(K, c2w, size, size)


def spiral_rig(asset: Asset, n: int, size: int, elevation_range: tuple[float, float] = (-35.0, 60.0),
               fov_y_deg: float = 40.0, margin: float = 1.15) -> Cameras:
    """n cameras on a helix around the asset (+Y up): elevations evenly spaced over
    `elevation_range` (degrees, low to high), azimuth advancing by the golden angle (≈137.5°) per
    view, so no two views share a ring or a meridian. All at one distance that fits every view."""
    from studio.renderers.thumbnails import cameras_along

    lo, hi = elevation_range
    el = np.radians(lo + (hi - lo) * (np.arange(n) + 0.5) / max(n, 1))
    az = np.arange(n) * np.pi * (3.0 - np.sqrt(5.0))
    dirs = np.stack([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)], axis=1)
    return cameras_along(asset, dirs, size, fov_y_deg, margin)


# Object capture rig: a helix from below the equator (the underside is seen, as when the object is
# turned over on a turntable) to well above it. Rings sample three elevations only, and what a
# glossy surface reflects changes with elevation: with 12 views on rings at -30/15/45° the held-out
# views at -15° scored ~25.5 dB on WaterBottle whatever the view count (36 views: 25.9), while the
# same 12 views on this helix give 29 dB there (bench/bench_fit.py, quality table).
TRAINING_ELEVATION_RANGE = (-35.0, 60.0)
HELD_OUT_ELEVATIONS = (-15.0, 30.0)


def training_rig(asset: Asset, n: int, size: int) -> Cameras:
    """n training cameras on the helix over TRAINING_ELEVATION_RANGE (`spiral_rig`)."""
    return spiral_rig(asset, n, size, TRAINING_ELEVATION_RANGE)


def held_out_rig(asset: Asset, size: int, n: int = 4) -> Cameras:
    """n held-out cameras on rings at HELD_OUT_ELEVATIONS, azimuths offset 22.5°: poses no training
    view has (`nearest_view_deg` says how far each is from the training views)."""
    return view_rig(asset, n, size, elevations=HELD_OUT_ELEVATIONS, start_azimuth_deg=22.5)


def nearest_view_deg(cameras: Cameras, reference: Cameras) -> np.ndarray:
    """(N,) float64 angle in degrees between each camera's viewing direction and the closest one
    among `reference`'s (how far a held-out view is from the training views)."""
    a = cameras.cam_to_world[:, :3, 2]
    b = reference.cam_to_world[:, :3, 2]
    return np.degrees(np.arccos(np.clip(a @ b.T, -1.0, 1.0))).min(axis=1)


def render_views(asset: Asset, cameras: Cameras, environment=None, tone_mapping: str = "none") -> tuple[Views, np.ndarray]:
    """Render `asset` into `cameras` with the PBR rasteriser.

    Returns (Views with linear RGB images and alpha masks, depth (N,H,W) float32 metric OpenCV z)."""
    from studio.renderers.raster import default_renderer

    res = default_renderer().render(asset, cameras, environment=environment, tone_mapping=tone_mapping,
                                    passes=("rgb", "alpha", "depth"))
    rgb = srgb_to_linear(res.rgb.astype(np.float32) / 255.0).astype(np.float32)
    return Views(rgb, cameras, masks=res.alpha.astype(np.float32)), res.depth.astype(np.float32)
