"""Default sections shared by every experiment config (configs/*.py start from these)."""

from __future__ import annotations

import ml_collections

from gw_jax.parallel.logical import DEFAULT_RULES


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.model = ml_collections.ConfigDict()  # filled by each experiment: reference DiT kwargs + options

    c.data = ml_collections.ConfigDict(dict(
        packed_dir="",  # output of `gw-jax pack`
        raw_dir="",  # or episodes in the seed's layout (i.mp4 + i.txt), encoded once in memory
        num_frames=17,  # 1 + 4k frames -> 1 + k latent frames
        height=64, width=64, fps=16.0,
        worker_count=0,  # Grain worker processes (0: decode in the main process)
    ))
    # Latent codec and text encoder used by `gw-jax sample` (and the demo): "wan_vae" | "pixel" |
    # "patch_vae" (a trained PatchVAE folder at `path`, as `gw-jax demo` writes); "minilm" | "t5:<path>" | "hash".
    c.codec = ml_collections.ConfigDict(dict(name="wan_vae", pool=2, fold=4, path=""))
    c.text_encoder = ml_collections.ConfigDict(dict(name="minilm", width=32, max_length=16))
    # Where latents come from: "vae" encodes clips inside the step, "precomputed" reads batch["latents"].
    c.latents = "vae"
    c.vae = ml_collections.ConfigDict(dict(
        pretrained="",  # diffusers-layout dir (config.json + safetensors); "" = random init below
        base_dim=96, z_dim=16, dim_mult=(1, 2, 4, 4), num_res_blocks=2,
        temperal_downsample=(False, True, True),
    ))
    # The reference objective (EDMLoss sigma_method=3, use_flow=True) and reference-frame masks.
    c.loss = ml_collections.ConfigDict(dict(
        p_mean=0.0, p_std=1.0, max_ref_frames=1, ref_start=1,
    ))
    c.train = ml_collections.ConfigDict(dict(
        global_batch_size=8, accum_steps=1, num_steps=1000,
        learning_rate=1e-4, warmup_steps=100, final_lr_fraction=0.1,
        adam_b1=0.9, adam_b2=0.99, adam_eps=1e-8, weight_decay=0.1, grad_clip_norm=1.0,
        ema_max_decay=0.9999,
        log_every=10, checkpoint_every=500, max_checkpoints=3, async_checkpoint=True,
    ))
    c.mesh = ml_collections.ConfigDict(dict(
        axes=ml_collections.ConfigDict(dict(data=-1, fsdp=1, context=1, tensor=1)),
        rules=tuple((name, target) for name, target in DEFAULT_RULES),
    ))
    c.sample = ml_collections.ConfigDict(dict(
        steps=30, guidance=7.0, sigma_max=80.0, augment_sigma=0.001, negative_prompt="",
    ))
    c.multihost = ml_collections.ConfigDict(dict(
        coordinator_address="", num_processes=1, process_id=0,  # empty: single host or auto-detect
    ))
    return c
