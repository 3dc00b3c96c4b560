"""The colab/ notebooks: each runs headless in smoke mode (GW_JAX_SMOKE=1: tiny sizes, no network), their
outputs are stripped in git, and every ``gw-jax`` command they call or name exists with the flags they use."""

import argparse
import importlib
import json
import os
import re
import shlex
import sys
from pathlib import Path

import pytest

from gw_jax.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "colab").glob("*.ipynb"))
NAMES = [p.stem for p in NOTEBOOKS]
COMMAND = re.compile(r"gw-jax\s+([^`\n|)\"']*)")


def cells(path):
    return json.loads(path.read_text())["cells"]


def test_the_notebooks_are_there_and_linked():
    assert NAMES == ["data_engine", "jax_vs_torch", "play", "quickstart", "released_weights"]
    readme = (ROOT / "README.md").read_text()
    for name in NAMES:
        first = "".join(cells(ROOT / "colab" / f"{name}.ipynb")[0]["source"])
        badge = f"https://colab.research.google.com/github/OWNER/gw_jax/blob/main/colab/{name}.ipynb"
        assert "colab-badge.svg" in first and badge in first, name
        assert f"colab/{name}.ipynb" in readme, name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_outputs_are_stripped(path):
    for i, cell in enumerate(cells(path)):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"{path.name} cell {i}: outputs"
        assert "attachments" not in cell, f"{path.name} cell {i}"


def _subparser(name):
    parser = argparse.ArgumentParser(prog=f"gw-jax {name}")
    importlib.import_module(COMMANDS[name][0]).add_arguments(parser)
    return parser


def _options(parser):
    options = set(parser._option_string_actions)
    for action in parser._actions:  # nested subcommands (idm train, sysid fit, ...)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                options |= _options(sub)
    return options


def _invocations(path):
    for cell in cells(path):
        for match in COMMAND.finditer("".join(cell["source"])):
            yield shlex.split(match.group(1).replace("{", " {"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_every_gw_jax_command_exists(path, capsys):
    seen = 0
    for tokens in _invocations(path):
        assert tokens and tokens[0] in COMMANDS, f"{path.name}: gw-jax {' '.join(tokens)}"
        parser = _subparser(tokens[0])
        positionals = []
        for token in tokens[1:]:
            if token.startswith("-") or "{" in token:
                break
            positionals.append(token)
        with pytest.raises(SystemExit) as exit_:  # parses the subcommand's positionals, then --help exits 0
            parser.parse_args(positionals + ["--help"])
        assert exit_.value.code == 0, f"{path.name}: gw-jax {' '.join(tokens)}"
        flags = {t.split("=")[0] for t in tokens if t.startswith("--") and not t.startswith("--config.")}
        assert flags <= _options(parser), f"{path.name}: gw-jax {tokens[0]}: unknown {flags - _options(parser)}"
        seen += 1
    assert seen or path.stem == "data_engine", f"{path.name} names no gw-jax command"
    capsys.readouterr()


# ------------------------------------------------------------------------------------------ headless runs
# Smoke runs check that every cell executes, not speed: XLA's CPU backend without its optimisation passes
# compiles the quickstart's train and sampling steps in about 2/3 of the CPU time (kernel: 29 -> 19 CPU s).
SMOKE_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def run_notebook(path, workdir):
    """Executes the notebook in a fresh kernel in ``workdir``: this checkout's gw_jax, one CPU device, smoke mode."""
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")
    # conftest's 8 fake devices are no runtime's; MPLBACKEND would replace the kernel's inline figures
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env.update(GW_JAX_SMOKE="1", PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
               XLA_FLAGS=SMOKE_XLA_FLAGS,
               PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]))
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # the kernel process inherits this environment
    try:
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return notebook


def outputs(notebook, kind):
    return [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == kind]


def has_video(notebook) -> bool:
    return any("<video" in o.get("data", {}).get("text/html", "") for o in outputs(notebook, "display_data"))


def has_image(notebook) -> bool:
    return any("image/png" in o.get("data", {}) for o in outputs(notebook, "display_data"))


def test_quickstart_runs(tmp_path):
    notebook = run_notebook(ROOT / "colab" / "quickstart.ipynb", tmp_path)
    assert has_video(notebook) and has_image(notebook)  # episodes, rollouts; the loss curve
    assert (tmp_path / "quickstart" / "train" / "checkpoints").is_dir()
    assert "problems: none" in "".join(o.get("text", "") for o in outputs(notebook, "stream"))


@pytest.mark.slow
def test_released_weights_runs(tmp_path):
    notebook = run_notebook(ROOT / "colab" / "released_weights.ipynb", tmp_path)
    assert has_video(notebook)
    assert (tmp_path / "prompt_embeddings.npz").is_file()
    text = "".join(o.get("text", "") for o in outputs(notebook, "stream"))
    difference = float(re.search(r"mean \|difference\|: ([0-9.e-]+)", text).group(1))
    assert difference > 0  # the LoRA adapter changed the video


@pytest.mark.slow
def test_jax_vs_torch_runs(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    notebook = run_notebook(ROOT / "colab" / "jax_vs_torch.ipynb", tmp_path)
    report = json.loads((tmp_path / "bench_dit.json").read_text())
    assert {"jax (XLA, jit)", "pytorch eager"} <= set(report["rows"]) and has_image(notebook)


@pytest.mark.slow
def test_data_engine_runs(tmp_path):
    notebook = run_notebook(ROOT / "colab" / "data_engine.ipynb", tmp_path)
    assert has_image(notebook)
    assert (tmp_path / "engine" / "labels" / "0.joints.npz").is_file()
    assert (tmp_path / "engine" / "sysid" / "params.json").is_file()


@pytest.mark.slow
def test_play_runs(tmp_path):
    notebook = run_notebook(ROOT / "colab" / "play.ipynb", tmp_path)
    assert has_video(notebook)  # recorded commands vs the simulator, then keys and held commands
    assert (tmp_path / "play" / "train" / "checkpoints").is_dir() and (tmp_path / "play" / "report.json").is_file()
    assert "4x-clip rollouts driven by the recorded commands" in "".join(
        o.get("text", "") for o in outputs(notebook, "stream"))
