"""The notes' other models, each small enough to solve or sample exactly.

    mixture          a mixture of Gaussians and its EM algorithm (note 001)
    deep_lvm         note 000's deep latent-variable model, sampled ancestrally
    linear_gaussian  a linear-Gaussian model whose posterior and evidence are exact
    autoencoder      a deterministic autoencoder beside PCA (note 003)
    wake_sleep       the wake-sleep algorithm on the VAE's encoder and decoder (Hinton et al. 1995)
    hmc              Hybrid Monte Carlo on the latent z of a trained decoder (posterior samples)
    mcem             Monte Carlo EM: a decoder trained without an encoder (Kingma & Welling 2013, app. E)
"""
from ..vae import register_model
from .wake_sleep import WakeSleep

# Wake-sleep trains a VAE's encoder and decoder by other gradients; what it trains is a VAE,
# and its checkpoints rebuild as one.
register_model(WakeSleep, rebuild_as="VAE")
