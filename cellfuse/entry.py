"""One-line errors for every entry point (the ``cellfuse`` CLI and each ``tools/*.py``).

A failure prints ``error: <file>: <what>`` (a :class:`~cellfuse.errors.CellfuseError`'s
message names its file; an ``OSError`` with a file name is shown the same way; anything
else as ``error: <Type>: <what>``) and the process exits 2. The Python traceback is shown
only with ``--debug`` (anywhere on the command line) or ``CELLFUSE_DEBUG=1``. Ctrl-C exits
130 with ``interrupted``.

Use in a tool::

    if __name__ == "__main__":
        sys.exit(run_tool(main))
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence

from cellfuse.errors import CellfuseError

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def pop_debug(argv: Sequence[str] | None) -> tuple[list[str], bool]:
    """``argv`` (default ``sys.argv[1:]``) without ``--debug``, and whether it was there
    (or ``CELLFUSE_DEBUG`` is set to a non-empty value other than 0)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("CELLFUSE_DEBUG", "0") not in ("", "0")
    return [a for a in args if a != "--debug"], debug


def error_line(exc: BaseException) -> str:
    """The one line for ``exc``: ``error: <file>: <what>`` (or ``error: <Type>: <what>``)."""
    if isinstance(exc, CellfuseError):
        text = str(exc)
    elif isinstance(exc, OSError) and exc.filename:
        text = f"{exc.filename}: {exc.strerror or type(exc).__name__}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    lines = text.strip().splitlines() or [type(exc).__name__]
    # a multi-problem error (cellfuse check) keeps its "error: " lines; others become one line
    if len(lines) > 1 and all(x.startswith("error: ") for x in lines[1:]):
        return "error: " + "\n".join(lines)
    return "error: " + " ".join(" ".join(lines).split())


def report(exc: BaseException, debug: bool) -> int:
    """Print ``exc`` for a user (its traceback first with ``debug``); the exit status."""
    if isinstance(exc, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    print(error_line(exc), file=sys.stderr)
    if not debug and not isinstance(exc, CellfuseError):
        print("(re-run with --debug for the traceback)", file=sys.stderr)
    return EXIT_ERROR


def run_tool(main: Callable[[list[str]], int | None], argv: Sequence[str] | None = None) -> int:
    """Call a tool's ``main(argv)`` (``--debug`` taken out) and turn any exception into one
    line and exit status 2 (see the module docstring); ``main``'s own status otherwise."""
    args, debug = pop_debug(argv)
    try:
        status = main(args)
    except SystemExit:  # argparse's usage errors and explicit exits keep their status
        raise
    except BaseException as exc:  # noqa: BLE001 - every failure becomes one line
        return report(exc, debug)
    return status if isinstance(status, int) else 0
