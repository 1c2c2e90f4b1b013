"""``python -m elsr.benchmarks.data_loading`` (an entry point, part of the cli layer)."""

import sys

from elsr.cli.data_loading import main

if __name__ == "__main__":
    sys.exit(main())
