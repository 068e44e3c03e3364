"""brainlib's modules import each other without a cycle; old module paths still import."""
import ast
import importlib
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
    assert {"brainlib.train", "brainlib.eval.evaluate", "brainlib.batch.summary"} <= set(graph)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the check itself works


def test_modules_moved_into_subpackages_keep_their_old_import_paths():
    for old, new in brainlib.MOVED_MODULES.items():
        assert importlib.import_module(old) is importlib.import_module(new)
    from brainlib.evaluate import metric_rows
    from brainlib.metrics import fid
    assert metric_rows.__module__ == "brainlib.eval.report" and fid.__module__ == "brainlib.eval.metrics"
