"""Score pseudo-labels against truth: ``python tools/eval_pseudo.py PSEUDO_DIR TRUTH_DIR [--json OUT]``.

Typical use, the val split treated as unlabeled::

    python tools/pseudo_label.py configs/ensemble/pseudo_cpu.py \
        --images ../shared/data/dsb2018/val/images --out work/pseudo/val
    python tools/eval_pseudo.py work/pseudo/val ../shared/data/dsb2018/val/labels --json work/pseudo/val_quality.json

Prints (and writes) JSON: F1@0.5/@0.75 and pooled precision/recall of each teacher and of
the fused labels, the fraction of clusters kept, the ignored pixel fraction and the pixel
accuracy outside the ignore mask, the confident cells scored against the true cells outside
the ignore mask (``fused_seen``) and, with ``--config CONFIG`` (the pseudo-label config), the
cached teacher outputs fused again as a predictor with its ``fusion_predict`` parameters
(``fused_predict``; see ensemble/quality.py).
"""

from __future__ import annotations

import argparse

from cellfuse.app.cli import print_json  # noqa: E402
from ensemble.quality import pseudo_quality  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("pseudo_dir")
    ap.add_argument("truth_dir")
    ap.add_argument("--json", help="also write the result here")
    ap.add_argument("--config", help="pseudo-label config: also score its fusion_predict")
    args = ap.parse_args(argv)
    predict = None
    if args.config:
        from cellfuse.config import load_config
        from cellfuse.fusion import FusionParams

        predict = FusionParams.from_config(load_config(args.config), predict=True)
    result = pseudo_quality(args.pseudo_dir, args.truth_dir, predict)
    return print_json(result, args.json)


if __name__ == "__main__":
    from cellfuse.entry import run_tool

    raise SystemExit(run_tool(main))
