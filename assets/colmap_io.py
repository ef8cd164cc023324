"""COLMAP sparse models (TEXT and BINARY) ⇄ `Cameras` + points, through pycolmap 4.2.1.

COLMAP stores world-to-camera poses (R|t, quaternion QW QX QY QZ in the files) with OpenCV
camera axes and the same pixel convention as `Cameras` (top-left pixel centre at (0.5, 0.5)), so
the conversion is an inverse pose and a parameter re-packing. Supported camera models:
SIMPLE_PINHOLE (f,cx,cy), PINHOLE (fx,fy,cx,cy), SIMPLE_RADIAL (f,cx,cy,k), RADIAL
(f,cx,cy,k1,k2), OPENCV (fx,fy,cx,cy,k1,k2,p1,p2); the radial ones map to `Cameras.dist`.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio.errors import InvalidAssetError, UnsupportedFormatError

from .cameras import Cameras

MODEL_FILES = ("cameras", "images", "points3D", "rigs", "frames")
SUPPORTED_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")


@dataclass(frozen=True, eq=False)
class ImageObservations:
    """The 2D keypoints of one image: xy (M,2) float64 pixels (COLMAP convention) and
    point3d_ids (M,) int64, the COLMAP id of the 3D point each one observes or -1 for none."""

    xy: np.ndarray
    point3d_ids: np.ndarray

    def __post_init__(self) -> None:
        xy = np.asarray(self.xy, dtype=np.float64).reshape(-1, 2)
        ids = np.asarray(self.point3d_ids, dtype=np.int64).reshape(-1)
        if len(xy) != len(ids):
            raise ValueError(f"{len(xy)} keypoints but {len(ids)} point3d_ids")
        object.__setattr__(self, "xy", xy)
        object.__setattr__(self, "point3d_ids", ids)


@dataclass(frozen=True, eq=False)
class ColmapModel:
    """A COLMAP sparse reconstruction in studio types.

    cameras: N registered images as `Cameras`, sorted by image name (names = image names);
    image_ids: (N,) int64 COLMAP image ids; point_ids: (P,) int64 COLMAP 3D point ids;
    points3d: (P,3) float64 world positions; colors: (P,3) uint8 RGB; errors: (P,) float64
    mean reprojection error of each point in pixels (as stored; -1 when unknown);
    observations: N `ImageObservations`, aligned with `cameras`.
    """

    cameras: Cameras
    points3d: np.ndarray
    colors: np.ndarray
    errors: np.ndarray
    point_ids: np.ndarray
    observations: tuple[ImageObservations, ...]
    image_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        pts = np.asarray(self.points3d, dtype=np.float64).reshape(-1, 3)
        p = len(pts)
        cols = np.asarray(self.colors).reshape(-1, 3)
        if len(cols) != p or (cols.size and (cols.min() < 0 or cols.max() > 255)):
            raise ValueError(f"colors must be ({p},3) in 0..255, got {cols.shape}")
        errs = np.asarray(self.errors, dtype=np.float64).reshape(-1)
        pids = np.asarray(self.point_ids, dtype=np.int64).reshape(-1)
        if len(errs) != p or len(pids) != p:
            raise ValueError(f"errors {errs.shape} and point_ids {pids.shape} must have {p} entries")
        if len(np.unique(pids)) != p or (p and pids.min() < 0):
            raise ValueError("point_ids must be unique and non-negative")
        obs = tuple(self.observations)
        if len(obs) != len(self.cameras):
            raise ValueError(f"{len(obs)} observation lists for {len(self.cameras)} images")
        n = len(self.cameras)
        iids = np.arange(1, n + 1, dtype=np.int64) if self.image_ids is None else np.asarray(self.image_ids, np.int64)
        if iids.shape != (n,) or len(np.unique(iids)) != n or (n and iids.min() < 1):
            raise ValueError(f"image_ids must be {n} unique positive ids")
        object.__setattr__(self, "points3d", pts)
        object.__setattr__(self, "colors", cols.astype(np.uint8))
        object.__setattr__(self, "errors", errs)
        object.__setattr__(self, "point_ids", pids)
        object.__setattr__(self, "observations", obs)
        object.__setattr__(self, "image_ids", iids)

    @classmethod
    def from_cameras(cls, cameras: Cameras) -> "ColmapModel":
        """A model with poses only: no 3D points, no keypoints."""
        empty = ImageObservations(np.zeros((0, 2)), np.zeros(0, np.int64))
        return cls(cameras, np.zeros((0, 3)), np.zeros((0, 3), np.uint8), np.zeros(0), np.zeros(0, np.int64),
                   tuple(empty for _ in range(len(cameras))))

    def point_index(self, ids: np.ndarray) -> np.ndarray:
        """Rows of `points3d` for COLMAP point ids (any shape, int64); -1 where an id is -1 or unknown."""
        ids = np.asarray(ids, dtype=np.int64)
        order = np.argsort(self.point_ids)
        sorted_ids = self.point_ids[order]
        pos = np.clip(np.searchsorted(sorted_ids, ids), 0, max(len(sorted_ids) - 1, 0))
        found = (len(sorted_ids) > 0) & (ids >= 0)
        if len(sorted_ids):
            found &= sorted_ids[pos] == ids
            return np.where(found, order[pos], -1)
        return np.full(ids.shape, -1, np.int64)

    def reprojection_errors(self) -> list[np.ndarray]:
        """Per image, the pixel distance between each observation and its 3D point projected
        with `cameras` (distortion included): a list of N (M_i,) float64 arrays, one entry per
        keypoint that observes a 3D point, in keypoint order."""
        out = []
        for i, ob in enumerate(self.observations):
            mask = ob.point3d_ids >= 0
            rows = self.point_index(ob.point3d_ids[mask])
            if (rows < 0).any():
                raise ValueError(f"image {i} observes 3D point ids that are not in the model")
            uv, _ = self.cameras[i].project(self.points3d[rows])
            out.append(np.linalg.norm(uv[0] - ob.xy[mask], axis=1))
        return out

    def point_errors(self) -> np.ndarray:
        """(P,) float64: each 3D point's mean reprojection error over its track, recomputed with
        `cameras` (COLMAP's `Point3D.error`); NaN for a point that no image observes."""
        errs = self.reprojection_errors()
        rows = [self.point_index(ob.point3d_ids[ob.point3d_ids >= 0]) for ob in self.observations]
        rows_all = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        e_all = np.concatenate(errs) if errs else np.zeros(0)
        p = len(self.points3d)
        total = np.bincount(rows_all, e_all, minlength=p)
        count = np.bincount(rows_all, minlength=p)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / np.maximum(count, 1), np.nan)

    def mean_reprojection_error(self) -> float:
        """Mean reprojection error in pixels exactly as COLMAP reports it
        (`Reconstruction.compute_mean_reprojection_error`): the mean over observed 3D points of
        each point's mean error over its track, recomputed from our projection; 0 without points."""
        pe = self.point_errors()
        pe = pe[np.isfinite(pe)]
        return float(pe.mean()) if len(pe) else 0.0


