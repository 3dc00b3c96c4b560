"""Objective, reference-frame masks, samplers and long rollouts."""

from gw_jax.diffusion.actions import drop_actions, with_actions
from gw_jax.diffusion.autoregressive import next_latent, sample_autoregressive
from gw_jax.diffusion.control import with_control
from gw_jax.diffusion.masks import (drop_reference_frames, latent_ref_masks_from_frames, sample_latent_ref_masks,
                                   sample_ref_masks)
from gw_jax.diffusion.objective import reference_loss, reference_loss_terms, sample_training_inputs
from gw_jax.diffusion.rollout import rollout
from gw_jax.diffusion.samplers import (karras_sigmas, make_x0_fn, reference_guidance_options, sample_ancestral,
                                       sample_flow_euler, sample_flow_heun, sample_reference, sample_res2)

__all__ = [
    "drop_actions", "drop_reference_frames", "karras_sigmas", "latent_ref_masks_from_frames", "make_x0_fn",
    "next_latent", "reference_guidance_options", "reference_loss", "reference_loss_terms", "rollout",
    "sample_ancestral", "sample_flow_euler", "sample_flow_heun", "sample_autoregressive", "sample_latent_ref_masks",
    "sample_ref_masks", "sample_reference", "sample_res2", "sample_training_inputs", "with_actions", "with_control",
]
