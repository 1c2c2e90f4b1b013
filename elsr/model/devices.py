"""The devices a command can run on. Torch-free, so that a command line can list them without loading PyTorch."""

DEVICES = ("auto", "cpu", "cuda")  # --device: auto is cuda where there is a GPU, else cpu
