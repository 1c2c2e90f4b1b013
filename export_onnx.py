#!/usr/bin/env python3
"""Export a checkpoint to a self-contained ONNX model: the same as ``elsr export``."""

import sys

from elsr.cli.main import script_main

if __name__ == "__main__":
    sys.exit(script_main("export"))
