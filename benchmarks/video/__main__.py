"""``python -m elsr.benchmarks.video`` (an entry point, part of the cli layer)."""

import sys

from elsr.cli.video_bench import main

if __name__ == "__main__":
    sys.exit(main())
