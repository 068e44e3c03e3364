"""brainlib's modules import each other without a cycle."""
import ast
import json
from pathlib import Path

import brainlib

PACKAGE = Path(brainlib.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the brainlib modules it imports anywhere in its source (top level or in functions)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
        graph[name] = {t for t in targets if t in modules and t != name and t != "brainlib"}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, trail + [nxt])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_no_import_cycle_between_brainlib_modules():
    graph = import_graph()
    assert {"brainlib.training.trainer", "brainlib.eval.evaluate", "brainlib.batch.summary",
            "brainlib.synthesis.projection"} <= set(graph)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the check itself works


def test_the_graph_sees_the_edges_that_shims_used_to_hide():
    graph = import_graph()
    assert "brainlib.eval.metrics" in graph["brainlib.synthesis.projection"]
    assert "brainlib.training.checkpoints" in graph["brainlib.synthesis.sampling"]


def _top_level_names(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):  # `A = 1` and `A, B = 1, 2`
            names |= {n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import):  # a module it uses (tests may patch `module.time`)
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def _defined_in(module: str, modules: dict[str, Path]) -> set[str] | None:
    """The names module `module` defines itself (a package also gives its submodules); None if no such module."""
    path = modules.get(module)
    if path is None:
        return None
    defined = _top_level_names(path)
    if path.name == "__init__.py":
        defined |= {p.stem for p in path.parent.glob("*.py")}
        defined |= {p.name for p in path.parent.iterdir() if p.is_dir()}
    return defined


def _imports_of_names_not_defined_where_imported(sources: list[tuple[str, str]]) -> list[str]:
    """`from brainlib.x import name`, or `alias.name` after `import brainlib.x as alias` /
    `from brainlib import x as alias`, where module brainlib.x does not define `name` itself
    (a re-export) or does not exist."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    found = []
    for where, source in sources:
        tree = ast.parse(source)
        aliases: dict[str, str] = {}  # local name -> brainlib module
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("brainlib"):
                defined = _defined_in(node.module, modules)
                if defined is None:
                    found.append(f"{where}: no module {node.module}")
                    continue
                found += [f"{where}: {node.module}.{a.name}" for a in node.names if a.name not in defined]
                aliases |= {a.asname or a.name: f"{node.module}.{a.name}" for a in node.names
                            if f"{node.module}.{a.name}" in modules}
            elif isinstance(node, ast.Import):
                aliases |= {a.asname: a.name for a in node.names if a.asname and a.name in modules}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                module = aliases[node.value.id]
                if node.attr not in _defined_in(module, modules):
                    found.append(f"{where}: {module}.{node.attr}")
    return sorted(set(found))


def test_every_caller_imports_from_where_the_code_lives():
    root = PACKAGE.parent
    sources = [(str(p.relative_to(root)), p.read_text())
               for folder in ("brainlib", "tests", "benchmarks", "tools") for p in (root / folder).rglob("*.py")]
    for notebook in sorted((root / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        sources.append((notebook.name, "\n".join(line for line in code.splitlines() if not line.startswith(("%",
                                                                                                            "!")))))
    assert _imports_of_names_not_defined_where_imported(sources) == []
    assert _imports_of_names_not_defined_where_imported(
        [("probe", "from brainlib.training.trainer import resolve_device\nfrom brainlib.metrics import fid\n"
                   "from brainlib.training import trainer as training\ntraining.format_schedule()")]) == [
        "probe: brainlib.training.trainer.format_schedule", "probe: brainlib.training.trainer.resolve_device",
        "probe: no module brainlib.metrics"]  # the check works
