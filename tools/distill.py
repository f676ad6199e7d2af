"""``python tools/distill.py ARGS`` = ``cellfuse distill ARGS`` (see ``cellfuse distill --help``)."""

import sys

from cellfuse.app.cli import main

if __name__ == "__main__":
    sys.exit(main(["distill", *sys.argv[1:]]))
