"""GigaWorld-0 DiT (``GigaWorld0Transformer3DModel``; Cosmos-Predict2 MiniTrainDIT style) in Flax NNX.

Called like the reference, in its NCTHW layout::

    model = GigaWorld0DiT.from_pretrained("checkpoint/transformer")      # reference layout
    out = model(x, timesteps, crossattn_emb, fps, padding_mask)           # (B, 16, T, H, W)
    model.load_lora({"robot": ("lora_dir", 0.5)}, fuse=False)             # the release's LoRA adapters
    out = model(x, timesteps, crossattn_emb, fps, padding_mask, actions=a_btka)  # with action_dim set

``action_dim`` (a gw_jax option, default None: off) adds Cosmos-Predict2-style action conditioning
(``gw_jax.models.action_embed``): per latent frame a chunk of ``action_frames`` per-frame actions.
``temporal_causal`` (a gw_jax option, default False) makes self-attention block-causal over latent frames (a
token sees its own and earlier frames; Vid2World's causal temporal attention, no new weights): the output at
frame t does not depend on frames after t, which autoregressive rollouts need
(``gw_jax.diffusion.autoregressive``). It needs ``attention_impl="xla"`` and dense blocks (no NATTEN).

x (B, C_in, T, H, W) latents + reference-mask channel; timesteps (B, 1, T, 1, 1) one flow time per
latent frame; crossattn_emb (B, L, C_text); fps a scalar or (B,); padding_mask (B, 1, 8H, 8W).
Blocks are stacked (a leading ``layers`` axis on every block parameter) and run with ``nnx.scan`` so a
28-block model compiles one block; ``scan_blocks=False`` runs the same stacked weights in a Python loop, and
``"auto"`` (the default) unrolls on a GPU only: there the scanned 2B bf16 train step took 0.279 s against 0.217 s
unrolled (H100, docs/benchmarks.md), while TPU and CPU keep the scan (compile time; unrolled was 1.07x slower on CPU).
"""

from __future__ import annotations

import functools
import inspect
import operator
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
from einops import rearrange
from flax import nnx

from gw_jax.convert.dit_weights import load_reference_weights, save_reference_weights
from gw_jax.errors import UserInputError, check_types, load_json
from gw_jax.models.action_embed import ActionEmbedder
from gw_jax.models.dit_blocks import FinalLayer, TransformerBlock, constrain_btsd, timestep_sinusoid
from gw_jax.models import lora
from gw_jax.models.layers import RMSNorm, linear, matmul_precision
from gw_jax.models.neighborhood_attention import NattenSchedule, to_json
from gw_jax.models.rope import rope_angles
from gw_jax.parallel.logical import compute_platform

# gw_jax options that are not reference constructor kwargs
OPTION_KEYS = ("scan_blocks", "remat_policy", "dtype", "param_dtype", "attention_impl", "action_dim", "action_frames",
               "temporal_causal")
REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def _scan_setting(value) -> bool | str:
    """True, False or "auto"; also their spellings from a command-line override (``--config.model.scan_blocks``)."""
    setting = {"true": True, "false": False, "auto": "auto"}.get(str(value).lower())
    if setting is None:
        raise UserInputError(f"scan_blocks {value!r}: choose true, false or auto (unrolled on a GPU, else scanned)")
    return setting


def blocks_scanned(scan_blocks) -> bool:
    """Whether a DiT built with ``scan_blocks`` scans its blocks when traced now (a mesh's platform, else JAX's)."""
    setting = _scan_setting(scan_blocks)
    return setting is True or (setting == "auto" and compute_platform() != "gpu")


def _dtype(value) -> Any:
    return jnp.dtype(value) if isinstance(value, str) else value


def nearest_resize_2d(mask_bchw: jax.Array, height: int, width: int) -> jax.Array:
    """torchvision NEAREST resize: source index = floor(dst * in / out)."""
    in_h, in_w = mask_bchw.shape[-2:]
    rows = jnp.floor(jnp.arange(height) * (in_h / height)).astype(jnp.int32)
    cols = jnp.floor(jnp.arange(width) * (in_w / width)).astype(jnp.int32)
    return mask_bchw[..., rows, :][..., cols]


def reference_latents(x_bcthw: jax.Array) -> jax.Array:
    """The reference frames' latents at every frame: (B, C-1, T, H, W) from the DiT's input (B, C, T, H, W) whose
    last channel is the reference mask (1 on reference frames); the mean of several, zeros without any."""
    latents, mask = x_bcthw[:, :-1], x_bcthw[:, -1:]
    count = jnp.sum(mask, axis=2, keepdims=True)
    mean = jnp.sum(latents * mask, axis=2, keepdims=True) / jnp.maximum(count, 1e-6)
    return jnp.broadcast_to(mean, latents.shape)


