"""``python -m elsr.benchmarks``: the same options as ``elsr bench`` (an entry point, part of the cli layer)."""

import sys

from elsr.cli.bench import module_main

if __name__ == "__main__":
    sys.exit(module_main())
