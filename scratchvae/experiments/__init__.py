"""Drivers outside the library: ``reproduce`` (Kingma & Welling 2013, section 5) and
``bench`` (the same model in scratchvae and PyTorch, side by side)."""
