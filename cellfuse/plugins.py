"""What the core asks of the model packages, looked up by name, never imported by name.

The core (all of ``cellfuse/``, its command line and pipeline included) imports no model
package. Where it needs one (the pipeline trains teachers, fuses their votes, distills and
runs the student), it asks for a *role* by name::

    distill = plugin("distill")        # -> student.distill:distill
    distill(cfg, work_dir, resume=False)

Each package declares the roles it fills as entry points of the group ``cellfuse.plugins``
in ``pyproject.toml`` (``[project.entry-points."cellfuse.plugins"]``), the standard Python
plugin mechanism: the dependency points from the model packages to the core, and another
package (a lab's own teacher training, a different student) can fill a role by declaring
it, with no change to the core. A role's module is imported only when the role is first
asked for, so ``import cellfuse`` stays numpy-only and a slide-only install (no torch) runs
``cellfuse predict --onnx`` without touching the training code.

Run from a source checkout, the checkout's own ``pyproject.toml`` declares the roles too, so
an uninstalled checkout (``python -m cellfuse`` from the repo root) works as before.

Errors are one line: a role nobody declares (the package is not installed: run
``tools/setup.sh`` or ``pip install -e .``), or a declared role whose module cannot be
imported (a missing extra, e.g. ``pip install 'cellfuse[train]'``).
"""

from __future__ import annotations

import functools
from importlib.metadata import EntryPoint, distributions
from typing import Any

from cellfuse.config import package_parent
from cellfuse.errors import CellfuseError

GROUP = "cellfuse.plugins"
# teacher types beyond the built-in ones (teachers/__init__.py): "name = module:Class"
TEACHER_GROUP = "cellfuse.teachers"


class PluginError(CellfuseError):
    """A role is not declared, or its module cannot be imported."""


@functools.cache
def declared(group: str = GROUP) -> dict[str, EntryPoint]:
    """Every entry point of ``group`` (default: the roles): name -> entry point, from every
    installed distribution's metadata in ``sys.path`` order (the first declaration of a name
    wins), then those of the checkout's ``pyproject.toml`` (:func:`checkout_declared`) for
    names the metadata lacks.

    Read from each distribution, not through ``entry_points(group=...)``, which keeps one
    distribution per name: a stale ``cellfuse.egg-info`` in a checkout (on ``sys.path``
    when commands run from there) would hide every role the installed metadata declares.

    Read once per process and group (the scan of every distribution takes ~0.1 s); the
    returned dict is shared: read it, do not change it.
    """
    out: dict[str, EntryPoint] = {}
    for dist in distributions():
        for ep in dist.entry_points.select(group=group):
            out.setdefault(ep.name, ep)
    for name, ep in checkout_declared(group).items():
        out.setdefault(name, ep)
    return out


def checkout_declared(group: str = GROUP) -> dict[str, EntryPoint]:
    """The entry points ``pyproject.toml`` declares when cellfuse runs from a source checkout
    (the file next to the ``cellfuse`` package): a checkout that was never installed, or one
    whose pyproject gained a role since the last install, still finds its roles. ``{}`` for
    an installed package (no pyproject beside it)."""
    path = package_parent() / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the installed metadata has to do
        return {}
    with open(path, "rb") as fh:
        table = tomllib.load(fh).get("project", {}).get("entry-points", {}).get(group, {})
    return {name: EntryPoint(name, value, group) for name, value in table.items()}


@functools.cache
def plugin(name: str) -> Any:
    """The object that fills role ``name`` (imported on first use, then cached)."""
    eps = declared()
    if name not in eps:
        raise PluginError(
            f"no package provides {name!r} (entry point group {GROUP!r}); is cellfuse installed? "
            "run `bash tools/setup.sh` or `pip install -e .`"
        )
    try:
        return eps[name].load()
    except ImportError as e:
        raise PluginError(
            f"{name!r} ({eps[name].value}) needs a package that is not installed: {e}; "
            "install cellfuse with its extras (`pip install 'cellfuse[ml]'`)"
        ) from e
