"""Batches for the train loop: the packed-data Grain loader, or in-memory arrays (precomputed latents).

Both are iterators of per-process numpy batches with ``get_state()`` / ``set_state()``, which the
checkpointer saves next to the model so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from gw_jax.data.episodes import load_clips
from gw_jax.data.loader import PackedRecords, make_loader, packed_action_stats
from gw_jax.errors import UserInputError
from gw_jax.models.factory import load_codec, load_text_encoder
from gw_jax.models.vae import WanLatentCodec, vae_from_config
from gw_jax.storage import as_path, check_bucket


class ArrayBatches:
    """Seeded, epoch-shuffled, resumable batches over in-memory arrays (first dim = examples).

    Each process takes its own slice of every global batch, so all processes stay in lock-step.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], global_batch_size: int, *, seed: int = 0,
                 process_index: int | None = None, process_count: int | None = None):
        sizes = {k: len(v) for k, v in arrays.items()}
        if len(set(sizes.values())) != 1:
            raise UserInputError(f"ArrayBatches: arrays disagree on the number of examples: {sizes}")
        self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self.num_examples = next(iter(sizes.values()))
        self.process_index = jax.process_index() if process_index is None else process_index
        self.process_count = jax.process_count() if process_count is None else process_count
        if global_batch_size % self.process_count:
            raise UserInputError(f"global batch {global_batch_size} does not split over {self.process_count} processes")
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.position = 0  # global batches served so far

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        flat = self.position * self.global_batch_size + np.arange(self.global_batch_size)
        epochs = flat // self.num_examples
        index = np.empty_like(flat)
        for epoch in np.unique(epochs):  # a batch spans at most two epochs
            here = epochs == epoch
            index[here] = self._order(int(epoch))[flat[here] % self.num_examples]
        local = self.global_batch_size // self.process_count
        index = index[self.process_index * local:(self.process_index + 1) * local]
        self.position += 1
        return {k: v[index] for k, v in self.arrays.items()}

    def get_state(self) -> dict:
        return {"position": self.position, "seed": self.seed}

    def set_state(self, state: Mapping) -> None:
        if int(state["seed"]) != self.seed:
            raise UserInputError(f"data state was saved with seed {state['seed']}, this run uses {self.seed}")
        self.position = int(state["position"])


def make_batches(config):
    """Per-process batches for ``gw-jax train``.

    ``config.data.raw_dir``: episodes in the seed's layout (i.mp4 + i.txt), encoded once with the
    config's codec and text encoder into in-memory latents; ``config.data.packed_dir``: the packed
    TFRecords through the Grain loader. Either may be a ``gs://`` URI.
    """
    if config.data.get("raw_dir"):
        return _batches_from_raw_episodes(config)
    if not config.data.packed_dir:
        raise UserInputError("set --config.data.raw_dir (episodes: i.mp4 + i.txt) or --config.data.packed_dir")
    if config.latents == "precomputed":
        raise UserInputError("packed data carries video: use --config.latents=vae (the codec encodes clips "
                             "inside the train step)")
    local_batch = config.train.global_batch_size // jax.process_count()
    packed = as_path(config.data.packed_dir, flag="--config.data.packed_dir")
    check_bucket(packed, flag="--config.data.packed_dir")
    if uses_actions(config):
        config.data.action_stats = packed_action_stats(PackedRecords(packed), packed)
    return make_loader(packed, batch_size=local_batch, num_frames=config.data.num_frames,
                       height=config.data.height, width=config.data.width, seed=config.seed,
                       worker_count=config.data.worker_count, max_ref_frames=config.loss.max_ref_frames,
                       ref_start=config.loss.ref_start, actions=uses_actions(config))


def uses_actions(config) -> bool:
    """Whether the model conditions on actions (``config.model.action_dim``): then batches carry them."""
    return bool(config.model.get("action_dim"))


def _batches_from_raw_episodes(config) -> ArrayBatches:
    directory = as_path(config.data.raw_dir, flag="--config.data.raw_dir")
    check_bucket(directory, flag="--config.data.raw_dir")
    count = len(list(directory.glob("*.mp4")))
    if count == 0:
        raise UserInputError(f"--config.data.raw_dir {directory}: no episodes (i.mp4 + i.txt) found")
    text = load_text_encoder(config)
    clips = load_clips(directory, count, config.data.num_frames, text,
                       action_stats="own" if uses_actions(config) else None)
    arrays = dict(text_emb=clips["text_emb"], fps=clips["fps"])
    if "actions" in clips:  # normalised with these episodes' statistics, saved with the config
        arrays["actions"] = clips["actions"]
        config.data.action_stats = clips["action_stats"]
    if config.latents == "vae":  # encoded inside the train step
        arrays["video"] = clips["video"]
    else:  # encoded once, here
        arrays["latents"] = np.asarray(load_codec(config).encode(jnp.asarray(clips["video"])))
    return ArrayBatches(arrays, config.train.global_batch_size, seed=config.seed)


def make_latent_encoder(config):
    """(latent_fn, codec_params) for ``config.latents == "vae"``: the config's codec inside the step.

    ``codec.name == "wan_vae"``: the Wan2.1 VAE from ``config.vae``; ``"pixel"``: the parameter-free
    pixel codec; ``"patch_vae"``: the demo's trained codec (frozen, from ``config.codec.path``).
    """
    if config.codec.name in ("pixel", "patch_vae"):
        codec = load_codec(config)
        return (lambda _params, video: codec.encode(video)), None

    return WanLatentCodec(vae_from_config(config.vae)).latent_fn()
