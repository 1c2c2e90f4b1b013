"""Files in and out: atomic writes, images, PNGs written band by band, video frames.

The lowest layer above ``elsr.errors``: it knows nothing of models or training.
"""
