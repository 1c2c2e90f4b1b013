"""How training may run its arithmetic and memory layout. Torch-free, so that a command line can list the
choices without loading PyTorch."""

AMP_MODES = ("off", "bf16", "fp16")        # --amp: float32, or autocast to bfloat16 / float16 (with loss scaling)
CHANNELS_LAST_MODES = ("auto", "on", "off")  # --channels-last: auto is on with --amp on CUDA
