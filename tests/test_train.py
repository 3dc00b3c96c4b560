"""Sharded training on 8 fake CPU devices: equality with one device, exact resume, mesh-changing restore."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from gw_jax.config import load_config
from gw_jax.diffusion import reference_loss
from gw_jax.models.attention import register_attention, xla_attention
from gw_jax.parallel.context_attention import mesh_sharded_attention
from gw_jax.parallel.logical import use_mesh_rules
from gw_jax.parallel.mesh import make_mesh
from gw_jax.train.checkpoint import Checkpointer, abstract_with_shardings
from gw_jax.train.data import ArrayBatches
from gw_jax.train.guards import NonFiniteLossError
from gw_jax.train.loop import build_setup, global_batch, jit_train_step, train
from gw_jax.train.metrics import read_metrics

TINY = "configs/tiny.py"


def small_config(**mesh_axes):
    config = load_config(TINY)
    config.model.update(dict(model_channels=48, num_heads=4, num_blocks=2, crossattn_emb_channels=16,
                             adaln_lora_dim=8, max_img_h=8, max_img_w=8, max_frames=4))
    config.latents = "precomputed"
    config.train.update(dict(global_batch_size=8, num_steps=6, warmup_steps=2, log_every=1, checkpoint_every=3,
                             async_checkpoint=False))
    config.mesh.axes.update({**dict(data=1, fsdp=1, context=1, tensor=1), **mesh_axes})
    return config


def latent_dataset(n=24, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "latents": rng.normal(size=(n, 16, 3, 4, 4)).astype(np.float32),
        "text_emb": rng.normal(size=(n, 5, 16)).astype(np.float32),
        "fps": np.full((n,), 16.0, np.float32),
    }


def one_step(config, mesh):
    setup = build_setup(config, mesh=mesh)
    state = setup.init_state()
    batch_np = next(ArrayBatches(latent_dataset(), 8, seed=1, process_index=0, process_count=1))
    step = jit_train_step(setup, batch_np)
    new_state, metrics = step(state, global_batch(mesh, batch_np), jax.random.key(3), None)
    return jax.device_get(metrics), jax.device_get(new_state.params)


# the shard_map wrapper splash and cudnn run under, the exact kernel inside (splash itself: tests/test_parallel.py)
register_attention("mesh_sharded_xla", functools.partial(mesh_sharded_attention, local_fn=xla_attention))


@pytest.mark.parametrize("axes,impl", [
    (dict(data=2, fsdp=2, context=2), "context_ring"),
    (dict(fsdp=2, tensor=2, context=2), "context_allgather"),
    pytest.param(dict(fsdp=2, tensor=2, context=2), "mesh_sharded_xla", marks=pytest.mark.slow),
    # the XLA SPMD miscompile dit_blocks.replicate_features avoids (fast check: test_sharded_forward_...)
    pytest.param(dict(data=2, fsdp=2, tensor=2), "xla", marks=pytest.mark.slow),
    pytest.param(dict(data=2, fsdp=4), "xla", marks=pytest.mark.slow),
])
def test_sharded_step_equals_single_device(axes, impl):
    single = small_config()
    single.model.attention_impl = impl
    metrics_1, params_1 = one_step(single, make_mesh(dict(data=1), devices=jax.devices()[:1]))
    sharded = small_config(**axes)
    sharded.model.attention_impl = impl
    metrics_8, params_8 = one_step(sharded, make_mesh(dict(sharded.mesh.axes)))
    np.testing.assert_allclose(metrics_8["loss"], metrics_1["loss"], rtol=1e-5)
    np.testing.assert_allclose(metrics_8["grad_norm"], metrics_1["grad_norm"], rtol=1e-4)
    for a, b in zip(jax.tree.leaves(params_8), jax.tree.leaves(params_1), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def sharded_forward(config, mesh, batch_np):
    """The DiT's per-sample denoising loss at fixed noise and sigma (no sampling, no optimizer)."""
    setup = build_setup(config, mesh=mesh)
    params = setup.init_state().params
    batch = global_batch(mesh, batch_np)

    def forward(params, batch):
        with use_mesh_rules(mesh, setup.rules):
            model, latents = setup.model_def.merge(params), batch["latents"]
            b, _, frames = latents.shape[:3]
            return reference_loss(model, latents, 0.3 * jnp.ones_like(latents), jnp.ones((b,)),
                                  jnp.zeros((b, 1, frames, 1, 1)), batch["text_emb"], batch["fps"])

    return np.asarray(jax.jit(forward, out_shardings=NamedSharding(mesh, P()))(params, batch))


