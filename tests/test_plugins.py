"""The core reaches the model packages by role (cellfuse/plugins.py), never by import: every
role the code asks for is declared in pyproject.toml, every declared role loads, and a
missing or broken one is a one-line error."""

from __future__ import annotations

import ast
import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest
import tomllib
from conftest import ROOT

from cellfuse import plugins
from cellfuse.plugins import GROUP, PluginError, plugin


def pyproject_roles() -> dict[str, str]:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["project"]["entry-points"][GROUP]


def asked_roles() -> dict[str, str]:
    """Role names the source asks for: ``plugin("x")`` and ``run_in_child("x", ...)``."""
    out = {}
    for path in sorted((ROOT / "cellfuse").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("plugin", "run_in_child")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and ":" not in node.args[0].value
            ):
                out[node.args[0].value] = str(path.relative_to(ROOT))
    return out


def test_every_role_the_core_asks_for_is_declared():
    asked, declared = asked_roles(), pyproject_roles()
    assert len(asked) >= 15  # the CLI, the pipeline, the evaluation and the preflight
    missing = {r: f for r, f in asked.items() if r not in declared}
    assert not missing, f"asked for but not in pyproject.toml: {missing}"
    unused = set(declared) - set(asked)
    assert not unused, f"declared but never asked for: {unused}"


def test_every_declared_role_loads_and_the_environment_is_current():
    """The installed metadata matches pyproject.toml (else: re-run tools/setup.sh), and each
    target imports (the full environment has every extra)."""
    declared = pyproject_roles()
    installed = {
        ep.name: ep.value
        for dist in plugins.distributions()
        for ep in dist.entry_points.select(group=GROUP)
    }
    assert installed == declared
    for name in declared:
        assert plugin(name) is not None


def test_a_checkout_without_installed_metadata_finds_its_roles(monkeypatch):
    """No distribution declares anything (a checkout run without `pip install -e .`): the
    checkout's pyproject.toml still declares every role, and one loads."""
    monkeypatch.setattr(plugins, "distributions", lambda: [])
    plugins.declared.cache_clear()
    try:
        found = {n: ep.value for n, ep in plugins.declared().items()}
        assert found == pyproject_roles()
        assert plugins.declared("cellfuse.teachers")["student"].value == (
            "student.as_teacher:StudentAsTeacher"
        )
        assert found["distill"] == "student.distill:distill"
        assert plugins.declared()["distill"].load().__name__ == "distill"
    finally:
        plugins.declared.cache_clear()


def test_an_undeclared_role_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(plugins, "declared", lambda: {})
    plugin.cache_clear()
    try:
        with pytest.raises(PluginError, match="no package provides 'distill'.*setup.sh") as e:
            plugin("distill")
    finally:
        plugin.cache_clear()
    assert "\n" not in str(e.value)


def test_a_role_whose_package_is_missing_names_the_extras(monkeypatch):
    ep = EntryPoint("distill", "cellfuse_no_such_package.mod:fn", GROUP)
    monkeypatch.setattr(plugins, "declared", lambda: {"distill": ep})
    plugin.cache_clear()
    try:
        with pytest.raises(PluginError, match=r"not installed.*cellfuse\[ml\]"):
            plugin("distill")
    finally:
        plugin.cache_clear()


def test_the_cli_reaches_a_role_and_imports_no_model_package_until_then():
    """Building the whole command line and the pipeline module imports no model package and
    no torch; a command that needs one (``export --help`` does not; ``suggest`` does) loads
    it through its role."""
    code = (
        "import sys\n"
        "from cellfuse.app.cli import build_parser, main\n"
        "import cellfuse.app.pipeline, cellfuse.app.evaluation\n"
        "build_parser()\n"
        "heavy = {'teachers', 'student', 'ensemble', 'torch', 'cellfuse.nn'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m == 'cellfuse.nn'))\n"
        "main(['suggest', '--help'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    first, _, rest = out.stdout.partition("\n")
    assert first == "[]", first
    assert "--n" in rest, out.stdout + out.stderr  # suggest's own help, from ensemble/


def test_another_package_adds_a_teacher_type_by_entry_point(tmp_path):
    """A lab's own package declares ``[cellfuse.teachers] labnet = lab_teacher:LabTeacher``:
    ``build_teacher(dict(type="labnet"))`` builds it; it cannot replace a built-in type."""
    (tmp_path / "lab_teacher.py").write_text(
        "from cellfuse.model_api import Teacher\n"
        "class LabTeacher(Teacher):\n"
        "    name = 'labnet'\n"
        "    def __init__(self, depth=1):\n"
        "        self.depth = depth\n"
        "    def fit(self, train, val, work_dir): ...\n"
        "    def load(self, checkpoint): ...\n"
        "    def predict(self, image): ...\n"
    )
    info = tmp_path / "lab_teacher-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lab-teacher\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[cellfuse.teachers]\nlabnet = lab_teacher:LabTeacher\nflowunet = lab_teacher:LabTeacher\n"
    )
    code = (
        "from teachers import build_teacher, teacher_class\n"
        "t = build_teacher(dict(type='labnet', depth=3))\n"
        "print(type(t).__name__, t.depth, teacher_class('flowunet').__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**__import__("os").environ, "PYTHONPATH": f"{tmp_path}:{ROOT}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.stdout.split() == ["LabTeacher", "3", "FlowUNetTeacher"], out.stdout + out.stderr
