"""CPU splat rasterizer vs gsplat's torch references and a dense compositor kept here."""
from __future__ import annotations

import math

import pytest
import torch
from gsplat.cuda._torch_impl import (
    _fully_fused_projection,
    _quat_scale_to_covar_preci,
    _spherical_harmonics,
)

from studio.renderers import splat_cpu
from studio.renderers.splat_raster import rasterization


# ---------------------------------------------------------------------------------------
# scenes
# ---------------------------------------------------------------------------------------


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, -1.0, 0.0)) -> torch.Tensor:
    """World→camera 4×4 (OpenCV: x right, y down, z forward)."""
    eye, target, up = (torch.tensor(v, dtype=torch.float64) for v in (eye, target, up))
    z = torch.nn.functional.normalize(target - eye, dim=0)
    x = torch.nn.functional.normalize(torch.linalg.cross(up, z), dim=0)
    y = torch.linalg.cross(z, x)
    R = torch.stack([x, y, z])  # rows: camera axes in world
    V = torch.eye(4, dtype=torch.float64)
    V[:3, :3] = R
    V[:3, 3] = -R @ eye
    return V


def make_scene(n=200, n_cams=2, width=40, height=32, seed=0, dtype=torch.float32, sh_degree=None):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g, dtype=torch.float64) * 2 - 1)
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    scales = torch.exp(torch.empty(n, 3, dtype=torch.float64).uniform_(math.log(0.03), math.log(0.25), generator=g))
    opac = torch.empty(n, dtype=torch.float64).uniform_(0.05, 0.99, generator=g)
    if sh_degree is None:
        colors = torch.rand(n, 3, generator=g, dtype=torch.float64)
    else:
        colors = torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g, dtype=torch.float64) * 0.3
    eyes = [(3.0 * math.sin(a), 0.4, -3.0 * math.cos(a)) for a in torch.linspace(0, 1.5, n_cams).tolist()]
    viewmats = torch.stack([look_at(e) for e in eyes])
    f = 0.9 * width
    K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=torch.float64)
    Ks = K.expand(n_cams, 3, 3).clone()
    cast = lambda t: t.to(dtype)  # noqa: E731
    return dict(means=cast(means), quats=cast(quats), scales=cast(scales), opacities=cast(opac),
                colors=cast(colors), viewmats=cast(viewmats), Ks=cast(Ks), width=width, height=height)


# ---------------------------------------------------------------------------------------
# dense reference: every Gaussian against every pixel, front to back, gsplat's alpha rules
# ---------------------------------------------------------------------------------------


def _front_to_back(means2d, conics, opac, depths, valid, width, height):
    """Every valid Gaussian against every pixel centre, nearest first, with gsplat's alpha rules.
    Yields (g, ok, term, alpha, T, next_T), all (P,) over the H·W pixels: ok where g counts,
    term where it ends the ray, T the transmittance before g and next_T = T·(1 − alpha)."""
    dt = means2d.dtype
    ys, xs = torch.meshgrid(torch.arange(height, dtype=dt) + 0.5, torch.arange(width, dtype=dt) + 0.5, indexing="ij")
    px, py = xs.flatten(), ys.flatten()
    T = torch.ones(px.shape[0], dtype=dt)
    done = torch.zeros(px.shape[0], dtype=torch.bool)
    ids = torch.nonzero(valid).flatten()
    for g in ids[torch.sort(depths[ids].detach().float(), stable=True).indices].tolist():
        dx, dy = means2d[g, 0] - px, means2d[g, 1] - py
        a, b, c = conics[g]
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = torch.clamp(opac[g] * torch.exp(-sigma), max=0.999)
        ok = (sigma >= 0) & (alpha >= 1.0 / 255.0) & ~done
        next_T = T * (1 - alpha)
        term = ok & (next_T <= 1e-4)
        done = done | term
        yield g, ok, term, alpha, T, next_T
        T = torch.where(ok & ~term, next_T, T)


def dense_composite(means2d, conics, opac, colors, depths, valid, width, height, bg=None):
    """One image. means2d (N,2) conics (N,3) opac (N,) colors (N,D) depths (N,) valid (N,)."""
    D = colors.shape[-1]
    acc = torch.zeros(width * height, D, dtype=means2d.dtype)
    T = torch.ones(width * height, dtype=means2d.dtype)
    for g, ok, term, alpha, T0, next_T in _front_to_back(means2d, conics, opac, depths, valid, width, height):
        use = ok & ~term
        acc = acc + torch.where(use, alpha * T0, 0.0)[:, None] * colors[g]
        T = torch.where(use, next_T, T0)
    if bg is not None:
        acc = acc + T[:, None] * bg
    return acc.reshape(height, width, D), (1 - T).reshape(height, width, 1)


