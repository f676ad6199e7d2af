"""Train a teacher from its config: ``python tools/train_teacher.py CONFIG [--work-dir DIR]``.

The config's ``teacher.type`` picks the teacher (flowunet, sam, maskrcnn, ...).
``--cfg-options k=v`` overrides config keys; ``--resume`` continues from the last checkpoint.
"""

import sys

from teachers.train import train_teacher, training_cli


def main(argv=None):
    training_cli(__doc__, "work/teachers", train_teacher, argv)


if __name__ == "__main__":
    from cellfuse.entry import run_tool

    sys.exit(run_tool(main))
