"""Quantization-aware training: fake quantization, channel equalization, integer parameters, QAT.

One module per step, as onnxruntime's quantization tools: ``fake_quant`` (where the INT8 graph
quantizes), ``equalize`` (cross-layer equalization before QAT), ``qat`` (fine-tuning through the
trainer's own epoch loop), ``params`` (the integer weights, biases and ranges every INT8 artifact
is built from) and ``checkpoint`` (QAT results on disk).
"""
