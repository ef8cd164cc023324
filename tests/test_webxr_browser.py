"""The WebXR client (xr/) in an emulated headset: `studio serve` + headless Debian Chromium
(SwiftShader WebGL2) + npm `iwer` (Quest 3, stereo). Asserts from read-back frames that the asset
is drawn in both eyes, that stream deltas show up, that a controller grab moves it (and the studio
hears about it), and that AR hit-test placement stays anchored while the viewer moves.
Screenshots go to $STUDIO_TEST_ARTEFACTS or the test's tmp folder (printed)."""
from __future__ import annotations

import base64
import io
import json
import math
import os
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser

XR_DIST = Path(__file__).resolve().parents[1] / "xr" / "dist"
W, H = 640, 320  # each eye 320x320


def post_json(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST")
    return json.load(urllib.request.urlopen(req, timeout=30))


@pytest.fixture(scope="module")
def server(studio_server):
    if not (XR_DIST / "index.html").is_file():
        pytest.fail("xr/dist is not built: run `npm ci` in xr/ (its prepare script builds dist/)")
    return studio_server


@pytest.fixture(scope="module")
def sample_id(server, tmp_path_factory):
    """The procedural sample (0.3 m sphere standing on y=0) pushed through `studio xr push`'s client."""
    from studio.assets.io import save
    from studio.pipelines.procedural import SampleParams, sample_asset
    from studio.xr_push import push

    url, _ = server
    glb = tmp_path_factory.mktemp("sample") / "sample.glb"
    save(sample_asset(SampleParams(segments=48, rings=24, texture_size=128)), glb)
    return push(glb, server=url)


@pytest.fixture(scope="module")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium[0], args=chromium[1])
        yield b
        b.close()


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory) -> Path:
    d = Path(os.environ.get("STUDIO_TEST_ARTEFACTS") or tmp_path_factory.mktemp("xr_artefacts"))
    d.mkdir(parents=True, exist_ok=True)
    print(f"\nWebXR screenshots: {d}")
    return d


def open_client(browser, url: str, query: str):
    page = browser.new_page(viewport={"width": W, "height": H})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{url}/xr/?{query}")
    page.wait_for_function("window.__xr && window.__xr.ready", timeout=60_000)
    return page, errors


def capture(page, path: Path | None = None) -> np.ndarray:
    """The canvas after the next rendered frame, (H, W, 3) uint8 sRGB."""
    from PIL import Image

    cap = page.evaluate("window.__xr.capture()")
    data = base64.b64decode(cap["url"].split(",", 1)[1])
    if path is not None:
        path.write_bytes(data)
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def wait_shown(page, seq: int) -> None:
    """Until a rendered frame has applied stream delta `seq`."""
    page.wait_for_function("s => window.__xr.applied.some(a => a.seq >= s)", arg=seq, timeout=30_000)


def wait_frames(page, n: int) -> None:
    start = page.evaluate("window.__xr.xrFrames")
    page.wait_for_function("s => window.__xr.xrFrames >= s", arg=start + n, timeout=30_000)


def look(page, pitch: float, position=(0.0, 1.6, 0.0)) -> None:
    """Pose the emulated headset: `pitch` radians about +X (negative looks down)."""
    page.evaluate("""([p, x, y, z]) => { const d = window.__xrDevice;
        d.quaternion.set(Math.sin(p / 2), 0, 0, Math.cos(p / 2)); d.position.set(x, y, z); }""",
                  [pitch, *position])


def red_mask(img: np.ndarray) -> np.ndarray:
    r, g, b = (img[..., i].astype(int) for i in range(3))
    return (r > 90) & (g < 0.35 * r) & (b < 0.35 * r)


