"""``python -m elsr.benchmarks.large_image`` (an entry point, part of the cli layer)."""

import sys

from elsr.cli.large_image import main

if __name__ == "__main__":
    sys.exit(main())
