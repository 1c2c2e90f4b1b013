"""Exporting ELSR checkpoints to deployable formats (ONNX, ...) and running any of them on images."""
