"""The import rules of the package's layers, read from the source (imports inside functions
included): a layer imports only layers below it, and the watchdog only the contract and the
error types. A move that breaks a rule fails here, not in a review."""

from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "hermes_cron")

# Lowest first. errors and faults are the base every layer may use.
LAYERS = ["base", "logic", "contract", "store", "engine", "app", "cli"]
BASE = {"hermes_cron", "hermes_cron.errors", "hermes_cron.faults"}
WATCHDOG_MAY_IMPORT = ("hermes_cron.contract", "hermes_cron.errors")


def layer_of(module: str) -> str:
    if module in BASE:
        return "base"
    if module == "hermes_cron.__main__":  # `python -m hermes_cron`: the command line
        return "cli"
    parts = module.split(".")
    assert parts[0] == "hermes_cron" and parts[1] in LAYERS, f"{module} is in no layer"
    return parts[1]


def imports(path: str, package: str) -> list[tuple[int, str]]:
    tree = ast.parse(open(path).read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name == "hermes_cron":  # from hermes_cron import x: x may be a module
                found += [(node.lineno, f"hermes_cron.{a.name}" if a.name in LAYERS else "hermes_cron")
                          for a in node.names]
            else:
                found.append((node.lineno, name))
    return found


def modules(folder: str, prefix: str):
    for root, _, files in os.walk(folder):
        for fn in sorted(files):
            if fn.endswith(".py"):
                path = os.path.join(root, fn)
                rel = os.path.relpath(path, folder)[:-3].replace(os.sep, ".")
                name = prefix if rel == "__init__" else f"{prefix}.{rel.removesuffix('.__init__')}"
                package = name if fn == "__init__.py" else name.rpartition(".")[0]
                yield path, name, package


def ours(name: str) -> bool:
    return name == "hermes_cron" or name.startswith("hermes_cron.")


def test_every_module_is_in_a_layer():
    for _, name, _ in modules(PACKAGE, "hermes_cron"):
        layer_of(name)


def test_lower_layers_never_import_higher_ones():
    bad = []
    for path, name, package in modules(PACKAGE, "hermes_cron"):
        mine = LAYERS.index(layer_of(name))
        for line, target in imports(path, package):
            if not ours(target) or name == "hermes_cron":
                continue  # the package's __init__ only re-exports, lazily
            theirs = LAYERS.index(layer_of(".".join(target.split(".")[:2]) if target.count(".") else target))
            if theirs > mine:
                bad.append(f"{os.path.relpath(path, ROOT)}:{line} ({layer_of(name)}) imports {target} "
                           f"({LAYERS[theirs]})")
    assert not bad, "\n".join(bad)


def test_the_watchdog_imports_only_the_contract_and_the_errors():
    bad = []
    for path, name, package in modules(os.path.join(ROOT, "watchdog"), "hermes_cron_watchdog"):
        for line, target in imports(path, package):
            if ours(target) and not any(target == m or target.startswith(m + ".") for m in WATCHDOG_MAY_IMPORT):
                bad.append(f"{os.path.relpath(path, ROOT)}:{line} imports {target}")
    assert not bad, "\n".join(bad)


def test_the_rules_catch_a_breach(tmp_path):
    """The checker itself: a logic module importing the engine is reported."""
    pkg = tmp_path / "hermes_cron" / "logic"
    pkg.mkdir(parents=True)
    (pkg / "bad.py").write_text("def f():\n    from hermes_cron.engine import daemon\n")
    found = imports(str(pkg / "bad.py"), "hermes_cron.logic")
    assert found == [(2, "hermes_cron.engine")]
    assert LAYERS.index(layer_of("hermes_cron.engine")) > LAYERS.index(layer_of("hermes_cron.logic.bad"))


@pytest.mark.parametrize("path", [p for p, _, _ in modules(PACKAGE, "hermes_cron")] +
                         [p for p, _, _ in modules(os.path.join(ROOT, "watchdog"), "hermes_cron_watchdog")],
                         ids=lambda p: os.path.relpath(p, ROOT))
def test_no_module_is_long(path):
    """One job per module: about 400 lines at most."""
    with open(path) as f:
        assert sum(1 for _ in f) <= 420
