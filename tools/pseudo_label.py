"""``python tools/pseudo_label.py ARGS`` = ``cellfuse pseudo-label ARGS`` (see ``cellfuse pseudo-label --help``)."""

import sys

from cellfuse.app.cli import main

if __name__ == "__main__":
    sys.exit(main(["pseudo-label", *sys.argv[1:]]))
