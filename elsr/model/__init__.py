"""The ELSR network, its re-parameterised training form, checkpoints and PyTorch inference."""
