"""The rules of docs/architecture.md, checked on the source: at most 10 top-level modules, no import cycles, imports
only point down the layers, and every command's --help lists its own flags with exit code 0."""

import ast
import collections
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

PACKAGE = os.path.join(REPO, "kdjax")
# docs/architecture.md "What may import what": a package may import only packages of a lower layer
LAYERS = {
    "kdjax": 0, "errors": 0,
    "kernels": 1, "runtime": 1, "optim": 1,
    "cli": 2, "models": 2, "losses": 2, "data": 2,
    "weights": 3,
    "config": 4,
    "steps": 5,
    "trainer": 6,
    "train": 7, "evaluate": 7,
    "serving": 8, "tools": 8,
    "main": 9, "export": 9, "infer": 9, "sweep": 9,
}
COMMANDS = ["kdjax.main", "kdjax.infer", "kdjax.export", "kdjax.sweep", "kdjax.tools.bench",
            "kdjax.tools.bench_input", "kdjax.tools.cache_teacher", "kdjax.tools.prepare_data",
            "kdjax.tools.diagnose"]
ARGPARSE_COMMANDS = ["kdjax.tools.convert", "kdjax.tools.verify_golden"]


def _modules():
    out = {}
    for directory, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                module = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                out[module[:-len(".__init__")] if module.endswith(".__init__") else module] = path
    return out


def _imports(path, modules, top_level_only):
    tree = ast.parse(open(path).read())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("kdjax"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kdjax"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules)
    return {m for m in found if m in modules}


def _part(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "kdjax"


def test_at_most_ten_top_level_modules():
    top = sorted(n for n in os.listdir(PACKAGE) if n.endswith(".py"))
    assert len(top) <= 10, top


def test_no_import_cycles_at_module_level():
    modules = _modules()
    graph = {m: _imports(p, modules, top_level_only=True) - {m} for m, p in modules.items()}
    for module in list(graph):  # importing a.b.c first imports the packages a.b and a
        parent = module.rsplit(".", 1)[0]
        if parent in graph and parent != module:
            graph[module].add(parent)
    state = {}

    def visit(m, stack):
        state[m] = "open"
        for n in graph[m]:
            if state.get(n) == "open":
                cycle = stack[stack.index(n):] + [n]
                # a package importing its own submodules (registration) is how registries load, not a cycle
                root = min(cycle, key=len)  # whichever member the search happened to start from
                if not all(c.startswith(root + ".") or c == root for c in cycle):
                    pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            elif n not in state:
                visit(n, stack + [n])
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m, [m])


def test_imports_point_down_the_layers():
    modules = _modules()
    wrong = collections.defaultdict(set)
    for module, path in modules.items():
        a = _part(module)
        for target in _imports(path, modules, top_level_only=False):
            b = _part(target)
            if a != b and LAYERS[b] >= LAYERS[a]:
                wrong[f"{a} -> {b}"].add(module)
    assert not wrong, dict(wrong)
    assert set(map(_part, modules)) <= set(LAYERS), "a new package: give it a layer here and in docs/architecture.md"


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS + ARGPARSE_COMMANDS)
def test_help_lists_the_commands_own_flags(command):
    out = subprocess.run([sys.executable, "-m", command, "--help"], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"python -m {command}" in out.stdout
    flags = [line for line in out.stdout.splitlines() if re.match(r"\s+(-\w[ ,\w]*, )?--\w", line)]
    assert len(flags) >= 2, out.stdout  # argparse commands list -h/--help and their own options
    assert "helpfull" not in out.stdout


@pytest.mark.slow
def test_a_typo_in_a_flag_is_one_line_pointing_at_help():
    out = subprocess.run([sys.executable, "-m", "kdjax.main", "--config=configs/dkd.py", "--workdr=x"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "workdir" in lines[0] and "--help" in lines[0], out.stderr


def test_test_file_names_are_unique():
    """pytest imports test files by basename (no __init__.py in tests/): two with one name fail collection."""
    names = collections.Counter(name for directory, _, files in os.walk(os.path.join(REPO, "tests"))
                                for name in files if name.startswith("test_") and name.endswith(".py"))
    assert [n for n, c in names.items() if c > 1] == []
