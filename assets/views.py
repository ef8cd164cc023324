"""Posed images: what reconstruction consumes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cameras import Cameras


@dataclass(frozen=True, eq=False)
class Views:
    """images (N,H,W,3) float32 linear RGB in [0,1]; masks (N,H,W) float32 in [0,1] or None;
    cameras: N OpenCV cameras of size W×H."""

    images: np.ndarray
    cameras: Cameras
    masks: np.ndarray | None = None

    def __post_init__(self) -> None:
        imgs = np.asarray(self.images, dtype=np.float32)
        if imgs.ndim != 4 or imgs.shape[3] != 3:
            raise ValueError(f"images must be (N,H,W,3), got {imgs.shape}")
        n, h, w, _ = imgs.shape
        if len(self.cameras) != n or (self.cameras.width, self.cameras.height) != (w, h):
            raise ValueError(
                f"{n} images of {w}x{h} do not match {len(self.cameras)} cameras of "
                f"{self.cameras.width}x{self.cameras.height}"
            )
        object.__setattr__(self, "images", imgs)
        if self.masks is not None:
            m = np.asarray(self.masks, dtype=np.float32)
            if m.shape != (n, h, w):
                raise ValueError(f"masks must be {(n, h, w)}, got {m.shape}")
            object.__setattr__(self, "masks", m)

    def __len__(self) -> int:
        return len(self.images)
