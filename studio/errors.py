"""Every error the studio raises on purpose, defined once, each with a message a user can act on."""
from __future__ import annotations

from pathlib import Path


class StudioError(Exception):
    """Base of all studio errors. `exit_code` is what the CLI exits with."""

    exit_code = 1


class InvalidAssetError(StudioError):
    """A file could not be read as the format it claims: corrupt, truncated, hostile or inconsistent."""

    exit_code = 3

    def __init__(self, path: str | Path | None, reason: str):
        self.path = None if path is None else str(path)
        self.reason = reason
        where = f"{safe_name(self.path)}: " if self.path else ""
        super().__init__(f"{where}{reason}")


class UnsupportedFormatError(StudioError):
    """The file extension or content names a format the studio cannot read or write."""

    exit_code = 2


class UnsafePathError(StudioError):
    """A user-supplied name tries to leave its folder, or holds control characters or an absurd length."""

    exit_code = 2


class NothingToExportError(StudioError):
    """The asset lacks what the target format stores (e.g. no splats for .splat/.spz, no meshes for .obj/.stl)."""

    exit_code = 2

    def __init__(self, path: str | Path | None, reason: str):
        self.path = None if path is None else str(path)
        self.reason = reason
        where = f"{safe_name(self.path)}: " if self.path else ""
        super().__init__(f"{where}{reason}")


class ValidationFailedError(StudioError):
    """An exported file failed the industry validator (glTF-Validator, UsdValidation). Always a studio bug."""

    exit_code = 4

    def __init__(self, path: str | Path, report: object):
        self.path = str(path)
        self.report = report
        super().__init__(f"{safe_name(self.path)} failed validation:\n{report}")


class ToolUnavailableError(StudioError):
    """An external tool the studio drives (node + gltf-validator, ffmpeg, nerfstudio) is missing."""

    exit_code = 5


class ModelUnavailableError(StudioError):
    """A generative model's weights are not present. The message names the model and how to provide it."""

    exit_code = 6


class DisplayUnavailableError(StudioError):
    """No display / EGL device for rendering or a window."""

    exit_code = 7


class XRRuntimeUnavailableError(StudioError):
    """No OpenXR runtime is installed or active."""

    exit_code = 8


class EmptyResultError(StudioError):
    """A stage produced nothing usable (e.g. TSDF fusion of the views yields an empty mesh). The message says what to try."""

    exit_code = 9


class BlockedContentError(StudioError):
    """A prompt or a generated image was refused by the safety filter; the message says which rule."""

    exit_code = 10


class CancelledError(StudioError):
    """A job or stage was cancelled cooperatively."""

    exit_code = 130


def safe_name(name: str | Path | None, limit: int = 120) -> str:
    """A file name made printable for messages: control characters escaped, very long names shortened."""
    if name is None:
        return "<none>"
    s = str(name)
    s = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in s)
    if len(s) > limit:
        s = s[: limit // 2] + "…" + s[-limit // 2 :]
    return s


class InsecureBindError(StudioError):
    """The server was asked to listen beyond loopback without an API token."""

    exit_code = 2


class CaptureError(StudioError):
    """Photos or a capture cannot become posed views (too few images, mixed image sizes, SfM that
    registers fewer than 2 images). The message says what was found and what to do."""

    exit_code = 11