def find_model_folder(folder: str | Path) -> Path:
    """The folder holding cameras/images/points3D (.txt or .bin): `folder` itself, or
    `folder/sparse/0` or `folder/sparse` for a capture root."""
    folder = Path(folder)
    for cand in (folder, folder / "sparse" / "0", folder / "sparse"):
        if any((cand / f"{stem}{ext}").is_file() for stem in ("cameras", "images") for ext in (".txt", ".bin")):
            return cand
    raise InvalidAssetError(folder, "no COLMAP model here (expected cameras/images/points3D .txt or .bin)")


def _camera_to_k_dist(model: str, params: np.ndarray, where: Path) -> tuple[np.ndarray, np.ndarray | None]:
    p = [float(v) for v in params]
    if model == "SIMPLE_PINHOLE":
        (f, cx, cy), dist = p, None
        fx = fy = f
    elif model == "PINHOLE":
        (fx, fy, cx, cy), dist = p, None
    elif model == "SIMPLE_RADIAL":
        f, cx, cy, k = p
        fx = fy = f
        dist = np.array([k, 0.0, 0.0, 0.0])
    elif model == "RADIAL":
        f, cx, cy, k1, k2 = p
        fx = fy = f
        dist = np.array([k1, k2, 0.0, 0.0])
    elif model == "OPENCV":
        fx, fy, cx, cy = p[:4]
        dist = np.array(p[4:8])
    else:
        raise UnsupportedFormatError(
            f"{where}: COLMAP camera model {model} is not supported (supported: {', '.join(SUPPORTED_MODELS)})"
        )
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]), dist


