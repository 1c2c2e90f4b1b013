"""Training: schedules, losses, the epoch loop, the staged trainer, torchrun/DDP plumbing, curves."""
