"""Write the scarce-label and modality-shift inputs (see cellfuse/scarce.py).

``python tools/make_scarce.py --src ../shared/data/dsb2018 --out work/scarce``
writes ``work/scarce/scarce_8``, ``scarce_16``, ``scarce_33``, ``scarce_166`` (all labels) and ``shift``, each a
Med-MLE-bench input folder for ``cellfuse run`` with its ids in ``split.json``.
"""

import argparse
import json
import sys
from pathlib import Path

from cellfuse.scarce import DEFAULT_NS, make_inputs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--src", type=Path, default=Path("../shared/data/dsb2018"))
    ap.add_argument("--out", type=Path, default=Path("work/scarce"))
    ap.add_argument("--n", type=int, nargs="+", default=list(DEFAULT_NS), help="labeled images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-shift", action="store_true", help="skip the modality-shift input")
    args = ap.parse_args(argv)
    for folder in make_inputs(args.src, args.out, tuple(args.n), args.seed, not args.no_shift):
        split = json.loads((folder / "split.json").read_text())
        print(folder, split["labeled_modalities"], "unlabeled", split["unlabeled_images"])
    return 0


if __name__ == "__main__":
    from cellfuse.entry import run_tool

    sys.exit(run_tool(main))
