"""``python tools/export.py ARGS`` = ``cellfuse export ARGS`` (see ``cellfuse export --help``)."""

import sys

from cellfuse.app.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
