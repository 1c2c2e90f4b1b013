"""Running model files: one loader per artifact suffix (PyTorch checkpoint, ONNX/ORT, TFLite), the
one onnxruntime session factory, tiling, and the applications on top of them (eval, upscale).

Used by the commands, by the export checks and by the benchmark runners alike.
"""
