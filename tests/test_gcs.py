"""gs:// end to end against an offline Cloud Storage emulator (tests/gcs_emulator.py, started in this process).

Default tier: pack -> verify -> loader reads from a bucket (batches equal those of the same pack on disk), raw
episodes read from a bucket, checkpoints + data state + metrics + TensorBoard in a bucket, bad cloud paths as
one line with exit status 2, and never a local ``gs:`` folder. ``-m slow``: sim -> pack -> verify -> train ->
kill -9 -> resume, all in the bucket, as subprocesses, with the losses of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from etils import epath

from gw_jax.cli import main
from gw_jax.data.loader import make_loader
from gw_jax.data.pack import pack, read_index, verify
from gw_jax.data.records import RecordWriter
from gw_jax.data.video import write_video
from gw_jax.models.text_hash import HashTextEncoder

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["push the red cube to the left", "pick up the blue cube", "place the green cube on the right"]


def make_episodes(folder, count=6, frames=9, size=24):
    rng = np.random.default_rng(0)
    folder = epath.Path(folder)
    for i in range(count):
        video = np.full((frames, size, size, 3), 30 + 20 * i, np.uint8)
        for t in range(frames):  # a moving square: frame sampling shows in the pixels
            video[t, 4:10, 2 + t:8 + t] = 220
        write_video(folder / f"{i}.mp4", video, fps=8)
        (folder / f"{i}.txt").write_text(PROMPTS[i % 3] + "\n")
        np.savez(folder / f"{i}.npz", joints=rng.normal(size=(frames, 7)).astype(np.float32))
    return folder


def upload(local: Path, remote: str) -> None:
    for file in sorted(local.iterdir()):
        (epath.Path(remote) / file.name).write_bytes(file.read_bytes())


def batches(packed, count=3):
    loader = make_loader(packed, batch_size=2, num_frames=5, height=16, width=16, seed=0, process_index=0,
                         process_count=1)
    return [next(loader) for _ in range(count)]


def test_pack_verify_and_read_batches_from_a_bucket(bucket, gcs_emulator, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a path mistaken for a local one would show up here as gs:/...
    raw = make_episodes(tmp_path / "raw")
    local = pack(raw, tmp_path / "packed", text_encoder=HashTextEncoder(), shards=2, progress=False)
    remote = pack(raw, f"{bucket}/packed", text_encoder=HashTextEncoder(), shards=2, progress=False)
    assert remote == local  # the same shards, byte for byte (sha256 in the index)
    assert gcs_emulator.objects("packed/") == ["packed/index.json", "packed/shard-00000-of-00002.json",
                                               "packed/shard-00000-of-00002.tfrecord",
                                               "packed/shard-00001-of-00002.json",
                                               "packed/shard-00001-of-00002.tfrecord"]  # .partial/ is gone
    assert verify(f"{bucket}/packed") == [] and main(["verify", f"{bucket}/packed"]) == 0
    for ours, theirs in zip(batches(f"{bucket}/packed"), batches(tmp_path / "packed"), strict=True):
        assert ours.keys() == theirs.keys()
        for key in ours:
            np.testing.assert_array_equal(ours[key], theirs[key])

    # `gw-jax bench data` reads the bucket and writes its report there
    assert main(["bench", "data", "--packed", f"{bucket}/packed", "--batch-size", "2", "--seconds", "0.2",
                 "--json", f"{bucket}/bench.json"]) == 0
    report = json.loads(epath.Path(f"{bucket}/bench.json").read_text())
    assert report["packed"] == f"{bucket}/packed" and report["records_per_s"] > 0 and report["clips"] > 0

    # raw episodes in a bucket too, through the CLI
    upload(tmp_path / "raw", f"{bucket}/raw")
    assert main(["pack", f"{bucket}/raw", f"{bucket}/from_bucket", "--text-encoder", "hash", "--shards", "2"]) == 0
    assert read_index(f"{bucket}/from_bucket")["shards"] == local["shards"]

    # a flipped byte in a shard in the bucket: verify names the shard and record
    shard = epath.Path(f"{bucket}/packed") / local["shards"][1]["file"]
    data = bytearray(shard.read_bytes())
    data[local["shards"][1]["offsets"][1] + 100] ^= 0xFF
    shard.write_bytes(bytes(data))
    problems = verify(f"{bucket}/packed")
    assert len(problems) == 1 and f"{shard} record 1" in problems[0] and "checksum" in problems[0]
    # a shard write cut short leaves no object behind (locally it has a temporary name)
    with pytest.raises(KeyboardInterrupt):
        with RecordWriter(f"{bucket}/cut.tfrecord") as writer:
            writer.write(b"one record")
            raise KeyboardInterrupt
    assert not gcs_emulator.objects("cut")
    assert not (tmp_path / "gs:").exists()


def test_checkpoints_data_state_and_metrics_in_a_bucket(bucket, gcs_emulator, tmp_path, monkeypatch):
    import jax.numpy as jnp

    from gw_jax.train.checkpoint import Checkpointer
    from gw_jax.train.data import ArrayBatches
    from gw_jax.train.metrics import MetricsWriter, read_metrics

    monkeypatch.chdir(tmp_path)
    state = {"w": jnp.arange(12.0).reshape(3, 4), "step": jnp.asarray(2)}
    data = ArrayBatches({"x": np.arange(10)}, 2, seed=3, process_index=0, process_count=1)
    next(data)
    checkpointer = Checkpointer(f"{bucket}/run/checkpoints", max_to_keep=2)  # async saves
    for step in (1, 2, 3):
        checkpointer.save(step, state, data=data, config={"note": step})
    checkpointer.close()
    assert str(checkpointer.directory) == f"{bucket}/run/checkpoints"
    fresh = ArrayBatches({"x": np.arange(10)}, 2, seed=3, process_index=0, process_count=1)
    again = Checkpointer(f"{bucket}/run/checkpoints")  # a new process would see just this
    assert again.manager.all_steps() == [2, 3] and again.has_data_state(3)
    restored, config = again.restore({"w": jnp.zeros((3, 4)), "step": jnp.asarray(0)}, data=fresh)
    again.close()
    np.testing.assert_array_equal(restored["w"], state["w"])
    assert config == {"note": 3} and fresh.position == 1

    writer = MetricsWriter(f"{bucket}/run", console=False, resume_step=0)
    for step in (1, 2, 3):
        writer.write(step, {"loss": 1.0 / step})
    writer.flush()
    assert [m["step"] for m in read_metrics(f"{bucket}/run")] == [1, 2, 3]
    writer.write(4, {"loss": 0.25})
    writer.close()
    resumed = MetricsWriter(f"{bucket}/run", console=False, resume_step=2)  # drops 3 and 4; must not overwrite 1, 2
    resumed.write(3, {"loss": 0.5})
    resumed.close()
    logged = read_metrics(f"{bucket}/run")
    assert [(m["step"], m["loss"]) for m in logged] == [(1, 1.0), (2, 0.5), (3, 0.5)]
    events = gcs_emulator.objects("run/tensorboard/")
    assert len(events) == 2 and all("tfevents" in name for name in events)
    assert not (tmp_path / "gs:").exists()


BAD_PATHS = [
    (["train", "--config", "configs/demo_pixel.py", "--workdir", "gs://no-such-bucket/run"], "train",
     "bucket gs://no-such-bucket does not exist"),
    (["pack", "s3://data/raw", "gs://bucket/packed"], "pack", "unsupported URI scheme s3://"),
    (["verify", "gs:/bucket/packed"], "verify", "did you mean gs://bucket/packed?"),
    (["verify", "gs://no-such-bucket/packed"], "verify", "PACKED gs://no-such-bucket/packed: bucket"),
    (["bench", "data", "--packed", "foo://x/y"], "bench", "--packed foo://x/y: unsupported URI scheme"),
    (["sample", "--workdir", "gs://bucket/empty", "--image", "x.png", "--prompt", "p", "--out", "o.mp4"], "sample",
     "no checkpoints/ folder"),
    (["sim", "--out", "gs://no-such-bucket/raw", "--episodes", "1"], "sim", "does not exist"),
    (["idm", "train", "--data", "gs://bucket/episodes", "--workdir", "w"], "idm", "local folders only"),
    (["sysid", "fit", "--trajectories", "gs://bucket/t.npz", "--out", "o"], "sysid", "local folders only"),
    (["demo", "--out", "gs://bucket/demo"], "demo", "local folders only"),
    (["engine", "--quick", "--out", "gs://bucket/engine"], "engine", "local folders only"),
    (["export", "--workdir", "w", "--out", "gs://bucket/export"], "export", "local folders only"),
    (["train", "--config", "gs://bucket/tiny.py", "--workdir", "w"], "train", "a local Python file"),
    (["train", "--config", "configs/demo_pixel.py", "--workdir", "w", "--config.model.pretrained=gs://bucket/rel"],
     "train", "released weights load from a local folder"),
    (["generate", "--release", "r", "--lora", "mine=gs://bucket/lora:0.5", "--json", "j.json", "--out", "o"],
     "generate", "--lora gs://bucket/lora: `gw-jax generate` works on local folders only"),
]


@pytest.mark.parametrize("argv,command,needle", BAD_PATHS, ids=[" ".join(a[:2]) for a, _, _ in BAD_PATHS])
def test_bad_cloud_paths_are_one_line_and_exit_2(argv, command, needle, bucket, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = [str(ROOT / a) if a.startswith("configs/") else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"gw-jax {command}: error: ") and needle in err[0], err
    assert list(tmp_path.iterdir()) == []  # no local gs: folder, nothing else written


def test_no_credentials_is_one_line_and_exit_2(tmp_path):
    """Without the emulator and without credentials, before anything slow starts (gcsfs alone retries ~1 min)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STORAGE_EMULATOR", "TENSORSTORE_GCS",
                                                                    "GOOGLE_", "CLOUDSDK", "GCE_"))}
    env.update(HOME=str(tmp_path), CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),  # no gcloud login file
               GCE_METADATA_HOST="127.0.0.1:9", GCE_METADATA_IP="127.0.0.1:9")  # not a GCE VM: fail fast
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "gw_jax.cli", "verify", "gs://some-bucket/packed"], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert "no Google Cloud credentials" in lines[0] and "gcloud auth application-default login" in lines[0]
    assert time.perf_counter() - start < 60
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ------------------------------------------------------------------ the data engine in a bucket (slow)

