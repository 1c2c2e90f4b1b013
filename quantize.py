#!/usr/bin/env python3
"""Quantize a trained ELSR checkpoint to an INT8 ONNX model (QAT or PTQ): the same as ``elsr quantize``."""

import sys

from elsr.cli.main import script_main

if __name__ == "__main__":
    sys.exit(script_main("quantize"))
