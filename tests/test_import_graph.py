"""The arrows of ../shared/DESIGN.md, checked on the source: no import cycle between funnel_tf's
packages (top-level modules count as packages of one), modeling/ imports none of the packages above
it and checkpoints/ none of the run packages. Parsed with `ast`, so lazy (function-level) imports
count too; nothing is imported."""

import ast
import pathlib
import sys
from typing import Dict, Set, Tuple

ROOT = pathlib.Path(__file__).resolve().parents[1] / "funnel_tf"

RUNS = {"engine", "pretraining", "finetuning"}
FORBIDDEN = {
    "modeling": {"checkpoints", "text", "tasks"} | RUNS,
    "checkpoints": {"tasks"} | RUNS,
    "text": {"modeling", "checkpoints", "tasks"} | RUNS,     # features are plain dicts of tensors
    "metrics": {"modeling", "checkpoints", "text", "tasks"} | RUNS,
    "tasks": RUNS,                                            # the engine calls tasks, not back
    "engine": {"pretraining", "finetuning"},                  # it knows the Task interface and a model
    "finetuning": {"pretraining"},                            # a pretraining run is read as a checkpoint
}

# Package pairs (a, b) where a imports b against the arrows because of work still pending in other
# points of issue 21; each names its point. Shrink this as they land; never grow it for new code.
KNOWN_EXCEPTIONS: Set[Tuple[str, str]] = set()  # engine -> pretraining went with 21.2's Task interface


def _package(module: str) -> str:
    """funnel_tf.checkpoints.hf -> "checkpoints"; funnel_tf.config -> "config"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: pathlib.Path) -> Set[str]:
    """Every funnel_tf module `path` imports, at any depth of its code (lazy imports included)."""
    name = _module_name(path)
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("funnel_tf"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".")
                base = base if is_package else base[:-1]
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if not module.startswith("funnel_tf"):
                continue
            if module == "funnel_tf" or (node.level and not node.module):  # from . import x
                found.update(f"{module}.{a.name}" for a in node.names)
            else:
                found.add(module)
    return found


def package_graph() -> Dict[str, Dict[str, Set[str]]]:
    """{package: {imported package: {importing module, ...}}} over every funnel_tf module."""
    graph: Dict[str, Dict[str, Set[str]]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        source = _package(_module_name(path))
        if not source:
            continue  # funnel_tf/__init__.py: the public API imports everything lazily
        for target in map(_package, imports_of(path)):
            if target and target != source:
                graph.setdefault(source, {}).setdefault(target, set()).add(_module_name(path))
    return graph


def _cycles(graph: Dict[str, Dict[str, Set[str]]]):
    """Edges (a, b) that lie on a cycle (b reaches a back), known exceptions left out."""
    edges = {a: {b for b in targets if (a, b) not in KNOWN_EXCEPTIONS} for a, targets in graph.items()}

    def reaches(start, goal):
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(edges.get(node, ()))
        return False

    return sorted((a, b) for a, targets in edges.items() for b in targets if reaches(b, a))


def test_the_parser_sees_lazy_relative_and_package_imports(tmp_path, monkeypatch):
    """The checker itself: function-level, relative and `from funnel_tf import x` imports count."""
    pkg = tmp_path / "funnel_tf" / "modeling"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "m.py").write_text("def f():\n    from funnel_tf.checkpoints import hf\n"
                              "from . import layer\nfrom funnel_tf import text\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path / "funnel_tf")
    assert imports_of(pkg / "m.py") == {"funnel_tf.checkpoints", "funnel_tf.modeling.layer", "funnel_tf.text"}


def test_no_import_cycle_between_packages():
    cycles = _cycles(package_graph())
    graph = package_graph()
    assert not cycles, "\n".join(f"{a} -> {b} (in {sorted(graph[a][b])[:3]})" for a, b in cycles)


def test_lower_layers_do_not_import_higher_ones():
    graph = package_graph()
    wrong = [f"{a} -> {b} (in {sorted(graph[a][b])})" for a, banned in FORBIDDEN.items()
             for b in sorted(banned & set(graph.get(a, {}))) if (a, b) not in KNOWN_EXCEPTIONS]
    assert not wrong, "\n".join(wrong)