TRAIN = ["--config", str(ROOT / "configs/demo_pixel.py"), "--no-progress", "--config.data.packed_dir=gs://bucket/packed",
         "--config.latents=vae", "--config.data.height=32", "--config.data.width=32", "--config.data.num_frames=5",
         "--config.train.global_batch_size=8", "--config.train.log_every=1", "--config.model.num_blocks=1",
         "--config.train.num_steps=100000", "--config.train.checkpoint_every=100000"]


@pytest.mark.slow  # MuJoCo episodes, then four training subprocesses (~2-4 min on 2 cores)
def test_sim_pack_verify_train_kill_resume_in_a_bucket(bucket, gcs_emulator, tmp_path):
    """sim -> pack -> verify -> train -> kill -9 -> resume, every file in gs://bucket; the resumed run's losses
    equal those of an uninterrupted one (itself in a local workdir: the bucket changes nothing)."""
    pytest.importorskip("mujoco")

    def gw_jax(*args):
        result = subprocess.run([sys.executable, "-m", "gw_jax.cli", *map(str, args)], cwd=tmp_path,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    gw_jax("sim", "--out", f"{bucket}/raw", "--episodes", 8, "--frames", 9, "--size", 32)
    gw_jax("pack", f"{bucket}/raw", f"{bucket}/packed", "--text-encoder", "hash", "--shards", 2, "--workers", 2)
    assert "all shards and records intact" in gw_jax("verify", f"{bucket}/packed").stdout
    gw_jax("train", *TRAIN, "--workdir", tmp_path / "straight", "--max-steps", 6)
    gw_jax("train", *TRAIN, "--workdir", f"{bucket}/run", "--max-steps", 3)  # checkpoint at 3
    process = subprocess.Popen([sys.executable, "-m", "gw_jax.cli", "train", *TRAIN, "--workdir", f"{bucket}/run"],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in process.stdout:  # the console log: step 5 done, no checkpoint after 3
            if line.startswith("step      5"):
                break
        assert process.poll() is None, "the run ended before it could be killed"
    finally:
        process.kill()
        process.wait()
    assert gcs_emulator.objects("run/checkpoints/3/") and not gcs_emulator.objects("run/checkpoints/5/")
    resumed = gw_jax("train", *TRAIN, "--workdir", f"{bucket}/run", "--max-steps", 6)
    assert "done: step 6" in resumed.stdout

    from gw_jax.train.metrics import read_metrics

    ours, reference = read_metrics(f"{bucket}/run"), read_metrics(tmp_path / "straight")
    assert [m["step"] for m in ours] == list(range(1, 7))
    np.testing.assert_allclose([m["loss"] for m in ours], [m["loss"] for m in reference], rtol=1e-6)
    assert gcs_emulator.objects("run/checkpoints/6/") and gcs_emulator.objects("run/tensorboard/")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["straight"]  # no local gs: folder


# ------------------------------------------------------------------ no user path through pathlib (static)

# Library modules on the way of a user's workdir / data / outputs: paths go through gw_jax.storage (epath), so
# no pathlib.Path(...) or open(...) of anything but a literal here.
URI_MODULES = ["gw_jax/data/pack.py", "gw_jax/data/loader.py", "gw_jax/data/records.py", "gw_jax/data/sim.py",
               "gw_jax/data/rlds.py", "gw_jax/data/video.py", "gw_jax/data/bench.py", "gw_jax/train/loop.py",
               "gw_jax/train/checkpoint.py", "gw_jax/train/metrics.py", "gw_jax/train/data.py",
               "gw_jax/train/guards.py"]
FILE_CALLS = {"Path", "PosixPath", "open"}


def _called_name(call) -> str | None:
    import ast

    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in ("pathlib", "io"):
        return func.attr
    return None


def path_violations(source: str, *, command: bool) -> list[str]:
    """``Path(x)`` / ``open(x)`` calls on non-literals; in a command module only those whose argument mentions
    ``args`` (what the user typed). Methods (``path.open``, ``Image.open``) are not these calls."""
    import ast

    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or _called_name(node) not in FILE_CALLS or not node.args:
            continue
        first = node.args[0]
        if isinstance(first, ast.Constant):
            continue
        names = {n.id for n in ast.walk(first) if isinstance(n, ast.Name)}
        if not command or "args" in names:
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_user_paths_never_go_through_pathlib():
    """pathlib.Path("gs://b/run") is the local folder gs:/b/run: user paths must take gw_jax.storage.as_path."""
    from test_layers import is_app, module_sources

    problems = {}
    for name, (source, _) in module_sources().items():
        file = name.replace(".", "/") + ".py"
        if is_app(name) or file in URI_MODULES:
            found = path_violations(source, command=is_app(name))
            if found:
                problems[file] = found
    assert problems == {}
    # the rule catches what it is for
    assert path_violations("def run(args):\n    out = Path(args.out)\n", command=True)
    assert path_violations("def run(args):\n    open(args.json, 'w')\n", command=True)
    assert path_violations("def pack(out_dir):\n    out_dir = pathlib.Path(out_dir)\n", command=False)
    assert not path_violations("def run(args):\n    out = as_path(args.out, flag='--out')\n", command=True)
