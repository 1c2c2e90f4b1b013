#!/usr/bin/env python3
"""Train ELSR with a staged schedule: the same as ``elsr train``."""

import sys

from elsr.cli.main import script_main

if __name__ == "__main__":
    sys.exit(script_main("train"))
