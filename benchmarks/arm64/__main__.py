"""``python -m elsr.benchmarks.arm64`` (an entry point, part of the cli layer)."""

import sys

from elsr.cli.arm64 import main

if __name__ == "__main__":
    sys.exit(main())
