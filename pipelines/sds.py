"""Score distillation sampling (SDS, DreamFusion) on Gaussian splats with an SD-family UNet.

Each iteration renders the splats with the differentiable rasterizer
(`studio.renderers.splat_raster.rasterization`: gsplat on CUDA, our torch compositor on CPU) from a
random camera on a sphere around the origin, encodes the render with the pipeline's VAE (the
posterior mean × scaling_factor; renders are `render_size` px, i.e. render_size / vae_factor latent
px), noises the latents at a random timestep t, asks the UNet for the noise with classifier-free
guidance, and applies the SDS gradient w(t)(ε̂ − ε) to the latents through the stop-gradient loss
`((z − (z − g).detach())² ).sum() / 2`, whose gradient w.r.t. z is exactly g. Adam then steps the
splat parameters (means, log-scales, quaternions, opacity logits, DC colour).

Timestep annealing: t ~ U[t_min, t_max(i)] with t_max falling linearly from `t_range[1]` to
`t_anneal_to` over the run (coarse shape first, detail later). w(t) = 1 − ᾱ_t.

The model is any registered diffusers pipeline folder with `unet`, `vae`, `text_encoder`,
`tokenizer` and `scheduler` whose UNet is conditioned on text only (SD 1.x / 2.x and fine-tunes;
ε- or v-prediction). Missing weights → ModelUnavailableError from the registry, never a fallback.
The resulting splats feed the same mesh/bake route as reconstructed ones (`pipelines.mesh_extract`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from studio.assets.asset import Asset, AssetMetadata
from studio.assets.cameras import Cameras
from studio.assets.colour import rgb_to_sh0
from studio.assets.splats import GaussianSplats
from studio.errors import ModelUnavailableError
from studio.models import PipelineCache, get_pipeline, resolve, select_device

from .generation_common import Cancel, Progress, check_cancel, check_prompt, resolve_seed


@dataclass(frozen=True)
class SDSParams:
    """SDS settings.

    guidance_scale: CFG weight (DreamFusion uses ~100). t_range: (t_min, t_max) as fractions of the
    scheduler's training timesteps; t_max anneals linearly to `t_anneal_to` by the last iteration.
    Cameras: elevation (degrees, above the horizon) and azimuth ranges, distance `radius` (metres)
    from the origin, vertical `fov_deg`; renders are `render_size`² px on a random grey background
    (or `background` when given, RGB in [0,1]). init_count Gaussians in a ball of `init_radius`
    when no initial splats are given. lr: Adam learning rate of the colours/opacities; means use
    lr_means, log-scales and quaternions lr_scales / lr_quats.
    """

    iterations: int = 500
    guidance_scale: float = 100.0
    t_range: tuple[float, float] = (0.02, 0.98)
    t_anneal_to: float = 0.5
    elevation_deg: tuple[float, float] = (-10.0, 45.0)
    azimuth_deg: tuple[float, float] = (-180.0, 180.0)
    radius: float = 2.5
    fov_deg: float = 40.0
    render_size: int = 512
    background: tuple[float, float, float] | None = None
    init_count: int = 4096
    init_radius: float = 0.5
    lr: float = 0.01
    lr_means: float = 0.001
    lr_scales: float = 0.005
    lr_quats: float = 0.001
    negative_prompt: str = ""
    seed: int | None = None
    allow_network: bool = False
    model_path: str | None = None


@dataclass(frozen=True)
class SDSComponents:
    """The parts of a diffusers SD pipeline SDS needs, frozen (no grad) on one device/dtype."""

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    alphas_cumprod: torch.Tensor  # (T,) float32 on the device
    prediction_type: str
    device: str
    dtype: torch.dtype


def load_sds_components(model: str = "sd15", model_path: str | Path | None = None, allow_network: bool = False,
                        cache: PipelineCache | None = None) -> SDSComponents:
    """Resolve `model` through the registry and load its UNet/VAE/text encoder (warm-cached)."""
    folder = resolve(model, local_path=model_path, allow_network=allow_network)
    if not (folder / "model_index.json").is_file() or not (folder / "unet").is_dir():
        raise ModelUnavailableError(f"model {model!r}: {folder} is not a diffusers Stable Diffusion folder "
                                    "(needs model_index.json and unet/, vae/, text_encoder/, tokenizer/, scheduler/)")
    cfg = select_device("float16")

    def loader() -> SDSComponents:
        from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
        from transformers import AutoTokenizer, CLIPTextModel

        dtype = cfg.torch_dtype
        unet = UNet2DConditionModel.from_pretrained(str(folder), subfolder="unet", dtype=dtype)
        if unet.config.get("addition_embed_type") is not None:
            raise ModelUnavailableError(
                f"model {model!r}: its UNet needs added conditioning ({unet.config['addition_embed_type']}, e.g. SDXL); "
                "SDS supports text-only SD 1.x/2.x UNets")
        vae = AutoencoderKL.from_pretrained(str(folder), subfolder="vae", dtype=dtype)
        te = CLIPTextModel.from_pretrained(str(folder), subfolder="text_encoder", dtype=dtype)
        tok = AutoTokenizer.from_pretrained(str(folder), subfolder="tokenizer")
        sched = DDPMScheduler.from_pretrained(str(folder), subfolder="scheduler")
        for m in (unet, vae, te):
            m.requires_grad_(False).eval().to(cfg.device)
        return SDSComponents(unet, vae, te, tok, sched.alphas_cumprod.to(cfg.device, torch.float32),
                             str(sched.config.get("prediction_type", "epsilon")), cfg.device, dtype)

    return get_pipeline(("sds", str(folder.resolve()), cfg), loader, cache)


def _embed(c: SDSComponents, texts: list[str]) -> torch.Tensor:
    tok = c.tokenizer(texts, padding="max_length", max_length=c.tokenizer.model_max_length, truncation=True,
                      return_tensors="pt")
    with torch.no_grad():
        return c.text_encoder(tok.input_ids.to(c.device))[0]


def random_camera(p: SDSParams, rng: np.random.Generator) -> Cameras:
    """One camera on the sphere of radius p.radius, elevation/azimuth uniform in their ranges, looking
    at the origin (OpenCV axes, world +Y up)."""
    el = math.radians(rng.uniform(*p.elevation_deg))
    az = math.radians(rng.uniform(*p.azimuth_deg))
    eye = p.radius * np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
    return Cameras.look_at(eye[None], np.zeros(3), fov_y_deg=p.fov_deg, width=p.render_size, height=p.render_size)


def t_max_at(p: SDSParams, i: int) -> float:
    """The annealed upper timestep fraction at iteration i (0-based)."""
    frac = i / max(1, p.iterations - 1)
    hi = p.t_range[1] + (min(p.t_anneal_to, p.t_range[1]) - p.t_range[1]) * frac
    return max(hi, p.t_range[0])


def _init_splats(p: SDSParams, rng: np.random.Generator) -> GaussianSplats:
    n = p.init_count
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    means = d * p.init_radius * rng.uniform(size=(n, 1)) ** (1 / 3)
    scale = p.init_radius * 2.0 / n ** (1 / 3)
    q = np.tile([1.0, 0.0, 0.0, 0.0], (n, 1))
    sh = rgb_to_sh0(rng.uniform(0.3, 0.7, size=(n, 3)))[:, None, :]
    return GaussianSplats(means, q, np.full((n, 3), math.log(scale)), np.full(n, math.log(0.1 / 0.9)), sh)


def sds_loss(latents: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """The stop-gradient SDS loss ½‖z − sg(z − g)‖²: its value is ½‖g‖² and d loss / d z = g (up to float rounding),
    so backpropagation carries the score-distillation gradient g (same shape as z) into the renderer."""
    target = (latents.float() - grad.float()).detach()
    return 0.5 * ((latents.float() - target) ** 2).sum()


def sds_splats(
    prompt: str,
    model: str = "sd15",
    init: GaussianSplats | None = None,
    params: SDSParams = SDSParams(),
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    cache: PipelineCache | None = None,
    stats: dict | None = None,
) -> GaussianSplats:
    """Optimise Gaussian splats so their renders score well under `model` for `prompt`.

    init: starting splats (their SH degree is kept; only the DC term is optimised), else
    `params.init_count` grey-ish Gaussians in a ball. Deterministic for a given `params.seed`
    on one device. `stats`, when given, receives "losses" and "grad_norms" (per iteration,
    floats), "seed" and "device". Raises ModelUnavailableError, BlockedContentError (prompt
    filter), CancelledError (checked before every iteration).
    """
    from studio.renderers.splat_raster import rasterization

    check_prompt(prompt, params.negative_prompt)
    seed = resolve_seed(params.seed)
    comps = load_sds_components(model, params.model_path, params.allow_network, cache)
    dev = torch.device(comps.device)
    rng = np.random.default_rng(seed)
    gen = torch.Generator("cpu").manual_seed(seed)
    splats = init if init is not None else _init_splats(params, rng)

    t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32, device=dev)  # noqa: E731
    gp = {
        "means": t(splats.means), "log_scales": t(splats.log_scales), "quats": t(splats.quats),
        "opacity_logits": t(splats.opacity_logits), "sh0": t(splats.sh[:, :1]),
    }
    for v in gp.values():
        v.requires_grad_(True)
    sh_rest = t(splats.sh[:, 1:])
    lrs = {"means": params.lr_means, "log_scales": params.lr_scales, "quats": params.lr_quats,
           "opacity_logits": params.lr * 5, "sh0": params.lr}
    opt = torch.optim.Adam([{"params": [gp[k]], "lr": lrs[k], "name": k} for k in gp], eps=1e-15)

    emb = _embed(comps, [params.negative_prompt, prompt])  # (2, L, D): uncond, cond
    n_train = len(comps.alphas_cumprod)
    scaling = float(comps.vae.config.get("scaling_factor", 0.18215))
    losses: list[float] = []
    grad_norms: list[float] = []
    for i in range(params.iterations):
        check_cancel(cancel)
        cam = random_camera(params, rng)
        bg = params.background if params.background is not None else (rng.uniform(0.0, 1.0),) * 3
        sh = torch.cat([gp["sh0"], sh_rest], dim=1)
        img, _, _ = rasterization(
            gp["means"], gp["quats"], torch.exp(gp["log_scales"]), torch.sigmoid(gp["opacity_logits"]), sh,
            t(cam.world_to_cam), t(cam.K), cam.width, cam.height, sh_degree=splats.sh_degree,
            backgrounds=t([list(bg)]), packed=False,
        )
        x = img[..., :3].clamp(0, 1).permute(0, 3, 1, 2) * 2 - 1  # (1,3,H,W) in [-1,1]
        latents = comps.vae.encode(x.to(comps.dtype)).latent_dist.mean * scaling
        lo, hi = params.t_range[0], t_max_at(params, i)
        ts = int(round((lo + (hi - lo) * float(torch.rand((), generator=gen))) * (n_train - 1)))
        noise = torch.randn(latents.shape, generator=gen).to(dev, latents.dtype)
        a = comps.alphas_cumprod[ts]
        with torch.no_grad():
            noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
            tt = torch.full((2,), ts, device=dev, dtype=torch.long)
            out = comps.unet(torch.cat([noisy] * 2), tt, encoder_hidden_states=emb).sample
            if comps.prediction_type == "v_prediction":  # ε = √ᾱ v + √(1−ᾱ) x_t
                out = a.sqrt() * out + (1 - a).sqrt() * torch.cat([noisy] * 2)
            uncond, cond = out.float().chunk(2)
            eps_hat = uncond + params.guidance_scale * (cond - uncond)
            grad = torch.nan_to_num((1 - a) * (eps_hat - noise.float()))
        loss = sds_loss(latents, grad)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.sqrt(sum((v.grad.float() ** 2).sum() for v in gp.values() if v.grad is not None))
        opt.step()
        losses.append(float(loss.detach()))
        grad_norms.append(float(gn))
        if progress is not None:
            progress((i + 1) / params.iterations, f"SDS iteration {i + 1}/{params.iterations}")

    with torch.no_grad():
        sh = torch.cat([gp["sh0"], sh_rest], dim=1).cpu().numpy()
        q = gp["quats"].cpu().numpy()
        result = GaussianSplats(gp["means"].cpu().numpy(), q, gp["log_scales"].cpu().numpy(),
                                gp["opacity_logits"].cpu().numpy(), sh)
    if stats is not None:
        stats.update(losses=losses, grad_norms=grad_norms, seed=seed, device=str(dev))
    return result


def sds_to_asset(prompt: str, model: str = "sd15", init: GaussianSplats | None = None,
                 params: SDSParams = SDSParams(), progress: Progress | None = None, cancel: Cancel | None = None,
                 cache: PipelineCache | None = None) -> Asset:
    """`sds_splats` wrapped as an Asset (splats only, +Y up, metres) whose metadata records the prompt,
    seed, model and every SDS parameter — ready for a splat PLY/spz export or the mesh/bake route."""
    stats: dict = {}
    if params.seed is None:
        from dataclasses import replace

        params = replace(params, seed=resolve_seed(None))
    splats = sds_splats(prompt, model, init, params, progress, cancel, cache, stats)
    extras = {k: v for k, v in params.__dict__.items() if k not in ("seed", "model_path", "allow_network")}
    extras["final_loss"] = stats["losses"][-1] if stats["losses"] else None
    meta = AssetMetadata(name="sds", prompt=prompt, negative_prompt=params.negative_prompt or None, seed=params.seed,
                         pipeline="text_to_3d", method="sds", model=model, extras=extras)
    return Asset(splats=splats, metadata=meta)
