"""``python -m elsr``: the ``elsr`` command."""

import sys

from elsr.cli.main import main

sys.exit(main())
