"""scratchvae: a Variational Autoencoder from scratch in NumPy (and CuPy), made to be learned from.

The path of one image, module by module:
    backend        NumPy or CuPy, chosen from the arrays; threads of the matrix products
    module         the forward/backward interface (Module), and the one buffer of a model's parameters
    activations    tanh, ReLU, sigmoid, softplus, each beside its derivative
    layers         Linear and MLP (forward beside backward)
    distributions  log-densities, closed-form KL, reparameterization, with gradients
    decoders       the decoder protocol (Decoder), Bernoulli and Gaussian p(x|z), register_decoder
    vae            the model: x -> (mu, logvar) -> z -> p(x|z) -> ELBO, and back; register_model
    optim          SGD, Adagrad, Adam, in place
    gradcheck      finite differences you can reuse
    validation     the argument checks behind every clear error

Everything else is a subpackage named for what it holds: ``models`` (the notes' other
models, wake-sleep, HMC, Monte Carlo EM), ``derivations`` (every derivation of the notes,
checked), ``data``, ``training``, ``experiments`` (the paper's section 5 and Figure 3, the
benchmark), ``kernels`` (CUDA) and ``cli``.
"""
from .backend import (DeviceError, as_cupy, as_numpy, get_array_module, gpu_available, make_rng,
                      set_threads, to_device)
from .decoders import Decoder, register_decoder
from .gradcheck import (NondeterministicLoss, check_directional, check_gradients, format_report,
                        numerical_gradient, rel_error)
from .layers import MLP, Linear
from .module import Module, ModuleError
from .optim import SGD, Adagrad, Adam
from .vae import ELBO, VAE, register_model
# What a student reaches for first, from the subpackages (they import the core, never the reverse).
from .data import load_dataset
from .training import Trainer, evaluate_elbo, importance_sampled_bound, load_model

__version__ = "0.1.0"
