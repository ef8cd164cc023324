"""Writing a pipeline's deliverables: validated asset files, previews and the validation report.

Used by every export stage so each writes files the same way: atomically, each validated by the
format's checker, the reports collected in `validation.json`, a thumbnail and a turntable beside.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from studio.assets import Asset
from studio.assets.io import save
from studio.assets.validate import validate


@dataclass
class Bundle:
    """Files written into `out` (result name → path) and their validation reports."""

    out: Path
    files: dict[str, Path] = field(default_factory=dict)
    reports: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.out.mkdir(parents=True, exist_ok=True)

    def asset(self, key: str, asset: Asset, name: str) -> Path:
        """Write `asset` to out/name (format by extension) and validate it."""
        path = save(asset, self.out / name, validate=False)
        r = validate(path)
        self.reports.append(asdict(r) | {"ok": r.ok})
        self.files[key] = path
        return path

    def asset_set(self, prefix: str, asset: Asset, stem: str) -> None:
        """GLB + USDZ of the meshes and a 3DGS PLY of the splats (when present), each validated."""
        meshes = Asset(meshes=asset.meshes, metadata=asset.metadata)
        if asset.meshes:
            self.asset(f"{prefix}glb", meshes, f"{stem}.glb")
            self.asset(f"{prefix}usdz", meshes, f"{stem}.usdz")
        if asset.splats is not None and len(asset.splats):
            self.asset(f"{prefix}splat_ply", Asset(splats=asset.splats, metadata=asset.metadata), f"{stem}_splats.ply")

    def previews(self, asset: Asset, frames: int = 48, progress: Callable[[float, str], None] | None = None) -> None:
        """thumbnail.png (512², transparent) and turntable.mp4 (384², H.264) of `asset`."""
        from studio.renderers.thumbnails import render_turntable, thumbnail

        self.files["thumbnail"] = thumbnail(asset, self.out / "thumbnail.png", size=512)
        self.files["turntable"] = render_turntable(asset, self.out / "turntable.mp4", frames=frames, size=384, progress=progress)

    def finish(self) -> dict[str, Path]:
        """Write validation.json and return the result files."""
        path = self.out / "validation.json"
        path.write_text(json.dumps(self.reports, indent=2))
        self.files["validation"] = path
        return self.files
