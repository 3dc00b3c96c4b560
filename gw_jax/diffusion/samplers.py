"""Pure functional samplers: ``lax.scan`` over steps, jit-able, vmap-able over seeds.

Every sampler drives one *guided, conditioned denoiser* ``x0_fn(sample, sigma) -> x0`` that does what the
reference pipeline does around the network at each step: re-impose the reference latents, scale by
c_in = 1/(1+sigma), append the mask channel, give reference frames the augment flow time, run the model
(negative and positive prompt as one batch when guidance > 1: ``c + g (c - u)``), precondition the
output (x0 = sample/(1+sigma) - sigma/(1+sigma) * v) and overwrite the reference latents of x0.

Samplers:
- :func:`sample_reference`: the release's EDMRESMultistepScheduler(solver_order=1, prediction 'rf',
  final sigma = sigma_min) on Karras sigmas — step for step;
- :func:`sample_res2`: the same scheduler with solver_order=2 (RES multistep, first/last step order 1);
- :func:`sample_ancestral`: a stochastic variant (Euler ancestral, k-diffusion's): each order-1 step lands
  below sigma_t and fresh noise tops it up; ``eta=0`` is :func:`sample_reference`;
- :func:`sample_flow_euler` / :func:`sample_flow_heun`: rectified-flow ODE dx_t/dt = v on a (shifted)
  time grid.
Models are nnx modules or plain callables with the DiT call signature.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from gw_jax.diffusion.objective import conditioned_model_inputs, flow_time, zero_padding_mask


def karras_sigmas(steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
                  final_sigma: float | None = None) -> jax.Array:
    """(steps + 1,) Karras sigmas from sigma_max to sigma_min, then the final sigma (default sigma_min)."""
    ramp = jnp.linspace(0.0, 1.0, steps, dtype=jnp.float32)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    final = sigma_min if final_sigma is None else final_sigma
    return jnp.concatenate([sigmas, jnp.array([final], jnp.float32)])


def reference_guidance_options(sample_cfg) -> dict:
    """The sampler keywords for guidance on the reference frame from a ``sample`` config section (0 = off;
    workdirs saved before the option have neither key)."""
    return {name: float(sample_cfg.get(name, 0.0))
            for name in ("reference_guidance", "reference_guidance_min_sigma")}


def _as_pure(model) -> tuple[Callable, object]:
    """(apply(params, *args), params): nnx modules are split so scans carry pure arrays."""
    if isinstance(model, nnx.Module):
        graphdef, state = nnx.split(model)
        return (lambda params, *args: nnx.merge(graphdef, params)(*args)), state
    return (lambda params, *args: model(*args)), None


def make_x0_fn(model, *, context, negative_context=None, cond_latents=None, cond_mask=None, fps=16.0,
               guidance: float = 1.0, augment_sigma: float = 0.001, reference_guidance: float = 0.0,
               reference_guidance_min_sigma: float = 0.0):
    """The reference pipeline's guided, conditioned x0 prediction ``x0_fn(params, sample, sigma)``.

    Returns (x0_fn, params). Classifier-free guidance runs only when guidance > 1 (as the pipeline);
    ``cond_mask`` (1 or B, 1, T, 1, 1) marks ``cond_latents`` frames (None: unconditioned).
    ``reference_guidance`` g > 0 (a gw_jax option, not the release's): the model runs a second time with no
    reference frame, the sample's own (noisy) frames in their place, and v + g (v - v_null) is used: guidance
    on the reference frame, for a DiT trained with ``loss.ref_dropout``; only at sigma >=
    ``reference_guidance_min_sigma`` (a guidance interval: the scene is laid out at high sigma, details at low).
    """
    apply, params = _as_pure(model)
    use_cfg = guidance > 1.0
    if use_cfg and negative_context is None:
        raise ValueError("guidance > 1 needs a negative_context (embed the negative prompt, or '')")
    if reference_guidance and cond_mask is None:
        raise ValueError("reference_guidance needs reference frames (cond_latents and cond_mask)")

    def velocity(model_params, x, timesteps):
        b = x.shape[0]
        padding = zero_padding_mask((b, 1) + x.shape[2:], x.dtype)
        if not use_cfg:
            return apply(model_params, x, timesteps, jnp.broadcast_to(context, (b,) + context.shape[1:]), fps,
                         padding).astype(jnp.float32)
        both_x = jnp.concatenate([x, x], axis=0)
        both_t = jnp.concatenate([timesteps, timesteps], axis=0)
        both_context = jnp.concatenate([jnp.broadcast_to(negative_context, (b,) + negative_context.shape[1:]),
                                        jnp.broadcast_to(context, (b,) + context.shape[1:])], axis=0)
        out = apply(model_params, both_x, both_t, both_context, fps, jnp.concatenate([padding, padding]))
        uncond, cond_out = out[:b].astype(jnp.float32), out[b:].astype(jnp.float32)
        return cond_out + guidance * (cond_out - uncond)

    def x0_fn(model_params, sample, sigma):
        c_in = 1.0 / (1.0 + sigma)
        t = flow_time(sigma)
        if cond_mask is None:
            mask = jnp.zeros((1, 1, sample.shape[2], 1, 1), sample.dtype)
            cond = jnp.zeros_like(sample)
        else:
            mask, cond = cond_mask.astype(sample.dtype), cond_latents.astype(sample.dtype)
        # the pipeline feeds cond / c_in, then scales everything by c_in: reference frames enter unchanged
        v = velocity(model_params, *conditioned_model_inputs(sample * c_in, cond, mask, t, augment_sigma))
        if reference_guidance:
            def guided(model_params, v):
                # the sample's reference frames are the reference noised to sigma (x0 is held there every step)
                null = conditioned_model_inputs(sample * c_in, cond, jnp.zeros_like(mask), t, augment_sigma)
                return v + reference_guidance * (v - velocity(model_params, *null))

            # the params go in as cond operands: nnx modules rebuilt inside from outer-level tracers are refused
            v = (jax.lax.cond(sigma >= reference_guidance_min_sigma, guided, lambda _, v: v, model_params, v)
                 if reference_guidance_min_sigma else guided(model_params, v))
        x0 = c_in * sample - t * v
        return mask * cond + (1.0 - mask) * x0

    return x0_fn, params


def _order1_update(x0, sample, sigma_s, sigma_t):
    return (sigma_s - sigma_t) / sigma_s * x0 + sigma_t / sigma_s * sample


def _res2_update(x0, x0_prev, sample, sigma_prev, sigma_s, sigma_t):
    """RES multistep second-order update in lambda = -log sigma (the reference's formula)."""
    lambda_t, lambda_s0, lambda_s1 = -jnp.log(sigma_t), -jnp.log(sigma_s), -jnp.log(sigma_prev)
    h = lambda_t - lambda_s0
    c2 = (lambda_s1 - lambda_s0) / h
    phi1 = jnp.expm1(-h) / (-h)
    phi2 = (phi1 - 1.0) / (-h)
    b1 = phi1 - phi2 / c2
    b2 = phi2 / c2
    return jnp.exp(-h) * sample + h * (b1 * x0 + b2 * x0_prev)


def reference_step(x0_fn, params, sample, sigma_s, sigma_t):
    """One step of the release's sampler (order 1) from sigma_s to sigma_t: what ``sample_reference`` scans,
    for callers that run the steps one at a time (a progress bar per step)."""
    return _order1_update(x0_fn(params, sample, sigma_s), sample, sigma_s, sigma_t)


def _run_edm(x0_fn, params, init_latents, sigmas, order: int):
    steps = sigmas.shape[0] - 1

    # params ride in the carry (unchanged) so the model is rebuilt from values traced at the scan level
    def step(carry, i):
        sample, x0_prev, params = carry
        sigma_s, sigma_t = sigmas[i], sigmas[i + 1]
        x0 = x0_fn(params, sample, sigma_s)
        first = _order1_update(x0, sample, sigma_s, sigma_t)
        if order == 1:
            nxt = first
        else:  # order 1 on the first step (no history) and the last one (lower_order_final)
            second = _res2_update(x0, x0_prev, sample, sigmas[jnp.maximum(i - 1, 0)], sigma_s, sigma_t)
            nxt = jnp.where((i == 0) | (i == steps - 1), first, second)
        return (nxt, x0, params), nxt

    (final, _, _), trajectory = jax.lax.scan(step, (init_latents, jnp.zeros_like(init_latents), params),
                                             jnp.arange(steps))
    return final, trajectory


def sample_reference(model, init_latents, *, context, negative_context=None, cond_latents=None, cond_mask=None,
                     fps=16.0, steps: int = 30, guidance: float = 7.0, sigma_max: float = 80.0,
                     augment_sigma: float = 0.001, sigma_min: float = 0.002, rho: float = 7.0,
                     reference_guidance: float = 0.0, reference_guidance_min_sigma: float = 0.0):
    """The release's sampling loop. ``init_latents`` are N(0,1) * sigma_max. Returns (final, trajectory)
    with trajectory[i] the latents after step i."""
    x0_fn, params = make_x0_fn(model, context=context, negative_context=negative_context,
                               cond_latents=cond_latents, cond_mask=cond_mask, fps=fps, guidance=guidance,
                               augment_sigma=augment_sigma, reference_guidance=reference_guidance,
                               reference_guidance_min_sigma=reference_guidance_min_sigma)
    final, trajectory = _run_edm(x0_fn, params, init_latents, karras_sigmas(steps, sigma_min, sigma_max, rho),
                                 order=1)
    return _reimpose(final, cond_latents, cond_mask), trajectory


def _reimpose(final, cond_latents, cond_mask):
    """The pipeline overwrites x0 (not the sample) with the reference latents, so its last sample is
    off by O(sigma_min) there; the returned latents carry the reference latents exactly (the trajectory
    stays the pipeline's, step for step)."""
    if cond_mask is None:
        return final
    return cond_mask * cond_latents.astype(final.dtype) + (1.0 - cond_mask) * final


def sample_res2(model, init_latents, *, steps: int = 30, sigma_max: float = 80.0, sigma_min: float = 0.002,
                rho: float = 7.0, **conditioning):
    """Second-order RES multistep on the same Karras schedule (solver_order=2)."""
    x0_fn, params = make_x0_fn(model, **conditioning)
    final, trajectory = _run_edm(x0_fn, params, init_latents, karras_sigmas(steps, sigma_min, sigma_max, rho),
                                 order=2)
    return _reimpose(final, conditioning.get("cond_latents"), conditioning.get("cond_mask")), trajectory


def _run_ancestral(x0_fn, params, init_latents, sigmas, key, eta: float):
    def step(carry, i):
        sample, params = carry
        sigma_s, sigma_t = sigmas[i], sigmas[i + 1]
        x0 = x0_fn(params, sample, sigma_s)
        # variance preserving: the deterministic step lands at sigma_down, the noise adds sigma_up^2
        sigma_up = jnp.minimum(sigma_t, eta * sigma_t * jnp.sqrt(jnp.maximum(1.0 - (sigma_t / sigma_s) ** 2, 0.0)))
        sigma_down = jnp.sqrt(jnp.maximum(sigma_t ** 2 - sigma_up ** 2, 0.0))
        noise = jax.random.normal(jax.random.fold_in(key, i), sample.shape, sample.dtype)
        nxt = _order1_update(x0, sample, sigma_s, sigma_down) + sigma_up * noise
        return (nxt, params), nxt

    (final, _), trajectory = jax.lax.scan(step, (init_latents, params), jnp.arange(sigmas.shape[0] - 1))
    return final, trajectory


def sample_ancestral(model, init_latents, *, key: jax.Array, eta: float = 1.0, steps: int = 30,
                     sigma_max: float = 80.0, sigma_min: float = 0.002, rho: float = 7.0, **conditioning):
    """Euler ancestral on the reference's Karras schedule: ``eta`` (0..1) is the share of each step's noise
    that is fresh (``key``); 0 gives :func:`sample_reference`'s numbers."""
    x0_fn, params = make_x0_fn(model, **conditioning)
    final, trajectory = _run_ancestral(x0_fn, params, init_latents, karras_sigmas(steps, sigma_min, sigma_max, rho),
                                       key, eta)
    return _reimpose(final, conditioning.get("cond_latents"), conditioning.get("cond_mask")), trajectory


def flow_time_grid(steps: int, t_max: float, shift: float = 1.0) -> jax.Array:
    """(steps + 1,) flow times from t_max to 0, shifted: t = shift*u / (1 + (shift-1)*u)."""
    u = jnp.linspace(t_max, 0.0, steps + 1, dtype=jnp.float32)
    return shift * u / (1.0 + (shift - 1.0) * u)


def _velocity(x0_fn, params, x_t, t):
    """v = (x_t - x0) / t from the x0 prediction at sigma = t / (1 - t) (x_sigma = x_t / (1 - t))."""
    sigma = t / (1.0 - t)
    return (x_t - x0_fn(params, x_t / (1.0 - t), sigma)) / t


def _run_flow(x0_fn, params, init_latents, times, heun: bool):
    steps = times.shape[0] - 1

    def step(carry, i):
        x_t, params = carry
        t, t_next = times[i], times[i + 1]
        v = _velocity(x0_fn, params, x_t, t)
        euler = x_t + (t_next - t) * v
        if heun:  # trapezoid with a second evaluation, except into t = 0 where v is undefined
            v_next = _velocity(x0_fn, params, euler, jnp.maximum(t_next, 1e-6))
            corrected = x_t + (t_next - t) * 0.5 * (v + v_next)
            euler = jnp.where(t_next > 0, corrected, euler)
        return (euler, params), euler

    (final, _), trajectory = jax.lax.scan(step, (init_latents, params), jnp.arange(steps))
    return final, trajectory


def sample_flow_euler(model, init_noise, *, steps: int = 30, sigma_max: float = 80.0, shift: float = 1.0,
                      **conditioning):
    """Euler on the rectified-flow ODE. ``init_noise`` ~ N(0, 1): x at t_max is t_max * noise (plus the
    (1 - t_max) x0 part, negligible at sigma_max 80). Returns (x0 estimate, trajectory) in x_t units."""
    x0_fn, params = make_x0_fn(model, **conditioning)
    t_max = sigma_max / (1.0 + sigma_max)
    final, trajectory = _run_flow(x0_fn, params, init_noise * t_max, flow_time_grid(steps, t_max, shift), heun=False)
    return _reimpose(final, conditioning.get("cond_latents"), conditioning.get("cond_mask")), trajectory


def sample_flow_heun(model, init_noise, *, steps: int = 30, sigma_max: float = 80.0, shift: float = 1.0,
                     **conditioning):
    """Heun (2nd order) on the rectified-flow ODE; 2 model calls per step but the last."""
    x0_fn, params = make_x0_fn(model, **conditioning)
    t_max = sigma_max / (1.0 + sigma_max)
    final, trajectory = _run_flow(x0_fn, params, init_noise * t_max, flow_time_grid(steps, t_max, shift), heun=True)
    return _reimpose(final, conditioning.get("cond_latents"), conditioning.get("cond_mask")), trajectory
