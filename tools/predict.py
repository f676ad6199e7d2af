"""``python tools/predict.py ARGS`` = ``cellfuse predict ARGS`` (see ``cellfuse predict --help``)."""

import sys

from cellfuse.app.cli import main

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
