"""Measuring speed: the inversion step, the device's matmul rate, the official code, the loader."""
