"""One entry point to validate any exported file with the checker the industry trusts for it.

GLB/glTF → Khronos glTF-Validator (npm `gltf-validator`, via node); USD/USDA/USDC/USDZ →
usd-core's `pxr.UsdValidation`; splat formats → the studio's own structural check (re-read + sanity).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from studio.errors import UnsupportedFormatError


@dataclass
class ValidationMessage:
    code: str
    severity: str  # "error" | "warning" | "info" | "hint"
    message: str
    pointer: str = ""


@dataclass
class ValidationReport:
    """Outcome of validating one file. `ok` means zero errors."""

    path: str
    tool: str
    errors: int = 0
    warnings: int = 0
    infos: int = 0
    messages: list[ValidationMessage] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def codes(self, severity: str = "error") -> dict[str, int]:
        """Message counts per code at one severity."""
        out: dict[str, int] = {}
        for m in self.messages:
            if m.severity == severity:
                out[m.code] = out.get(m.code, 0) + 1
        return out

    def __str__(self) -> str:
        head = f"{Path(self.path).name}: {self.tool}: {self.errors} errors, {self.warnings} warnings, {self.infos} infos"
        lines = [head] + [
            f"  {m.severity:7s} {m.code}: {m.message}" + (f" ({m.pointer})" if m.pointer else "")
            for m in self.messages
            if m.severity in ("error", "warning")
        ][:50]
        return "\n".join(lines)


# suffix → "module:function" taking a path and returning a ValidationReport.
VALIDATORS = {
    ".glb": "studio.assets.gltf_validator:validate_gltf",
    ".gltf": "studio.assets.gltf_validator:validate_gltf",
    ".usd": "studio.assets.usd_validator:validate_usd",
    ".usda": "studio.assets.usd_validator:validate_usd",
    ".usdc": "studio.assets.usd_validator:validate_usd",
    ".usdz": "studio.assets.usd_validator:validate_usd",
    ".ply": "studio.assets.formats_check:validate_ply",
    ".splat": "studio.assets.formats_check:validate_splat",
    ".spz": "studio.assets.formats_check:validate_splat",
    ".obj": "studio.assets.formats_check:validate_mesh_file",
}


def validate(path: str | Path) -> ValidationReport:
    """Validate `path` with the checker for its format."""
    suffix = Path(path).suffix.lower()
    if suffix not in VALIDATORS:
        raise UnsupportedFormatError(f"no validator for '{suffix}' files; supported: {', '.join(sorted(VALIDATORS))}")
    mod, fn = VALIDATORS[suffix].split(":")
    return getattr(importlib.import_module(mod), fn)(Path(path))
