"""The Variational Autoencoder: from an image x to the ELBO, and back to every gradient.

Forward, for a batch x of shape (B, D) and L samples per image:

    [mu, logvar] = encoder(x)                          q(z|x) = N(mu, diag(exp(logvar)))
    z_l = mu + exp(logvar / 2) * eps_l,  eps_l ~ N(0, I)   (reparameterization)
    rec = 1/L sum_l log p(x | z_l)                     decoder likelihood (Bernoulli or Gaussian)
    kl  = KL(q(z|x) || N(0, I))                        closed form
    elbo = rec - kl                                    one value per image
    loss = mean over the batch of -elbo  [+ weight_decay / 2 * ||theta||^2]

Backward runs the same path in reverse (see :meth:`VAE.backward`).
"""
from collections import namedtuple

import numpy as np

from . import distributions as D
from . import validation
from .backend import device_of, make_rng, resolve_device, resolve_dtype, xp_for
from .decoders import DECODERS
from .layers import MLP
from .module import Module

ELBO = namedtuple("ELBO", ["elbo", "rec", "kl"])
ELBO.__doc__ = "Per-example lower bound ``elbo = rec - kl``, each an array of shape (B,)."


class VAE(Module):
    """An MLP encoder and decoder with a N(0, I) prior on z.

    Args:
        x_dim: pixels per image (D).
        z_dim: latent size (Z).
        hidden_dims: hidden layer sizes of the encoder; the decoder mirrors them.
        likelihood: ``'bernoulli'`` (logits; MNIST) or ``'gaussian'`` (sigmoid mean and
            learned log-variance; Frey Face).
        activation: hidden nonlinearity, ``'relu' | 'tanh' | 'sigmoid' | 'softplus'``.
        init: ``'paper' | 'glorot' | 'he' | 'pytorch'`` (see :func:`layers.init_weights`).
        weight_decay: lambda of an isotropic Gaussian prior on the weights, adding
            lambda/2 ||theta||^2 to the loss. The paper's N(0, I) prior spread over N
            training points is ``weight_decay = 1 / N``.
        dtype: float32 (default) or float64.
        device: ``'cpu' | 'gpu' | 'auto'``.
        seed: seeds both the initial weights and the generator that draws eps.
    """

    def __init__(self, x_dim, z_dim=20, hidden_dims=(400,), likelihood="bernoulli",
                 activation="relu", init="glorot", weight_decay=0.0, dtype="float32",
                 device="cpu", seed=0):
        super().__init__()
        self.x_dim = validation.positive_int("x_dim", x_dim)
        self.z_dim = validation.positive_int("z_dim", z_dim)
        if isinstance(hidden_dims, int):
            hidden_dims = (hidden_dims,)
        if not isinstance(hidden_dims, (tuple, list)):
            raise TypeError(f"hidden_dims must be a positive integer or a tuple of them, "
                            f"got {hidden_dims!r}")
        self.hidden_dims = tuple(validation.positive_int(f"hidden_dims[{i}]", h)
                                 for i, h in enumerate(hidden_dims))
        self.likelihood = validation.choice("likelihood", likelihood, DECODERS)
        self.activation = activation
        self.init = init
        if validation.real_number("weight_decay", weight_decay) < 0:
            raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay}")
        self.weight_decay = float(weight_decay)
        self.dtype = resolve_dtype(dtype)
        self.device = resolve_device(device)
        self.xp = xp_for(self.device)
        self.seed = seed

        init_rng = np.random.default_rng(seed)
        out_dim = self.x_dim if likelihood == "bernoulli" else 2 * self.x_dim
        common = dict(activation=activation, init=init, rng=init_rng, dtype=self.dtype,
                      device=self.device)
        self.encoder = MLP([self.x_dim, *self.hidden_dims, 2 * self.z_dim], **common)
        self.decoder = DECODERS[likelihood](
            MLP([self.z_dim, *reversed(self.hidden_dims), out_dim], **common))
        self.flatten_parameters()   # encoder and decoder in one buffer (see scratchvae.module)
        self.rng = make_rng(seed, self.device)

    def children(self):
        return {"encoder": self.encoder, "decoder": self.decoder}

    def config(self):
        """The constructor arguments, enough to rebuild this model (checkpoints store it)."""
        return dict(x_dim=self.x_dim, z_dim=self.z_dim, hidden_dims=list(self.hidden_dims),
                    likelihood=self.likelihood, activation=self.activation, init=self.init,
                    weight_decay=self.weight_decay, dtype=self.dtype.name)

    # -- the pieces ------------------------------------------------------------------
    def encode(self, x):
        """q(z|x) = N(mu, diag(exp(logvar))): returns ``(mu, logvar)``, each (B, Z)."""
        self._check_x(x)
        h = self.encoder.forward(x)
        return h[:, : self.z_dim], h[:, self.z_dim:]

    def decode(self, z):
        """E[x|z]: pixel probabilities (Bernoulli) or means (Gaussian), shape (B, D)."""
        validation.float_array("z", z, shape=(None, self.z_dim))
        self._check_device("z", z)
        validation.same_dtype("z", z, self.dtype)
        return self.decoder.mean(z)

    def sample(self, n, rng=None):
        """Decoder means for ``n`` draws z ~ N(0, I) from the prior."""
        n = validation.positive_int("n", n)
        rng = self.rng if rng is None else rng
        return self.decoder.mean(rng.standard_normal((n, self.z_dim), dtype=self.dtype))

    def reconstruct(self, x):
        """E[x | z = mu(x)]: the decoder's picture of the encoder's mean."""
        mu, _ = self.encode(x)
        return self.decoder.mean(mu)

    # -- the objective -----------------------------------------------------------------
    def elbo(self, x, eps=None, n_samples=1, check=True):
        """Per-example ELBO with its reconstruction and KL terms.

        ``eps`` (shape (B, Z), or (L, B, Z) for L samples) freezes the noise for
        deterministic checks; otherwise L = ``n_samples`` draws come from ``self.rng``.
        Keeps what :meth:`backward` needs.

        ``check=False`` skips the checks of the *values* of x and eps (finite, in [0, 1]),
        not those of their shape, dtype and device. On the GPU each value check copies a
        flag to the host and waits for the device, so a training loop that checked its
        data once passes ``check=False`` to keep its step free of host/device transfers."""
        self._check_x(x, values=check)
        B = x.shape[0]
        if eps is None:
            L = validation.positive_int("n_samples", n_samples)
            eps = self.rng.standard_normal((L, B, self.z_dim), dtype=self.dtype)
        else:
            validation.float_array("eps", eps, finite=check)
            self._check_device("eps", eps)
            validation.same_dtype("eps", eps, self.dtype)
            if eps.ndim == 2:
                eps = eps[None]
            if eps.ndim != 3 or eps.shape[1:] != (B, self.z_dim):
                raise ValueError(f"eps must have shape (B, Z) = ({B}, {self.z_dim}) or "
                                 f"(L, {B}, {self.z_dim}); got {tuple(eps.shape)}")
        L = eps.shape[0]

        h = self.encoder.forward(x)
        mu, logvar = h[:, : self.z_dim], h[:, self.z_dim:]
        z = D.reparameterize(mu, logvar, eps)                        # (L, B, Z)
        self.decoder.forward(z.reshape(L * B, self.z_dim))
        x_rep = x if L == 1 else self.xp.broadcast_to(x, (L, B, self.x_dim)).reshape(L * B, -1)
        rec = self.decoder.log_prob(x_rep).reshape(L, B).mean(axis=0)
        kl = D.kl_standard_normal(mu, logvar)
        self.cache = (x_rep, mu, logvar, eps)
        return ELBO(rec - kl, rec, kl)

    def loss(self, x, eps=None, n_samples=1):
        """Mean negative ELBO over the batch plus the weight prior's penalty (a float)."""
        return -float(self.elbo(x, eps, n_samples).elbo.mean()) + self.weight_penalty()

    def weight_penalty(self):
        """lambda/2 ||theta||^2: minus the log of the Gaussian weight prior, up to a constant."""
        if not self.weight_decay:
            return 0.0
        return 0.5 * self.weight_decay * sum(float((p * p).sum()) for p in self.parameters().values())

    def backward(self):
        """Fill ``grads`` with the gradient of :meth:`loss` for the last :meth:`elbo` call.

        With loss = -1/B sum_b elbo_b and elbo_b = 1/L sum_l log p(x_b|z_lb) - KL_b:

            d loss / d log p(x_b|z_lb) = -1/(L B)
            dz        = decoder backward of that
            dmu       = sum_l dz_l                         + 1/B dKL/dmu
            dlogvar   = sum_l dz_l eps_l exp(logvar/2)/2   + 1/B dKL/dlogvar
            encoder backward of [dmu, dlogvar]
        """
        if self.cache is None:
            raise RuntimeError("backward() needs a preceding elbo() call")
        x_rep, mu, logvar, eps = self.cache
        L, B = eps.shape[:2]
        xp = self.xp
        dlogp = xp.full(L * B, -1.0 / (L * B), dtype=self.dtype)
        dz = self.decoder.backward(x_rep, dlogp).reshape(L, B, self.z_dim)
        dmu, dlogvar = D.reparameterize_backward(dz, logvar, eps)
        dmu_kl, dlogvar_kl = D.kl_standard_normal_grad(mu, logvar)
        dmu = dmu + dmu_kl / B
        dlogvar = dlogvar + dlogvar_kl / B
        self.encoder.backward(xp.concatenate([dmu, dlogvar], axis=1), input_grad=False)
        if self.weight_decay:
            for _, p, g in self.named_parameters():
                g += self.weight_decay * p

    def loss_and_grads(self, x, eps=None, n_samples=1, check=True):
        """One training step's work: returns ``(loss, ELBO)`` and fills ``grads``.
        (``check``: as in :meth:`elbo`.)"""
        terms = self.elbo(x, eps, n_samples, check=check)
        self.backward()
        return -float(terms.elbo.mean()) + self.weight_penalty(), terms

    # -- input checks ------------------------------------------------------------------
    def _check_device(self, name, a):
        if device_of(a) != self.device:
            raise TypeError(f"{name} is on the {device_of(a)} but the model is on the {self.device}; "
                            f"move it with scratchvae.to_device({name}, {self.device!r})")

    def _check_x(self, x, values=True):
        validation.float_array("x", x, shape=(None, self.x_dim), finite=values)
        self._check_device("x", x)
        validation.same_dtype("x", x, self.dtype)
        if values and self.likelihood == "bernoulli":
            validation.in_unit_interval("x", x)

    def __repr__(self):
        return (f"VAE(x_dim={self.x_dim}, z_dim={self.z_dim}, hidden_dims={self.hidden_dims}, "
                f"likelihood={self.likelihood!r}, activation={self.activation!r}, "
                f"dtype={self.dtype.name}, device={self.device!r})")
