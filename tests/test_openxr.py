"""OpenXR viewer: view maths, scene-stream state, the real no-runtime path (loader with no runtime,
in a subprocess), and — marker `openxr`, when XR_RUNTIME_JSON names a runtime (CI builds Monado
with .ci/build_monado.sh) — a real session on Monado's simulated HMD with pixels read back from
the swapchains."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from studio.assets.cameras import CV_TO_GL, Cameras
from studio.renderers.openxr import ViewerScene, _matrix, placement_in_front, stream_url_for
from studio.renderers.openxr_session import fov_to_K, pose_matrix, projection_from_fov, quat_to_matrix, view_camera
from studio.renderers.raster import projection_from_K

REPO = Path(__file__).resolve().parents[1]
# what Monado's simulated HMD reports (peer README): asymmetric enough to catch a swapped angle
FOV = (-0.742, 0.70, 0.779, -0.81)


# ---------------------------------------------------------------------------------------------
# maths
# ---------------------------------------------------------------------------------------------


def test_fov_K_gives_the_openxr_projection():
    w, h, near, far = 320, 240, 0.05, 20.0
    K = fov_to_K(*FOV, w, h)
    ours = projection_from_K(K, w, h, near, far)
    ref = projection_from_fov(*FOV, near, far) @ CV_TO_GL  # the SDK's GL projection of OpenCV points
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_view_camera_frustum_edges_land_on_image_borders():
    w, h = 320, 240
    q = np.array([0.0, np.sin(0.3), 0.0, np.cos(0.3)])  # yaw 0.6 rad about +Y
    pos = np.array([0.1, 1.6, -0.2])
    K, c2w = view_camera(tuple(pos), tuple(q), FOV, w, h)
    R = quat_to_matrix(*q)
    # OpenXR eye looks along its -Z, +Y up; directions on the frustum's left / top edges
    l, r, u, d = np.tan(FOV)
    pts = pos + np.stack([R @ np.array([l, 0, -1.0]), R @ np.array([r, 0, -1.0]), R @ np.array([0, u, -1.0]),
                          R @ np.array([0, d, -1.0]), R @ np.array([0, 0, -1.0])]) * 2.0
    uv, z = Cameras(K=K[None], cam_to_world=c2w[None], width=w, height=h).project(pts)
    uv = uv[0]
    np.testing.assert_allclose(uv[0, 0], 0.0, atol=1e-9)
    np.testing.assert_allclose(uv[1, 0], w, atol=1e-9)
    np.testing.assert_allclose(uv[2, 1], 0.0, atol=1e-9)  # up → row 0 (top)
    np.testing.assert_allclose(uv[3, 1], h, atol=1e-9)
    np.testing.assert_allclose(z[0], 2.0, atol=1e-9)  # in front: positive OpenCV depth
    assert np.allclose(pose_matrix(tuple(pos), tuple(q))[:3, 3], pos)


def test_placement_in_front_keeps_scale_and_faces_viewer():
    bounds = np.array([[-0.2, 0.0, -0.1], [0.2, 0.5, 0.1]])
    head = pose_matrix((0.3, 1.7, 0.4), (0.0, np.sin(np.pi / 4), 0.0, np.cos(np.pi / 4)))  # looking along -X
    m = placement_in_front(bounds, head, FOV)
    np.testing.assert_allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(m[:3, :3]), 1.0, atol=1e-12)
    centre = m @ np.array([0.0, 0.25, 0.0, 1.0])
    off = centre[:3] - head[:3, 3]
    assert abs(off[1]) < 1e-9 and abs(off[2]) < 1e-9 and off[0] < -0.4  # straight ahead at eye height
    front = m[:3, :3] @ np.array([0.0, 0.0, 1.0])  # the asset's +Z points back at the viewer
    np.testing.assert_allclose(front, [1.0, 0.0, 0.0], atol=1e-12)
    # bounding sphere inside the smaller half-FOV
    radius = np.linalg.norm(bounds[1] - bounds[0]) / 2
    assert np.arcsin(radius / np.linalg.norm(off)) < min(abs(a) for a in FOV)


# ---------------------------------------------------------------------------------------------
# scene stream state
# ---------------------------------------------------------------------------------------------


def _box():
    from studio.assets.asset import Asset
    from studio.assets.material import Material
    from studio.assets.mesh import Mesh
    import trimesh

    b = trimesh.creation.box((0.2, 0.2, 0.2))
    return Asset(meshes=[Mesh.from_arrays(b.vertices, b.faces, material=Material(name="paint"))])


def test_viewer_scene_follows_the_stream_protocol():
    s = ViewerScene()
    a, b = _box(), _box()
    m = np.eye(4)
    m[:3, 3] = [0.0, 2.0, 0.0]
    flat = list(m.T.ravel())  # the stream's 16 numbers are column-major (glTF / three.js), translation last
    assert flat[12:15] == [0.0, 2.0, 0.0]
    snap = {"type": "snapshot", "seq": 10, "client": "c1", "environment": {"background": [0.5, 0.5, 0.5], "exposure": 1.5},
            "assets": [{"id": "a", "kind": "gltf", "url": "/a.glb", "rev": 1, "transform": flat, "visible": True,
                        "material": {"metallic": 0.25}, "_loaded": a}]}
    assert s.apply(snap)
    assert s.seq == 10 and list(s.items) == ["a"] and a.meshes[0].material.metallic_factor == 0.25
    np.testing.assert_array_equal(s.items["a"].transform, m)
    np.testing.assert_allclose(s.background(), [0.7353569830524495] * 3)  # linear 0.5 → sRGB
    lay = s.layout_version
    assert s.apply({"type": "material", "seq": 11, "id": "a", "material": {"base_color": [1, 0, 0, 1], "emissive": [0, 0, 1]}})
    assert a.meshes[0].material.base_color_factor == (1.0, 0.0, 0.0, 1.0)
    assert a.meshes[0].material.emissive_factor == (0.0, 0.0, 1.0)
    assert s.apply({"type": "pong", "t": 1.0}) and s.apply({"type": "error", "detail": "bad"}) and s.seq == 11
    assert s.apply({"type": "asset_added", "seq": 12, "asset": {"id": "b", "url": "/b.glb", "transform": list(np.eye(4).ravel()), "_loaded": b}})
    assert s.layout_version == lay + 1
    assert s.apply({"type": "visibility", "seq": 13, "id": "a", "visible": False})
    assert s.combined() is b  # one visible, untransformed item: drawn as is
    assert s.apply({"type": "visibility", "seq": 14, "id": "a", "visible": True})
    t = np.eye(4)
    t[:3, 3] = [1.0, 0.0, 0.0]
    assert s.apply({"type": "transform", "seq": 15, "id": "b", "matrix": list(t.T.ravel()), "origin": None})
    comb = s.combined()
    assert len(comb.meshes) == 2
    np.testing.assert_allclose(comb.bounds(), [[-0.1, -0.1, -0.1], [1.1, 2.1, 0.1]], atol=1e-9)
    assert s.apply({"type": "environment", "seq": 16, "environment": {"exposure": 2.0}})
    assert s.environment == {"background": [0.5, 0.5, 0.5], "exposure": 2.0}
    # a repeated delta is ignored, a gap is refused (the client then reconnects for a snapshot)
    assert s.apply({"type": "visibility", "seq": 16, "id": "b", "visible": False})
    assert s.items["b"].visible
    assert not s.apply({"type": "asset_removed", "seq": 18, "id": "b"})
    assert "b" in s.items and s.seq == 16
    assert s.apply({"type": "asset_removed", "seq": 17, "id": "b"})
    assert list(s.items) == ["a"]
    with pytest.raises(ValueError):
        _matrix([1, 2, 3])


def test_stream_url_for_server():
    from studio.errors import InvalidAssetError

    assert stream_url_for("http://127.0.0.1:7860") == "ws://127.0.0.1:7860/v1/scene/ws"
    assert stream_url_for("https://studio.example/sub/") == "wss://studio.example/sub/v1/scene/ws"
    assert stream_url_for("ws://h:1/v1/scene/ws") == "ws://h:1/v1/scene/ws"
    with pytest.raises(InvalidAssetError):
        stream_url_for("ftp://h/")


# ---------------------------------------------------------------------------------------------
# no runtime: the real loader, no mock
# ---------------------------------------------------------------------------------------------


def _no_runtime_env(tmp_path: Path, runtime_json: str | None) -> dict[str, str]:
    env = dict(os.environ)
    for k in ("XR_RUNTIME_JSON",):
        env.pop(k, None)
    if runtime_json is not None:
        env["XR_RUNTIME_JSON"] = runtime_json
    # no system/user active_runtime.json either
    env["XDG_CONFIG_DIRS"] = str(tmp_path / "xdg-dirs")
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg-home")
    env["HOME"] = str(tmp_path / "home")
    return env


@pytest.mark.parametrize("which", ["missing-file", "empty-manifest", "unset"])
def test_no_runtime_cli_message(tmp_path, testdata, which):
    if which == "missing-file":
        rj = str(tmp_path / "nope" / "openxr_runtime.json")
    elif which == "empty-manifest":
        (tmp_path / "empty.json").write_text("{}")
        rj = str(tmp_path / "empty.json")
    else:
        rj = None
    env = _no_runtime_env(tmp_path, rj)
    glb = testdata / "gltf" / "Box" / "Box.glb"
    p = subprocess.run(
        [sys.executable, "-m", "studio.renderers.openxr", str(glb), "--frames", "3"],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert p.returncode == 8, p.stderr  # XRRuntimeUnavailableError.exit_code
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout
    assert p.stderr.startswith("error: No OpenXR runtime is active")
    for hint in ("XR_RUNTIME_JSON", "Monado", "SteamVR", "active_runtime.json", "/xr/"):
        assert hint in p.stderr, hint
    if rj is not None:
        assert rj in p.stderr
    else:
        assert "XR_RUNTIME_JSON is not set" in p.stderr
    # the loader's own stderr lines were captured into the message, not printed around it
    assert "Error [GENERAL" not in p.stderr


def test_no_runtime_api_raises_typed_error(tmp_path):
    code = (
        "from studio.errors import XRRuntimeUnavailableError\n"
        "from studio.pipelines.procedural import sample_asset\n"
        "from studio.renderers.openxr import run_openxr_viewer\n"
        "try:\n"
        "    run_openxr_viewer(sample_asset(), frames=2)\n"
        "except XRRuntimeUnavailableError as e:\n"
        "    print('RAISED', e.exit_code, str(e).splitlines()[0])\n"
    )
    env = _no_runtime_env(tmp_path, str(tmp_path / "absent.json"))
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("RAISED 8 No OpenXR runtime is active"), p.stdout


# ---------------------------------------------------------------------------------------------
# with a runtime (Monado: simulated HMD, null compositor, EGL)
# ---------------------------------------------------------------------------------------------

RUNTIME_JSON = os.environ.get("XR_RUNTIME_JSON", "")
needs_runtime = pytest.mark.skipif(
    not RUNTIME_JSON or not Path(RUNTIME_JSON).exists(),
    reason="no OpenXR runtime: set XR_RUNTIME_JSON (CI builds Monado with .ci/build_monado.sh)",
)
BG = (0.2, 0.3, 0.4)


@pytest.fixture
def monado_env(monkeypatch):
    monkeypatch.setenv("XRT_COMPOSITOR_NULL", "1")
    monkeypatch.setenv("SIMULATED_ENABLE", "1")
    monkeypatch.setenv("EGL_PLATFORM", "surfaceless")
    monkeypatch.setenv("PYOPENGL_PLATFORM", "egl")


def _asset_mask(img: np.ndarray) -> np.ndarray:
    bg = np.round(np.array(BG) * 255)
    return np.abs(img[..., :3].astype(int) - bg).max(axis=-1) > 12


@pytest.mark.openxr
@needs_runtime
def test_monado_session_renders_asset_in_both_eyes(monado_env):
    from studio.pipelines.procedural import sample_asset
    from studio.renderers.openxr import run_openxr_viewer
    from studio.renderers.raster import Renderer

    asset = sample_asset()
    seen = []
    n = 12
    stats = run_openxr_viewer(
        asset, frames=n, capture=True, msaa=1, background=BG, tone_mapping="aces",
        on_frame=lambda info: seen.append((info.index, info.state, len(info.images))),
    )
    print("\nOpenXR on", stats.summary())
    assert stats.reached_focused
    assert stats.states[-1] == "EXITING" and "STOPPING" in stats.states
    assert stats.states.index("READY") < stats.states.index("FOCUSED") < stats.states.index("STOPPING")
    assert stats.exit_reason == "frames"
    assert stats.frames_rendered == n and [s[0] for s in seen] == list(range(n))
    assert all(k == 2 for _, _, k in seen)
    w, h = stats.swapchain_size
    left, right = stats.eye_images
    assert left.shape == right.shape == (h, w, 4)
    ml, mr = _asset_mask(left), _asset_mask(right)
    for m in (ml, mr):  # the asset is drawn, around the middle, and not everywhere
        assert 0.03 < m.mean() < 0.9
        ys, xs = np.nonzero(m)
        assert abs(ys.mean() - h / 2) < h / 4 and abs(xs.mean() - w / 2) < w / 4
    # stereo: a near object appears further right in the left eye than in the right eye
    assert np.nonzero(ml)[1].mean() > np.nonzero(mr)[1].mean() + 0.5
    # each eye is exactly what the raster renderer draws from that eye's camera
    with Renderer() as r:
        for img, cams in zip(stats.eye_images, stats.eye_cameras):
            ref = r.render(asset, cams, background=BG, tone_mapping="aces", msaa=1).rgb[0]
            diff = np.abs(ref.astype(int) - img[..., :3].astype(int))
            assert diff.mean() < 0.5 and (diff > 8).mean() < 0.002, (diff.mean(), (diff > 8).mean())


class _StreamServer:
    """A local scene stream for the viewer: HTTP for the GLB, a WebSocket whose `handler(ws, n)`
    gets each connection and its 1-based number."""

    def __init__(self, folder: Path, handler):
        import functools
        import http.server

        from websockets.sync.server import serve

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        )
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.connections = 0

        def on_connect(ws):
            self.connections += 1
            handler(ws, self.connections)

        self.ws = serve(on_connect, "127.0.0.1", 0)
        threading.Thread(target=self.ws.serve_forever, daemon=True).start()
        self.url = f"ws://127.0.0.1:{self.ws.socket.getsockname()[1]}/v1/scene/ws"
        self.asset_url = f"http://127.0.0.1:{self.httpd.server_port}/box.glb"

    def close(self):
        self.ws.shutdown()
        self.httpd.shutdown()


def _hold(ws):
    try:
        ws.recv(timeout=60)
    except Exception:  # noqa: BLE001 - the viewer closing the socket ends the handler
        pass


class _StudioScene:
    """The studio's real scene stream (studio.scene_stream) on uvicorn in a thread."""

    def __init__(self, folder: Path):
        import time

        import uvicorn
        from fastapi import FastAPI

        from studio.scene_stream import SceneState, mount_xr

        self.state = SceneState(folder / "scene")
        app = FastAPI()
        mount_xr(app, None, scene=self.state)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            assert time.monotonic() - t0 < 30, "uvicorn did not start"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/v1/scene/ws"

    def close(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.mark.openxr
@needs_runtime
def test_monado_follows_the_studio_scene_stream(monado_env, tmp_path):
    """The studio's scene stream: a pushed box appears; material edits made while the viewer runs
    (red, then green) show in the next frames read back from the swapchain."""
    import time

    from studio.assets import io
    from studio.renderers.openxr import run_openxr_viewer

    io.save(_box(), tmp_path / "box.glb")
    studio = _StudioScene(tmp_path)
    box_id = studio.state.push_asset(tmp_path / "box.glb")
    studio.state.set_environment(background=[0.0331, 0.0732, 0.1329])  # linear of sRGB BG
    colours, sent, latency = {}, {}, {}
    steps = [(1.0, 0.0, 0.0, 1.0), (0.0, 1.0, 0.0, 1.0)]

    def on_frame(info):
        m = _asset_mask(info.images[0])
        if info.stream_seq < 2 or m.mean() < 0.01:
            return None if info.index < 600 else False
        if info.stream_seq not in colours:
            colours[info.stream_seq] = info.images[0][m][:, :3].mean(axis=0)
            if info.stream_seq in sent:
                latency[info.stream_seq] = time.perf_counter() - sent[info.stream_seq]
            if steps:
                msg = studio.state.set_material(box_id, base_color=steps.pop(0))
                sent[msg["seq"]] = time.perf_counter()
        return False if len(colours) == 3 else None

    try:
        stats = run_openxr_viewer(None, stream_url=studio.url, on_frame=on_frame, capture=True, msaa=1)
    finally:
        studio.close()
    print(f"\nstream delta → first XR frame showing it: {', '.join(f'{v * 1e3:.0f} ms' for v in latency.values())}")
    assert stats.exit_reason == "on_frame" and stats.states[-1] == "EXITING"
    assert sorted(colours) == [2, 3, 4] and stats.stream_updates >= 3
    white, red, green = colours[2], colours[3], colours[4]
    assert abs(float(white[0]) - float(white[1])) < 25, white
    assert red[0] > red[1] + 40 and green[1] > green[0] + 40, (red, green)
    bg = np.round(np.array(BG) * 255)
    corner = stats.eye_images[0][0, 0, :3].astype(int)
    assert np.abs(corner - bg).max() <= 3, corner  # the stream's background colour, sRGB-encoded


@pytest.mark.openxr
@needs_runtime
def test_monado_stream_gap_resubscribes_for_a_snapshot(monado_env, tmp_path):
    """A delta that skips a sequence number is not applied; the viewer reconnects and the fresh
    snapshot it gets is what is drawn."""
    from studio.assets import io
    from studio.renderers.openxr import run_openxr_viewer

    io.save(_box(), tmp_path / "box.glb")

    def handler(ws, n):
        if n == 1:
            ws.send(json.dumps({"type": "snapshot", "seq": 1, "assets": [{"id": "box", "url": srv.asset_url, "rev": 1}]}))
            ws.send(json.dumps({"type": "material", "seq": 3, "id": "box",
                                "material": {"base_color": [1, 0, 0, 1]}}))  # seq 2 never came
        else:
            ws.send(json.dumps({"type": "snapshot", "seq": 9, "assets": [
                {"id": "box2", "url": srv.asset_url, "rev": 1,
                 "transform": [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0.05, 0, 1]}]}))
        _hold(ws)

    srv = _StreamServer(tmp_path, handler)
    seen = []

    def on_frame(info):
        if info.stream_seq == 9:
            seen.append(info.images[0])
            return False
        if info.index > 400:
            return False

    try:
        stats = run_openxr_viewer(None, stream_url=srv.url, on_frame=on_frame, capture=True, msaa=1, background=BG)
    finally:
        srv.close()
    assert srv.connections == 2 and stats.stream_seq == 9 and seen
    m = _asset_mask(seen[0])
    assert m.mean() > 0.01
    col = seen[0][m][:, :3].mean(axis=0)
    assert abs(float(col[0]) - float(col[1])) < 25, col  # the skipped red delta was never applied


GLX_SCRIPT = """
import json
import numpy as np
from studio.pipelines.procedural import sample_asset
from studio.renderers.openxr import run_openxr_viewer
st = run_openxr_viewer(sample_asset(), frames=4, binding="glx", capture=True, msaa=1, background=(0.2, 0.3, 0.4))
bg = np.round(np.array([0.2, 0.3, 0.4]) * 255)
masks = [np.abs(im[..., :3].astype(int) - bg).max(-1) > 12 for im in st.eye_images]
print("RESULT", json.dumps({"binding": st.binding, "states": st.states, "frames": st.frames_rendered,
      "coverage": [float(m.mean()) for m in masks], "cx": [float(np.nonzero(m)[1].mean()) for m in masks]}))
"""


@pytest.mark.openxr
@needs_runtime
def test_monado_desktop_glx_binding_under_xvfb(tmp_path):
    """The desktop path (Xlib/GLX binding, for runtimes without XR_MNDX_egl_enable such as SteamVR)
    against Monado on a private Xvfb display, in its own process (GLX and EGL contexts apart)."""
    import shutil

    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.fail("Xvfb not found: apt-get install xvfb")
    r, w = os.pipe()
    proc = subprocess.Popen([xvfb, "-displayfd", str(w), "-screen", "0", "640x480x24", "-nolisten", "tcp"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    try:
        with os.fdopen(r) as f:
            num = f.readline().strip()
        env = {**os.environ, "DISPLAY": f":{num}", "XRT_COMPOSITOR_NULL": "1", "SIMULATED_ENABLE": "1"}
        p = subprocess.run([sys.executable, "-c", GLX_SCRIPT], env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    assert p.returncode == 0 and line, p.stderr[-3000:]
    res = json.loads(line[0][7:])
    assert res["binding"] == "glx" and res["frames"] == 4
    assert "FOCUSED" in res["states"] and res["states"][-1] == "EXITING"
    assert all(0.03 < c < 0.9 for c in res["coverage"])
    assert res["cx"][0] > res["cx"][1] + 0.5  # stereo disparity: left eye sees it further right


@pytest.mark.openxr
@needs_runtime
def test_glx_binding_without_display_is_a_clear_error(monado_env, monkeypatch):
    from studio.errors import DisplayUnavailableError
    from studio.renderers.openxr_session import XRSession

    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(DisplayUnavailableError, match=r"no X display is set \(\$DISPLAY\)"):
        XRSession(binding="glx")
    with pytest.raises(ValueError, match="binding must be one of"):
        XRSession(binding="vulkan")


@pytest.mark.openxr
@needs_runtime
def test_cli_ctrl_c_ends_the_session_cleanly(testdata, tmp_path):
    """`studio xr openxr FILE` with no frame limit runs until Ctrl-C, which requests the session's
    exit (the runtime walks it to EXITING) instead of breaking out: exit code 0 and a summary."""
    import signal

    env = {**os.environ, "XRT_COMPOSITOR_NULL": "1", "SIMULATED_ENABLE": "1", "EGL_PLATFORM": "surfaceless"}
    p = subprocess.Popen([sys.executable, "-m", "studio.renderers.openxr", str(testdata / "gltf" / "Box" / "Box.glb"),
                          "--msaa", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        first = p.stdout.readline()
        assert first.startswith("OpenXR session FOCUSED: showing"), (first, p.stderr.read() if p.poll() is not None else "")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err[-2000:]
    assert "Traceback" not in err
    assert "exit: interrupted" in out and "STOPPING -> IDLE -> EXITING" in out, out


@pytest.mark.openxr
@needs_runtime
def test_monado_shows_gaussian_splats(monado_env):
    """A splat-only asset (a red ball of 2000 Gaussians) is drawn in both eyes, matching the raster
    renderer's splat path from the same eye cameras."""
    from studio.assets.asset import Asset
    from studio.assets.splats import GaussianSplats
    from studio.renderers.openxr import run_openxr_viewer
    from studio.renderers.raster import Renderer

    rng = np.random.default_rng(0)
    n = 2000
    d = rng.normal(size=(n, 3))
    means = d / np.linalg.norm(d, axis=1, keepdims=True) * rng.uniform(0, 0.15, (n, 1)) + [0, 0.3, 0]
    sh = np.zeros((n, 1, 3))
    sh[:, 0] = (np.array([0.9, 0.1, 0.1]) - 0.5) / 0.28209479177387814
    splats = GaussianSplats(means, np.tile([1.0, 0, 0, 0], (n, 1)), np.full((n, 3), np.log(0.02)), np.full(n, 3.0), sh)
    asset = Asset(splats=splats)
    stats = run_openxr_viewer(asset, frames=3, capture=True, msaa=1, background=BG)
    assert stats.frames_rendered == 3 and stats.states[-1] == "EXITING"
    with Renderer() as r:
        for img, cams in zip(stats.eye_images, stats.eye_cameras):
            m = _asset_mask(img)
            assert 0.01 < m.mean() < 0.9
            col = img[m][:, :3].mean(axis=0)
            assert col[0] > col[1] + 60 and col[0] > col[2] + 60, col
            ref = r.render(asset, cams, background=BG, tone_mapping="aces", msaa=1).rgb[0]
            diff = np.abs(ref.astype(int) - img[..., :3].astype(int))
            assert diff.mean() < 0.5, diff.mean()
