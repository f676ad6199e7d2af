"""Distil the student: ``python tools/distill.py CONFIG [--work-dir DIR] [--cfg-options k=v] [--resume]``.

The config's ``student`` dict names the variant and the pseudo-label folder
(``student.pseudo``); ``--cfg-options student.pseudo=None`` trains the labeled-only ablation.
"""

import sys

from student.distill import distill
from teachers.train import training_cli


def main(argv=None):
    training_cli(__doc__, "work/student", distill, argv)


if __name__ == "__main__":
    from cellfuse.entry import run_tool

    sys.exit(run_tool(main))
