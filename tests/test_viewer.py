"""The desktop viewer under Xvfb: open a window, orbit with simulated mouse input, screenshot, check
the asset is on screen and moved; file reload; no display → a clear error pointing to --out."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from studio.errors import DisplayUnavailableError

XVFB = shutil.which("Xvfb")


@pytest.fixture(scope="module")
def xvfb():
    """A private Xvfb server; yields its DISPLAY string. Missing Xvfb is a failure (CI installs it)."""
    if XVFB is None:
        pytest.fail("Xvfb not found: apt-get install xvfb")
    r, w = os.pipe()
    proc = subprocess.Popen(
        [XVFB, "-displayfd", str(w), "-screen", "0", "640x480x24", "-nolisten", "tcp"],
        pass_fds=(w,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(w)
    try:
        with os.fdopen(r) as f:
            num = f.readline().strip()
        assert num.isdigit(), "Xvfb did not report a display number"
        yield f":{num}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# The viewer runs in its own process: GLFW's GLX context and the tests' EGL context stay apart.
SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from studio.renderers.viewer import Viewer
    import glfw

    path, out = sys.argv[1], sys.argv[2]
    v = Viewer(path, size=(160, 120))
    shots = {}
    v.step(); v.draw(); shots["start"] = v.screenshot()
    # simulated orbit: press left button, drag 120 px to the right, release
    v.on_mouse_button(glfw.MOUSE_BUTTON_LEFT, glfw.PRESS)
    for x in range(0, 121, 20):
        v.on_cursor(20.0 + x, 60.0)
    v.on_mouse_button(glfw.MOUSE_BUTTON_LEFT, glfw.RELEASE)
    yaw = v.orbit_cam.yaw
    v.step(); v.draw(); shots["orbit"] = v.screenshot()
    v.on_scroll(-5)  # zoom out
    v.step(); v.draw(); shots["zoom"] = v.screenshot()
    # pan: right-drag moves the orbit target, the scene follows the cursor
    t0 = v.orbit_cam.target.copy()
    v.on_mouse_button(glfw.MOUSE_BUTTON_RIGHT, glfw.PRESS)
    v.on_cursor(80.0, 60.0); v.on_cursor(110.0, 60.0)
    v.on_mouse_button(glfw.MOUSE_BUTTON_RIGHT, glfw.RELEASE)
    pan = float(np.linalg.norm(v.orbit_cam.target - t0))
    v.draw(); shots["pan"] = v.screenshot()
    v.on_key(glfw.KEY_F, glfw.PRESS)  # re-frame
    v.on_key(glfw.KEY_N, glfw.PRESS)
    v.draw(); shots["normals"] = v.screenshot()
    v.on_key(glfw.KEY_N, glfw.PRESS)
    v.on_key(glfw.KEY_E, glfw.PRESS)
    v.on_key(glfw.KEY_W, glfw.PRESS)
    v.draw(); shots["wire"] = v.screenshot()
    v.on_key(glfw.KEY_W, glfw.PRESS)
    # reload: the test rewrites the file while we wait for its signal on stdin
    print("READY", flush=True)
    sys.stdin.readline()
    reloaded = v.check_reload()
    v.on_key(glfw.KEY_R, glfw.PRESS)
    v.draw(); shots["reloaded"] = v.screenshot()
    np.savez(out, **shots)
    print(json.dumps({"yaw": yaw, "pan": pan, "reloaded": reloaded, "env": v.env_names[v.env_index]}), flush=True)
    v.close()
    """
)


def _cube_glb(path: Path, colour) -> Path:
    import trimesh

    from studio.assets.asset import Asset
    from studio.assets.io import save
    from studio.assets.material import Material
    from studio.assets.mesh import Mesh

    box = trimesh.creation.box(extents=(1, 1, 1))
    box.unmerge_vertices()
    asset = Asset(meshes=[Mesh.from_arrays(box.vertices, box.faces, material=Material(base_color_factor=colour, metallic_factor=0.0, roughness_factor=0.8))])
    tmp = path.with_name("tmp_" + path.name)
    save(asset, tmp)
    os.replace(tmp, path)  # atomic, like an editor's save
    return path


def test_viewer_orbits_and_reloads_under_xvfb(xvfb, tmp_path):
    glb = _cube_glb(tmp_path / "cube.glb", (0.9, 0.1, 0.1, 1.0))
    out = tmp_path / "shots.npz"
    env = {**os.environ, "DISPLAY": xvfb}
    env.pop("WAYLAND_DISPLAY", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(glb), str(out)],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == "READY", proc.stderr.read()
        st = os.stat(glb)
        _cube_glb(glb, (0.1, 0.2, 0.9, 1.0))
        os.utime(glb, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        proc.stdin.write("go\n")
        proc.stdin.flush()
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    info = json.loads(stdout.strip().splitlines()[-1])
    shots = np.load(out)
    start, orbit, zoom = shots["start"].astype(int), shots["orbit"].astype(int), shots["zoom"].astype(int)
    assert start.shape == (120, 160, 3)

    def red(img):
        return (img[..., 0] > 120) & (img[..., 0] > img[..., 1] + 60) & (img[..., 0] > img[..., 2] + 60)

    # the red cube is on screen, centred
    m = red(start)
    assert 0.05 < m.mean() < 0.7, m.mean()
    yy, xx = np.nonzero(m)
    assert abs(xx.mean() - 80) < 15 and abs(yy.mean() - 60) < 15
    # orbiting changed the view (yaw moved by the drag) but the cube stays on screen
    assert info["yaw"] != pytest.approx(np.radians(30))
    assert red(orbit).mean() > 0.05
    assert np.abs(orbit - start).mean() > 2
    # zooming out makes the cube smaller
    assert red(zoom).mean() < 0.8 * red(orbit).mean()
    # panning grabs the scene: a 30 px drag to the right moves the cube (at the target depth) 30 px right
    assert info["pan"] > 0
    xp = np.nonzero(red(shots["pan"].astype(int)))[1]
    xz = np.nonzero(red(zoom))[1]
    assert abs((xp.mean() - xz.mean()) - 30) < 6
    # normals debug view; wireframe leaves most of the cube's area uncovered
    nrm = shots["normals"].astype(int).reshape(-1, 3)
    fg = nrm[np.abs(nrm - [46, 46, 51]).sum(1) > 10]
    axes = np.concatenate([np.eye(3), -np.eye(3)])
    face_colours = np.round((axes * 0.5 + 0.5) * 255)
    dist = np.abs(fg[:, None, :] - face_colours[None]).max(-1).min(1)
    assert len(fg) > 500 and (dist <= 3).mean() > 0.9  # each cube face shows its normal, encoded n/2 + 1/2
    assert red(shots["wire"]).mean() < 0.5 * red(zoom).mean()
    assert info["env"] == "sky"
    # the file was rewritten blue: the viewer reloaded it
    assert info["reloaded"] is True
    rl = shots["reloaded"].astype(int)
    blue = (rl[..., 2] > 120) & (rl[..., 2] > rl[..., 0] + 60)
    assert blue.mean() > 0.05 and red(rl).mean() < 0.01


def test_no_display_raises_pointing_to_headless_outputs(monkeypatch, tmp_path):
    from studio.renderers.viewer import Viewer

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(DisplayUnavailableError, match=r"--out .*--turntable"):
        Viewer(tmp_path / "whatever.glb")
