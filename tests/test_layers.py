"""The layer contract of DESIGN.md ("Layers"), checked from the source with ``ast`` (nothing is imported).

Bottom to top: errors/config/storage -> parallel -> models (+ convert) -> diffusion, data -> train -> apps.
- a library module imports only library modules of its own layer or below (imports inside functions count);
- apps (``gw_jax/cli.py``, command modules ``cli.py`` / ``*_cli.py``, the demo, reports, benches) are leaves:
  no module imports a command module except ``gw_jax/cli.py`` (which loads them by name), and library code
  never imports an app; configs/*.py import library code only;
- no import cycles between modules.
The rules are plain functions over {module name: source}, so the tests below also show them failing on
synthetic bad modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Layer of each top-level name under gw_jax (a package or a module); apps are found by name (is_app).
LAYERS = {
    "": 0, "errors": 0, "config": 0, "storage": 0, "video_metrics": 0, "host_memory": 0,
    "parallel": 1,
    "models": 2, "convert": 2, "geometry": 2,
    "diffusion": 3, "data": 3, "testing": 3,  # testing: tiny release-layout folders (tests, notebooks' smoke mode)
    "train": 4, "idm": 4, "lam": 4, "physics": 4, "engine": 4, "play": 4,  # play: the AR world model's play loop
    "cli": 5, "demo": 5, "demo_causal": 5, "demo_steps": 5,  # demo_steps: what the two demos share
    "bench": 5, "notebook": 5,  # notebook: what the colab/ notebooks share
}
APP_LAYER = 5

# Edges tolerated until the work that removes them lands (issue 19, IDM part: idm.report calls the private
# idm.cli._predict). An entry that no longer matches an import fails the test: delete it then.
ALLOWED: set[tuple[str, str]] = set()


def is_command(module: str) -> bool:
    last = module.rsplit(".", 1)[-1]
    return last == "cli" or last.endswith("_cli")


def is_app(module: str) -> bool:
    parts = module.split(".")
    return (is_command(module) or module in ("gw_jax.demo", "gw_jax.demo_causal", "gw_jax.demo_steps")
            or (len(parts) > 1 and parts[1] == "bench") or parts[-1] == "report" or parts[-1].endswith("_report"))


def layer_of(module: str) -> int | None:
    if is_app(module):
        return APP_LAYER
    parts = module.split(".")
    return LAYERS.get(parts[1] if len(parts) > 1 else "")


def module_sources(root: Path = ROOT) -> dict[str, tuple[str, bool]]:
    """{dotted name: (source, is_package)} for every module under gw_jax/."""
    out = {}
    for path in sorted((root / "gw_jax").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if package else parts)] = (path.read_text(), package)
    return out


def imported_names(source: str, here: str, is_package: bool) -> list[str]:
    """Every name an import statement anywhere in ``source`` may refer to (relative imports resolved)."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = here.split(".")[: len(here.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(package + ([base] if base else []))
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return names