class GigaWorld0DiT(nnx.Module):
    def __init__(self, max_img_h: int, max_img_w: int, max_frames: int, in_channels: int, out_channels: int,
                 patch_spatial: int | list[int], patch_temporal: int, concat_padding_mask: bool = True,
                 block_config: str = "FA-CA-MLP", model_channels: int = 768, num_blocks: int = 10,
                 num_heads: int = 16, mlp_ratio: float = 4.0, crossattn_emb_channels: int = 1024,
                 adaln_lora_dim: int = 256, rope_h_extrapolation_ratio: float = 1.0,
                 rope_w_extrapolation_ratio: float = 1.0, rope_t_extrapolation_ratio: float = 1.0,
                 natten_parameters: list | None = None, moe_parameters: Mapping | None = None, *,
                 scan_blocks: bool | str = "auto", remat_policy: str = "none", dtype="float32",
                 param_dtype="float32", attention_impl: str = "xla", action_dim: int | None = None,
                 action_frames: int = 1, temporal_causal: bool = False, concat_reference: bool = False,
                 reference_skip: bool = False, rngs: nnx.Rngs):
        if isinstance(patch_spatial, (list, tuple)):
            patch_spatial = int(patch_spatial[0])
        # per-block NATTEN neighbourhoods, checked against the largest latent grid the config declares
        self.natten = NattenSchedule.from_config(
            natten_parameters, num_blocks, (max_frames // patch_temporal, max_img_h // patch_spatial,
                                            max_img_w // patch_spatial))
        if remat_policy not in REMAT_POLICIES:
            raise UserInputError(f"remat_policy {remat_policy!r}: choose from {sorted(REMAT_POLICIES)}")
        if model_channels % num_heads:
            raise UserInputError(f"model_channels {model_channels} must divide by num_heads {num_heads}")
        self.config = dict(
            max_img_h=max_img_h, max_img_w=max_img_w, max_frames=max_frames, in_channels=in_channels,
            out_channels=out_channels, patch_spatial=patch_spatial, patch_temporal=patch_temporal,
            concat_padding_mask=concat_padding_mask, block_config=block_config, model_channels=model_channels,
            num_blocks=num_blocks, num_heads=num_heads, mlp_ratio=mlp_ratio,
            crossattn_emb_channels=crossattn_emb_channels, adaln_lora_dim=adaln_lora_dim,
            rope_h_extrapolation_ratio=rope_h_extrapolation_ratio,
            rope_w_extrapolation_ratio=rope_w_extrapolation_ratio,
            rope_t_extrapolation_ratio=rope_t_extrapolation_ratio,
            natten_parameters=to_json(natten_parameters),
            moe_parameters=dict(moe_parameters) if moe_parameters is not None else None,
        )
        if action_dim:  # not a reference kwarg: written to config.json only when set (export: action_embed)
            if action_frames < 1:
                raise UserInputError(f"action_frames {action_frames} must be at least 1")
            self.config.update(action_dim=action_dim, action_frames=action_frames)
        if temporal_causal:  # not a reference kwarg either: in config.json only when set
            if attention_impl != "xla" or self.natten is not None:
                raise UserInputError(f"temporal_causal needs attention_impl='xla' and no natten_parameters (got "
                                     f"{attention_impl!r}): the other kernels take no mask")
            self.config.update(temporal_causal=True)
        # not reference kwargs either (in config.json only when set): every frame's tokens also carry the reference
        # latents; the output starts as 'nothing moved' (see _forward). Both read the reference mask as the last
        # input channel: no control channels after it
        for name, on in (("concat_reference", concat_reference), ("reference_skip", reference_skip)):
            if on and in_channels - 1 != out_channels:
                raise UserInputError(f"{name} needs in_channels = out_channels + 1 (latents and the reference mask, "
                                     f"no control channels), got {in_channels} and {out_channels}")
            if on:
                self.config[name] = True
        self.scan_blocks = _scan_setting(scan_blocks)
        self.remat_policy, self.attention_impl = remat_policy, attention_impl
        dtype, param_dtype = _dtype(dtype), _dtype(param_dtype)
        self.dtype = dtype
        kw = dict(dtype=dtype, param_dtype=param_dtype)
        d = model_channels
        # concat_reference: every frame also sees the reference latents (in_channels - 1 of them, the last input
        # channel being the reference mask) at its own cells, so static details copy without attention
        patch_in = ((in_channels + int(concat_padding_mask) + (in_channels - 1) * int(concat_reference))
                    * patch_spatial ** 2 * patch_temporal)
        self.x_embedder = linear(patch_in, d, ("patch", "embed"), rngs=rngs, **kw)
        self.t_embedder_1 = linear(d, d, ("embed", "mlp"), rngs=rngs, **kw)
        self.t_embedder_2 = linear(d, 3 * d, ("mlp", "modulation"), rngs=rngs, **kw)
        self.affline_norm = RMSNorm(d, names=("norm",), param_dtype=param_dtype)

        make_block = functools.partial(
            TransformerBlock, block_config, d, crossattn_emb_channels, num_heads, mlp_ratio, adaln_lora_dim,
            self.config["moe_parameters"], attention_impl=attention_impl,
            natten_options=self.natten.options if self.natten else (), temporal_causal=temporal_causal, **kw)

        @nnx.split_rngs(splits=num_blocks)
        @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
        def stacked_blocks(block_rngs):
            return make_block(rngs=block_rngs)

        self.blocks = stacked_blocks(rngs)
        self.final_layer = FinalLayer(d, patch_spatial ** 2 * patch_temporal * out_channels, adaln_lora_dim,
                                      rngs=rngs, **kw)
        # built last, so the other weights draw the same random values with or without it
        self.action_embedder = (ActionEmbedder(action_dim, action_frames, d, rngs=rngs, **kw) if action_dim
                                else nnx.data(None))

    # ----------------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: Mapping, *, rngs: nnx.Rngs, where: str = "config.model") -> "GigaWorld0DiT":
        """From a ``config.model`` section (reference kwargs + gw_jax options); unknown keys and values of the
        wrong type are errors naming the field (``where`` names the file or section in the message).
        ``pretrained`` (where training takes the weights from) is not a constructor argument."""
        kwargs = dict(config.to_dict() if hasattr(config, "to_dict") else config)
        kwargs = {k: v for k, v in kwargs.items() if not k.startswith("_") and k != "pretrained"}  # _class_name
        known = set(inspect.signature(cls.__init__).parameters) - {"self", "rngs"}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise UserInputError(f"{where}: unknown DiT config keys: {unknown}")
        check_types(cls.__init__, kwargs, where=where)
        return cls(**kwargs, rngs=rngs)

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype="float32", *, verify_checksums: bool = True,
                        **options) -> "GigaWorld0DiT":
        """Loads a reference checkpoint dir (config.json + safetensors, single or sharded with index).

        ``verify_checksums``: check the weights files against the SHA256SUMS ``save_pretrained`` writes
        (folders without one, e.g. the release's, are not checked)."""
        path = Path(path)
        file = path / "config.json"
        config = load_json(file, what="a reference checkpoint directory's config")
        if not isinstance(config, dict):
            raise UserInputError(f"{file}: a JSON object of constructor kwargs expected")
        config = {k: v for k, v in config.items() if not k.startswith("_")}
        model = nnx.eval_shape(lambda: cls.from_config({**config, "dtype": dtype, **options}, rngs=nnx.Rngs(0),
                                                       where=str(file)))
        load_reference_weights(model, path, verify_checksums=verify_checksums)
        return model

    def save_pretrained(self, path: str | Path, *, max_shard_bytes: int | None = None) -> None:
        """Writes config.json + reference-named safetensors (sharded with an index past max_shard_bytes) and
        their SHA-256s (SHA256SUMS, the ``sha256sum -c`` format)."""
        save_reference_weights(self, Path(path), max_shard_bytes=max_shard_bytes)

    def load_lora(self, model_path_dict, fuse: bool = False) -> None:
        """The release's ``load_lora``: ``{name: path or (path, scale)}`` (or one path) of adapters saved in
        its peft format; several adapters add up, ``fuse`` merges them into the base weights."""
        lora.load_lora(self, model_path_dict, fuse=fuse)

    def fuse_lora(self) -> None:
        lora.fuse_lora(self)

    def save_lora(self, path: str | Path) -> Path:
        """The active adapters in the release's format (``path/diffusion_pytorch_model.safetensors``)."""
        return lora.save_lora(self, path)

    # ----------------------------------------------------------------------------------------------
    def __call__(self, x, timesteps, crossattn_emb, fps, padding_mask=None, actions=None, action_present=None):
        """``actions`` (B, T_latent, action_frames, action_dim) with ``action_dim`` set; ``action_present`` (B,)
        or (B, T_latent), default 1 with actions and 0 without (no actions: the model's null-action mode)."""
        with matmul_precision(self.dtype):
            return self._forward(x, timesteps, crossattn_emb, fps, padding_mask, actions, action_present)

    def _forward(self, x, timesteps, crossattn_emb, fps, padding_mask, actions, action_present):
        cfg = self.config
        p, pt = cfg["patch_spatial"], cfg["patch_temporal"]
        b, _, frames, height, width = x.shape
        x_in = x
        # the reference frames' latents at every frame, for concat_reference and/or reference_skip
        reference = (reference_latents(x_in.astype(jnp.float32))
                     if cfg.get("concat_reference") or cfg.get("reference_skip") else None)
        if height % p or width % p or frames % pt:
            raise ValueError(f"x spatial/temporal size {(frames, height, width)} must divide by the patch {(pt, p, p)}")
        if cfg["concat_padding_mask"]:
            if padding_mask is None:
                padding_mask = jnp.zeros((b, 1, height * 8, width * 8), x.dtype)
            mask = nearest_resize_2d(padding_mask.astype(x.dtype), height, width)
            x = jnp.concatenate([x, jnp.broadcast_to(mask[:, :, None], (b, 1, frames, height, width))], axis=1)
        if cfg.get("concat_reference"):
            x = jnp.concatenate([x, reference.astype(x.dtype)], axis=1)
        tokens = rearrange(x, "b c (t r) (h m) (w n) -> b t (h w) (c r m n)", r=pt, m=p, n=p)
        t, h, w = frames // pt, height // p, width // p
        if self.natten is not None:
            self.natten.check((t, h, w))
        x_btsd = self.x_embedder(tokens.astype(self.dtype))
        x_btsd = constrain_btsd(x_btsd)

        angles = rope_angles(cfg["model_channels"] // cfg["num_heads"], t, h, w, fps,
                             (cfg["rope_h_extrapolation_ratio"], cfg["rope_w_extrapolation_ratio"],
                              cfg["rope_t_extrapolation_ratio"]))
        t_bt = jnp.reshape(timesteps, (b, -1))  # one flow time per latent frame
        sinusoid = timestep_sinusoid(t_bt, cfg["model_channels"])
        adaln_lora = self.t_embedder_2(jax.nn.silu(self.t_embedder_1(sinusoid.astype(self.dtype))))
        if self.action_embedder is not None:  # Cosmos: added to the embedding (before its norm) and to the LoRA
            action_emb, action_lora = self._embed_actions(actions, action_present, t_bt.shape)
            sinusoid, adaln_lora = sinusoid + action_emb.astype(jnp.float32), adaln_lora + action_lora
        elif actions is not None:
            raise ValueError("actions given to a DiT built without action_dim")
        emb = self.affline_norm(sinusoid).astype(self.dtype)
        context = crossattn_emb.astype(self.dtype)

        x_btsd = self._run_blocks(x_btsd, emb, adaln_lora, context, angles, (t, h, w))
        out = self.final_layer(x_btsd, emb, adaln_lora)
        out = rearrange(out.astype(jnp.float32), "b t (h w) (m n r c) -> b c (t r) (h m) (w n)",
                        h=h, w=w, m=p, n=p, r=pt)
        if cfg.get("reference_skip"):
            # v = eps - x0, and the input is (1 - t) x0 + t eps: at t -> 1 (pure noise) v = input - x0 exactly, so
            # input - reference is the velocity of 'nothing moved'; the network learns the correction
            out = out + x_in[:, :-1].astype(jnp.float32) - reference
        return out

    def _embed_actions(self, actions, present, shape_bt):
        embedder = self.action_embedder
        if actions is None:
            actions = jnp.zeros(shape_bt + (embedder.action_frames, embedder.action_dim), jnp.float32)
            present = jnp.zeros(shape_bt) if present is None else present
        present = jnp.ones(shape_bt) if present is None else jnp.asarray(present, jnp.float32)
        present = jnp.broadcast_to(present.reshape(present.shape + (1,) * (2 - present.ndim)), shape_bt)
        return embedder(actions, present)

    def _run_blocks(self, x_btsd, emb, adaln_lora, context, angles, grid):
        # block i's self-attention: natten option codes[i] (dense or a neighbourhood); a traced code
        # (scanned blocks with different codes) selects the kernel with lax.switch
        codes = self.natten.codes if self.natten is not None else (0,) * self.config["num_blocks"]
        uniform = len(set(codes)) == 1

        def apply(block, x, code):
            sparse = None if self.natten is None else (codes[0] if uniform else code, grid)
            return block(x, emb, adaln_lora, context, angles, sparse=sparse)

        policy = REMAT_POLICIES[self.remat_policy]
        if self.remat_policy != "none":
            apply = nnx.remat(apply, policy=policy)
        if blocks_scanned(self.scan_blocks):
            @nnx.scan(in_axes=(0, nnx.Carry, 0), out_axes=nnx.Carry, transform_metadata={nnx.PARTITION_NAME: "layers"})
            def scan_fn(block, x, code):
                return apply(block, x, code)

            return scan_fn(self.blocks, x_btsd, jnp.asarray(codes, jnp.int32))
        graphdef, state = nnx.split(self.blocks)
        for i in range(self.config["num_blocks"]):
            block = nnx.merge(graphdef, jax.tree.map(operator.itemgetter(i), state))
            x_btsd = apply(block, x_btsd, codes[i])
        return x_btsd
