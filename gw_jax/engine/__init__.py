"""The data engine: ViewTransfer (new viewpoints), the quality gates, and the seed -> RLDS loop.

    gates.py          visual, geometric and physical gate scores, corruptions, ROC AUC
    viewtransfer.py   double-projection training pairs, control channels, training and generation
    pipeline.py       run_engine: simulate -> ViewTransfer -> IDM labels -> gates -> RLDS (`gw-jax engine`)
    filtering.py      run_filter: score a folder of episodes, write scores + keep/drop (`gw-jax filter`)
"""
