"""Camera conventions: `Cameras` (OpenCV) ⇄ transforms.json, COLMAP, OpenGL and glTF.

Axes. OpenCV (internal): camera x right, y down, z forward. OpenGL / Blender / nerfstudio /
instant-ngp / glTF: x right, y up, z back (the camera looks down -z). The two differ by
`CV_TO_GL` = diag(1,-1,-1,1) applied on the camera side: c2w_gl = c2w_cv @ CV_TO_GL. World
axes are never changed here.

Pixels. All formats here share COLMAP's convention: the top-left pixel's centre is (0.5, 0.5), so
cx, cy and keypoints move between them unchanged. An OpenGL viewport uses the same convention
(pixel i covers [i, i+1]), so `opengl_projection` maps u to window x exactly.

COLMAP lives in `studio.assets.colmap_io` and is re-exported here.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from studio.errors import InvalidAssetError, UnsupportedFormatError
from studio.paths import safe_child

from .atomic import write_bytes_atomic
from .cameras import CV_TO_GL, Cameras
from .colmap_io import (  # noqa: F401  (re-exported)
    ColmapModel,
    ImageObservations,
    camera_model_for,
    read_colmap,
    to_pycolmap,
    write_colmap,
)

DIST_KEYS = ("k1", "k2", "p1", "p2")
_PINHOLE_MODELS = ("PINHOLE", "SIMPLE_PINHOLE")
_DISTORTED_MODELS = ("OPENCV", "SIMPLE_RADIAL", "RADIAL")

# ---------------------------------------------------------------------------------------------
# OpenCV ⇄ OpenGL


def opencv_to_opengl_c2w(c2w: np.ndarray) -> np.ndarray:
    """(…,4,4) camera-to-world with OpenCV camera axes → OpenGL camera axes (x right, y up, z back).

    The same matrix flips back: this function is its own inverse (`opengl_to_opencv_c2w`)."""
    return np.asarray(c2w, dtype=np.float64) @ CV_TO_GL


opengl_to_opencv_c2w = opencv_to_opengl_c2w


def opengl_view_matrix(c2w: np.ndarray) -> np.ndarray:
    """(…,4,4) OpenGL view matrix (world → GL eye space) from an OpenCV camera-to-world pose."""
    c2w = np.asarray(c2w, dtype=np.float64)
    r = c2w[..., :3, :3]
    t = c2w[..., :3, 3:4]
    w2c = np.zeros(c2w.shape)
    w2c[..., :3, :3] = np.swapaxes(r, -1, -2)
    w2c[..., :3, 3:4] = -np.swapaxes(r, -1, -2) @ t
    w2c[..., 3, 3] = 1.0
    return CV_TO_GL @ w2c


def opengl_projection(
    K: np.ndarray, width: int, height: int, near: float, far: float, y_down: bool = False
) -> np.ndarray:
    """The OpenGL clip matrix (4,4) float64 that reproduces pinhole K (3,3) exactly.

    Eye space is OpenGL's (camera looks down -z); depth maps [near, far] → NDC z [-1, 1];
    w_clip = -z_eye = the OpenCV depth. Skew K[0,1] is honoured. With the viewport
    (0, 0, width, height), window x equals the OpenCV pixel coordinate u, and:

    - y_down=False (default, standard GL): NDC +y is the image top, so window y = height - v.
      glReadPixels returns rows bottom-up: the image is `framebuffer[::-1]` (row 0 = top).
      Triangle winding is preserved (CCW front faces stay CCW).
    - y_down=True: NDC +y is the image bottom, so window y = v and the rows glReadPixels returns
      are already the image top-down (no flip). This mirrors winding: use glFrontFace(GL_CW) or
      disable culling.
    """
    K = np.asarray(K, dtype=np.float64)
    if not (0 < near < far):
        raise ValueError(f"need 0 < near < far, got near={near}, far={far}")
    fx, s, cx = K[0]
    fy, cy = K[1, 1], K[1, 2]
    w, h = float(width), float(height)
    p = np.zeros((4, 4))
    p[0] = [2 * fx / w, -2 * s / w, 1 - 2 * cx / w, 0]
    p[1] = [0, 2 * fy / h, 2 * cy / h - 1, 0]
    p[2] = [0, 0, -(far + near) / (far - near), -2 * far * near / (far - near)]
    p[3] = [0, 0, -1, 0]
    if y_down:
        p[1] = -p[1]
    return p


# ---------------------------------------------------------------------------------------------
# glTF cameras


def camera_to_gltf(K: np.ndarray, width: int, height: int, znear: float = 0.01) -> tuple[float, float, float]:
    """glTF `camera.perspective` (yfov radians, aspectRatio, znear) for pinhole K (3,3).

    aspectRatio = (width·fy)/(height·fx), so fx ≠ fy survives. glTF cannot express an
    off-centre principal point or skew: those are dropped (K from `gltf_to_K` is centred)."""
    K = np.asarray(K, dtype=np.float64)
    fx, fy = float(K[0, 0]), float(K[1, 1])
    yfov = 2.0 * float(np.arctan(0.5 * height / fy))
    aspect = (width * fy) / (height * fx)
    return yfov, aspect, float(znear)


def gltf_to_K(yfov: float, aspect: float | None, width: int, height: int) -> np.ndarray:
    """(3,3) K with a centred principal point from glTF yfov (radians) and aspectRatio
    (None = the image's own width/height, as glTF viewers do)."""
    fy = 0.5 * height / np.tan(0.5 * float(yfov))
    a = width / height if aspect is None else float(aspect)
    fx = fy * width / (height * a)
    return np.array([[fx, 0.0, width / 2.0], [0.0, fy, height / 2.0], [0.0, 0.0, 1.0]])


def cam_to_world_to_gltf_node(c2w: np.ndarray) -> np.ndarray:
    """(…,4,4) glTF camera-node world matrix (camera looks down -Z, +Y up) from an OpenCV pose.
    glTF `node.matrix` is column-major: write `m.T.reshape(-1).tolist()`."""
    return opencv_to_opengl_c2w(c2w)


def gltf_node_to_cam_to_world(m: np.ndarray) -> np.ndarray:
    """(…,4,4) OpenCV camera-to-world from a glTF camera node's world matrix; any node scale
    is removed (glTF cameras ignore scale)."""
    m = np.array(m, dtype=np.float64)
    norms = np.linalg.norm(m[..., :3, :3], axis=-2, keepdims=True)
    if np.any(norms < 1e-12):
        raise ValueError("camera node matrix has a zero scale")
    m[..., :3, :3] = m[..., :3, :3] / norms
    return m @ CV_TO_GL


# ---------------------------------------------------------------------------------------------
# transforms.json (nerfstudio / instant-ngp / Blender NeRF)


def _intrinsics_dict(K: np.ndarray, dist: np.ndarray | None) -> dict[str, float]:
    d = {"fl_x": float(K[0, 0]), "fl_y": float(K[1, 1]), "cx": float(K[0, 2]), "cy": float(K[1, 2])}
    if dist is not None:
        d.update({k: float(v) for k, v in zip(DIST_KEYS, dist)})
    return d


def cameras_to_transforms_json(cams: Cameras, image_paths: list[str] | None = None) -> dict[str, Any]:
    """The transforms.json dict (nerfstudio "Data conventions") for `cams`.

    transform_matrix is camera-to-world in OpenGL camera axes, world axes unchanged (nerfstudio's
    dataparser re-orients and rescales on load; we write the raw convention). camera_model is
    "OPENCV" with k1,k2,p1,p2 when `cams.dist` is set, else "PINHOLE". Intrinsics are written once
    at the top level when all cameras share them, else per frame. file_path = image_paths[i],
    else cams.names[i], else "images/frame_00001.png" …. Skewed K raises ValueError."""
    if np.any(cams.K[:, 0, 1] != 0):
        raise ValueError("transforms.json cannot represent a skewed K (K[0,1] != 0)")
    n = len(cams)
    if image_paths is not None and len(image_paths) != n:
        raise ValueError(f"{len(image_paths)} image paths for {n} cameras")
    paths = list(image_paths or cams.names or [f"images/frame_{i + 1:05d}.png" for i in range(n)])
    dist = cams.dist
    intr = [_intrinsics_dict(cams.K[i], None if dist is None else dist[i]) for i in range(n)]
    shared = all(d == intr[0] for d in intr)
    data: dict[str, Any] = {"camera_model": "OPENCV" if dist is not None else "PINHOLE"}
    if shared:
        data.update(intr[0])
    data.update({"w": cams.width, "h": cams.height})
    c2w_gl = opencv_to_opengl_c2w(cams.cam_to_world)
    frames = []
    for i in range(n):
        fr: dict[str, Any] = {"file_path": str(paths[i])}
        if not shared:
            fr.update(intr[i])
        fr["transform_matrix"] = c2w_gl[i].tolist()
        frames.append(fr)
    data["frames"] = frames
    return data


def write_transforms_json(cams: Cameras, path: str | Path, image_paths: list[str] | None = None) -> Path:
    """Write `cameras_to_transforms_json(cams, image_paths)` to `path` atomically; returns path."""
    path = Path(path)
    data = cameras_to_transforms_json(cams, image_paths)
    write_bytes_atomic(path, (json.dumps(data, indent=2, allow_nan=False) + "\n").encode("utf-8"))
    return path


def _image_size(file: Path, where: Path | None) -> tuple[int, int]:
    from PIL import Image

    cands = [file] if file.suffix else [file, file.with_suffix(".png"), file.with_suffix(".jpg")]
    for c in cands:
        if c.is_file():
            with Image.open(c) as im:
                return im.size
    raise InvalidAssetError(where, f"no w/h given and image {file.name} not found to read its size")


def cameras_from_transforms_json(
    data_or_path: dict[str, Any] | str | Path, undo_applied_transform: bool = False
) -> tuple[Cameras, list[str]]:
    """Read transforms.json (nerfstudio, instant-ngp or Blender NeRF) into OpenCV `Cameras`.

    Returns (cameras, file paths). Given a path, file paths are resolved inside the json's folder
    (UnsafePathError for ones that escape it) and Cameras.names are the raw file_path strings;
    given a dict, both are the raw strings. Per-frame intrinsics override top-level ones;
    fl_x/fl_y may come from camera_angle_x/camera_angle_y; missing cx, cy default to the image
    centre; missing w, h are read from the first image (path input only). With
    undo_applied_transform, nerfstudio's "applied_transform" (ns-process-data's world re-orientation)
    is inverted so poses return to the source (e.g. COLMAP) world frame. Broken input raises
    InvalidAssetError; fisheye models or k3/k4 distortion raise UnsupportedFormatError."""
    where: Path | None = None
    if isinstance(data_or_path, (str, Path)):
        where = Path(data_or_path)
        try:
            data = json.loads(where.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InvalidAssetError(where, f"cannot read transforms.json: {e}") from e
    else:
        data = data_or_path
    try:
        return _parse_transforms(data, where, undo_applied_transform)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise InvalidAssetError(where, f"invalid transforms.json: {type(e).__name__}: {e}") from e


def _parse_transforms(data: Any, where: Path | None, undo: bool) -> tuple[Cameras, list[str]]:
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list) or not data["frames"]:
        raise InvalidAssetError(where, "transforms.json needs a non-empty 'frames' list")
    frames = data["frames"]
    raw_paths = []
    for i, fr in enumerate(frames):
        if not isinstance(fr, dict) or not isinstance(fr.get("file_path"), str):
            raise InvalidAssetError(where, f"frame {i} has no file_path string")
        raw_paths.append(fr["file_path"])
    base = where.parent if where is not None else None
    files = [str(safe_child(base, p)) for p in raw_paths] if base is not None else list(raw_paths)

    def get(fr: dict, key: str, default=None):
        v = fr.get(key, data.get(key, default))
        return v

    ks, dists, c2ws, sizes = [], [], [], set()
    has_dist = False
    for i, fr in enumerate(frames):
        model = str(get(fr, "camera_model", "")).upper()
        if model and model not in _PINHOLE_MODELS + _DISTORTED_MODELS:
            raise UnsupportedFormatError(
                f"{where or 'transforms.json'}: camera_model {model} is not supported "
                f"(supported: {', '.join(_PINHOLE_MODELS + _DISTORTED_MODELS)})"
            )
        for extra in ("k3", "k4"):
            if float(get(fr, extra, 0.0)) != 0.0:
                raise UnsupportedFormatError(f"{where or 'transforms.json'}: {extra} distortion is not supported")
        w, h = get(fr, "w"), get(fr, "h")
        if w is None or h is None:
            if base is None:
                raise InvalidAssetError(where, f"frame {i}: no image size (w, h)")
            w, h = _image_size(Path(files[i]), where)
        w, h = int(w), int(h)
        sizes.add((w, h))
        fx, fy = get(fr, "fl_x"), get(fr, "fl_y")
        ax, ay = get(fr, "camera_angle_x"), get(fr, "camera_angle_y")
        if fx is None and ax is not None:
            fx = 0.5 * w / np.tan(0.5 * float(ax))
        if fy is None and ay is not None:
            fy = 0.5 * h / np.tan(0.5 * float(ay))
        fx, fy = (fy if fx is None else fx), (fx if fy is None else fy)
        if fx is None:
            raise InvalidAssetError(where, f"frame {i}: no focal length (fl_x/fl_y/camera_angle_x)")
        cx, cy = float(get(fr, "cx", w / 2.0)), float(get(fr, "cy", h / 2.0))
        ks.append([[float(fx), 0.0, cx], [0.0, float(fy), cy], [0.0, 0.0, 1.0]])
        d = [float(get(fr, k, 0.0)) for k in DIST_KEYS]
        # nerfstudio applies k1..p2 whenever present; "OPENCV" etc. keep zero distortion explicit
        has_dist |= model in _DISTORTED_MODELS or any(v != 0.0 for v in d)
        dists.append(d)
        m = np.asarray(fr["transform_matrix"], dtype=np.float64)
        if m.shape == (3, 4):
            m = np.vstack([m, [0.0, 0.0, 0.0, 1.0]])
        if m.shape != (4, 4):
            raise InvalidAssetError(where, f"frame {i}: transform_matrix must be 4x4 or 3x4, got {m.shape}")
        if not np.isfinite(m).all():
            raise InvalidAssetError(where, f"frame {i}: transform_matrix has NaN or Inf")
        r = m[:3, :3]
        if np.abs(r.T @ r - np.eye(3)).max() > 1e-4 or np.linalg.det(r) < 0:
            raise InvalidAssetError(where, f"frame {i}: transform_matrix rotation is not a proper rotation")
        c2ws.append(m)
    if len(sizes) != 1:
        raise UnsupportedFormatError(
            f"{where or 'transforms.json'}: frames have different sizes {sorted(sizes)}; Cameras holds one size"
        )
    c2w = np.stack(c2ws)
    if undo and "applied_transform" in data:
        a = np.asarray(data["applied_transform"], dtype=np.float64)
        if a.shape == (3, 4):
            a = np.vstack([a, [0.0, 0.0, 0.0, 1.0]])
        if a.shape != (4, 4):
            raise InvalidAssetError(where, f"applied_transform must be 3x4 or 4x4, got {a.shape}")
        c2w = np.linalg.inv(a) @ c2w
    w, h = sizes.pop()
    cams = Cameras(
        np.array(ks), opengl_to_opencv_c2w(c2w), w, h, tuple(raw_paths), np.array(dists) if has_dist else None
    )
    return cams, files
