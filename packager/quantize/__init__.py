"""Quantization recipes: one module per recipe, all registered in :mod:`packager.quantize.registry`."""
