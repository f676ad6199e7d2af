"""Write (or check) a challenge submission folder.

    python tools/make_submission.py PRED_DIR TEST_IMAGES_DIR OUT_DIR [--sample-submission CSV]
    python tools/make_submission.py --check OUT_DIR [--test-images DIR] [--sample-submission CSV]

Writes ``OUT_DIR/submission.csv`` and ``OUT_DIR/predictions/<id>_label.tiff`` atomically.
The logic is :func:`cellfuse.submission.submit_main`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from cellfuse.submission import submit_main

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return submit_main(argv)


if __name__ == "__main__":
    from cellfuse.entry import run_tool

    sys.exit(run_tool(main))
