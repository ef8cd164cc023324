"""Image → video on a tiny random Stable-Video-Diffusion-architecture pipeline saved by the test as
`$STUDIO_MODELS/svd` (the built-in name), and text → video with a tiny AnimateDiff MotionAdapter
(`$STUDIO_MODELS/animatediff`) on a tiny SD 1.x pipeline (`$STUDIO_MODELS/sd15`); written to MP4
with `av` and decoded back."""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))  # tests/ helpers (pytest runs with --import-mode=importlib)
from tiny_models import save_tiny_motion_adapter, save_tiny_sd, save_tiny_svd, single_thread  # noqa: E402

from studio.errors import BlockedContentError, CancelledError, InvalidAssetError, ModelUnavailableError  # noqa: E402
from studio.models import PipelineCache  # noqa: E402
from studio.pipelines.video import (ImageToVideoParams, TextToVideoParams, image_to_video,  # noqa: E402
                                    image_to_video_file, read_video_frames, text_to_video, text_to_video_file,
                                    write_mp4)

CACHE = PipelineCache()
IMAGE = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def svd(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_video")
    save_tiny_sd(root / "sd15")
    save_tiny_motion_adapter(root / "animatediff")
    return save_tiny_svd(root / "svd")


@pytest.fixture(autouse=True)
def studio_env(tmp_path, monkeypatch, svd):
    import huggingface_hub.constants as hfc

    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STUDIO_MODELS", str(svd.parent))
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")


def params(**kw) -> ImageToVideoParams:
    return ImageToVideoParams(**(dict(image=IMAGE, num_frames=3, steps=2, width=32, height=32, seed=0, fps=6) | kw))


def test_frames_shape_and_seeds():
    a = image_to_video(params(), cache=CACHE)
    assert a.frames.shape == (3, 32, 32, 3) and a.frames.dtype == np.uint8 and a.fps == 6 and a.seed == 0
    assert a.record["seed"] == 0 and a.record["num_frames"] == 3 and a.record["pipeline"] == "image_to_video"
    b = image_to_video(params(), cache=CACHE)
    assert np.array_equal(a.frames, b.frames)
    c = image_to_video(params(seed=1), cache=CACHE)
    assert np.abs(c.frames.astype(int) - a.frames).mean() > 1
    d = image_to_video(params(num_frames=5, width=48, height=40), cache=CACHE)
    assert d.frames.shape == (5, 40, 48, 3)
    assert [v for k, v in CACHE.loads.items() if k[0] == "diffusers-video"] == [1]  # four jobs, one load


def test_mp4_is_playable_with_the_asked_frame_count(tmp_path):
    import av

    out = image_to_video_file(params(num_frames=4), tmp_path / "clip.mp4")
    frames = read_video_frames(out)
    assert frames.shape == (4, 32, 32, 3)
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.average_rate == 6
    direct = image_to_video(params(num_frames=4), cache=CACHE).frames
    assert np.abs(frames.astype(int) - direct).mean() < 20  # lossy H.264 of noise frames at 32 px


def test_write_mp4_pads_odd_sizes_and_rejects_bad_frames(tmp_path):
    ramp = np.tile(np.linspace(0, 255, 33, dtype=np.uint8)[None, :, None], (31, 1, 3))
    frames = np.stack([ramp, ramp[:, ::-1]])
    back = read_video_frames(write_mp4(frames, tmp_path / "odd.mp4", fps=10))
    assert back.shape == (2, 32, 34, 3)
    assert np.abs(back[:, :31, :33].astype(int) - frames).mean() < 3
    with pytest.raises(ValueError):
        write_mp4(np.zeros((2, 8, 8), np.uint8), tmp_path / "bad.mp4", fps=10)
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(InvalidAssetError):
        read_video_frames(tmp_path / "junk.mp4")


def test_progress_and_cancel():
    seen = []
    image_to_video(params(steps=3), progress=lambda f, m: seen.append(f), cache=CACHE)
    assert seen == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])
    calls = []
    with pytest.raises(CancelledError):
        image_to_video(params(steps=3), progress=lambda f, m: calls.append(f), cancel=lambda: len(calls) >= 2, cache=CACHE)
    assert calls == pytest.approx([0.0, 1 / 3])


def test_missing_model(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_MODELS", str(tmp_path / "none"))
    with pytest.raises(ModelUnavailableError, match="stabilityai/stable-video-diffusion-img2vid-xt"):
        image_to_video(params(), cache=CACHE)


def tparams(**kw) -> TextToVideoParams:
    return TextToVideoParams(**(dict(prompt="a red chair turning", num_frames=3, steps=2, width=32, height=32, seed=0,
                                     guidance_scale=1.0, fps=8) | kw))


def test_text_to_video_animatediff(tmp_path):
    a = text_to_video(tparams(), cache=CACHE)
    assert a.frames.shape == (3, 32, 32, 3) and a.frames.dtype == np.uint8 and a.record["motion_adapter"] == "animatediff"
    assert np.array_equal(text_to_video(tparams(), cache=CACHE).frames, a.frames)
    assert np.abs(text_to_video(tparams(seed=5), cache=CACHE).frames.astype(int) - a.frames).mean() > 1
    assert np.abs(a.frames[0].astype(int) - a.frames[-1]).mean() > 0  # frames differ: it is a clip
    assert [v for k, v in CACHE.loads.items() if k[0] == "animatediff"] == [1]
    seen = []
    out = text_to_video_file(tparams(num_frames=5), tmp_path / "t.mp4", progress=lambda f, m: seen.append(f))
    assert read_video_frames(out).shape == (5, 32, 32, 3) and seen == pytest.approx([0.0, 0.5, 1.0])
    with pytest.raises(BlockedContentError):
        text_to_video(tparams(prompt="csam"), cache=CACHE)


def test_text_to_video_missing_models(tmp_path, monkeypatch, svd):
    monkeypatch.setenv("STUDIO_MODELS", str(tmp_path / "none"))
    with pytest.raises(ModelUnavailableError, match="stable-diffusion-v1-5/stable-diffusion-v1-5"):
        text_to_video(tparams(), cache=CACHE)
    with pytest.raises(ModelUnavailableError, match="guoyww/animatediff-motion-adapter-v1-5-2"):
        text_to_video(tparams(model_path=str(svd.parent / "sd15")), cache=CACHE)
