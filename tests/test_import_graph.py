"""The layering of the code base, read from its import statements (top-level and lazy ones).

    core  cellfuse/ (io, preprocess, instances, flows, metric, tiling, config, manifest,
          stages, model_api, plugins, and the CLI and pipeline in cellfuse/app/):
          numpy/scipy; imports no model package and no torch, not even lazily: it asks
          for the model packages' functions by role name (cellfuse/plugins.py, the entry
          points in pyproject.toml)
    nn    cellfuse/nn/: the torch building blocks teachers and student share, and the GPU
          preflight
    teachers/   student/          never import each other
    ensemble/                     builds teachers by registry name; never imports student/
    tools/                        scripts; nothing imports them

The student reaches the teachers' registry as teacher type ``student``, an entry point it
declares in ``pyproject.toml`` (group ``cellfuse.teachers``); teachers/ never names it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from conftest import ROOT

PACKAGES = ("cellfuse", "teachers", "student", "ensemble", "tools")

FORBIDDEN = {
    "core": {"teachers", "student", "ensemble", "tools", "nn", "torch", "torchvision"},
    "nn": {"teachers", "student", "ensemble", "tools"},
    "teachers": {"student", "ensemble", "tools"},
    "student": {"teachers", "ensemble", "tools"},
    "ensemble": {"student", "tools"},
    "tools": set(),
}
ORDER = ["core", "nn", "teachers", "student", "ensemble", "tools"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> str | None:
    """The layer of a module name, or of a third-party one that matters (torch)."""
    top = module.split(".")[0]
    if module.startswith("cellfuse.nn"):
        return "nn"
    if top == "cellfuse":
        return "core"
    if top in ("teachers", "student", "ensemble", "tools", "torch", "torchvision"):
        return top
    return None


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level) for every import statement of a file."""
    tree = ast.parse(path.read_text(), str(path))
    top_level = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in top_level) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, id(node) in top_level))
    return out


def source_files() -> list[Path]:
    return [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]


def test_imports_point_one_way():
    bad = []
    for path in source_files():
        src = module_name(path)
        src_layer = layer(src)
        for target, _ in imports(path):
            t_layer = layer(target)
            if t_layer in FORBIDDEN[src_layer]:
                bad.append(f"{src} ({src_layer}) imports {target} ({t_layer})")
    assert not bad, "\n".join(bad)


def test_nothing_imports_tools():
    bad = [
        f"{module_name(p)} imports {t}"
        for p in source_files()
        if not module_name(p).startswith("tools")
        for t, _ in imports(p)
        if t.split(".")[0] == "tools"
    ]
    assert not bad, bad


def test_no_cycle_between_layers():
    """Layers (all imports, lazy ones too) form a DAG that respects ORDER."""
    edges = defaultdict(set)
    for path in source_files():
        a = layer(module_name(path))
        for target, _ in imports(path):
            b = layer(target)
            if b in ORDER and b != a:
                edges[a].add(b)
    for a, targets in edges.items():
        for b in targets:
            assert ORDER.index(b) < ORDER.index(a), f"{a} imports {b}: a layer above it"


def test_no_import_cycle_between_modules():
    """Module-level imports (those run at import time) form no cycle."""
    ours = {module_name(p): p for p in source_files()}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in ours.items():
        for target, top in imports(path):
            if not top:
                continue
            # `from pkg.mod import x` depends on pkg.mod; `from pkg import mod` on pkg
            while target and target not in ours:
                target = target.rpartition(".")[0]
            if target and target != name:
                graph[name].add(target)
    state: dict[str, int] = {}

    def visit(n: str, stack: list[str]) -> None:
        state[n] = 1
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*stack, n, m]))
            if m not in state:
                visit(m, [*stack, n])
        state[n] = 2

    for n in sorted(ours):
        if n not in state:
            visit(n, [])


def test_the_student_is_a_teacher_type_teachers_never_name():
    """The student declares itself as teacher type ``student`` (an entry point); teachers/
    neither imports nor names the student package."""
    from teachers import TEACHER_REGISTRY

    assert TEACHER_REGISTRY["student"] == "student.as_teacher:StudentAsTeacher"
    for path in sorted((ROOT / "teachers").rglob("*.py")):
        assert "student." not in path.read_text(), path
