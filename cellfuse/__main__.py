"""``python -m cellfuse``: the command line (:mod:`cellfuse.app.cli`)."""

import sys

from cellfuse.app.cli import main

sys.exit(main())
