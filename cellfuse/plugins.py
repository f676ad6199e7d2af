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

Errors are one line: a role nobody declares (the package is not installed: run
``tools/setup.sh`` or ``pip install -e .``), or a declared role whose module cannot be
imported (a missing extra, e.g. ``pip install 'cellfuse[train]'``).
"""

from __future__ import annotations

import functools
from importlib.metadata import EntryPoint, distributions
from typing import Any

from cellfuse.errors import CellfuseError

GROUP = "cellfuse.plugins"
# teacher types beyond the built-in ones (teachers/__init__.py): "name = module:Class"
TEACHER_GROUP = "cellfuse.teachers"


class PluginError(CellfuseError):
    """A role is not declared, or its module cannot be imported."""


def declared(group: str = GROUP) -> dict[str, EntryPoint]:
    """Every entry point of ``group`` (default: the roles): name -> entry point, from every
    installed distribution's metadata in ``sys.path`` order (the first declaration of a name
    wins).

    Read from each distribution, not through ``entry_points(group=...)``, which keeps one
    distribution per name: a stale ``cellfuse.egg-info`` in a checkout (on ``sys.path``
    when commands run from there) would hide every role the installed metadata declares.
    """
    out: dict[str, EntryPoint] = {}
    for dist in distributions():
        for ep in dist.entry_points.select(group=group):
            out.setdefault(ep.name, ep)
    return out


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