def dense_render(s, sh_degree=None, backgrounds=None, render_mode="RGB", antialiased=False):
    """Whole reference pipeline from gsplat's torch references + dense_composite."""
    covars, _ = _quat_scale_to_covar_preci(s["quats"], s["scales"], compute_preci=False)
    radii, means2d, depths, conics, comp = _fully_fused_projection(
        s["means"], covars, s["viewmats"], s["Ks"], s["width"], s["height"],
        calc_compensations=antialiased)
    cols, alphas = [], []
    campos = torch.inverse(s["viewmats"])[:, :3, 3]
    for ci in range(len(s["viewmats"])):
        if sh_degree is None:
            c = s["colors"]
        else:
            c = torch.clamp_min(_spherical_harmonics(sh_degree, s["means"] - campos[ci], s["colors"]) + 0.5, 0)
        o = s["opacities"] * (comp[ci] if antialiased else 1)
        bg = None if backgrounds is None else backgrounds[ci]
        if render_mode in ("RGB+D", "RGB+ED"):
            c = torch.cat([c, depths[ci][:, None]], -1)
            bg = None if bg is None else torch.cat([bg, bg.new_zeros(1)])
        rc, ra = dense_composite(means2d[ci], conics[ci], o, c, depths[ci], (radii[ci] > 0).all(-1),
                                 s["width"], s["height"], bg)
        if render_mode == "RGB+ED":
            rc = torch.cat([rc[..., :-1], rc[..., -1:] / ra.clamp(min=1e-10)], -1)
        cols.append(rc)
        alphas.append(ra)
    return torch.stack(cols), torch.stack(alphas)


def ours(s, **kw):
    return rasterization(s["means"], s["quats"], s["scales"], s["opacities"], s["colors"],
                         s["viewmats"], s["Ks"], s["width"], s["height"], **kw)