def camera_model_for(K: np.ndarray, dist: np.ndarray | None) -> tuple[str, list[float]]:
    """The simplest COLMAP model that holds K (3,3) and dist (4,) exactly: (name, params).

    No distortion → SIMPLE_PINHOLE (fx = fy) or PINHOLE; with distortion → SIMPLE_RADIAL,
    RADIAL or OPENCV. Raises ValueError for a skewed K, which COLMAP cannot represent."""
    K = np.asarray(K, dtype=np.float64)
    if K[0, 1] != 0 or K[1, 0] != 0 or not np.array_equal(K[2], [0.0, 0.0, 1.0]):
        raise ValueError(f"COLMAP cannot represent K with skew or a non-[0,0,1] last row: {K.tolist()}")
    fx, fy, cx, cy = float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
    if dist is None:
        return ("SIMPLE_PINHOLE", [fx, cx, cy]) if fx == fy else ("PINHOLE", [fx, fy, cx, cy])
    k1, k2, p1, p2 = (float(v) for v in dist)
    if fx == fy and p1 == 0 and p2 == 0:
        return ("SIMPLE_RADIAL", [fx, cx, cy, k1]) if k2 == 0 else ("RADIAL", [fx, cx, cy, k1, k2])
    return "OPENCV", [fx, fy, cx, cy, k1, k2, p1, p2]


def read_colmap(folder: str | Path) -> ColmapModel:
    """Read a COLMAP sparse model (TEXT or BINARY; `folder`, `folder/sparse/0` or `folder/sparse`).

    Only registered images (with a pose) are returned, sorted by name. All images must share one
    image size (a `Cameras` limitation): otherwise UnsupportedFormatError. Broken files raise
    InvalidAssetError naming the folder and pycolmap's reason."""
    import pycolmap

    where = find_model_folder(folder)
    try:
        rec = pycolmap.Reconstruction(str(where))
    except Exception as e:  # pycolmap raises ValueError/IndexError/RuntimeError for broken files
        raise InvalidAssetError(where, f"cannot read COLMAP model: {e}") from e

    cam_k: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
    sizes = set()
    for cid, cam in rec.cameras.items():
        cam_k[cid] = _camera_to_k_dist(cam.model.name, np.asarray(cam.params), where)
        sizes.add((int(cam.width), int(cam.height)))

    images = sorted((im for im in rec.images.values() if im.has_pose), key=lambda im: im.name)
    if not images:
        raise InvalidAssetError(where, "COLMAP model has no registered images")
    used_sizes = {(int(rec.cameras[im.camera_id].width), int(rec.cameras[im.camera_id].height)) for im in images}
    if len(used_sizes) != 1:
        raise UnsupportedFormatError(
            f"{where}: images have different sizes {sorted(used_sizes)}; Cameras holds one image size"
        )
    width, height = used_sizes.pop()

    invalid = int(pycolmap.INVALID_POINT3D_ID)
    ks, c2ws, dists, obs = [], [], [], []
    any_dist = any(d is not None for d in (cam_k[im.camera_id][1] for im in images))
    for im in images:
        k, d = cam_k[im.camera_id]
        w2c = np.eye(4)
        w2c[:3, :4] = np.asarray(im.cam_from_world().matrix(), dtype=np.float64)
        c2w = np.eye(4)
        c2w[:3, :3] = w2c[:3, :3].T
        c2w[:3, 3] = -w2c[:3, :3].T @ w2c[:3, 3]
        ks.append(k)
        c2ws.append(c2w)
        dists.append(np.zeros(4) if d is None else d)
        pts2d = im.points2D
        xy = np.array([p.xy for p in pts2d], dtype=np.float64).reshape(-1, 2)
        ids = np.array([-1 if (v := int(p.point3D_id)) == invalid else v for p in pts2d], dtype=np.int64)
        obs.append(ImageObservations(xy, ids))

    pids = np.array(sorted(rec.points3D.keys()), dtype=np.int64)
    pts = [rec.points3D[int(i)] for i in pids]
    try:
        cams = Cameras(
            np.stack(ks), np.stack(c2ws), width, height, tuple(im.name for im in images),
            np.stack(dists) if any_dist else None,
        )
    except ValueError as e:
        raise InvalidAssetError(where, str(e)) from e
    return ColmapModel(
        cameras=cams,
        points3d=np.array([p.xyz for p in pts], dtype=np.float64).reshape(-1, 3),
        colors=np.array([p.color for p in pts], dtype=np.uint8).reshape(-1, 3),
        errors=np.array([p.error for p in pts], dtype=np.float64),
        point_ids=pids,
        observations=tuple(obs),
        image_ids=np.array([im.image_id for im in images], dtype=np.int64),
    )


