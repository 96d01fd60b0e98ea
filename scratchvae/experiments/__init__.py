"""Drivers outside the library: ``reproduce`` (Kingma & Welling 2013, section 5),
``figure3`` (its Figure 3: AEVB, wake-sleep and Monte Carlo EM by marginal likelihood) and
``bench`` (the same model in scratchvae and PyTorch, side by side)."""
