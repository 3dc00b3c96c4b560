"""Play an action-conditioned, causal world model: actions in, next frames out (the notebooks' play loop).

    player = Player(model, codec, first_frame_hw3, context=text_emb, window=8, fps=4.0, action_stats=stats)
    frames = player.step(actions_na)        # (n, A) raw actions -> n new frames, uint8 (n, H, W, 3)
    frames = player.step({0: 0.3, 6: 1.0})  # set some dimensions (index or ``action_names`` name) of the held action
    frames = player.step("a")               # ``key_map["a"]``: {dimension: change} added to the held action
    player.reset(first_frame_hw3)           # start again
    player.widget()                         # ipywidgets sliders + a step button (when ipywidgets is installed)
    player = Player.from_workdir("runs/causal/train", first_frame_hw3, prompt)   # a trained run, all settings saved

Each new frame is one latent frame from :func:`gw_jax.diffusion.next_latent`: the last ``window`` latents (the
first frame's, then the generated ones) are the history, the action chunk of every window frame goes with it, and
the new latent is denoised with the reference sampler. The window always holds ``window + 1`` frames (placeholders
after the new one while the history is short), so one compiled step serves the whole session; a temporal-causal
DiT ignores the placeholders. ``codec``: ``encode`` video (B, 3, T, H, W) in [-1, 1] -> latents, ``decode`` back,
one latent per frame (the demo's PatchVAE, the pixel codec); ``model``: a DiT with ``action_dim``, trained as
``gw-jax causal-demo`` trains it. Actions are raw commands, normalised with ``action_stats`` (mean / std per
dimension, the training data's: ``config.data.action_stats``); without stats they are taken as normalised.
"""

from __future__ import annotations

import functools
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from gw_jax.data.transforms import normalise_actions
from gw_jax.data.video import to_uint8
from gw_jax.diffusion.autoregressive import next_latent
from gw_jax.diffusion.generate import resize_and_crop
from gw_jax.errors import UserInputError
from gw_jax.models.factory import load_codec, load_text_encoder
from gw_jax.train.export import restore_workdir


