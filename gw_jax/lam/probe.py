"""Linear probes: how much of the true action a feature holds, measured as held-out R² of a ridge map.

  targets = transition_targets(actions_ntd, joints_ntd)      {"action": ..., "command_offset": ..., "joint_delta": ...}
  result = ridge_probe(feats_train, y_train, feats_test, y_test)   {"r2": (D,), "r2_mean": float, "pred": ...}
  feats = pixel_pca_features(frames_train, frames_test, dim)  the trivial baseline: PCA of x_{t+1} - x_t
  quad = quadratic_features(feats)                             products of pairs too: a quadratic probe

All arrays are per transition t -> t+1 (flattened over episodes); the split is by episode, done by the caller.
"""

from __future__ import annotations

import numpy as np


def transition_targets(actions: np.ndarray, joints: np.ndarray) -> dict[str, np.ndarray]:
    """What drives, or shows, the move from frame t to t+1, each (N, T-1, 7) for the simulator's 6 joints + gripper:

    - ``action``: the command recorded at frame t (absolute joint targets, gripper opening), the DiT's action;
    - ``command_offset``: that command minus the joints at frame t (where the servos are told to go, relative
      to where they are — the part of the command an image pair can show);
    - ``joint_delta``: joints at t+1 minus joints at t (the motion itself)."""
    return dict(action=actions[:, :-1], command_offset=actions[:, :-1] - joints[:, :-1],
                joint_delta=joints[:, 1:] - joints[:, :-1])


def r2_scores(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per-dimension R² = 1 - SSE / SST over rows (SST about the true mean; a constant column gives 0)."""
    sse = ((pred - true) ** 2).sum(0)
    sst = ((true - true.mean(0)) ** 2).sum(0)
    return np.where(sst > 0, 1.0 - sse / np.maximum(sst, 1e-30), 0.0)


def ridge_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                alpha: float = 1e-3) -> dict:
    """Ridge regression (features standardised on the train rows, intercept unpenalised) fitted on the train
    rows, scored by R² on the test rows. ``alpha`` is relative: the penalty is alpha * n_train."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-8
    a, b = (x_train - mean) / std, (x_test - mean) / std
    y_mean = y_train.mean(0)
    weights = np.linalg.solve(a.T @ a + alpha * len(a) * np.eye(a.shape[1]), a.T @ (y_train - y_mean))
    pred = b @ weights + y_mean
    r2 = r2_scores(pred, y_test)
    return dict(r2=r2, r2_mean=float(r2.mean()), pred=pred)


def quadratic_features(x: np.ndarray) -> np.ndarray:
    """[x, x_i * x_j for i <= j]: a ridge map on these is a quadratic probe (does the feature hold the target,
    but bent?)."""
    i, j = np.triu_indices(x.shape[1])
    return np.concatenate([x, x[:, i] * x[:, j]], axis=1)


def pixel_pca_features(diff_train: np.ndarray, diff_test: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The trivial baseline: frame differences x_{t+1} - x_t (rows, any trailing shape) projected on their top
    ``dim`` principal components (fitted on the train rows)."""
    a, b = diff_train.reshape(len(diff_train), -1), diff_test.reshape(len(diff_test), -1)
    mean = a.mean(0)
    _, _, vt = np.linalg.svd(a - mean, full_matrices=False)
    return (a - mean) @ vt[:dim].T, (b - mean) @ vt[:dim].T