def to_pycolmap(model: ColmapModel | Cameras):
    """Build a `pycolmap.Reconstruction` (trivial rigs and frames, as COLMAP 3.12+ wants).

    Cameras with identical K and distortion share one COLMAP camera (ids 1.. in order of first
    use); image names default to `image_00001` … when `cameras.names` is None."""
    import pycolmap

    if isinstance(model, Cameras):
        model = ColmapModel.from_cameras(model)
    cams = model.cameras
    rec = pycolmap.Reconstruction()
    cam_ids: dict[tuple, int] = {}
    names = cams.names or tuple(f"image_{i + 1:05d}" for i in range(len(cams)))
    w2c = cams.world_to_cam
    for i in range(len(cams)):
        d = None if cams.dist is None else cams.dist[i]
        name_, params = camera_model_for(cams.K[i], d)
        key = (name_, tuple(params))
        if key not in cam_ids:
            cam_ids[key] = len(cam_ids) + 1
            rec.add_camera_with_trivial_rig(
                pycolmap.Camera(camera_id=cam_ids[key], model=name_, width=cams.width, height=cams.height,
                                params=params)
            )
        ob = model.observations[i]
        img = pycolmap.Image(name=names[i], keypoints=ob.xy, camera_id=cam_ids[key], image_id=int(model.image_ids[i]))
        rec.add_image_with_trivial_frame(img, pycolmap.Rigid3d(w2c[i, :3, :4]))

    # tracks from observations: (point id, image id, keypoint index)
    per_point: dict[int, list[tuple[int, int]]] = {int(p): [] for p in model.point_ids}
    for i, ob in enumerate(model.observations):
        for idx in np.flatnonzero(ob.point3d_ids >= 0):
            pid = int(ob.point3d_ids[idx])
            if pid not in per_point:
                raise ValueError(f"image {names[i]} keypoint {idx} observes unknown 3D point {pid}")
            per_point[pid].append((int(model.image_ids[i]), int(idx)))
    for row, pid in enumerate(model.point_ids):
        track = pycolmap.Track()
        for iid, idx in per_point[int(pid)]:
            track.add_element(iid, idx)
        pt = pycolmap.Point3D(xyz=model.points3d[row], color=model.colors[row], error=float(model.errors[row]))
        pt.track = track
        rec.add_point3D_with_id(int(pid), pt)
    return rec


def write_colmap(model: ColmapModel | Cameras, folder: str | Path, binary: bool = True) -> Path:
    """Write a COLMAP model (cameras, images, points3D, rigs, frames; `.bin` or `.txt`) into `folder`.

    Each file is written to a temporary folder first and renamed into place, so no file is ever
    half-written; model files of the other format in `folder` are removed so readers are not
    confused. Returns `folder`."""
    folder = Path(folder)
    rec = to_pycolmap(model)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".colmap.", dir=folder))
    try:
        (rec.write_binary if binary else rec.write_text)(str(tmp))
        ext, other = (".bin", ".txt") if binary else (".txt", ".bin")
        for stem in MODEL_FILES:
            src = tmp / f"{stem}{ext}"
            if src.exists():
                os.replace(src, folder / f"{stem}{ext}")
            with contextlib.suppress(FileNotFoundError):
                (folder / f"{stem}{other}").unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
