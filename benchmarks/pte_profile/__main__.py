"""``python -m elsr.benchmarks.pte_profile`` (an entry point, part of the cli layer)."""

import sys

from elsr.cli.pte_profile import main

if __name__ == "__main__":
    sys.exit(main())
