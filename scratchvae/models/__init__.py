"""The notes' other models, each small enough to solve or sample exactly.

    mixture          a mixture of Gaussians and its EM algorithm (note 001)
    deep_lvm         note 000's deep latent-variable model, sampled ancestrally
    linear_gaussian  a linear-Gaussian model whose posterior and evidence are exact
    autoencoder      a deterministic autoencoder beside PCA (note 003)
    wake_sleep       the wake-sleep algorithm on the VAE's encoder and decoder (Hinton et al. 1995)
"""
