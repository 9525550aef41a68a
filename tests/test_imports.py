"""The package is layered: a few rooms (top-level packages), no import cycle among its modules or its rooms, the
config schema imports no component it configures, and no import of r1zero hides inside a function.

Every import counts, at module level or inside a function, and importing ``a.b.c`` counts as importing the
package ``a.b`` too (Python runs its ``__init__``), except from inside ``a.b`` itself. docs/design.md draws the rooms.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

SRC = REPO / "src"
PKG = "r1zero"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in (SRC / PKG).rglob("*.py")}


def _with_parents(name: str, modules: dict[str, Path]) -> list[str]:
    """``name`` and the packages above it inside r1zero (not the root package, which imports nothing)."""
    parts = name.split(".")
    out = [".".join(parts[:i]) for i in range(2, len(parts) + 1)]
    return [m for m in out if m in modules]


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [mod] + [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in modules]
            for t in targets:
                if t.split(".")[0] == PKG:
                    # a package's own modules run inside its import: no edge back to it
                    graph[name].update(m for m in _with_parents(t, modules)
                                       if m != name and not name.startswith(m + "."))
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


#: The rooms of src/r1zero besides ``train.py`` (the recipe) and ``schema/`` (the config), at most 8.
ROOMS = {"algos", "data", "evaluate", "learner", "model", "reward", "rollout", "run"}
#: Function-local imports of r1zero that stay, each with its reason (none may hide a cycle).
LOCAL_IMPORTS = {
    # only a reward=fn worker needs it, and it imports the schema (omegaconf): a math worker starts without it
    ("r1zero.reward.worker", "r1zero.reward.custom"),
}


def _room(module: str) -> str:
    return module.split(".")[1] if module.count(".") else module


def test_at_most_eight_rooms_beside_the_recipe_and_the_schema():
    entries = {p.stem if p.suffix == ".py" else p.name for p in (SRC / PKG).iterdir()
               if p.name != "__pycache__" and (p.suffix == ".py" or (p / "__init__.py").is_file())}
    assert entries - {"__init__", "train", "schema"} == ROOMS
    assert len(ROOMS) <= 8


def test_rooms_import_each_other_one_way():
    graph = import_graph()
    rooms: dict[str, set[str]] = {}
    for m, targets in graph.items():
        rooms.setdefault(_room(m), set()).update(_room(t) for t in targets if _room(t) != _room(m))
    cycle = find_cycle(rooms)
    assert cycle is None, "rooms in a cycle: " + " -> ".join(cycle)


def test_the_schema_imports_no_component():
    """The config schema is the bottom floor: every room may import it, it imports none of them."""
    graph = import_graph()
    up = {m: sorted(t for t in targets if _room(t) != "schema")
          for m, targets in graph.items() if _room(m) == "schema"}
    assert not {m: t for m, t in up.items() if t}


def _local_imports() -> set[tuple[str, str]]:
    """(module, imported r1zero module) for every import of r1zero inside a function."""
    found = set()
    for name, path in _modules().items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for fn in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom):
                    if node.level:
                        base = package.split(".")[: len(package.split(".")) - node.level + 1]
                        mod = ".".join(base + ([node.module] if node.module else []))
                    else:
                        mod = node.module or ""
                    if mod.split(".")[0] == PKG:
                        found.add((name, mod))
                elif isinstance(node, ast.Import):
                    found.update((name, a.name) for a in node.names if a.name.split(".")[0] == PKG)
    return found


def test_no_import_of_r1zero_hides_in_a_function():
    assert _local_imports() == LOCAL_IMPORTS


def test_entry_points_are_not_imported_by_the_library():
    graph = import_graph()
    entry = {"r1zero.train", "r1zero.evaluate.__main__", "r1zero.run.dryrun"}
    users = {m: sorted(n for n in graph[m] if n in entry) for m in graph if m not in entry}
    assert not {m: u for m, u in users.items() if u}
