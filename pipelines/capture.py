"""Photo captures → posed `Views`: pycolmap SfM for a photo folder, or an existing COLMAP model,
or a nerfstudio `transforms.json` folder (issue #6 item 5).

Our splat rasteriser is a pinhole camera, so distorted cameras (COLMAP SIMPLE_RADIAL / RADIAL /
OPENCV, transforms.json k1..p2) are undistorted here: every output pixel of the ideal pinhole
camera with the same K looks up where the lens put it (`distort_normalized`, the forward model,
so no iterative inverse is needed) and samples the photo bilinearly. Pixels that fall outside the
photo get mask 0. Images are downscaled to `max_size` on the long side (K scales with them; the
studio's pixel-centre convention makes that an exact multiplication).

Images come back linear RGB (photos are sRGB); init points are the SfM points with sRGB colours.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from studio.assets import Cameras, Views
from studio.assets.colour import linear_to_srgb, srgb_to_linear
from studio.assets.cameras import distort_normalized
from studio.errors import CaptureError, InvalidAssetError

Progress = Callable[[float, str], None] | None

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")


@dataclass
class CaptureReport:
    """What `capture_to_views` did: source kind ("photos", "colmap", "transforms"), images found and
    registered (names), SfM points, mean reprojection error (px, at SfM resolution), whether
    images were undistorted, the image scale applied, seconds per step and notes for the user."""

    source: str
    images_found: int
    images_registered: int
    registered: list[str] = field(default_factory=list)
    unregistered: list[str] = field(default_factory=list)
    points: int = 0
    mean_reprojection_error: float | None = None
    undistorted: bool = False
    scale: float = 1.0
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SfMParams:
    """pycolmap SfM settings. sfm_max_size: long side (px) of the copies SIFT runs on;
    camera_model: COLMAP model shared by all photos (one camera, SINGLE mode); exhaustive_max:
    up to this many images match exhaustively, more use sequential matching; max_features per image."""

    sfm_max_size: int = 1024
    camera_model: str = "SIMPLE_RADIAL"
    exhaustive_max: int = 60
    max_features: int = 8192
    num_threads: int = -1


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in IMAGE_SUFFIXES)


def _open_rgb(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InvalidAssetError(path, f"cannot read image ({e}); remove or replace this file") from e


def check_photos(paths: list[Path], min_images: int = 3) -> tuple[int, int]:
    """Every photo readable and of one size; at least `min_images`. Returns (width, height).
    Raises InvalidAssetError naming an unreadable file, CaptureError for too few or mixed sizes."""
    if len(paths) < min_images:
        raise CaptureError(
            f"found {len(paths)} image(s) ({', '.join(p.name for p in paths) or 'none'}); reconstruction needs at "
            f"least {min_images} overlapping photos of the object from different viewpoints (jpg/png)"
        )
    sizes: dict[tuple[int, int], list[str]] = {}
    for p in paths:
        im = _open_rgb(p)
        sizes.setdefault(im.size, []).append(p.name)
    if len(sizes) > 1:
        desc = "; ".join(f"{w}x{h}: {', '.join(n[:3])}{'…' if len(n) > 3 else ''}" for (w, h), n in sizes.items())
        raise CaptureError(
            f"photos have mixed sizes ({desc}); use photos from one camera at one resolution and orientation "
            f"(rotate/crop them to one size first)"
        )
    return next(iter(sizes))


def run_sfm(photos: Path, work: Path, params: SfMParams = SfMParams(), progress: Progress = None):
    """pycolmap SfM on the photos in `photos`: downscaled copies (≤ sfm_max_size) in work/images,
    SIFT extraction (one shared camera), exhaustive (small sets) or sequential matching,
    incremental mapping. Returns (the largest pycolmap.Reconstruction or None, the scale applied
    to the photos, seconds per step)."""
    import pycolmap
    from PIL import Image

    report = progress or (lambda f, m: None)
    paths = _list_images(photos)
    img_dir = work / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    scale = 1.0
    for p in paths:
        im = _open_rgb(p)
        scale = min(1.0, params.sfm_max_size / max(im.size))
        if scale < 1.0:
            im = im.resize((round(im.size[0] * scale), round(im.size[1] * scale)), Image.LANCZOS)
        im.save(img_dir / (p.stem + ".png"))
    db = work / "database.db"
    secs: dict[str, float] = {}
    t = time.perf_counter()
    report(0.05, f"SIFT features on {len(paths)} images")
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = params.camera_model
    ext = pycolmap.FeatureExtractionOptions()
    ext.sift.max_num_features = params.max_features
    ext.num_threads = params.num_threads
    ext.max_image_size = params.sfm_max_size
    pycolmap.extract_features(db, img_dir, camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader,
                              extraction_options=ext, device=pycolmap.Device.cpu)
    secs["features"] = time.perf_counter() - t
    t = time.perf_counter()
    report(0.35, "matching")
    if len(paths) <= params.exhaustive_max:
        pycolmap.match_exhaustive(db, device=pycolmap.Device.cpu)
    else:
        pycolmap.match_sequential(db, device=pycolmap.Device.cpu)
    secs["matching"] = time.perf_counter() - t
    t = time.perf_counter()
    report(0.6, "incremental mapping")
    out = work / "sparse"
    out.mkdir(exist_ok=True)
    recs = pycolmap.incremental_mapping(db, img_dir, out)
    secs["mapping"] = time.perf_counter() - t
    if not recs:
        return None, scale, secs
    best = max(recs.values(), key=lambda r: r.num_reg_images())
    return best, scale, secs


def resize_cameras(cams: Cameras, width: int, height: int) -> Cameras:
    """The same cameras for images resized to width×height (K's rows scale by the size ratios)."""
    sx, sy = width / cams.width, height / cams.height
    K = cams.K.copy()
    K[:, 0, :] *= sx
    K[:, 1, :] *= sy
    return Cameras(K, cams.cam_to_world, width, height, cams.names, cams.dist)


def undistort_image(image: np.ndarray, K: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Resample image (H,W,C) float32 taken through OpenCV distortion `dist` (4,) into the ideal
    pinhole camera with the same K (3,3). Returns (image (H,W,C) float32, valid mask (H,W) float32
    = 1 where the source pixel lies inside the photo)."""
    from scipy.ndimage import map_coordinates

    h, w = image.shape[:2]
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    x = (u - K[0, 2]) / K[0, 0]
    y = (v - K[1, 2]) / K[1, 1]
    xd = distort_normalized(np.stack([x, y], -1), dist)
    ud = xd[..., 0] * K[0, 0] + K[0, 2] - 0.5  # array index coordinates (pixel centres at integers)
    vd = xd[..., 1] * K[1, 1] + K[1, 2] - 0.5
    valid = ((ud >= -0.5) & (ud <= w - 0.5) & (vd >= -0.5) & (vd <= h - 0.5)).astype(np.float32)
    out = np.stack([map_coordinates(image[..., c], [vd, ud], order=1, mode="nearest") for c in range(image.shape[2])], -1)
    return out.astype(np.float32), valid


def load_views(files: list[Path], cams: Cameras, max_size: int | None = 512, undistort: bool = True) -> tuple[Views, float]:
    """Load the photos `files` (one per camera, sRGB) as linear Views, downscaled so the long side
    is ≤ max_size and undistorted into pinhole cameras. Returns (views, scale)."""
    from PIL import Image

    w, h = cams.width, cams.height
    scale = 1.0 if not max_size else min(1.0, max_size / max(w, h))
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    imgs, masks = [], []
    for f in files:
        im = _open_rgb(Path(f))
        if im.size != (w, h):
            if abs(im.size[0] / im.size[1] - w / h) > 1e-2:
                raise CaptureError(f"{Path(f).name} is {im.size[0]}x{im.size[1]} but its camera says {w}x{h}; "
                                   "use the images the model was made from")
            # the model was made at another resolution with the same aspect: scale from the file
        if im.size != (nw, nh):
            im = im.resize((nw, nh), Image.LANCZOS)
        imgs.append(np.asarray(im, np.float32) / 255.0)
    out_cams = resize_cameras(cams, nw, nh)
    undist = undistort and out_cams.dist is not None and np.any(out_cams.dist != 0)
    if undist:
        for i in range(len(imgs)):
            imgs[i], m = undistort_image(imgs[i], out_cams.K[i], out_cams.dist[i])
            masks.append(m)
        out_cams = Cameras(out_cams.K, out_cams.cam_to_world, nw, nh, out_cams.names, None)
    lin = srgb_to_linear(np.stack(imgs)).astype(np.float32)
    return Views(lin, out_cams, masks=np.stack(masks) if masks else None), scale


def _colmap_views(folder: Path, model, images_dir: Path, max_size: int | None) -> tuple[Views, np.ndarray, np.ndarray, float]:
    from studio.paths import safe_child

    files = [safe_child(images_dir, n) for n in model.cameras.names]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise CaptureError(f"{folder}: the COLMAP model names images not in {images_dir}: {', '.join(missing[:5])}; "
                           "put the photos in an images/ folder beside sparse/")
    views, scale = load_views(files, model.cameras, max_size)
    return views, model.points3d.copy(), model.colors.astype(np.float64) / 255.0, scale


def capture_to_views(
    source: str | Path,
    max_size: int | None = 512,
    sfm: SfMParams = SfMParams(),
    work_dir: str | Path | None = None,
    min_images: int = 3,
    progress: Progress = None,
) -> tuple[Views, np.ndarray | None, np.ndarray | None, CaptureReport]:
    """A capture → (Views linear RGB + masks where undistortion left holes, init points (P,3)
    world metres or None, init colours (P,3) sRGB [0,1] or None, CaptureReport).

    `source` is one of: a folder with `transforms.json` (nerfstudio); a COLMAP model folder or a
    capture root with `sparse/0` (images in `images/` beside `sparse/`); a folder of photos
    (or a capture root with only `images/`), which runs pycolmap SfM in `work_dir` (a temporary
    folder when None; keep it to cache the SfM). Errors: CaptureError (too few images, mixed
    sizes, SfM registering < 2 images), InvalidAssetError (unreadable files or models)."""
    from studio.assets.camera_formats import cameras_from_transforms_json
    from studio.assets.colmap_io import find_model_folder, read_colmap

    src = Path(source)
    report = progress or (lambda f, m: None)
    if not src.exists():
        raise InvalidAssetError(src, "no such file or folder")
    if src.is_file() and src.name.endswith(".json"):
        src = src.parent
    if (src / "transforms.json").is_file():
        t = time.perf_counter()
        cams, files = cameras_from_transforms_json(src / "transforms.json")
        if len(cams) < 2:
            raise CaptureError(f"{src / 'transforms.json'} has {len(cams)} frame(s); reconstruction needs at least 2")
        views, scale = load_views([Path(f) for f in files], cams, max_size)
        rep = CaptureReport("transforms", len(cams), len(cams), list(cams.names or []), scale=scale,
                            undistorted=cams.dist is not None, seconds={"load": time.perf_counter() - t})
        return views, None, None, rep
    try:
        model_dir = find_model_folder(src)
    except InvalidAssetError:
        model_dir = None
    if model_dir is not None:
        t = time.perf_counter()
        model = read_colmap(model_dir)
        root = model_dir.parent.parent if model_dir.parent.name == "sparse" else (
            model_dir.parent if model_dir.name == "sparse" else model_dir)
        images_dir = root / "images" if (root / "images").is_dir() else root
        if len(model.cameras) < 2:
            raise CaptureError(f"{model_dir}: the model has {len(model.cameras)} registered image(s); need at least 2")
        views, pts, cols, scale = _colmap_views(src, model, images_dir, max_size)
        rep = CaptureReport("colmap", len(model.cameras), len(model.cameras), list(model.cameras.names or []),
                            points=len(pts), mean_reprojection_error=model.mean_reprojection_error(),
                            undistorted=model.cameras.dist is not None, scale=scale,
                            seconds={"load": time.perf_counter() - t})
        return views, pts, cols, rep

    photos = src / "images" if (src / "images").is_dir() else src
    paths = _list_images(photos)
    check_photos(paths, min_images)
    tmp = None
    if work_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="studio-sfm-"))
        work = tmp
    else:
        work = Path(work_dir)
        work.mkdir(parents=True, exist_ok=True)
    try:
        rec, sfm_scale, secs = run_sfm(photos, work, sfm, lambda f, m: report(0.8 * f, m))
        n_reg = 0 if rec is None else rec.num_reg_images()
        if n_reg < 2:
            raise CaptureError(
                f"SfM registered {n_reg} of {len(paths)} images in {photos}: the photos do not overlap enough "
                "(take more photos with ~70% overlap, 10-20° apart, sharp and well lit), or give a COLMAP model "
                "or transforms.json with known poses instead"
            )
        model_dir = work / "sparse" / "best"
        model_dir.mkdir(parents=True, exist_ok=True)
        rec.write_text(str(model_dir))
        model = read_colmap(model_dir)
        report(0.85, f"loading {len(model.cameras)} registered views")
        t = time.perf_counter()
        views, pts, cols, scale = _photo_views(photos, model, max_size)
        secs["load"] = time.perf_counter() - t
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    names = list(model.cameras.names or [])
    stems = {Path(n).stem for n in names}
    unreg = [p.name for p in paths if p.stem not in stems]
    rep = CaptureReport("photos", len(paths), len(names), names, unreg, points=len(pts),
                        mean_reprojection_error=model.mean_reprojection_error(),
                        undistorted=model.cameras.dist is not None, scale=scale * sfm_scale, seconds=secs)
    if unreg:
        rep.notes.append(f"SfM registered {len(names)} of {len(paths)} images; not used: {', '.join(unreg)}")
    report(1.0, f"capture: {len(names)} views")
    return views, pts, cols, rep


def _photo_views(photos: Path, model, max_size: int | None) -> tuple[Views, np.ndarray, np.ndarray, float]:
    """Views from the original photos for an SfM model made on downscaled PNG copies (names *.png):
    the model's cameras are rescaled to the photo size."""
    paths = {p.stem: p for p in _list_images(photos)}
    files = [paths[Path(n).stem] for n in model.cameras.names]
    views, scale = load_views(files, model.cameras, max_size)
    return views, model.points3d.copy(), model.colors.astype(np.float64) / 255.0, scale


def export_transforms_json(views: Views, folder: str | Path, image_format: str = "png") -> Path:
    """Write `views` as a nerfstudio dataset: folder/images/frame_00001.png … (sRGB 8 bit; alpha =
    mask when the views have masks) and folder/transforms.json (OpenGL camera axes, PINHOLE).
    Returns the transforms.json path. Files are written atomically."""
    import io

    from PIL import Image

    from studio.assets.atomic import write_bytes_atomic
    from studio.assets.camera_formats import write_transforms_json

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rel = []
    srgb = np.clip(linear_to_srgb(np.clip(views.images, 0, 1)) * 255 + 0.5, 0, 255).astype(np.uint8)
    for i in range(len(views)):
        name = f"images/frame_{i + 1:05d}.{image_format}"
        arr = srgb[i]
        if views.masks is not None:
            arr = np.concatenate([arr, np.clip(views.masks[i] * 255 + 0.5, 0, 255).astype(np.uint8)[..., None]], -1)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG" if image_format == "png" else image_format.upper())
        write_bytes_atomic(folder / name, buf.getvalue())
        rel.append(name)
    return write_transforms_json(views.cameras, folder / "transforms.json", rel)
