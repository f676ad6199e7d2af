"""``python tools/evaluate.py ARGS`` = ``cellfuse evaluate ARGS`` (see ``cellfuse evaluate --help``)."""

import sys

from cellfuse.app.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
