"""Resolving names that come from outside (URIs inside files, upload names) without leaving a folder."""
from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from .errors import UnsafePathError, safe_name

MAX_NAME = 255


def check_name(name: str) -> str:
    """Refuse control characters, NUL, absurd length and absolute/drive names; return the name."""
    if not isinstance(name, str) or not name:
        raise UnsafePathError("empty file name")
    if len(name) > 4096 or any(len(p) > MAX_NAME for p in name.replace("\\", "/").split("/")):
        raise UnsafePathError(f"file name too long ({len(name)} characters): {safe_name(name)}")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise UnsafePathError(f"file name contains control characters: {safe_name(name)}")
    return name


def safe_child(base: str | Path, name: str) -> Path:
    """Resolve `name` (a relative URI or upload name) inside folder `base`.

    Raises UnsafePathError for `..` escapes, absolute paths, control characters or absurd length.
    """
    check_name(name)
    if os.path.isabs(name) or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafePathError(f"absolute path not allowed here: {safe_name(name)}")
    base_r = Path(base).resolve()
    target = (base_r / name).resolve()
    if target != base_r and base_r not in target.parents:
        raise UnsafePathError(f"{safe_name(name)} points outside {safe_name(str(base_r))}")
    return target


def sanitize_upload_name(name: str) -> str:
    """A harmless basename for a user upload: folders dropped, odd characters replaced."""
    base = name.replace("\\", "/").split("/")[-1]
    base = "".join(ch if (ch.isalnum() or ch in "._-") else "_" for ch in base).lstrip(".")
    return (base or "upload")[:MAX_NAME]
