"""Import contracts: the arrows between the three packages that must never exist, checked on
the source (an ast walk of every module: top-level, in functions, under TYPE_CHECKING, and
importlib calls with a literal name) and at run time (what importing a package pulls in).

    neuro_cli --(HTTP, and a subprocess: python -m neuro_server)--> neuro_server
        \\                                                              /
         `--> neuro_sdk <---------- neuro_sdk._wire only -------------'

- the SDK imports neither the CLI nor the server, nor any UI library (style R8);
- the server never imports the CLI, and of the SDK only its wire vocabulary (``_wire``);
- the CLI never imports the server (it starts it as a subprocess);
- ``neuro_sdk._wire`` is pure: the standard library only;
- no import loop among the server's modules, counting every import (one in a function or
  under TYPE_CHECKING only hides a loop: the modules still need each other).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("neuro_sdk", "neuro_cli", "neuro_server")
UI = ("click", "rich", "prompt_toolkit")

#: package -> the imports it must never make: a name forbids it and everything below it
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "neuro_sdk": ("neuro_cli", "neuro_server", *UI),
    "neuro_server": ("neuro_cli",),
    "neuro_cli": ("neuro_server",),
}
#: what the server may import of the SDK
SERVER_MAY_USE_OF_SDK = ("neuro_sdk._wire",)


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the module (or package attribute) imported, absolute
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _absolute(module: str, is_package: bool, level: int, name: str | None) -> str:
    if not level:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([name] if name else [])])


def imports_of(module: str, path: Path, known: set[str]) -> Iterator[Import]:
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"

    for node in ast.walk(tree):  # every import: top-level, in functions, under TYPE_CHECKING
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, is_package, node.level, node.module)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                # ``from pkg import mod`` imports the module; ``from mod import name``, mod
                yield Import(module, sub if sub in known else base, node.lineno)
        elif isinstance(node, ast.Call) and (name := _literal_import(node)) is not None:
            yield Import(module, name, node.lineno)


def _literal_import(call: ast.Call) -> str | None:
    """The literal name of ``importlib.import_module("x")`` or ``__import__("x")``."""
    f = call.func
    named = (isinstance(f, ast.Attribute) and f.attr == "import_module") or (
        isinstance(f, ast.Name) and f.id in ("import_module", "__import__")
    )
    if (
        named
        and call.args
        and isinstance(call.args[0], ast.Constant)
        and isinstance(call.args[0].value, str)
    ):
        return call.args[0].value
    return None


def all_imports() -> list[Import]:
    found = modules()
    known = set(found)
    return [i for name, path in found.items() for i in imports_of(name, path, known)]


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_import_contracts_hold_in_the_source() -> None:
    broken = []
    for imp in all_imports():
        package = imp.module.split(".")[0]
        bad = [f for f in FORBIDDEN[package] if _under(imp.target, f)]
        if (
            package == "neuro_server"
            and _under(imp.target, "neuro_sdk")
            and not any(_under(imp.target, ok) for ok in SERVER_MAY_USE_OF_SDK)
        ):
            bad.append("neuro_sdk (but its _wire)")
        if bad:
            broken.append(f"{imp.module}:{imp.line} imports {imp.target}")
    assert broken == []


def test_import_contracts_the_wire_module_is_pure() -> None:
    found = modules()
    imported = {
        i.target.split(".")[0]
        for i in imports_of("neuro_sdk._wire", found["neuro_sdk._wire"], set(found))
    }
    assert imported - {"__future__"} <= set(sys.stdlib_module_names), imported


def test_import_contracts_no_import_loop_in_the_server() -> None:
    graph: dict[str, set[str]] = {}
    for imp in all_imports():
        if (
            imp.module.startswith("neuro_server")
            and _under(imp.target, "neuro_server")
            and imp.target != imp.module
        ):
            graph.setdefault(imp.module, set()).add(imp.target)
    loops = [sorted(c) for c in _cycles(graph)]
    assert loops == [], "import loops: " + "; ".join(" <-> ".join(c) for c in loops)


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return found


PROBE = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
for info in pkgutil.walk_packages(package.__path__, sys.argv[1] + "."):
    if not info.name.endswith("__main__"):
        importlib.import_module(info.name)
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize("package", PACKAGES)
def test_import_contracts_hold_at_run_time(package: str) -> None:
    """Importing every module of a package pulls in nothing it must not import."""
    r = subprocess.run(
        [sys.executable, "-c", PROBE, package],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    loaded = json.loads(r.stdout)
    assert [m for m in loaded if any(_under(m, f) for f in FORBIDDEN[package])] == []


def test_import_contracts_the_sdk_alone() -> None:
    """``import neuro_sdk``, as a library user does: none of the CLI, the server or a UI."""
    code = "import json, sys, neuro_sdk; print(json.dumps(sorted(sys.modules)))"
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    loaded = json.loads(r.stdout)
    assert [m for m in loaded if any(_under(m, f) for f in FORBIDDEN["neuro_sdk"])] == []


def test_no_server_module_over_500_lines() -> None:
    """A server module a newcomer can read whole: split one that grows past 500 lines."""
    long = {
        name: n
        for name, path in modules().items()
        if name.startswith("neuro_server") and (n := len(path.read_text().splitlines())) > 500
    }
    assert long == {}
