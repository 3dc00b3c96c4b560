"""gw-jax train from a release-layout folder (LoRA and full), resume, gw-jax export, and the exports load back."""

import json
import subprocess
import sys

import numpy as np
import pytest
from flax import nnx

from gw_jax.data.video import write_video
from gw_jax.models.dit import GigaWorld0DiT
from gw_jax.models.pixel_codec import PixelCodec


def gw_jax(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "gw_jax.cli", *map(str, args)], capture_output=True, text=True)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def make_episodes(directory, count=8, frames=9, size=32):
    rng = np.random.default_rng(0)
    directory.mkdir()
    for i in range(count):
        write_video(directory / f"{i}.mp4", rng.integers(0, 255, (frames, size, size, 3), dtype=np.uint8), fps=8)
        (directory / f"{i}.txt").write_text(f"move the block {i % 3}")
        np.savez(directory / f"{i}.npz", fps=np.float32(8.0))


def make_release(root):
    """A random 'released' transformer in the reference layout, sharded with an index."""
    channels = PixelCodec(pool=2, fold=4).channels
    model = GigaWorld0DiT(max_img_h=8, max_img_w=8, max_frames=9, in_channels=channels + 1, out_channels=channels,
                          patch_spatial=2, patch_temporal=1, model_channels=32, num_blocks=2, num_heads=2,
                          crossattn_emb_channels=32, adaln_lora_dim=8, rngs=nnx.Rngs(7))
    model.save_pretrained(root / "transformer", max_shard_bytes=40_000)
    assert (root / "transformer" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    return model


@pytest.mark.slow  # ~3.5 min on 2 shared CPU cores (6 subprocesses)
def test_finetune_release_lora_and_full_resume_export_load_back(tmp_path):
    episodes, release = tmp_path / "episodes", tmp_path / "release"
    make_episodes(episodes)
    base = make_release(release)
    common = ["--config.data.raw_dir=" + str(episodes), "--config.data.height=32", "--config.data.width=32",
              "--config.data.num_frames=5", "--config.train.global_batch_size=8", "--config.train.num_steps=4",
              "--config.train.log_every=1", "--config.train.checkpoint_every=2", "--config.train.learning_rate=0.01",
              "--config.model.pretrained=" + str(release), "--no-progress"]
    lora = ["--config.train.mode=lora", "--config.train.lora_rank=4", "--config.train.optimizer=came8bit", *common]
    run = tmp_path / "lora_run"
    gw_jax("train", "--config", "configs/demo_pixel.py", "--workdir", run, "--max-steps", 2, *lora)
    assert "done: step 4" in gw_jax("train", "--config", "configs/demo_pixel.py", "--workdir", run, *lora).stdout
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    gw_jax("export", "--workdir", run, "--out", tmp_path / "lora_out")

    rng = np.random.default_rng(1)
    channels = PixelCodec(pool=2, fold=4).channels
    args = (rng.normal(size=(1, channels + 1, 2, 4, 4)).astype(np.float32), np.full((1, 1, 2, 1, 1), 0.5, np.float32),
            rng.normal(size=(1, 3, 32)).astype(np.float32), 8.0)
    base_out = np.asarray(base(*args))
    adapted = GigaWorld0DiT.from_pretrained(release / "transformer")
    adapted.load_lora(tmp_path / "lora_out")
    adapted_out = np.asarray(adapted(*args))
    assert 1e-6 < np.abs(adapted_out - base_out).max()  # trained adapters, read back by the release's rule
    gw_jax("export", "--workdir", run, "--out", tmp_path / "lora_fused", "--fuse")
    fused = GigaWorld0DiT.from_pretrained(tmp_path / "lora_fused")
    np.testing.assert_allclose(np.asarray(fused(*args)), adapted_out, rtol=1e-4, atol=1e-5)

    full_run = tmp_path / "full_run"
    gw_jax("train", "--config", "configs/demo_pixel.py", "--workdir", full_run, "--max-steps", 2, *common)
    gw_jax("export", "--workdir", full_run, "--out", tmp_path / "full_out", "--ema")
    tuned = GigaWorld0DiT.from_pretrained(tmp_path / "full_out")
    assert json.loads((tmp_path / "full_out" / "config.json").read_text())["model_channels"] == 32
    assert 1e-6 < np.abs(np.asarray(tuned(*args)) - base_out).max()

    bad = gw_jax("train", "--config", "configs/demo_pixel.py", "--workdir", tmp_path / "x", *common[:-2],
                 "--config.model.pretrained=" + str(episodes), check=False)
    assert bad.returncode == 2 and "not a checkpoint folder" in bad.stderr and len(bad.stderr.splitlines()) == 1
