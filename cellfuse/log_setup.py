"""The one logging setup of every entry point (the CLI, child processes, Ray workers'
drivers): INFO to stderr, optionally also to a file. Library modules only call
``logging.getLogger(__name__)``."""

from __future__ import annotations

import logging
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_file: str | Path | None = None, level: int = logging.INFO) -> None:
    """Configure the root logger (replacing earlier handlers)."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file is not None:
        log_file = Path(log_file)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=level, format=FORMAT, handlers=handlers, force=True)


__all__ = ["setup_logging", "FORMAT"]
