"""Training a VAE: the loop (``trainer``), crash-safe checkpoints (``checkpoint``), the
held-out bound and L_k (``evaluate``) and the paper's figures (``plots``)."""
from .checkpoint import load_model
from .evaluate import evaluate_elbo, importance_sampled_bound
from .trainer import Trainer
