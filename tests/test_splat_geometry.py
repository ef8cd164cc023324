"""Disc geometry of flat Gaussians (pipelines/splat_geometry.py): the rendered ray–disc depth of a
tilted disc equals the analytic ray–plane intersection (where centre depth is off by the tilt),
and the 2DGS depth–normal loss is ~0 for a disc whose normal matches its plane and large when
the normal is wrong."""
from __future__ import annotations

import math

import numpy as np
import torch

from studio.assets import Cameras, GaussianSplats
from studio.pipelines.splat_geometry import depth_normal_loss, disc_channels, render_disc_depth
from studio.renderers.splat_raster import rasterization

W, H, F = 64, 48, 60.0
K = np.array([[F, 0, W / 2], [0, F, H / 2], [0, 0, 1.0]])
TILT = math.radians(35.0)  # disc rotated about the camera's x axis


def _disc(normal_ok: bool = True) -> GaussianSplats:
    """One opaque disc 3 m ahead of an identity camera, thin axis = its normal. normal_ok=False
    swaps the thin axis into the plane (a disc whose rendered normal is wrong)."""
    half = TILT / 2
    q = np.array([[math.cos(half), math.sin(half), 0.0, 0.0]])  # wxyz about +x
    scales = np.array([[0.8, 0.8, 0.002]]) if normal_ok else np.array([[0.8, 0.002, 0.8]])
    return GaussianSplats(np.array([[0.0, 0.0, 3.0]]), q, scales, np.array([0.99]), np.zeros((1, 1, 3)))


def _plane_depth() -> np.ndarray:
    """Analytic depth (H,W) of the plane through (0,0,3) with normal R_x(TILT)·(0,0,1)."""
    n = np.array([0.0, -math.sin(TILT), math.cos(TILT)])
    v, u = np.mgrid[0:H, 0:W] + 0.5
    r = np.stack([(u - K[0, 2]) / F, (v - K[1, 2]) / F, np.ones_like(u)], -1)
    return (n @ np.array([0.0, 0.0, 3.0])) / (r @ n)


def test_disc_depth_is_the_ray_plane_intersection() -> None:
    cams = Cameras(K[None], np.eye(4)[None], W, H)
    truth = _plane_depth()
    for median in (True, False):
        depth, alpha = render_disc_depth(_disc(), cams, median=median, depth_sharpen=1.0)
        m = alpha[0] > 0.5
        assert m.sum() > 200
        np.testing.assert_allclose(depth[0][m], truth[m], rtol=1e-4)
    # the compositor's centre depth is 3 m everywhere: wrong by the tilt away from the centre
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    s = _disc()
    ed, a, _ = rasterization(t(s.means), t(s.quats), t(s.scales), t(s.opacities), t(s.sh), t(np.eye(4))[None], t(K)[None],
                             W, H, sh_degree=0, render_mode="ED", packed=False)
    m = a[0, ..., 0].numpy() > 0.5
    assert np.abs(ed[0, ..., 0].numpy()[m] - truth[m]).max() > 0.1


def test_depth_normal_loss_scores_normal_agreement() -> None:
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    losses = []
    for ok in (True, False):
        s = _disc(ok)
        # a wrong thin axis also changes the plane: score the right plane with the wrong normal by
        # rendering the normal channels of the bad disc over the depth channels of the good one
        good = disc_channels(t(s.means), t(_disc().quats), t(_disc().scales), t(np.eye(4)), t(K))
        mine = disc_channels(t(s.means), t(s.quats), t(s.scales), t(np.eye(4)), t(K))
        ch = torch.cat([mine[:, :3], good[:, 3:]], -1)
        g = _disc()
        img, alpha, _ = rasterization(t(g.means), t(g.quats), t(g.scales), t(g.opacities), ch, t(np.eye(4))[None],
                                      t(K)[None], W, H, sh_degree=None, packed=False)
        losses.append(float(depth_normal_loss(img[0], alpha[0, ..., 0], t(K))))
    assert losses[0] < 1e-3 and losses[1] > 0.3


def test_depth_normal_loss_has_gradients() -> None:
    s = _disc()
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    quats = t(s.quats + np.array([[0, 0.1, 0.05, 0]])).requires_grad_(True)
    scales = t(s.scales)
    ch = disc_channels(t(s.means), quats, scales, t(np.eye(4)), t(K))
    img, alpha, _ = rasterization(t(s.means), quats, scales, t(s.opacities), ch, t(np.eye(4))[None], t(K)[None], W, H,
                                  sh_degree=None, packed=False)
    depth_normal_loss(img[0], alpha[0, ..., 0], t(K)).backward()
    assert quats.grad is not None and torch.isfinite(quats.grad).all() and quats.grad.abs().sum() > 0


def test_fit_with_normal_consistency_lowers_the_loss() -> None:
    """FitParams.normal_lambda: the fitted discs agree better with their own depth."""
    from studio.pipelines.procedural import SampleParams, sample_asset
    from studio.pipelines.reconstruct import depth_init_points
    from studio.pipelines.splat_fit import FitParams, fit_splats
    from studio.pipelines.views_render import render_views, training_rig

    a = sample_asset(SampleParams(texture_size=64))
    views, depth = render_views(a, training_rig(a, 6, 64))
    pts, cols = depth_init_points(views, depth, per_view=400)
    t = lambda x: torch.tensor(np.asarray(x), dtype=torch.float32)  # noqa: E731

    def mean_loss(lam: float) -> float:
        s, _ = fit_splats(views, FitParams(iterations=80, strategy="none", normal_lambda=lam, normal_start=0.0,
                                           lr_means=2e-4), pts, cols)
        out = []
        for i in range(len(views)):
            vm, k = t(views.cameras.world_to_cam[i]), t(views.cameras.K[i])
            ch = disc_channels(t(s.means), t(s.quats), t(s.scales), vm, k)
            img, alpha, _ = rasterization(t(s.means), t(s.quats), t(s.scales), t(s.opacities), ch, vm[None], k[None],
                                          64, 64, sh_degree=None, packed=False)
            out.append(float(depth_normal_loss(img[0], alpha[0, ..., 0], k)))
        return float(np.mean(out))

    without, with_ = mean_loss(0.0), mean_loss(0.5)
    print(f"depth-normal loss without {without:.4f}, with normal_lambda 0.5 {with_:.4f}")
    assert with_ < 0.8 * without
