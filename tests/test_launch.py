"""launch/tpu_train.sh: the dry run prints every command (create, copy, install, train on all workers), with the
workdir and the packed data in a bucket."""

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "launch" / "tpu_train.sh"


def run(*args):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          cwd=SCRIPT.parents[1])


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_dry_run_prints_every_command_and_runs_none():
    result = run("--name", "gw", "--zone", "us-east5-a", "--type", "v5p-64", "--bucket", "gs://b/run",
                 "--data", "gs://b/packed", "--config", "configs/gigaworld0_2b.py", "--spot", "--dry-run", "--",
                 "--config.train.num_steps=7")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("+ ")]
    assert "tpu-vm create gw" in lines[0] and "--accelerator-type v5p-64" in lines[0] and "--spot" in lines[0]
    assert any("scp" in line and "--worker=all" in line for line in lines)
    install = [line for line in lines if "pip" in line]
    assert install and "--worker=all" in install[0] and "tpu" in install[0]
    train = lines[-1]
    assert "--worker=all" in train and "gw-jax\\ train" in train and "--workdir\\ gs://b/run" in train
    assert "--config.data.packed_dir=gs://b/packed" in train and "num_steps=7" in train
    assert "data from gs://b/packed" in result.stdout.splitlines()[-1]


def test_missing_or_bad_arguments_exit_2():
    assert run("--name", "gw", "--dry-run").returncode == 2
    bad_bucket = run("--name", "gw", "--zone", "z", "--type", "v5p-64", "--bucket", "/local", "--config",
                     "configs/gigaworld0_2b.py", "--dry-run")
    assert bad_bucket.returncode == 2 and "gs://" in bad_bucket.stderr
    relative_data = run("--name", "gw", "--zone", "z", "--type", "v5p-64", "--bucket", "gs://b/run", "--data",
                        "data/packed", "--config", "configs/gigaworld0_2b.py", "--dry-run")
    assert relative_data.returncode == 2 and "--data" in relative_data.stderr


def test_gpu_launcher_dry_run_gives_each_host_its_process_id(tmp_path):
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("gpu-a\n# comment\ngpu-b\n")
    result = subprocess.run(["bash", str(SCRIPT.with_name("gpu_train.sh")), "--hosts", str(hosts), "--config",
                             "configs/tiny.py", "--workdir", "/shared/run", "--dry-run"],
                            capture_output=True, text=True, cwd=SCRIPT.parents[1])
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("+ ssh")]
    assert len(lines) == 2 and "gpu-a" in lines[0] and "gpu-b" in lines[1]
    assert "GW_JAX_PROCESS_ID=0" in lines[0] and "GW_JAX_PROCESS_ID=1" in lines[1]
    assert all("GW_JAX_COORDINATOR=gpu-a:8476" in line and "GW_JAX_NUM_PROCESSES=2" in line for line in lines)
