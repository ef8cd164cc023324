"""Score distillation on Gaussian splats with a tiny random SD-1.x-architecture pipeline (32 px renders,
8×8 latents) built and saved by the test and resolved through the registry. The UNet is noise, so the
tests check the mechanics: parameters move, loss and gradients are finite, a seed reproduces the run
exactly and another seed does not, progress, cancellation, annealing and the missing-model error."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import save_tiny_sd, single_thread  # noqa: E402

from studio.errors import CancelledError, ModelUnavailableError  # noqa: E402
from studio.models import PipelineCache  # noqa: E402
from studio.pipelines.sds import (SDSParams, random_camera, sds_loss, sds_splats, sds_to_asset,  # noqa: E402
                                 t_max_at)

CACHE = PipelineCache()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def sd(tmp_path_factory, one_thread):
    return save_tiny_sd(tmp_path_factory.mktemp("tiny_sds") / "sd")


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    import huggingface_hub.constants as hfc

    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STUDIO_MODELS", str(tmp_path / "models"))
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("STUDIO_DEVICE", "cpu")
    monkeypatch.delenv("STUDIO_BLOCKLIST", raising=False)


def params(sd, **kw) -> SDSParams:
    base = dict(iterations=4, guidance_scale=7.5, render_size=32, init_count=200, seed=3, model_path=str(sd))
    return SDSParams(**(base | kw))


def test_sds_updates_splats_with_finite_loss_and_progress(sd):
    calls: list[float] = []
    stats: dict = {}
    out = sds_splats("a red chair", model="tiny-sd", params=params(sd), progress=lambda f, m: calls.append(f),
                     cache=CACHE, stats=stats)
    from studio.pipelines.sds import _init_splats

    init = _init_splats(params(sd), np.random.default_rng(3))
    assert len(out) == 200
    for name in ("means", "log_scales", "opacity_logits", "sh"):
        a, b = getattr(out, name), getattr(init, name)
        assert np.all(np.isfinite(a))
        assert np.abs(a - b).max() > 1e-5, name
    assert len(stats["losses"]) == 4 and all(np.isfinite(stats["losses"])) and all(v > 0 for v in stats["losses"])
    assert all(np.isfinite(stats["grad_norms"])) and all(g > 0 for g in stats["grad_norms"])
    assert calls == pytest.approx([0.25, 0.5, 0.75, 1.0])


def test_sds_deterministic_under_seed(sd):
    a = sds_splats("a red chair", params=params(sd, iterations=2), cache=CACHE)
    b = sds_splats("a red chair", params=params(sd, iterations=2), cache=CACHE)
    c = sds_splats("a red chair", params=params(sd, iterations=2, seed=4), cache=CACHE)
    assert np.array_equal(a.means, b.means) and np.array_equal(a.sh, b.sh)
    assert not np.array_equal(a.means, c.means)


def test_sds_refines_given_splats_and_prompt_matters(sd):
    from studio.pipelines.sds import _init_splats

    init = _init_splats(params(sd, init_count=50), np.random.default_rng(0))
    a = sds_splats("a red chair", init=init, params=params(sd, iterations=1, background=(1, 1, 1)), cache=CACHE)
    b = sds_splats("a blue car", init=init, params=params(sd, iterations=1, background=(1, 1, 1)), cache=CACHE)
    assert len(a) == 50
    assert not np.array_equal(a.sh, b.sh)  # the text conditioning reaches the gradient


def test_sds_asset_records_parameters_and_exports(sd, tmp_path):
    from studio.assets.io import load, save

    a = sds_to_asset("a red chair", params=params(sd, iterations=1, init_count=64), cache=CACHE)
    assert a.splats is not None and len(a.splats) == 64 and not a.meshes
    m = a.metadata
    assert (m.prompt, m.seed, m.method, m.model) == ("a red chair", 3, "sds", "sd15")
    assert m.extras["guidance_scale"] == 7.5 and m.extras["iterations"] == 1 and np.isfinite(m.extras["final_loss"])
    back = load(save(a, tmp_path / "sds.ply", validate=True))
    assert np.allclose(back.splats.means, a.splats.means, atol=1e-6)


def test_sds_cancel_between_iterations(sd):
    n = {"i": 0}

    def cancel() -> bool:
        n["i"] += 1
        return n["i"] > 2

    seen: list[float] = []
    with pytest.raises(CancelledError):
        sds_splats("a red chair", params=params(sd, iterations=10), progress=lambda f, m: seen.append(f),
                   cancel=cancel, cache=CACHE)
    assert len(seen) == 2


def test_annealing_and_cameras():
    p = SDSParams(iterations=11, t_range=(0.02, 0.98), t_anneal_to=0.5, radius=2.0, elevation_deg=(10, 10))
    assert t_max_at(p, 0) == pytest.approx(0.98) and t_max_at(p, 10) == pytest.approx(0.5)
    assert all(t_max_at(p, i) >= t_max_at(p, i + 1) for i in range(10))
    cam = random_camera(p, np.random.default_rng(0))
    c = cam.centers[0]
    assert np.linalg.norm(c) == pytest.approx(2.0)
    assert np.degrees(np.arcsin(c[1] / 2.0)) == pytest.approx(10.0)
    uv, depth = cam.project(np.zeros((1, 3)))
    assert np.allclose(uv[0], [cam.width / 2, cam.height / 2]) and depth[0] > 0  # looks at the origin


def test_sds_loss_gradient_is_exactly_g():
    import torch

    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0), requires_grad=True)
    g = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    loss = sds_loss(z, g)
    loss.backward()
    assert torch.allclose(z.grad, g, rtol=0, atol=1e-6)  # z − (z − g) up to float rounding
    assert float(loss) == pytest.approx(0.5 * float((g**2).sum()), rel=1e-6)


def test_missing_model_names_repo():
    with pytest.raises(ModelUnavailableError, match="stable-diffusion-v1-5"):
        sds_splats("a red chair", model="sd15", params=SDSParams(iterations=1, seed=0), cache=CACHE)
