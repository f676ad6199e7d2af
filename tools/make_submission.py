"""``python tools/make_submission.py ARGS`` = ``cellfuse submit ARGS`` (see ``cellfuse submit --help``)."""

import sys

from cellfuse.app.cli import main

if __name__ == "__main__":
    sys.exit(main(["submit", *sys.argv[1:]]))
