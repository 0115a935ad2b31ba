"""Per-layer MACs, parameters and activation sizes of a variant, counted from the PyTorch model, and their on-disk cache."""