def test_vr_stereo_deltas_and_grab(server, sample_id, browser, artefacts):
    url, _ = server
    page, errors = open_client(browser, url, "emulate=1")
    look(page, -0.45)
    page.evaluate("window.__xr.enterVR()")
    wait_frames(page, 5)
    assert page.evaluate("window.__xr.session") == "immersive-vr"

    shown = capture(page, artefacts / "vr_1_sample.png")
    hidden_seq = post_json(f"{url}/v1/scene/{sample_id}/visibility", {"visible": False})["seq"]
    wait_shown(page, hidden_seq)
    hidden = capture(page, artefacts / "vr_2_hidden.png")
    # Asset pixels = what the visibility delta took away (controllers and background stay).
    asset = np.abs(shown.astype(int) - hidden.astype(int)).sum(-1) > 40
    left, right = asset[:, : W // 2], asset[:, W // 2:]
    assert left.sum() > 2000 and right.sum() > 2000, (left.sum(), right.sum())
    # Stereo: the same asset seen from two eyes 63 mm apart lands at slightly different columns.
    cx_left = np.nonzero(left)[1].mean()
    cx_right = np.nonzero(right)[1].mean()
    assert 0.5 < cx_left - cx_right < 40, (cx_left, cx_right)
    assert not red_mask(shown).sum() > 0.2 * asset.sum(), "the sample should not look red before the edit"

    post_json(f"{url}/v1/scene/{sample_id}/visibility", {"visible": True})
    seq = post_json(f"{url}/v1/scene/{sample_id}/material", {"base_color": [1, 0, 0, 1], "emissive": [0, 0, 0]})["seq"]
    wait_shown(page, seq)
    red = capture(page, artefacts / "vr_3_red.png")
    rm = red_mask(red)
    for half in (slice(0, W // 2), slice(W // 2, W)):
        inside = rm[:, half] & asset[:, half]
        assert inside.sum() > 0.6 * asset[:, half].sum(), (inside.sum(), asset[:, half].sum())

    # Grab with the right controller: put it inside the asset, squeeze, move 0.3 m right, release.
    before = page.evaluate("window.__xr.assetWorldPosition()")
    centroid_before = np.nonzero(rm[:, : W // 2])[1].mean()
    page.evaluate("""([x, y, z]) => { const c = window.__xrDevice.controllers.right;
        c.position.set(x, y, z); }""", [before[0], before[1] + 0.3, before[2]])
    wait_frames(page, 3)
    page.evaluate("window.__xrDevice.controllers.right.updateButtonValue('squeeze', 1)")
    page.wait_for_function("window.__xrInteraction.grabs >= 1", timeout=10_000)
    for k in range(1, 7):  # a gentle drag over several frames
        page.evaluate("""([x, y, z]) => window.__xrDevice.controllers.right.position.set(x, y, z)""",
                      [before[0] + 0.05 * k, before[1] + 0.3, before[2]])
        wait_frames(page, 2)
    page.evaluate("window.__xrDevice.controllers.right.updateButtonValue('squeeze', 0)")
    wait_frames(page, 4)
    after = page.evaluate("window.__xr.assetWorldPosition()")
    assert after[0] - before[0] == pytest.approx(0.3, abs=0.02), (before, after)
    assert after[1] == pytest.approx(before[1], abs=0.02) and after[2] == pytest.approx(before[2], abs=0.02)
    moved = capture(page, artefacts / "vr_4_grabbed.png")
    centroid_after = np.nonzero(red_mask(moved)[:, : W // 2])[1].mean()
    assert centroid_after - centroid_before > 20, (centroid_before, centroid_after)
    # The grab went back to the studio: its scene now holds the moved transform.
    deadline = time.time() + 10
    while time.time() < deadline:
        scene = json.load(urllib.request.urlopen(f"{url}/v1/scene", timeout=10))
        tx = next(a for a in scene["assets"] if a["id"] == sample_id)["transform"][12]
        if abs(tx - 0.3) < 0.02:
            break
        time.sleep(0.2)
    assert tx == pytest.approx(0.3, abs=0.02)
    # Back to the authored material and placement: no longer red.
    post_json(f"{url}/v1/scene/{sample_id}/transform", {"matrix": np.eye(4).flatten().tolist()})
    seq = post_json(f"{url}/v1/scene/{sample_id}/material", {"reset": True})["seq"]
    wait_shown(page, seq)
    back = capture(page, artefacts / "vr_4b_reset.png")
    assert red_mask(back).sum() < 0.2 * asset.sum()
    changed = np.abs(back.astype(int) - shown.astype(int)).sum(-1) > 40
    assert changed.mean() < 0.01, changed.mean()  # the first picture again (bar the moved controller)
    assert errors == [] and page.evaluate("window.__xr.errors") == []
    page.close()


def test_new_splat_asset_appears(server, sample_id, browser, artefacts, tmp_path):
    """A splat asset pushed while the headset watches shows up in both eyes (Spark renderer)."""
    from studio.assets.io import save
    from studio.assets.asset import Asset
    from studio.assets.splats import GaussianSplats
    from studio.xr_push import push

    url, _ = server
    page, errors = open_client(browser, url, "emulate=1")
    look(page, -0.45)
    post_json(f"{url}/v1/scene/{sample_id}/visibility", {"visible": False})
    page.evaluate("window.__xr.enterVR()")
    wait_frames(page, 5)
    empty = capture(page)
    rng = np.random.default_rng(0)
    n = 4000
    means = rng.normal(0, 0.12, (n, 3)) + [0.0, 0.3, 0.0]
    colour = np.array([0.1, 0.9, 0.1])
    splats = GaussianSplats(means=means, quats=np.tile([1.0, 0, 0, 0], (n, 1)), log_scales=np.full((n, 3), np.log(0.015)),
                            opacity_logits=np.full(n, 2.2), sh=((colour - 0.5) / 0.28209479)[None, None, :].repeat(n, 0))
    # .splat (antimatter) has no header to sniff: the client must go by the file name
    cloud = tmp_path / "cloud.splat"
    save(Asset(splats=splats), cloud)
    sid = push(cloud, server=url)
    page.wait_for_function("id => window.__xr.assetIds().includes(id)", arg=sid, timeout=60_000)
    wait_frames(page, 4)
    img = capture(page, artefacts / "vr_5_splats.png")
    diff = np.abs(img.astype(int) - empty.astype(int)).sum(-1) > 40
    green = (img[..., 1] > 80) & (img[..., 0] < 0.6 * img[..., 1]) & (img[..., 2] < 0.6 * img[..., 1])
    for half in (slice(0, W // 2), slice(W // 2, W)):
        assert (diff[:, half] & green[:, half]).sum() > 500, (diff[:, half].sum(), green[:, half].sum())
    assert errors == [] and page.evaluate("window.__xr.errors") == []
    urllib.request.urlopen(urllib.request.Request(f"{url}/v1/scene/{sid}", method="DELETE"), timeout=10)
    post_json(f"{url}/v1/scene/{sample_id}/visibility", {"visible": True})
    page.close()


def test_ar_hit_test_places_and_anchors(server, sample_id, browser, artefacts):
    """immersive-ar with @iwer/sem's synthetic office: placed on a surface by hit-test, anchored."""
    url, _ = server
    page, errors = open_client(browser, url, "emulate=ar")
    look(page, -0.9)
    page.evaluate("window.__xr.enterAR()")
    page.wait_for_function("window.__xr.ar && window.__xr.ar.placed && window.__xr.ar.anchored", timeout=30_000)
    wait_frames(page, 3)
    placed = page.evaluate("window.__xr.rootPosition()")
    hit = page.evaluate("window.__xr.ar.hit")
    img = capture(page, artefacts / "ar_1_placed.png")
    # Placed where the hit test met a surface of the synthetic room, below the eyes, in front.
    assert np.allclose(placed, hit, atol=0.01), (placed, hit)
    assert -0.05 < placed[1] < 1.3 and placed[2] < -0.2, placed
    assert math.hypot(placed[0], placed[2]) < 4.0
    # The asset is drawn in both eyes (saturated pixels: neither the white reticle nor the background).
    sat = img.max(-1).astype(int) - img.min(-1) > 60
    assert sat[:, : W // 2].sum() > 300 and sat[:, W // 2:].sum() > 300, (sat[:, : W // 2].sum(), sat[:, W // 2:].sum())
    # The viewer walks and turns; the anchored asset stays where it was put.
    look(page, -0.6, position=(0.4, 1.5, 0.3))
    wait_frames(page, 6)
    after = page.evaluate("window.__xr.rootPosition()")
    capture(page, artefacts / "ar_2_viewer_moved.png")
    page.screenshot(path=str(artefacts / "ar_3_page_with_room.png"))  # @iwer/sem's room canvas behind ours
    assert np.allclose(after, placed, atol=0.01), (placed, after)
    assert errors == []
    page.close()


def test_desktop_fallback_without_xr(server, sample_id, browser, artefacts):
    """No XR device: orbit-controls view of the same scene, VR button says so."""
    url, _ = server
    page = browser.new_page(viewport={"width": W, "height": H})
    page.add_init_script("Object.defineProperty(navigator, 'xr', {value: undefined, configurable: true})")
    page.goto(f"{url}/xr/")
    page.wait_for_function("window.__xr && window.__xr.ready && window.__xr.frames > 3", timeout=60_000)
    img = page.screenshot(path=str(artefacts / "desktop.png"))
    from PIL import Image

    a = np.asarray(Image.open(io.BytesIO(img)).convert("RGB")).astype(int)
    centre = a[H // 4: 3 * H // 4, W // 3: 2 * W // 3]
    assert (centre.max(-1) > 60).mean() > 0.2  # the framed asset fills the middle of the view
    assert "desktop" in page.locator("#enter-vr").inner_text()
    # The stream drops; the client reconnects with back-off and catches up from the new snapshot.
    page.evaluate("window.__xrStream.ws.close()")
    post_json(f"{url}/v1/scene/{sample_id}/visibility", {"visible": False})
    page.wait_for_function("id => window.__xrStream.reconnects >= 1 && window.__xr.assetInfo(id).shown === false",
                           arg=sample_id, timeout=30_000)
    post_json(f"{url}/v1/scene/{sample_id}/visibility", {"visible": True})
    page.wait_for_function("id => window.__xr.assetInfo(id).shown === true", arg=sample_id, timeout=30_000)
    page.close()


def test_two_hand_scale_and_reset(server, sample_id, browser, artefacts):
    """Both controllers squeeze the asset and move apart: it scales by the hands' distance ratio;
    the A button puts it back where it was."""
    url, _ = server
    page, errors = open_client(browser, url, "emulate=1")
    look(page, -0.45)
    page.evaluate("window.__xr.enterVR()")
    wait_frames(page, 5)
    c = page.evaluate("window.__xr.assetWorldPosition()")
    y = c[1] + 0.3

    def hands(dx: float) -> None:
        page.evaluate("""([x, y, z, dx]) => { const cs = window.__xrDevice.controllers;
            cs.left.position.set(x - dx, y, z); cs.right.position.set(x + dx, y, z); }""", [c[0], y, c[2], dx])
        wait_frames(page, 2)

    hands(0.1)
    page.evaluate("window.__xrDevice.controllers.right.updateButtonValue('squeeze', 1)")
    wait_frames(page, 2)
    page.evaluate("window.__xrDevice.controllers.left.updateButtonValue('squeeze', 1)")
    page.wait_for_function("window.__xrInteraction.grabs >= 2", timeout=10_000)
    for dx in (0.125, 0.15, 0.175, 0.2):
        hands(dx)
    for side in ("left", "right"):
        page.evaluate(f"window.__xrDevice.controllers.{side}.updateButtonValue('squeeze', 0)")
    wait_frames(page, 4)
    capture(page, artefacts / "vr_6_scaled.png")
    m = np.array(page.evaluate("id => window.__xr.assetInfo(id).transform", sample_id)).reshape(4, 4, order="F")
    scale = np.linalg.norm(m[:3, :3], axis=0)
    assert np.allclose(scale, 2.0, atol=0.05), scale
    deadline = time.time() + 10
    while time.time() < deadline:
        t = next(a for a in json.load(urllib.request.urlopen(f"{url}/v1/scene", timeout=10))["assets"] if a["id"] == sample_id)["transform"]
        if abs(np.linalg.norm(t[:3]) - 2.0) < 0.05:
            break
        time.sleep(0.2)
    assert np.linalg.norm(t[:3]) == pytest.approx(2.0, abs=0.05)
    # A resets to the placement the asset arrived with.
    page.evaluate("window.__xrDevice.controllers.right.updateButtonValue('a-button', 1)")
    wait_frames(page, 3)
    page.evaluate("window.__xrDevice.controllers.right.updateButtonValue('a-button', 0)")
    wait_frames(page, 3)
    m = np.array(page.evaluate("id => window.__xr.assetInfo(id).transform", sample_id)).reshape(4, 4, order="F")
    assert np.allclose(m, np.eye(4), atol=1e-6), m
    assert errors == [] and page.evaluate("window.__xr.errors") == []
    page.close()


def test_thumbstick_glide_and_snap_turn(server, sample_id, browser):
    """Left stick glides toward where the head looks; right stick snap-turns 30 degrees about the head."""
    url, _ = server
    page, errors = open_client(browser, url, "emulate=1")
    page.evaluate("window.__xr.enterVR()")
    wait_frames(page, 5)
    p0 = np.array(page.evaluate("window.__xr.assetWorldPosition()"))
    page.evaluate("window.__xrDevice.controllers.left.updateAxes('thumbstick', 0, -1)")
    wait_frames(page, 8)
    page.evaluate("window.__xrDevice.controllers.left.updateAxes('thumbstick', 0, 0)")
    wait_frames(page, 2)
    p1 = np.array(page.evaluate("window.__xr.assetWorldPosition()"))
    assert p1[2] - p0[2] > 0.05 and abs(p1[0] - p0[0]) < 1e-6 and abs(p1[1] - p0[1]) < 1e-6, (p0, p1)
    page.evaluate("window.__xrDevice.controllers.right.updateAxes('thumbstick', 1, 0)")
    wait_frames(page, 4)
    page.evaluate("window.__xrDevice.controllers.right.updateAxes('thumbstick', 0, 0)")
    wait_frames(page, 2)
    p2 = np.array(page.evaluate("window.__xr.assetWorldPosition()"))
    head = np.array([0.0, 0.0])  # iwer's headset stands at x = z = 0
    v1, v2 = p1[[0, 2]] - head, p2[[0, 2]] - head
    angle = math.degrees(math.atan2(v1[0] * v2[1] - v1[1] * v2[0], v1 @ v2))
    assert abs(np.linalg.norm(v2) - np.linalg.norm(v1)) < 1e-4 and p2[0] < 0
    assert abs(abs(angle) - 30.0) < 0.5, angle  # exactly one snap
    assert errors == []
    page.close()
