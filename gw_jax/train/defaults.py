"""Default sections shared by every experiment config (configs/*.py start from these), and the demo's preset."""

from __future__ import annotations

import ml_collections

from gw_jax.models.lora import DEFAULT_TARGETS
from gw_jax.models.pixel_codec import PixelCodec
from gw_jax.parallel.logical import DEFAULT_RULES


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    # filled by each experiment: reference DiT kwargs + gw_jax options; ``pretrained``: a release folder (or its
    # transformer/) to start from, whose config.json then gives the reference kwargs (gw_jax.train.pretrained)
    c.model = ml_collections.ConfigDict(dict(pretrained=""))

    c.data = ml_collections.ConfigDict(dict(
        packed_dir="",  # output of `gw-jax pack`
        raw_dir="",  # or episodes in the seed's layout (i.mp4 + i.txt), encoded once in memory
        num_frames=17,  # 1 + 4k frames -> 1 + k latent frames
        height=64, width=64, fps=16.0,
        worker_count=0,  # Grain worker processes (0: decode in the main process)
        # a DiT with model.action_dim: the actions' mean / std per dimension, set from the data when training
        # starts (the pack's index, or the raw episodes) and saved with the config: `gw-jax sample --actions` uses it
        action_stats=None,
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
    # The reference objective (EDMLoss sigma_method=3, use_flow=True) and reference-frame masks;
    # action_dropout: the share of clips whose actions are dropped (a DiT with model.action_dim set);
    # detail_weight > 0: weight latent cells by how much they differ from the first frame / the background
    # (gw_jax option, gw_jax.diffusion.objective.detail_weights; 0 is the reference objective);
    # frame_sigmas: "shared" (the reference: one sigma per clip) | "independent" (one per latent frame: diffusion
    # forcing, for causal autoregressive models); ref_factor: video frames per latent frame in max_ref_frames
    # (the MaskGenerator's 4, Wan's; 1 for a codec without temporal compression) when the step draws the masks;
    # ref_dropout: the share of clips trained with no reference frame (for sample.reference_guidance; gw_jax option).
    c.loss = ml_collections.ConfigDict(dict(
        p_mean=0.0, p_std=1.0, max_ref_frames=1, ref_start=1, action_dropout=0.0, detail_weight=0.0,
        frame_sigmas="shared", ref_factor=4, ref_dropout=0.0,
    ))
    c.train = ml_collections.ConfigDict(dict(
        global_batch_size=8, accum_steps=1, num_steps=1000,
        learning_rate=1e-4, warmup_steps=100, final_lr_fraction=0.1,
        adam_b1=0.9, adam_b2=0.99, adam_eps=1e-8, weight_decay=0.1, grad_clip_norm=1.0,
        ema_max_decay=0.9999,
        log_every=10, checkpoint_every=500, max_checkpoints=3, async_checkpoint=True,
        profile_steps=0,  # > 0: trace that many steps (after the first) with jax.profiler into WORKDIR/profile
        optimizer="adamw",  # "adamw" | "came" | "came8bit" (the release's: CAME8Bit, lr 2**-14.5, constant)
        schedule="cosine",  # "cosine" (warmup, cosine decay) | "constant" (after warmup)
        # "full" | "lora": adapters on lora_targets (reference module names) train, the base is frozen; the
        # defaults are the release's LoraConfig (r=64, lora_alpha=r, q/k/v/out of self- and cross-attention)
        mode="full", lora_rank=64, lora_alpha=64.0, lora_targets=DEFAULT_TARGETS,
    ))
    c.mesh = ml_collections.ConfigDict(dict(
        axes=ml_collections.ConfigDict(dict(data=-1, fsdp=1, context=1, tensor=1)),
        rules=tuple((name, target) for name, target in DEFAULT_RULES),
    ))
    c.sample = ml_collections.ConfigDict(dict(
        steps=30, guidance=7.0, sigma_max=80.0, augment_sigma=0.001, negative_prompt="",
        action_guidance=0.0,  # > 0: classifier-free guidance on actions (a DiT with model.action_dim, given actions)
        reference_guidance=0.0,  # > 0: guidance on the reference frame (a DiT trained with loss.ref_dropout)
        reference_guidance_min_sigma=0.0,  # ... applied only at sigma >= this (0: every step)
    ))
    c.multihost = ml_collections.ConfigDict(dict(
        coordinator_address="", num_processes=1, process_id=0,  # empty: single host or auto-detect
    ))
    return c


# The demo (`gw-jax demo`, configs/demo.py): sim and data sizes, training length, and its DiT config.
# 256 training episodes, not 32: on 32 the DiT memorised each episode's carried cube and generalised little
# (docs/demo.md "Memorised, not learned", issue 16); 8x the episodes cost ~70 s of simulation (measured 21 -> 90 s)
QUICK = dict(
    train_episodes=256, heldout_episodes=16, sim_frames=17, size=64, sim_fps=8.0, clip_frames=9,
    camera=None,  # the simulator's camera; `gw-jax demo --camera workspace`: DEMO_CAMERAS below
    codec="patch_vae", codec_channels=16, codec_steps=1000, latent_noise=0.3, error_focus=0.01,  # the latent codec
    # the DiT and its training sigmas: log sigma ~ N(1.5, 1) since session 39 (N(1, 1) before; +0.4 to +0.6 dB and
    # +0.03 to +0.04 SSIM on three seeds, the cube as often: docs/demo.md "Training sigmas")
    steps=2500, batch_size=8, model_channels=96, p_mean=1.5, p_std=1.0,
    patch_spatial=2, num_blocks=3, num_heads=4,
    # the cube (issue 16, docs/demo.md "The cube"): every frame's tokens carry the reference frame's latents
    # (model.concat_reference), the DiT's output starts as 'nothing moved' (model.reference_skip), and the cube's
    # latent cells weigh 1 + cube_weight in the loss (from the simulator's cube positions; 0: off)
    concat_reference=True, reference_skip=True, cube_weight=8.0,
    sample_steps=20, sigma_max=80.0, sample_params="ema",  # the reference sampler
    feature_steps=400,  # the FVD feature network
    # the simulator's per-frame command (6 joint targets + gripper), one frame per latent (the codec has no
    # temporal compression); a share of clips trains without them, so the same DiT rolls out without actions
    action_dim=7, action_dropout=0.15, action_guidance=0.0,
    # loss.detail_weight (foreground / moving latent cells weigh more): off; 1.0 sharpens the action-driven
    # rollouts but lowers the image + text SSIM towards 0.5 (docs/demo.md, "Small details")
    detail_weight=0.0,
    # guidance on the reference frame: 10% of the clips train with no reference frame, and the sampler steers
    # the steps at sigma >= 1 away from that null prediction (v + g (v - v_null)); the cube keeps its colour in more
    # generated frames (docs/demo.md, "Guidance on the reference frame", issue 16)
    ref_dropout=0.1, reference_guidance=1.5, reference_guidance_min_sigma=1.0)
REFERENCE_GUIDANCE_OFF = dict(ref_dropout=0.0, reference_guidance=0.0, reference_guidance_min_sigma=0.0)
# the full demo keeps session 31's settings but for the training sigmas (N(1.5, 1) since session 39: +1.4 dB image +
# text): with reference guidance (measured in session 33) it draws the cube in more frames but carries it no better,
# at -0.8 dB (docs/demo.md "Carried or left behind")
FULL = dict(QUICK, train_episodes=1024, heldout_episodes=32, steps=6000, batch_size=16, codec_steps=2000,
            **REFERENCE_GUIDANCE_OFF)
# `gw-jax demo --camera`: "workspace" frames the cube's and the gripper's workspace (sim_scene.default_camera's
# fovy / target), the 5 cm cube ~4-5 pixels wide at 32x32 instead of ~2; it shows the cube in more generated
# frames but the closer arm lowers SSIM below 0.5 at the quick demo's budget (the full demo's: 0.544; docs/demo.md
# "Framing", issue 16)
DEMO_CAMERAS = dict(default=None, workspace=dict(fovy=30.0, target=(0.01, 0.04, 0.49)))
CODEC_POOL, CODEC_FOLD = 2, 4  # 64x64 frames -> 32x32 -> 8x8 latent grid


def demo_config(settings: dict, codec_path: str = "") -> ml_collections.ConfigDict:
    """The DiT + training config for the demo's latents (``codec_path``: the trained PatchVAE folder).

    ``settings["codec"] == "pixel"`` gives the fixed pixel codec the demo used before (docs/demo.md)."""
    pixel = settings["codec"] == "pixel"
    channels = PixelCodec(pool=CODEC_POOL, fold=CODEC_FOLD).channels if pixel else settings["codec_channels"]
    latent_size = settings["size"] // (CODEC_POOL * CODEC_FOLD)
    config = base_config()
    config.model.update(dict(
        max_img_h=latent_size, max_img_w=latent_size, max_frames=settings["clip_frames"],
        in_channels=channels + 1, out_channels=channels, patch_spatial=settings.get("patch_spatial", 2),
        patch_temporal=1, model_channels=settings["model_channels"], num_blocks=settings.get("num_blocks", 3),
        num_heads=settings.get("num_heads", 4), concat_reference=settings.get("concat_reference", False),
        reference_skip=settings.get("reference_skip", False),
        crossattn_emb_channels=32,
        adaln_lora_dim=24, action_dim=settings.get("action_dim", 0), action_frames=1,
        scan_blocks="auto", remat_policy="none", dtype="float32", param_dtype="float32", attention_impl="xla"))
    config.latents = "precomputed"
    config.codec.update(dict(name="pixel", pool=CODEC_POOL, fold=CODEC_FOLD) if pixel else
                        dict(name="patch_vae", path=str(codec_path)))
    config.text_encoder.update(dict(name="hash", width=32, max_length=16))
    config.data.update(dict(height=settings["size"], width=settings["size"], num_frames=settings["clip_frames"],
                            fps=settings["sim_fps"] * (settings["clip_frames"] - 1) / (settings["sim_frames"] - 1)))
    config.mesh.axes.update(dict(data=-1))
    config.loss.update(dict(p_mean=settings["p_mean"], p_std=settings["p_std"],
                            action_dropout=settings.get("action_dropout", 0.0),
                            detail_weight=settings.get("detail_weight", 0.0),
                            ref_dropout=settings.get("ref_dropout", 0.0)))
    config.train.update(dict(global_batch_size=settings["batch_size"], num_steps=settings["steps"],
                             learning_rate=1e-3, warmup_steps=50, final_lr_fraction=0.05, weight_decay=0.0,
                             log_every=10, checkpoint_every=settings["steps"], async_checkpoint=False))
    config.sample.update(dict(steps=settings["sample_steps"], guidance=1.0, sigma_max=settings["sigma_max"],
                              action_guidance=settings.get("action_guidance", 0.0),
                              reference_guidance=settings.get("reference_guidance", 0.0),
                              reference_guidance_min_sigma=settings.get("reference_guidance_min_sigma", 0.0)))
    return config
