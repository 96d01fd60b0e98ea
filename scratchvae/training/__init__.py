"""Training a VAE: one step (``step``), the loop (``trainer``) with the images it trains on
(``images``), what it measures (``metrics``), its run folder (``folder``) and Ctrl-C
(``interrupt``); crash-safe checkpoints (``checkpoint``), the held-out bound and L_k
(``evaluate``), p(x) from posterior samples (``marginal_likelihood``, the paper's appendix D)
and the paper's figures (``plots``)."""
from .checkpoint import load_model
from .evaluate import evaluate_elbo, importance_sampled_bound
from .trainer import Trainer