class Player:
    def __init__(self, model, codec, first_frame, *, context, window: int = 8, fps: float = 4.0,
                 action_stats: Mapping | None = None, action_names=None, key_map: Mapping | None = None,
                 seed: int = 0, steps: int = 20, sigma_max: float = 80.0, augment_sigma: float = 0.001,
                 first_action=None):
        embedder = getattr(model, "action_embedder", None)
        if embedder is None:
            raise UserInputError("Player: the model has no action_dim (train it with actions)")
        if window < 1:
            raise UserInputError(f"Player: window {window} must be at least 1")
        self.codec, self.window, self.stats = codec, window, action_stats
        self.action_dim, self.action_frames = embedder.action_dim, embedder.action_frames
        self.action_names = list(action_names or range(self.action_dim))
        self.key_map = dict(key_map or {})
        self.context = jnp.asarray(context, jnp.float32)[:1]
        self.seed = seed
        sampler = dict(fps=fps, steps=steps, guidance=1.0, sigma_max=sigma_max, augment_sigma=augment_sigma)
        self._next = jax.jit(functools.partial(next_latent, model, **sampler))
        self.reset(first_frame, first_action)

    @classmethod
    def from_workdir(cls, workdir, first_frame, prompt: str = "", *, ema: bool = True, **options) -> "Player":
        """A Player for a training workdir of a DiT with actions (``gw-jax causal-demo``'s OUT/train): the model
        (EMA weights unless ``ema=False``), codec, text encoder, fps, sampler settings and action statistics come
        from the config saved with its newest checkpoint; ``first_frame`` (H', W', 3) uint8 of any size is
        resized to the training size; ``options``: any other Player argument (window, key_map, ...)."""
        config, setup, state = restore_workdir(workdir)
        model = setup.model_def.merge(state.ema_params if ema else state.params, setup.init_frozen())
        context, _ = load_text_encoder(config).encode([prompt])
        frame = resize_and_crop(np.asarray(first_frame, np.uint8), config.data.width, config.data.height)
        sample = config.sample
        options = dict(dict(fps=config.data.fps, action_stats=config.data.get("action_stats"), steps=sample.steps,
                            sigma_max=sample.sigma_max, augment_sigma=sample.augment_sigma), **options)
        return cls(model, load_codec(config), frame.astype(np.uint8), context=context, **options)

    # ------------------------------------------------------------------------------------------------
    def reset(self, first_frame, first_action=None) -> np.ndarray:
        """Starts from ``first_frame`` (H, W, 3) uint8; ``first_action``: the command behind it (default the
        training mean). Returns the first frame as the codec sees it, (1, h, w, 3) uint8."""
        frame = np.asarray(first_frame)
        if frame.ndim != 3 or frame.shape[-1] != 3:
            raise UserInputError(f"Player: first_frame of shape {frame.shape}, expected (H, W, 3) uint8")
        video = np.moveaxis(frame.astype(np.float32) / 127.5 - 1.0, -1, 0)[None, :, None]
        self.latents = [jnp.asarray(self.codec.encode(jnp.asarray(video)))]  # each (1, C, 1, h, w)
        self.action = (np.asarray(self.stats["mean"], np.float32) if self.stats is not None and first_action is None
                       else np.zeros(self.action_dim, np.float32) if first_action is None
                       else np.asarray(first_action, np.float32))
        self.chunks = [self._normalised(self.action)]
        self.count = 0
        self.frames = [to_uint8(self.codec.decode(self.latents[0]))[0, 0]]
        return self.frames[0]

    def _normalised(self, action) -> np.ndarray:
        """One raw action (A,) or chunk (action_frames, A) -> a normalised chunk (action_frames, A)."""
        chunk = np.broadcast_to(np.asarray(action, np.float32), (self.action_frames, self.action_dim))
        return chunk if self.stats is None else normalise_actions(chunk, self.stats)

    def _actions(self, actions) -> list[np.ndarray]:
        """step's argument -> raw actions, one (A,) per new frame (updating the held action)."""
        if isinstance(actions, str):
            if actions not in self.key_map:
                raise UserInputError(f"Player: no action for key {actions!r}; keys: {sorted(self.key_map)}")
            change = self.key_map[actions]
            held = self.action.copy()
            for name, delta in change.items():
                held[self._index(name)] += delta
            return [held]
        if isinstance(actions, Mapping):
            held = self.action.copy()
            for name, value in actions.items():
                held[self._index(name)] = value
            return [held]
        array = np.asarray(actions, np.float32)
        if array.shape[-1] != self.action_dim or array.ndim not in (1, 2):
            raise UserInputError(f"Player: actions of shape {array.shape}, expected (A,) or (n, A) with A = "
                                 f"{self.action_dim}")
        return list(array.reshape(-1, self.action_dim))

    def _index(self, name) -> int:
        if isinstance(name, (int, np.integer)) and 0 <= name < self.action_dim:
            return int(name)
        if name in self.action_names:
            return self.action_names.index(name)
        raise UserInputError(f"Player: no action dimension {name!r}; names: {self.action_names}")

    def step(self, actions) -> np.ndarray:
        """One new frame per action (see the module docstring): returns them as (n, H, W, 3) uint8."""
        new = []
        for action in self._actions(actions):
            self.action = action
            self.chunks.append(self._normalised(action))
            history = self.latents[-self.window:]
            span, position = self.window + 1, len(history)
            window = jnp.concatenate(history + [jnp.zeros_like(history[0])] * (span - position), axis=2)
            chunks = self.chunks[-(position + 1):]
            chunks = np.stack(chunks + [chunks[-1]] * (span - len(chunks)))[None]  # (1, span, k, A)
            self.count += 1
            latent = self._next(window, position, jax.random.fold_in(jax.random.key(self.seed), self.count),
                                context=self.context, actions=jnp.asarray(chunks))
            self.latents.append(latent)
            new.append(latent)
        self.latents = self.latents[-self.window:]
        self.chunks = self.chunks[-self.window:]
        frames = to_uint8(self.codec.decode(jnp.concatenate(new, axis=2)))[0]
        self.frames.extend(frames)
        return frames

    # ------------------------------------------------------------------------------------------------
    def widget(self, scale: int = 4, spread: float = 3.0):
        """ipywidgets: a slider per action dimension (training mean +- ``spread`` std), a step button and the
        newest frame (``scale`` x). Needs ipywidgets (pip install ipywidgets)."""
        try:
            import ipywidgets as widgets
        except ImportError as e:
            raise UserInputError("Player.widget needs ipywidgets (pip install ipywidgets); "
                                 "call player.step(actions) instead") from e
        import io

        import PIL.Image

        mean = np.asarray(self.stats["mean"]) if self.stats is not None else np.zeros(self.action_dim)
        std = np.asarray(self.stats["std"]) if self.stats is not None else np.ones(self.action_dim)
        sliders = [widgets.FloatSlider(value=float(self.action[i]), min=float(mean[i] - spread * std[i]),
                                       max=float(mean[i] + spread * std[i]), step=float(std[i]) / 20,
                                       description=str(name)) for i, name in enumerate(self.action_names)]
        image = widgets.Image(format="png")

        def show(frame):
            buffer = io.BytesIO()
            PIL.Image.fromarray(frame).resize((frame.shape[1] * scale, frame.shape[0] * scale),
                                              PIL.Image.NEAREST).save(buffer, format="png")
            image.value = buffer.getvalue()

        button = widgets.Button(description="step")
        button.on_click(lambda _: show(self.step(np.array([s.value for s in sliders], np.float32))[-1]))
        show(self.frames[-1])
        return widgets.VBox([widgets.HBox([image, widgets.VBox(sliders)]), button])
