"""Trains the FVD feature network (:class:`gw_jax.models.video_features.StateNet`) on simulated clips.

    fnet = train_feature_net(video, states, steps=400)      # video (B, 3, T, H, W) in [-1, 1]; states (B, T, S)
    fnet.r2(heldout_video, heldout_states)                   # how much state the features carry
    fvd = fnet.fvd(real_video, generated_video)              # Fréchet distance of clip features

The network regresses the simulator's per-frame state (standardised) with MSE, AdamW, cosine decay.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from gw_jax.models.video_features import StateNet
from gw_jax.video_metrics import frechet_feature_distance


@dataclasses.dataclass
class FeatureNet:
    graphdef: nnx.GraphDef
    params: nnx.State
    state_mean: np.ndarray
    state_std: np.ndarray
    losses: list[float]

    def _apply(self, method: str, video: np.ndarray, chunk: int = 32) -> np.ndarray:
        fn = _jitted(self.graphdef, method)
        return np.concatenate([np.asarray(fn(self.params, jnp.asarray(video[i:i + chunk])))
                               for i in range(0, len(video), chunk)])

    def features(self, video: np.ndarray) -> np.ndarray:
        """(B, 3, T, H, W) in [-1, 1] -> (B, F) clip features."""
        return self._apply("features", video)

    def predict_states(self, video: np.ndarray) -> np.ndarray:
        return self._apply("__call__", video) * self.state_std + self.state_mean

    def r2(self, video: np.ndarray, states: np.ndarray) -> float:
        """Coefficient of determination of the predicted states, averaged over state dimensions."""
        pred = self.predict_states(video).reshape(-1, states.shape[-1])
        true = states.reshape(-1, states.shape[-1])
        residual = np.sum((pred - true) ** 2, 0)
        total = np.maximum(np.sum((true - true.mean(0)) ** 2, 0), 1e-12)
        return float(np.mean(1.0 - residual / total))

    def fvd(self, real_video: np.ndarray, generated_video: np.ndarray) -> float:
        return frechet_feature_distance(self.features(real_video), self.features(generated_video))


_JIT_CACHE: dict = {}


def _jitted(graphdef, method: str):
    key = (graphdef, method)
    if key not in _JIT_CACHE:
        _JIT_CACHE[key] = jax.jit(lambda params, video: getattr(nnx.merge(graphdef, params), method)(video))
    return _JIT_CACHE[key]


def train_feature_net(video: np.ndarray, states: np.ndarray, *, steps: int = 400, batch_size: int = 8,
                      learning_rate: float = 2e-3, seed: int = 0, progress: bool = True, **net_kwargs) -> FeatureNet:
    """Fits a StateNet to (video (B, 3, T, H, W) in [-1, 1], states (B, T, S))."""
    from tqdm.auto import tqdm

    mean = states.reshape(-1, states.shape[-1]).mean(0)
    std = np.maximum(states.reshape(-1, states.shape[-1]).std(0), 1e-6)
    targets = ((states - mean) / std).astype(np.float32)
    net = StateNet(frame_size=video.shape[-1], state_dim=states.shape[-1], rngs=nnx.Rngs(seed), **net_kwargs)
    graphdef, params = nnx.split(net)
    schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, min(50, steps // 10 + 1), max(steps, 2),
                                                  learning_rate * 0.05)
    tx = optax.adamw(schedule, weight_decay=1e-4)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, x, y):
        def loss_fn(p):
            return jnp.mean(jnp.square(nnx.merge(graphdef, p)(x) - y))

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    rng = np.random.default_rng(seed)
    losses = []
    for _ in tqdm(range(steps), desc="fvd features", disable=not progress, mininterval=1.0):
        index = rng.choice(len(video), size=min(batch_size, len(video)), replace=False)
        params, opt_state, loss = step(params, opt_state, jnp.asarray(video[index]), jnp.asarray(targets[index]))
        losses.append(float(loss))
    return FeatureNet(graphdef, params, mean.astype(np.float32), std.astype(np.float32), losses)
