"""Score pseudo-labels against truth: ``python tools/eval_pseudo.py PSEUDO_DIR TRUTH_DIR [--json OUT]``.

Typical use, the val split treated as unlabeled::

    python tools/pseudo_label.py configs/ensemble/pseudo_cpu.py \
        --images ../shared/data/dsb2018/val/images --out work/pseudo/val
    python tools/eval_pseudo.py work/pseudo/val ../shared/data/dsb2018/val/labels --json work/pseudo/val_quality.json

Prints (and writes) JSON: F1@0.5/@0.75 and pooled precision/recall of each teacher and of
the fused labels, the fraction of clusters kept, the ignored pixel fraction and the pixel
accuracy outside the ignore mask (see ensemble/quality.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cellfuse.io import print_json  # noqa: E402
from ensemble.quality import pseudo_quality  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("pseudo_dir")
    ap.add_argument("truth_dir")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args(argv)
    result = pseudo_quality(args.pseudo_dir, args.truth_dir)
    return print_json(result, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
