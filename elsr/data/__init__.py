"""Data: MATLAB-bicubic degradation, PSNR/SSIM, training and validation sets, HDF5 patch files.

Imports only ``elsr.io`` and the base modules below it.
"""