def test_sharded_forward_equals_single_device():
    """Every sample's forward on data=2 x fsdp=2 x tensor=2 matches one device (it used to give wrong samples
    2..5: XLA swapped batch shards 1 and 2, see tests/test_xla_spmd_repro.py)."""
    axes = dict(data=2, fsdp=2, tensor=2)
    batch_np = next(ArrayBatches(latent_dataset(), 8, seed=1, process_index=0, process_count=1))
    configs = [small_config(), small_config(**axes)]
    for config in configs:
        config.model.num_blocks = 1
    single = sharded_forward(configs[0], make_mesh(dict(data=1), devices=jax.devices()[:1]), batch_np)
    sharded = sharded_forward(configs[1], make_mesh(axes), batch_np)
    np.testing.assert_allclose(sharded, single, rtol=1e-5, atol=1e-6)


def test_params_are_really_sharded():
    config = small_config(fsdp=4, tensor=2)
    setup = build_setup(config)
    state = setup.init_state()
    kernel = state.params["blocks"]["sub_blocks"][0]["block"]["to_q"]["kernel"]  # (layers, embed, heads)
    assert kernel.sharding.spec == P(None, "fsdp", "tensor")
    assert kernel.addressable_shards[0].data.shape == (2, 48 // 4, 48 // 2)


def test_optimizer_moments_follow_their_parameters():
    """optax.tree_map_params places both Adam moments like their parameters; counts are replicated."""
    setup = build_setup(small_config(fsdp=4, tensor=2))
    opt, params = setup.state_sharding.opt_state, setup.state_sharding.params
    for moment in ("mu", "nu"):
        specs = jax.tree.map(lambda s: s.spec, optax.tree_utils.tree_get(opt, moment))
        assert specs == jax.tree.map(lambda s: s.spec, params)
    assert P(None, "fsdp", "tensor") in jax.tree.leaves(specs)  # really sharded, not all replicated
    counts = optax.tree_utils.tree_get_all_with_path(opt, "count")
    assert counts and all(s.spec == P() for _, s in counts)
    state = setup.init_state()  # the shardings are the ones the jitted init really produces
    assert jax.tree.map(lambda a: a.sharding.spec, state.opt_state) == jax.tree.map(lambda s: s.spec, opt)


def test_interrupted_and_resumed_run_gives_the_same_losses(tmp_path):
    config = small_config(data=2, fsdp=4)
    straight = train(config, tmp_path / "straight", batches=ArrayBatches(latent_dataset(), 8, seed=1), progress=False)
    first = train(config, tmp_path / "resumed", batches=ArrayBatches(latent_dataset(), 8, seed=1), max_steps=4,
                  progress=False)
    assert first.stopped_early and int(first.state.step) == 4
    second = train(config, tmp_path / "resumed", batches=ArrayBatches(latent_dataset(), 8, seed=1), progress=False)
    assert int(second.state.step) == 6
    resumed_losses = [m["loss"] for m in read_metrics(tmp_path / "resumed")]
    straight_losses = [m["loss"] for m in read_metrics(tmp_path / "straight")]
    assert len(straight_losses) == 6
    np.testing.assert_allclose(resumed_losses, straight_losses, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(second.state.params), jax.tree.leaves(straight.state.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_checkpoint_restores_onto_another_mesh(tmp_path):
    saved_config = small_config(fsdp=8)
    setup_a = build_setup(saved_config)
    state_a = setup_a.init_state()
    batches = ArrayBatches(latent_dataset(), 8, seed=1)
    for _ in range(3):
        next(batches)
    checkpointer = Checkpointer(tmp_path, async_save=False)
    checkpointer.save(0, state_a, data=batches, config={"note": "mesh A"})
    checkpointer.close()
    assert (tmp_path / "0" / "data" / "process_0-of-1.json").is_file()  # Grain's handler: one file per process

    other_config = small_config(data=2, tensor=2, context=2)
    setup_b = build_setup(other_config)
    fresh = ArrayBatches(latent_dataset(), 8, seed=1)
    restored, config = Checkpointer(tmp_path).restore(
        abstract_with_shardings(setup_b.abstract_state, setup_b.state_sharding), data=fresh)
    assert fresh.position == 3 and config == {"note": "mesh A"}
    kernel = restored.params["blocks"]["sub_blocks"][0]["block"]["to_q"]["kernel"]
    assert kernel.sharding.spec == P(None, None, "tensor")
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state_a), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


class _PreemptedBatches(ArrayBatches):
    """Sends this process SIGTERM when the batch for step ``at`` is drawn (like a TPU preemption)."""

    def __init__(self, *args, at: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.at = at

    def __next__(self):
        if self.position == self.at:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGTERM)
        return super().__next__()


def test_sigterm_saves_a_checkpoint_and_returns(tmp_path):
    config = small_config(data=8)
    config.train.checkpoint_every = 100
    result = train(config, tmp_path, batches=_PreemptedBatches(latent_dataset(), 8, seed=1, at=3), progress=False)
    assert result.stopped_early
    saved = Checkpointer(tmp_path / "checkpoints").latest_step()
    # the signal arrived while the 4th batch was drawn: that step finished, was saved, and the run returned
    assert saved == int(result.state.step) == 4 < config.train.num_steps


class _PoisonedBatches(ArrayBatches):
    """NaN latents from the batch for step ``at`` on (a diverging run)."""

    def __init__(self, *args, at: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.at = at

    def __next__(self):
        poisoned = self.position >= self.at
        batch = super().__next__()
        if poisoned:
            batch["latents"] = np.full_like(batch["latents"], np.nan)
        return batch


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    config = small_config(data=8)
    config.train.update(dict(log_every=100, checkpoint_every=2, profile_steps=2))
    with pytest.raises(NonFiniteLossError, match="^step 3: loss nan.*last good checkpoint is step 2"):
        train(config, tmp_path, batches=_PoisonedBatches(latent_dataset(), 8, seed=1, at=2), progress=False)
    # checked (no per-step host sync) before the save at step 4, which never happened
    assert Checkpointer(tmp_path / "checkpoints").latest_step() == 2
    # profile_steps=2 traced steps 2..3 (the first step is skipped) with jax.profiler
    assert list((tmp_path / "profile").rglob("*.xplane.pb"))


def test_train_cli_exits_1_with_one_line_on_nan(monkeypatch, capsys):
    from gw_jax.cli import main
    from gw_jax.train import cli as train_cli

    def diverging(*args, **kwargs):
        raise NonFiniteLossError("step 7: loss nan; training stopped, no checkpoint was saved")

    monkeypatch.setattr(train_cli, "train", diverging)
    monkeypatch.setattr(train_cli, "initialize", lambda _config: None)
    assert main(["train", "--config", TINY, "--workdir", "unused"]) == 1
    assert capsys.readouterr().err.strip() == ("gw-jax train: error: step 7: loss nan; training stopped, "
                                               "no checkpoint was saved")


@pytest.mark.slow  # ~70 s: compiles the sharded step with a VAE inside
def test_vae_inside_the_step_equals_precomputed_latents():
    """latents="vae" (clips encoded in the jitted, sharded step) == the same VAE's latents fed in."""
    from gw_jax.models.vae import WanLatentCodec, vae_from_config

    config = small_config(data=2, fsdp=4)
    config.vae.update(dict(base_dim=4, z_dim=16, dim_mult=(1, 2, 2, 2), num_res_blocks=1))
    codec = WanLatentCodec(vae_from_config(config.vae))
    rng = np.random.default_rng(0)
    clips = dict(video=rng.uniform(-1, 1, (8, 3, 9, 32, 32)).astype(np.float32),
                 text_emb=rng.normal(size=(8, 5, 16)).astype(np.float32), fps=np.full((8,), 16.0, np.float32))
    latents = dict(clips, latents=np.asarray(codec.encode(jnp.asarray(clips["video"]))))
    del latents["video"]
    assert latents["latents"].shape == (8, 16, 3, 4, 4)
    mesh = make_mesh(dict(config.mesh.axes))
    results = []
    for mode, batch_np, vae_params in (("precomputed", latents, None), ("vae", clips, codec.latent_fn()[1])):
        config.latents = mode
        setup = build_setup(config, mesh=mesh, latent_fn=codec.latent_fn()[0] if mode == "vae" else None)
        step = jit_train_step(setup, batch_np, vae_params)
        _, metrics = step(setup.init_state(), global_batch(mesh, batch_np), jax.random.key(3), vae_params)
        results.append(jax.device_get(metrics))
    np.testing.assert_allclose(results[1]["loss"], results[0]["loss"], rtol=1e-5)
    np.testing.assert_allclose(results[1]["grad_norm"], results[0]["grad_norm"], rtol=1e-4)


def test_loader_reference_masks_drive_the_loss():
    """Batches with the loader's ref_mask (frame space) use it: the first frame == the loss's own draw under
    the released config (max_ref_frames=1, start=1); no reference frame gives another loss."""
    from gw_jax.train.step import make_loss_fn

    config = small_config()
    setup = build_setup(config, mesh=make_mesh(dict(data=1, fsdp=1, context=1, tensor=1), devices=jax.devices()[:1]))
    loss_fn = jax.jit(make_loss_fn(setup.model_def, config.loss))
    params = setup.init_state().params
    batch = {k: jnp.asarray(v[:2]) for k, v in latent_dataset().items()}
    losses = [float(loss_fn(params, batch if frames is None else dict(batch, ref_mask=jnp.asarray([frames] * 2)),
                            jax.random.key(3)))
              for frames in (None, [1.0] + [0.0] * 8, [0.0] * 9)]
    assert losses[1] == pytest.approx(losses[0], rel=1e-6) and losses[2] != pytest.approx(losses[0], rel=1e-3)