def import_graph(modules: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """Module -> the gw_jax modules it imports (not its own parent packages: Python runs those first anyway)."""
    edges = {}
    for name, (source, is_package) in modules.items():
        targets = set()
        for target in imported_names(source, name, is_package):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                targets.add(target)
        edges[name] = targets
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]

    def visit(root):
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def violations(modules: dict[str, tuple[str, bool]], configs: dict[str, str] = (),
               allowed: set[tuple[str, str]] = frozenset()) -> list[str]:
    """Every breach of the layer contract, one line each (empty when it holds)."""
    edges = import_graph(modules)
    problems = [f"{name}: no layer assigned (add its top-level name to LAYERS in tests/test_layers.py)"
                for name in sorted(edges) if layer_of(name) is None]
    for name in sorted(edges):
        for target in sorted(edges[name]):
            if (name, target) in allowed:
                continue
            if is_command(target) and name != "gw_jax.cli":
                problems.append(f"{name} imports the command module {target} (only gw_jax.cli may)")
            elif not is_app(name) and is_app(target):
                problems.append(f"library module {name} imports the app {target}")
            elif not is_app(name) and None not in (layer_of(name), layer_of(target)) \
                    and layer_of(target) > layer_of(name):
                problems.append(f"{name} (layer {layer_of(name)}) imports {target} (layer {layer_of(target)}): "
                                "imports only point down")
    pruned = {name: {t for t in targets if (name, t) not in allowed} for name, targets in edges.items()}
    problems += ["import cycle: " + " <-> ".join(c) for c in cycles(pruned)]
    for config, source in dict(configs).items():
        for target in imported_names(source, config, False):
            if target.startswith("gw_jax.") and target in modules and is_app(target):
                problems.append(f"{config} imports the app {target} (configs import library code only)")
    stale = sorted(edge for edge in allowed if edge[1] not in edges.get(edge[0], ()))
    problems += [f"ALLOWED lists {a} -> {b}, which no longer exists: remove it" for a, b in stale]
    return problems


def test_gw_jax_keeps_its_layers():
    configs = {f"configs.{p.stem}": p.read_text() for p in sorted((ROOT / "configs").glob("*.py"))}
    problems = violations(module_sources(), configs, ALLOWED)
    assert not problems, "\n".join(problems)


# ---- the rules themselves catch what they should (synthetic modules) ------------------------------------

def _mods(**sources) -> dict[str, tuple[str, bool]]:
    base = {"gw_jax": ("", True), "gw_jax.errors": ("", False), "gw_jax.cli": ("", False),
            "gw_jax.models": ("", True), "gw_jax.models.dit": ("from gw_jax.errors import UserInputError", False),
            "gw_jax.train": ("", True), "gw_jax.train.loop": ("from gw_jax.models.dit import GigaWorld0DiT", False),
            "gw_jax.train.cli": ("from gw_jax.train.loop import train", False),
            "gw_jax.demo": ("from gw_jax.train.loop import train", False)}
    base.update({name.replace("__", "."): (src, False) for name, src in sources.items()})
    return base


def test_clean_synthetic_tree_passes():
    assert violations(_mods()) == []


@pytest.mark.parametrize("sources, expected", [
    # an upward import, even one hidden inside a function to dodge a cycle
    (dict(gw_jax__models__vae="def f():\n    from gw_jax.train.loop import train\n"), "imports only point down"),
    # library code importing the demo app
    (dict(gw_jax__train__data="from gw_jax.demo import load_clips"), "imports the app gw_jax.demo"),
    # a command module imported by anything but gw_jax.cli (here: another app)
    (dict(gw_jax__data__pack_cli="from gw_jax.train.cli import run"), "imports the command module gw_jax.train.cli"),
    # a cycle inside one layer
    (dict(gw_jax__models__a="from gw_jax.models import b", gw_jax__models__b="import gw_jax.models.a"),
     "import cycle: gw_jax.models.a <-> gw_jax.models.b"),
    # relative imports resolve like absolute ones
    (dict(gw_jax__models__vae="from ..train import loop"), "imports only point down"),
    # a new top-level package without a layer
    (dict(gw_jax__poses__se3="import numpy"), "no layer assigned"),
])
def test_rules_catch_violations(sources, expected):
    problems = violations(_mods(**sources))
    assert any(expected in p for p in problems), problems


def test_configs_must_not_import_apps():
    problems = violations(_mods(), {"configs.demo": "from gw_jax.demo import QUICK"})
    assert problems == ["configs.demo imports the app gw_jax.demo (configs import library code only)"]


def test_allowed_edges_are_skipped_but_must_exist():
    bad = _mods(gw_jax__train__data="from gw_jax.demo import load_clips")
    assert violations(bad, allowed={("gw_jax.train.data", "gw_jax.demo")}) == []
    assert "no longer exists" in violations(_mods(), allowed={("gw_jax.train.data", "gw_jax.demo")})[0]
