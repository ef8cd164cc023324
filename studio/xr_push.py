"""`studio xr push FILE [--server URL]`: send a file to the headsets watching a running studio."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import InvalidAssetError, StudioError, safe_name

DEFAULT_SERVER = "http://127.0.0.1:7860"


class XRPushError(StudioError):
    """The studio server could not be reached or refused the file."""


def default_server() -> str:
    """$STUDIO_URL or the local studio (http://127.0.0.1:7860)."""
    return os.environ.get("STUDIO_URL") or DEFAULT_SERVER


def push(file: str | Path, server: str | None = None, token: str | None = None, replace: str | None = None,
         timeout: float = 120.0) -> str:
    """Upload `file` (.glb, splat .ply/.splat/.spz/.ksplat, or a mesh the studio converts to GLB)
    to ``<server>/v1/scene/push`` and return its scene asset id.

    `token` defaults to $STUDIO_TOKEN; `replace` swaps the file of an existing scene asset in place.
    Raises InvalidAssetError when the file is missing, XRPushError when the server is unreachable
    or rejects it (the server's reason in the message).
    """
    import httpx

    path = Path(file)
    if not path.is_file():
        raise InvalidAssetError(path, "no such file")
    base = (server or default_server()).rstrip("/")
    token = token if token is not None else os.environ.get("STUDIO_TOKEN")
    headers = {"Content-Type": "application/octet-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    params = {"name": path.name}
    if replace:
        params["replace"] = replace
    try:
        with open(path, "rb") as f:
            r = httpx.post(f"{base}/v1/scene/push", params=params, content=f, headers=headers, timeout=timeout)
    except httpx.HTTPError as e:
        raise XRPushError(f"cannot reach the studio at {base} ({e}); start it with `studio serve` or pass --server URL") from None
    if r.status_code != 201:
        try:
            detail = r.json().get("detail", r.text)
        except ValueError:
            detail = r.text
        raise XRPushError(f"{base} refused {safe_name(path.name)} (HTTP {r.status_code}): {detail}")
    return str(r.json()["id"])
