"""``python tools/train_teacher.py ARGS`` = ``cellfuse train-teacher ARGS`` (see ``cellfuse train-teacher --help``)."""

import sys

from cellfuse.app.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-teacher", *sys.argv[1:]]))
