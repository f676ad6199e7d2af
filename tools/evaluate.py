"""Score predicted label images against truth with the NeurIPS 2022 CellSeg F1.

    python tools/evaluate.py TRUTH_DIR PRED_DIR [--out DIR] [--thresholds 0.5 0.6 ...]

Prints a summary table and writes ``per_image.csv`` and ``summary.json`` into ``--out``
(default ``PRED_DIR/../eval``). The logic is :func:`cellfuse.metric.evaluate_main`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from cellfuse.metric import evaluate_main

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return evaluate_main(argv)


if __name__ == "__main__":
    from cellfuse.entry import run_tool

    sys.exit(run_tool(main))