# ---------------------------------------------------------------------------------------
# projection
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("antialiased", [False, True])
def test_projection_matches_gsplat_reference(antialiased):
    s = make_scene(n=500, n_cams=3, seed=1)
    s["means"][:5] = torch.tensor([0.0, 0.0, -3.2])  # behind camera 0: culled
    covars, _ = _quat_scale_to_covar_preci(s["quats"], s["scales"], compute_preci=False)
    r_ref, m_ref, d_ref, c_ref, comp_ref = _fully_fused_projection(
        s["means"], covars, s["viewmats"], s["Ks"], s["width"], s["height"],
        calc_compensations=antialiased)
    r, m, d, c, comp = splat_cpu.fully_fused_projection(
        s["means"][None], None, s["quats"][None], s["scales"][None], s["viewmats"][None],
        s["Ks"][None], s["width"], s["height"], calc_compensations=antialiased)
    r, m, d, c = r[0], m[0], d[0], c[0]
    assert r.dtype == torch.int32 and r.shape == r_ref.shape == (3, 500, 2)
    assert torch.equal(r, r_ref)
    v = (r > 0).all(-1)
    assert 50 < v.sum() < v.numel() and not v[0, :5].any()
    torch.testing.assert_close(m[v], m_ref[v], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(c[v], c_ref[v], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(d, d_ref, rtol=1e-6, atol=1e-6)
    if antialiased:
        torch.testing.assert_close(comp[0][v], comp_ref[v], rtol=1e-5, atol=1e-6)


def test_opacity_aware_radii_cull_faint_gaussians():
    s = make_scene(n=100, seed=2)
    s["opacities"][:10] = 0.002  # below 1/255: culled as gsplat's CUDA kernel does
    r, *_ = splat_cpu.fully_fused_projection(
        s["means"][None], None, s["quats"][None], s["scales"][None], s["viewmats"][None],
        s["Ks"][None], s["width"], s["height"], opacities=s["opacities"][None])
    r_plain, *_ = splat_cpu.fully_fused_projection(
        s["means"][None], None, s["quats"][None], s["scales"][None], s["viewmats"][None],
        s["Ks"][None], s["width"], s["height"])
    assert (r[0, :, :10] == 0).all()
    assert (r <= r_plain).all() and (r < r_plain).any()


@pytest.mark.parametrize("backend", ["cpp", "torch"])
def test_tile_binning_matches_gsplat_reference(backend, monkeypatch):
    from gsplat.cuda._torch_impl import _isect_offset_encode, _isect_tiles

    monkeypatch.setenv("STUDIO_SPLAT_BACKEND", backend)

    s = make_scene(n=120, n_cams=2, seed=3)
    r, m, d, _, _ = splat_cpu.fully_fused_projection(
        s["means"][None], None, s["quats"][None], s["scales"][None], s["viewmats"][None],
        s["Ks"][None], s["width"], s["height"])
    tw, th = math.ceil(40 / 8), math.ceil(32 / 8)
    tpg_ref, ids_ref, flat_ref = _isect_tiles(m[0], r[0], d[0], 8, tw, th)
    offs_ref = _isect_offset_encode(ids_ref, 2, tw, th)
    tpg, ids, flat, offs = splat_cpu.isect_tiles(
        m[0].reshape(-1, 2), r[0].reshape(-1, 2), d[0].reshape(-1),
        torch.arange(2).repeat_interleave(120), 2, 8, tw, th)
    assert torch.equal(tpg.reshape(2, 120), tpg_ref)
    assert torch.equal(ids, ids_ref) and torch.equal(flat, flat_ref)
    assert torch.equal(offs, offs_ref)


# ---------------------------------------------------------------------------------------
# images vs dense reference
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("tile_size", [4, 8, 16])
@pytest.mark.parametrize("packed", [True, False])
def test_images_match_dense_reference(tile_size, packed):
    s = make_scene(n=200, n_cams=2, seed=4)
    bgs = torch.tensor([[0.2, 0.4, 0.6], [1.0, 0.0, 0.5]])
    rc, ra, meta = ours(s, tile_size=tile_size, packed=packed, backgrounds=bgs, render_mode="RGB+D")
    ref_c, ref_a = dense_render(s, backgrounds=bgs, render_mode="RGB+D")
    assert rc.shape == (2, 32, 40, 4) and ra.shape == (2, 32, 40, 1)
    assert (ref_a > 0.5).float().mean() > 0.3  # the scene is not empty
    torch.testing.assert_close(rc, ref_c, rtol=0, atol=1e-4 * max(1.0, ref_c[..., 3].max().item()))
    torch.testing.assert_close(rc[..., :3], ref_c[..., :3], rtol=0, atol=1e-4)
    torch.testing.assert_close(ra, ref_a, rtol=0, atol=1e-4)
    if packed:
        assert meta["radii"].shape == (len(meta["gaussian_ids"]), 2)
    else:
        assert meta["radii"].shape == (2, 200, 2) and meta["means2d"].shape == (2, 200, 2)


@pytest.mark.parametrize("mode", ["RGB", "D", "ED", "RGB+ED"])
def test_modes_sh_and_antialiasing_match_dense_reference_float64(mode):
    s = make_scene(n=150, n_cams=2, seed=5, dtype=torch.float64, sh_degree=2)
    aa = mode in ("ED", "RGB+ED")
    rc, ra, _ = ours(s, sh_degree=2, render_mode=mode, rasterize_mode="antialiased" if aa else "classic")
    ref_mode = "RGB+ED" if mode in ("ED", "RGB+ED") else "RGB+D"
    ref_c, ref_a = dense_render(s, sh_degree=2, render_mode=ref_mode, antialiased=aa)
    want = {"RGB": ref_c[..., :3], "D": ref_c[..., 3:], "ED": ref_c[..., 3:], "RGB+ED": ref_c}[mode]
    torch.testing.assert_close(rc, want, rtol=0, atol=1e-9)
    torch.testing.assert_close(ra, ref_a, rtol=0, atol=1e-10)


def test_gradients_match_dense_reference():
    s = make_scene(n=60, n_cams=2, width=24, height=20, seed=6, dtype=torch.float64, sh_degree=1)
    names = ["means", "quats", "scales", "opacities", "colors"]
    bgs = torch.tensor([[0.3, 0.3, 0.3], [0.0, 1.0, 0.0]], dtype=torch.float64)
    w = torch.randn(2, 20, 24, 4, dtype=torch.float64)
    grads = []
    for fn in (lambda s: ours(s, sh_degree=1, backgrounds=bgs, render_mode="RGB+D")[:2],
               lambda s: dense_render(s, sh_degree=1, backgrounds=bgs, render_mode="RGB+D")):
        t = {k: (v.clone().requires_grad_(k in names) if torch.is_tensor(v) else v) for k, v in s.items()}
        c, a = fn(t)
        ((c * w).sum() + (a[..., 0] * w[..., 0]).sum()).backward()
        grads.append([t[k].grad for k in names])
    for name, g, gr in zip(names, *grads):
        torch.testing.assert_close(g, gr, rtol=1e-6, atol=1e-8, msg=name)


def test_torch_fallback_compositor_matches(monkeypatch):
    s = make_scene(n=120, n_cams=2, seed=7)
    bgs = torch.tensor([[0.2, 0.4, 0.6], [1.0, 0.0, 0.5]])
    monkeypatch.setenv("STUDIO_SPLAT_BACKEND", "torch")
    assert splat_cpu.backend() == "torch"
    rc, ra, _ = ours(s, tile_size=8, backgrounds=bgs, render_mode="RGB+D")
    ref_c, ref_a = dense_render(s, backgrounds=bgs, render_mode="RGB+D")
    torch.testing.assert_close(rc[..., :3], ref_c[..., :3], rtol=0, atol=1e-4)
    torch.testing.assert_close(ra, ref_a, rtol=0, atol=1e-4)


def _grads(s, names, fn):
    t = {k: (v.clone().requires_grad_(k in names) if torch.is_tensor(v) else v) for k, v in s.items()}
    outs = fn(t)
    w = [torch.randn(o.shape, dtype=o.dtype, generator=torch.Generator().manual_seed(i)) for i, o in enumerate(outs)]
    sum((o * wi).sum() for o, wi in zip(outs, w)).backward()
    return [o.detach() for o in outs], [t[k].grad for k in names]


@pytest.mark.parametrize("antialiased", [False, True])
def test_fused_cpp_projection_matches_torch_projection(antialiased):
    # wide spread: many Gaussians outside the view, where the Jacobian is clamped
    s = make_scene(n=400, n_cams=3, seed=13, dtype=torch.float64)
    s["means"] = s["means"] * 3
    names = ["means", "quats", "scales"]

    def run(fn):
        def f(t):
            r, m, d, c, comp = fn(t["means"][None], None, t["quats"][None], t["scales"][None], t["viewmats"][None],
                                  t["Ks"][None], 40, 32, calc_compensations=antialiased,
                                  opacities=t["opacities"][None])
            f.radii = r
            return [m, d, c] + ([comp] if antialiased else [])
        out, g = _grads(s, names, f)
        return f.radii, out, g

    r1, o1, g1 = run(splat_cpu.fully_fused_projection)
    r2, o2, g2 = run(splat_cpu.fully_fused_projection_torch)
    assert splat_cpu.backend() == "cpp"
    assert torch.equal(r1, r2) and (r1 > 0).all(-1).sum() > 100
    for a, b in zip(o1, o2):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    for name, a, b in zip(names, g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10, msg=name)


@pytest.mark.parametrize("degree,per_camera", [(0, False), (1, False), (2, True), (3, False), (4, False)])
def test_sh_colors_match_gsplat_reference(degree, per_camera):
    s = make_scene(n=100, n_cams=2, seed=14, dtype=torch.float64, sh_degree=4)
    coeffs = s["colors"][:, : max((degree + 1) ** 2, 4)]  # K may exceed the degree's bases
    if per_camera:
        coeffs = torch.stack([coeffs, coeffs.flip(0)])[None]
    else:
        coeffs = coeffs[None]
    campos = torch.inverse(s["viewmats"])[None, :, :3, 3]
    radii = torch.ones(1, 2, 100, 2, dtype=torch.int32)
    means = s["means"][None]

    def f_cpp(t):
        return [splat_cpu.sh_colors(degree, t["m"], campos, t["c"], radii)]

    def f_ref(t):
        dirs = t["m"][:, None] - campos[:, :, None, :]
        shs = t["c"] if per_camera else t["c"][:, None].expand(1, 2, 100, -1, 3)
        return [torch.clamp_min(_spherical_harmonics(degree, dirs, shs) + 0.5, 0.0)]

    o1, g1 = _grads({"m": means, "c": coeffs}, ["m", "c"], f_cpp)
    o2, g2 = _grads({"m": means, "c": coeffs}, ["m", "c"], f_ref)
    torch.testing.assert_close(o1[0], o2[0], rtol=1e-12, atol=1e-12)
    for a, b in zip(g1, g2):
        b = torch.zeros_like(a) if b is None else b  # degree 0: no direction dependence
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_torch_backend_matches_cpp_backend_end_to_end(monkeypatch):
    s = make_scene(n=150, n_cams=2, seed=15, dtype=torch.float64, sh_degree=3)
    s["means"] = s["means"] * 1.5
    names = ["means", "quats", "scales", "opacities", "colors"]
    f = lambda t: list(ours(t, sh_degree=3, render_mode="RGB+D", rasterize_mode="antialiased", tile_size=8)[:2])  # noqa: E731
    o1, g1 = _grads(s, names, f)
    monkeypatch.setenv("STUDIO_SPLAT_BACKEND", "torch")
    o2, g2 = _grads(s, names, f)
    for a, b in zip(o1, o2):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    for name, a, b in zip(names, g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10, msg=name)


def test_cpp_kernel_is_built_and_used():
    assert splat_cpu.backend() == "cpp", splat_cpu._lib_error


# ---------------------------------------------------------------------------------------
# gradcheck
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("packed,sh", [(True, None), (False, 1)])
def test_gradcheck_float64(packed, sh):
    s = make_scene(n=5, n_cams=2, width=12, height=10, seed=8, dtype=torch.float64, sh_degree=sh)
    s["opacities"] = torch.linspace(0.3, 0.7, 5, dtype=torch.float64)
    s["scales"] = s["scales"] * 3
    bgs = torch.tensor([[0.1, 0.2, 0.3], [0.5, 0.5, 0.0]], dtype=torch.float64, requires_grad=True)

    wc = torch.randn(2, 10, 12, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    wa = torch.randn(2, 10, 12, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def render(means, quats, scales, opacities, colors, bgs):
        c, a, _ = rasterization(means, quats, scales, opacities, colors, s["viewmats"], s["Ks"],
                                12, 10, sh_degree=sh, packed=packed, tile_size=4,
                                backgrounds=bgs, render_mode="RGB+ED")
        return c, a

    def f(*args):
        # random per-pixel weightings: every pixel's gradient enters, few backward passes
        c, a = render(*args)
        return (c * wc).sum(dim=(1, 2)), (a * wa).sum(dim=(1, 2))

    inputs = [s[k].clone().requires_grad_(True) for k in ["means", "quats", "scales", "opacities", "colors"]]
    c, a = render(*inputs, bgs)
    assert (a > 0.3).float().mean() > 0.15
    assert torch.autograd.gradcheck(f, (*inputs, bgs), eps=1e-6, atol=1e-6, rtol=1e-4)


# ---------------------------------------------------------------------------------------
# densification strategies on CPU
# ---------------------------------------------------------------------------------------


def _params_and_optimizers(s, n_low=0):
    opac = s["opacities"].clone()
    opac[:n_low] = 0.001  # below 1/255: invisible, and below prune_opa
    params = torch.nn.ParameterDict({
        "means": s["means"], "scales": torch.log(s["scales"]), "quats": s["quats"],
        "opacities": torch.logit(opac), "colors": s["colors"],
    })
    opts = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    return params, opts


def _render_params(p, s, packed, absgrad=False):
    return rasterization(p["means"], p["quats"], torch.exp(p["scales"]), torch.sigmoid(p["opacities"]),
                         p["colors"], s["viewmats"], s["Ks"], s["width"], s["height"], packed=packed,
                         absgrad=absgrad)


@pytest.mark.parametrize("packed,absgrad", [(True, False), (False, False), (False, True)])
def test_default_strategy_densifies_and_prunes_on_cpu(packed, absgrad):
    from gsplat import DefaultStrategy

    s = make_scene(n=200, n_cams=2, seed=9)
    params, opts = _params_and_optimizers(s, n_low=20)
    strategy = DefaultStrategy(refine_start_iter=0, refine_every=1, grow_grad2d=0.0, prune_opa=0.005,
                               grow_scale3d=0.1, absgrad=absgrad)
    strategy.check_sanity(params, opts)
    state = strategy.initialize_state(scene_scale=1.0)
    img, alpha, info = _render_params(params, s, packed, absgrad)
    strategy.step_pre_backward(params, opts, state, 1, info)
    img.mean().backward()
    g = (info["means2d"].absgrad if absgrad else info["means2d"].grad)
    assert g is not None and g.shape == info["means2d"].shape and g.abs().sum() > 0
    # expected growth from the gradients: every Gaussian with a non-zero screen gradient
    if packed:
        seen = torch.zeros(200, dtype=torch.bool)
        seen[info["gaussian_ids"][g.norm(dim=-1) > 0]] = True
    else:
        seen = ((g.norm(dim=-1) > 0) & (info["radii"] > 0).all(-1)).any(0)
    large = torch.exp(params["scales"]).max(-1).values > 0.1
    n_dupli, n_split = int((seen & ~large).sum()), int((seen & large).sum())
    assert n_dupli > 10 and n_split > 10 and not seen[:20].any()
    for o in opts.values():
        o.step()
    strategy.step_post_backward(params, opts, state, 1, info, packed=packed)
    assert len(params["means"]) == 200 + n_dupli + n_split - 20
    assert torch.sigmoid(params["opacities"]).min() > 0.005
    for k, p in params.items():
        assert opts[k].param_groups[0]["params"][0] is p


def test_relocation_rule():
    from studio.renderers.splat_strategy import compute_relocation
    import math as m

    binoms = torch.tensor([[m.comb(n, k) if k <= n else 0 for k in range(51)] for n in range(51)], dtype=torch.float32)
    o = torch.tensor([0.3, 0.6, 0.9, 0.5])
    sc = torch.rand(4, 3) + 0.1
    new_o, new_s = compute_relocation(o, sc, torch.tensor([1, 2, 3, 7]), binoms)
    n = torch.tensor([1.0, 2, 3, 7])
    torch.testing.assert_close(new_o, 1 - (1 - o) ** (1 / n))
    # direct double sum of eq. 9
    for j in range(4):
        den = sum(m.comb(i - 1, k) * (-1) ** k / m.sqrt(k + 1) * new_o[j].item() ** (k + 1)
                  for i in range(1, int(n[j]) + 1) for k in range(i))
        torch.testing.assert_close(new_s[j], o[j] / den * sc[j])
    torch.testing.assert_close(new_s[0], sc[0])  # one copy: unchanged
    # n copies at the new opacity composite to the old opacity
    torch.testing.assert_close(1 - (1 - new_o) ** n, o)


def test_mcmc_strategy_relocates_and_adds_on_cpu():
    from gsplat import MCMCStrategy

    s = make_scene(n=200, n_cams=2, seed=10)
    params, opts = _params_and_optimizers(s, n_low=30)
    strategy = MCMCStrategy(cap_max=205, refine_start_iter=0, refine_every=1, min_opacity=0.005)
    strategy.check_sanity(params, opts)
    state = strategy.initialize_state()
    img, alpha, info = _render_params(params, s, packed=False)
    img.mean().backward()
    for o in opts.values():
        o.step()
    means_before = params["means"].detach().clone()
    strategy.step_post_backward(params, opts, state, 1, info, lr=1e-3)
    assert len(params["means"]) == 205
    op = torch.sigmoid(params["opacities"])
    assert (op[:30] > 0.0049).all()  # dead Gaussians relocated onto live ones
    assert torch.isfinite(params["means"]).all() and torch.isfinite(params["scales"]).all()
    assert not torch.equal(params["means"][:30], means_before[:30])
    img2, _, _ = _render_params(params, s, packed=False)
    assert torch.isfinite(img2).all()


# ---------------------------------------------------------------------------------------
# tiny fit
# ---------------------------------------------------------------------------------------


def test_tiny_fit_reaches_psnr():
    s = make_scene(n=150, n_cams=3, width=32, height=32, seed=11)
    with torch.no_grad():
        target, _, _ = ours(s)
    g = torch.Generator().manual_seed(12)
    n = 300
    params = {
        "means": (torch.rand(n, 3, generator=g) * 2 - 1),
        "quats": torch.randn(n, 4, generator=g),
        "scales": torch.full((n, 3), math.log(0.08)),
        "opacities": torch.full((n,), 0.0),
        "colors": torch.full((n, 3), 0.0),
    }
    for p in params.values():
        p.requires_grad_(True)
    lrs = {"means": 0.01, "quats": 0.01, "scales": 0.01, "opacities": 0.05, "colors": 0.05}
    opt = torch.optim.Adam([{"params": [params[k]], "lr": lr} for k, lr in lrs.items()])

    def psnr():
        with torch.no_grad():
            img = render()
        return -10 * math.log10(torch.mean((img - target) ** 2).item())

    def render():
        c, _, _ = rasterization(params["means"], params["quats"], torch.exp(params["scales"]),
                                torch.sigmoid(params["opacities"]), torch.sigmoid(params["colors"]),
                                s["viewmats"], s["Ks"], 32, 32)
        return c

    start = psnr()
    for _ in range(100):
        opt.zero_grad()
        loss = torch.abs(render() - target).mean()
        loss.backward()
        opt.step()
    end = psnr()
    assert start < 18 and end > 30, (start, end)


# ---------------------------------------------------------------------------------------
# shapes and edge cases
# ---------------------------------------------------------------------------------------


def test_batch_dims_per_camera_colors_and_covars_inputs():
    s1, s2 = make_scene(n=80, seed=16), make_scene(n=80, seed=17)
    cat = lambda k: torch.stack([s1[k], s2[k]])  # noqa: E731
    c, a, meta = rasterization(cat("means"), cat("quats"), cat("scales"), cat("opacities"), cat("colors"),
                               cat("viewmats"), cat("Ks"), 40, 32, packed=False)
    assert c.shape == (2, 2, 32, 40, 3) and meta["radii"].shape == (2, 2, 80, 2)
    for b, sb in enumerate((s1, s2)):
        cb, ab, _ = ours(sb, packed=True)
        torch.testing.assert_close(c[b], cb, rtol=0, atol=1e-6)
        torch.testing.assert_close(a[b], ab, rtol=0, atol=1e-6)
    # per-camera colours (C,N,D): camera 1 sees the colours reversed
    pc = torch.stack([s1["colors"], s1["colors"].flip(-1)])
    cpc, _, _ = rasterization(s1["means"], s1["quats"], s1["scales"], s1["opacities"], pc, s1["viewmats"],
                              s1["Ks"], 40, 32)
    c1, _, _ = ours(s1)
    torch.testing.assert_close(cpc[0], c1[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(cpc[1], c1[1].flip(-1), rtol=0, atol=1e-6)
    # covariance input equals quats/scales input
    covars, _ = _quat_scale_to_covar_preci(s1["quats"], s1["scales"], compute_preci=False)
    ccov, _, _ = rasterization(s1["means"], None, None, s1["opacities"], s1["colors"], s1["viewmats"], s1["Ks"],
                               40, 32, covars=covars)
    torch.testing.assert_close(ccov, c1, rtol=0, atol=1e-5)


def test_empty_and_fully_culled_scenes_render_background():
    s = make_scene(n=50, seed=18)
    bgs = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    s["means"] = s["means"] * 0.1 + torch.tensor([0.0, 0.0, -10.0])  # all behind both cameras
    params = [s[k].clone().requires_grad_(True) for k in ("means", "quats", "scales", "opacities", "colors")]
    c, a, meta = rasterization(*params, s["viewmats"], s["Ks"], 40, 32, backgrounds=bgs)
    assert len(meta["flatten_ids"]) == 0 and (a == 0).all()
    torch.testing.assert_close(c, bgs[:, None, None, :].expand(2, 32, 40, 3))
    c.sum().backward()
    assert all(p.grad is not None and (p.grad == 0).all() for p in params)
    e = make_scene(n=0, seed=19)
    c0, a0, _ = ours(e, backgrounds=bgs)
    assert c0.shape == (2, 32, 40, 3) and (a0 == 0).all()


def test_unsupported_options_raise():
    s = make_scene(n=10, seed=20)
    with pytest.raises(NotImplementedError, match="fisheye"):
        ours(s, camera_model="fisheye")
    with pytest.raises(NotImplementedError, match="with_ut"):
        ours(s, with_ut=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="compares with gsplat's CUDA kernels")
def test_cpu_path_matches_gsplat_cuda():
    import gsplat

    from studio.renderers.splat_strategy import compute_relocation

    s = make_scene(n=300, n_cams=2, seed=21, sh_degree=3)
    names = ["means", "quats", "scales", "opacities", "colors"]
    kw = dict(sh_degree=3, render_mode="RGB+ED", rasterize_mode="antialiased", packed=False)
    o_cpu, g_cpu = _grads(s, names, lambda t: list(ours(t, **kw)[:2]))
    sc = {k: (v.cuda() if torch.is_tensor(v) else v) for k, v in s.items()}
    o_gpu, g_gpu = _grads(sc, names, lambda t: list(gsplat.rasterization(
        t["means"], t["quats"], t["scales"], t["opacities"], t["colors"], t["viewmats"], t["Ks"], 40, 32, **kw)[:2]))
    for a, b in zip(o_cpu, o_gpu):
        torch.testing.assert_close(a, b.cpu(), rtol=0, atol=1e-3)
    for name, a, b in zip(names, g_cpu, g_gpu):
        torch.testing.assert_close(a, b.cpu(), rtol=1e-2, atol=1e-3, msg=name)
    binoms = torch.tensor([[math.comb(n, k) if k <= n else 0 for k in range(51)] for n in range(51)], dtype=torch.float32)
    o, scl, r = torch.rand(64) * 0.9 + 0.05, torch.rand(64, 3), torch.randint(1, 6, (64,))
    new_cpu = compute_relocation(o, scl, r.clone(), binoms)
    new_gpu = compute_relocation(o.cuda(), scl.cuda(), r.cuda(), binoms.cuda())
    for a, b in zip(new_cpu, new_gpu):
        torch.testing.assert_close(a, b.cpu(), rtol=1e-4, atol=1e-5)


def test_radius_clip_culls_small_splats_on_both_backends(monkeypatch):
    s = make_scene(n=300, n_cams=2, seed=22)
    args = (s["means"][None], None, s["quats"][None], s["scales"][None], s["viewmats"][None], s["Ks"][None], 40, 32)
    r0, *_ = splat_cpu.fully_fused_projection(*args)
    r3, *_ = splat_cpu.fully_fused_projection(*args, radius_clip=3.0)
    r3t, *_ = splat_cpu.fully_fused_projection_torch(*args, radius_clip=3.0)
    v0, v3 = (r0 > 0).all(-1), (r3 > 0).all(-1)
    assert torch.equal(r3, r3t)
    assert v3.sum() < v0.sum() and (r3[v3].max(-1).values > 3).all()
    assert torch.equal(v3, v0 & (r0.max(-1).values > 3))


def test_camera_pose_gradients_gradcheck():
    # a viewmat that needs a gradient routes projection through the torch path (autograd)
    s = make_scene(n=5, n_cams=1, width=12, height=10, seed=23, dtype=torch.float64)
    s["opacities"] = torch.full((5,), 0.5, dtype=torch.float64)
    s["scales"] = s["scales"] * 3
    w = torch.randn(1, 10, 12, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))

    def f(viewmats):
        c, _, _ = rasterization(s["means"], s["quats"], s["scales"], s["opacities"], s["colors"], viewmats,
                                s["Ks"], 12, 10, tile_size=4)
        return (c * w).sum()

    vm = s["viewmats"].clone().requires_grad_(True)
    f(vm).backward()
    assert vm.grad[0, :3].abs().min() > 0  # every rotation/translation entry matters
    assert torch.autograd.gradcheck(f, (vm,), eps=1e-6, atol=1e-6, rtol=1e-4)


def dense_median(means2d, conics, opac, colors, depths, valid, width, height, level=0.5):
    """Reference for splat_cpu.median_render: per pixel the colour of the Gaussian at which the
    transmittance first drops to `level` (or the one that terminates the ray), front to back."""
    out = torch.zeros(width * height, colors.shape[-1], dtype=means2d.dtype)
    found = torch.zeros(width * height, dtype=torch.bool)
    T = torch.ones(width * height, dtype=means2d.dtype)
    for g, ok, term, _, T0, next_T in _front_to_back(means2d, conics, opac, depths, valid, width, height):
        hit = ok & ~found & (next_T <= level)
        out[hit] = colors[g]
        found |= hit
        T = torch.where(ok & ~term, next_T, T0)
    return out.reshape(height, width, -1), (1 - T).reshape(height, width)


def test_median_render_matches_dense_reference():
    """The forward-only median kernel (meshing depth) picks, per pixel, the same Gaussian as a
    dense front-to-back reference: its channels, and the same alpha as the compositor."""
    s = make_scene(n=300, n_cams=1, width=48, height=40, seed=3)
    covars, _ = _quat_scale_to_covar_preci(s["quats"].double(), s["scales"].double(), compute_preci=False)
    radii, means2d, depths, conics, _ = _fully_fused_projection(
        s["means"].double(), covars, s["viewmats"].double(), s["Ks"].double(), s["width"], s["height"])
    ref, ref_alpha = dense_median(means2d[0], conics[0], s["opacities"].double(), s["colors"].double(), depths[0],
                                  (radii[0] > 0).all(-1), s["width"], s["height"])
    got, alpha = splat_cpu.median_render(s["means"], s["quats"], s["scales"], s["opacities"], s["colors"],
                                         s["viewmats"][0], s["Ks"][0], s["width"], s["height"])
    same = (got.double() - ref).abs().amax(-1) < 1e-5
    assert same.float().mean() > 0.995  # float32 vs float64 can flip a pixel sitting on the threshold
    assert (ref.abs().sum(-1) > 0).float().mean() > 0.3  # the scene is not empty
    composite_alpha = ours(s, packed=False)[1][0, ..., 0]
    assert torch.allclose(alpha, composite_alpha, atol=1e-4)
    assert torch.allclose(alpha.double(), ref_alpha, atol=1e-4)
