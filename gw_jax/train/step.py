"""The train step: a pure function (state, batch, key[, vae_params]) -> (state, metrics).

A batch holds ``latents`` (or ``video`` to encode), ``text_emb``, ``fps``, optionally ``ref_mask`` (frame
masks from the loader), ``control`` (B, C_ctrl, T, H, W): extra channels concatenated to the DiT input, and
``actions`` (B, F, A) for a DiT with ``action_dim``, each clip's dropped with ``loss.action_dropout``, and
``loss_weights`` (B, 1, T, H, W): weights of each latent cell's squared error (e.g. the demo's object cells).

Gradient accumulation scans over micro-batches (memory of one micro-batch, float32 gradient sum);
the optimizer update, EMA and metrics happen once per step. Reference-frame masks, noise and sigma are
drawn inside the step from the key, so a resumed run draws exactly what the uninterrupted run drew.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax
from einops import rearrange

from gw_jax import diffusion
from gw_jax.train.optim import ema_decay, ema_update
from gw_jax.train.state import ModelDef, TrainState

LatentFn = Callable[[object, jax.Array], jax.Array]  # (vae_params, video (B,3,T,H,W)) -> latents


def make_loss_fn(model_def: ModelDef, loss_cfg, latent_fn: LatentFn | None = None):
    """Mean reference loss of one micro-batch: (params, batch, key, vae_params[, frozen]) -> scalar; the
    gradient is taken with respect to ``params`` only (``frozen``: e.g. the base weights under LoRA)."""

    def loss_fn(params, batch, key, vae_params=None, frozen=None):
        if "latents" in batch:
            latents = batch["latents"]
        elif latent_fn is not None:
            latents = jax.lax.stop_gradient(latent_fn(vae_params, batch["video"]))
        else:
            raise ValueError("batch has no 'latents' and the step has no VAE to encode 'video'")
        latents = latents.astype(jnp.float32)
        key_inputs, key_masks = jax.random.split(key)
        noise, sigma = diffusion.sample_training_inputs(
            key_inputs, latents.shape, p_mean=loss_cfg.p_mean, p_std=loss_cfg.p_std,
            frame_sigmas=loss_cfg.get("frame_sigmas", "shared"))
        if "ref_mask" in batch:  # drawn per clip by the data loader, as the reference's transform does
            ref_masks = diffusion.latent_ref_masks_from_frames(batch["ref_mask"], latents.shape[2])
        else:
            ref_masks = diffusion.sample_latent_ref_masks(
                key_masks, batch_size=latents.shape[0], num_latent_frames=latents.shape[2],
                max_ref_frames=loss_cfg.max_ref_frames, start=loss_cfg.ref_start,
                factor=loss_cfg.get("ref_factor", 4))
        # clips trained with no reference frame: the null mode of guidance on the reference (sample.reference_guidance)
        ref_masks = diffusion.drop_reference_frames(jax.random.fold_in(key, 2), ref_masks,
                                                    loss_cfg.get("ref_dropout", 0.0))
        model = model_def.merge(params, frozen)
        if "actions" in batch:  # dropped clips train the null-action mode (guidance on actions)
            present = diffusion.drop_actions(jax.random.fold_in(key, 1), latents.shape[0],
                                             loss_cfg.get("action_dropout", 0.0))
            model = diffusion.with_actions(model, batch["actions"], present=present)
        if "control" in batch:  # extra conditioning channels (e.g. ViewTransfer's warped views)
            model = diffusion.with_control(model, batch["control"])
        per_sample = diffusion.reference_loss(model, latents, noise, sigma, ref_masks,
                                              batch["text_emb"], batch["fps"],
                                              detail_weight=loss_cfg.get("detail_weight", 0.0),
                                              cell_weights=batch.get("loss_weights"))
        return jnp.mean(per_sample)

    return loss_fn


def make_train_step(model_def: ModelDef, tx: optax.GradientTransformation, schedule: optax.Schedule,
                    loss_cfg, *, accum_steps: int = 1, latent_fn: LatentFn | None = None,
                    ema_max_decay: float = 0.9999):
    loss_fn = make_loss_fn(model_def, loss_cfg, latent_fn)
    grad_fn = jax.value_and_grad(loss_fn)

    def train_step(state: TrainState, batch: dict, key: jax.Array, vae_params=None, frozen=None):
        micro_batches = jax.tree.map(lambda x: rearrange(x, "(a b) ... -> a b ...", a=accum_steps), batch)
        micro_keys = jax.random.split(key, accum_steps)

        def accumulate(grad_sum, inputs):
            micro_batch, micro_key = inputs
            loss, grads = grad_fn(state.params, micro_batch, micro_key, vae_params, frozen)
            grad_sum = jax.tree.map(lambda s, g: s + g.astype(jnp.float32), grad_sum, grads)
            return grad_sum, loss

        zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), state.params)
        grad_sum, losses = jax.lax.scan(accumulate, zeros, (micro_batches, micro_keys))
        grads = jax.tree.map(lambda g: g / accum_steps, grad_sum)

        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema_params = ema_update(state.ema_params, params, ema_decay(state.step, ema_max_decay))
        metrics = {
            "loss": jnp.mean(losses),
            "grad_norm": optax.tree.norm(grads),
            "learning_rate": schedule(state.step),
        }
        new_state = TrainState(step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema_params)
        return new_state, metrics

    return train_step

