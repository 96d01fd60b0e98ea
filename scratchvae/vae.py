"""The Variational Autoencoder: from an image x to the ELBO, and back to every gradient.

Forward, for a batch x of shape (B, D) and S samples per image:

    [mu, logvar] = encoder(x)                          q(z|x) = N(mu, diag(exp(logvar)))
    z_s = mu + exp(logvar / 2) * eps_s,  eps_s ~ N(0, I)   (reparameterization)
    rec = 1/S sum_s log p(x | z_s)                     decoder likelihood (Bernoulli or Gaussian)
    kl  = KL(q(z|x) || N(0, I))                        closed form
    elbo = rec - kl                                    one value per image
    loss = mean over the batch of -elbo  [+ weight_decay / 2 * ||theta||^2]

Backward runs the same path in reverse (see :meth:`VAE.backward`).
"""
from collections import namedtuple

import numpy as np

from . import validation
from .backend import device_of, make_rng, resolve_device, resolve_dtype, xp_for
from .decoders import DECODERS
from .distributions import kl_standard_normal, kl_standard_normal_grad, reparameterize, reparameterize_backward
from .layers import MLP
from .module import Module

ELBO = namedtuple("ELBO", ["elbo", "rec", "kl"])
ELBO.__doc__ = "Per-example lower bound ``elbo = rec - kl``, each an array of shape (B,)."


def encoder_output_grad(dz, mu, logvar, eps):
    """The gradient of the loss -1/B sum_b elbo_b with respect to the encoder's outputs.

    ``dz`` (S, B, Z) is what the decoder's backward sends back to z (it already carries the
    loss's -1/(S B)). Both routes from (mu, logvar) to the loss add up: through every sample
    z_s = mu + exp(logvar / 2) eps_s, and through the closed-form KL of each image, which
    enters the batch mean with weight 1/B:

        dmu     = sum_s dz_s                           + 1/B dKL/dmu        (dKL/dmu = mu)
        dlogvar = sum_s dz_s eps_s exp(logvar / 2) / 2 + 1/B dKL/dlogvar    (= (exp(logvar) - 1) / 2)

    Returns ``(dmu, dlogvar)``, each (B, Z).
    """
    B = mu.shape[0]
    dmu, dlogvar = reparameterize_backward(dz, logvar, eps)
    dmu_kl, dlogvar_kl = kl_standard_normal_grad(mu, logvar)
    return dmu + dmu_kl / B, dlogvar + dlogvar_kl / B


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
        self.hidden_dims = validation.layer_sizes("hidden_dims", hidden_dims)
        self.likelihood = validation.choice("likelihood", likelihood, DECODERS)
        self.activation = activation
        self.init = init
        self.weight_decay = validation.non_negative_number("weight_decay", weight_decay)
        self.dtype = resolve_dtype(dtype)
        self.device = resolve_device(device)
        self.xp = xp_for(self.device)
        self.seed = validation.seed("seed", seed)

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
        self.check_x(x)
        out = self.encoder.forward(x)
        return out[:, : self.z_dim], out[:, self.z_dim:]

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
    def forward(self, x, eps):
        """The path of a batch x (B, D) with noise eps (S, B, Z), without input checks
        (:meth:`elbo` checks first): returns ``(mu, logvar, z, log_lik)`` with
        z = mu + exp(logvar / 2) eps of shape (S, B, Z) and log_lik = log p(x|z) of shape (S, B).
        Keeps what :meth:`backward` needs."""
        S, B = eps.shape[:2]
        out = self.encoder.forward(x)
        mu, logvar = out[:, : self.z_dim], out[:, self.z_dim:]
        z = reparameterize(mu, logvar, eps)                                 # (S, B, Z)
        self.decoder.forward(z.reshape(S * B, self.z_dim))
        x_rep = x if S == 1 else self.xp.broadcast_to(x, (S, B, self.x_dim)).reshape(S * B, -1)
        log_lik = self.decoder.log_prob(x_rep).reshape(S, B)               # row s*B + b is x_b
        self.cache = (mu, logvar, eps)
        return mu, logvar, z, log_lik

    def elbo(self, x, eps=None, n_samples=1, check=True):
        """Per-example ELBO with its reconstruction and KL terms.

        ``eps`` (shape (B, Z), or (S, B, Z) for S samples) freezes the noise for
        deterministic checks; otherwise S = ``n_samples`` draws come from ``self.rng``.
        Keeps what :meth:`backward` needs.

        ``check=False`` skips the checks of the *values* of x and eps (finite, in [0, 1]),
        not those of their shape, dtype and device. On the GPU each value check copies a
        flag to the host and waits for the device, so a training loop that checked its
        data once passes ``check=False`` to keep its step free of host/device transfers."""
        eps = self._checked_noise(x, eps, n_samples, values=check)         # (S, B, Z)
        mu, logvar, _, log_lik = self.forward(x, eps)
        rec = log_lik.mean(axis=0)                   # 1/S sum_s log p(x|z_s)
        kl = kl_standard_normal(mu, logvar)          # KL(q(z|x) || N(0, I)), closed form
        return ELBO(rec - kl, rec, kl)

    def loss(self, x, eps=None, n_samples=1):
        """Mean negative ELBO over the batch plus the weight prior's penalty (a float)."""
        return -float(self.elbo(x, eps, n_samples).elbo.mean()) + self.weight_penalty()

    def weight_penalty(self):
        """lambda/2 ||theta||^2: minus the log of the Gaussian weight prior, up to a constant.
        (||W||^2 as the dot product of W with itself: one pass, and no array of squares.)"""
        if not self.weight_decay:
            return 0.0
        return 0.5 * self.weight_decay * sum(float(self.xp.vdot(p, p)) for p in self.parameters().values())

    def backward(self, decoder_done=None):
        """Fill ``grads`` with the gradient of :meth:`loss` for the last :meth:`elbo` call.

        With loss = -1/B sum_b elbo_b and elbo_b = 1/S sum_s log p(x_b|z_sb) - KL_b:

            dlogp     = d loss / d log p(x_b|z_sb) = -1/(S B)
            dz        = decoder backward of dlogp
            dmu       = sum_s dz_s                         + 1/B dKL/dmu      } encoder_output_grad
            dlogvar   = sum_s dz_s eps_s exp(logvar/2)/2   + 1/B dKL/dlogvar  }
            encoder backward of [dmu, dlogvar]

        and the weight prior's lambda theta added to each network's gradient once its
        backward is done.

        ``decoder_done(finish_decoder)``, if given, is called as soon as the decoder's backward
        has reached z, with a function that completes the decoder's gradient: its layers'
        weight gradients x^T dy, left for later (dx needs W, not dW), and its weight prior.
        From then on nothing here reads the decoder's parameters or gradient, so the caller
        may finish and update the decoder while the encoder's backward runs
        (:mod:`scratchvae.training.overlap` does both on a second core)."""
        if self.cache is None:
            raise RuntimeError("backward() needs a preceding elbo() call")
        mu, logvar, eps = self.cache
        S, B = eps.shape[:2]
        xp = self.xp
        dlogp = xp.full(S * B, -1.0 / (S * B), dtype=self.dtype)
        if decoder_done is None:
            dz = self.decoder.backward(dlogp)
            self._add_weight_decay(self.decoder)
        else:
            weight_grads = []
            dz = self.decoder.backward(dlogp, defer=weight_grads)

            def finish_decoder():
                for weight_grad in weight_grads:
                    weight_grad()
                self._add_weight_decay(self.decoder)
            decoder_done(finish_decoder)
        dz = dz.reshape(S, B, self.z_dim)
        dmu, dlogvar = encoder_output_grad(dz, mu, logvar, eps)
        self.encoder.backward(xp.concatenate([dmu, dlogvar], axis=1), input_grad=False)
        self._add_weight_decay(self.encoder)

    def _add_weight_decay(self, net):
        """grad += lambda theta for every tensor of ``net``: the gradient of lambda/2 ||theta||^2."""
        if self.weight_decay:
            for _, p, g in net.named_parameters():
                g += self.weight_decay * p

    def loss_and_grads(self, x, eps=None, n_samples=1, check=True):
        """One training step's work: returns ``(loss, ELBO)`` and fills ``grads``.
        (``check``: as in :meth:`elbo`.)"""
        terms = self.elbo(x, eps, n_samples, check=check)
        loss = -float(terms.elbo.mean()) + self.weight_penalty()
        self.backward()
        return loss, terms

    # -- input checks ------------------------------------------------------------------
    def _checked_noise(self, x, eps, n_samples, values=True):
        """Check x and the noise before anything changes, and return eps of shape (S, B, Z):
        the given one (a (B, Z) eps gains a leading axis), or S = n_samples fresh draws."""
        self.check_x(x, values=values, nonempty=True)
        B = x.shape[0]
        if eps is None:
            S = validation.positive_int("n_samples", n_samples)
            return self.rng.standard_normal((S, B, self.z_dim), dtype=self.dtype)
        validation.float_array("eps", eps, finite=values)
        self._check_device("eps", eps)
        validation.same_dtype("eps", eps, self.dtype)
        eps = eps[None] if eps.ndim == 2 else eps
        if eps.ndim != 3 or eps.shape[1:] != (B, self.z_dim) or eps.shape[0] == 0:
            raise ValueError(f"eps must have shape (B, Z) = ({B}, {self.z_dim}) or "
                             f"(S, {B}, {self.z_dim}) with S >= 1; got {tuple(eps.shape)}")
        return eps

    def _check_device(self, name, a):
        if device_of(a) != self.device:
            raise TypeError(f"{name} is on the {device_of(a)} but the model is on the {self.device}; "
                            f"move it with scratchvae.to_device({name}, {self.device!r})")

    def check_x(self, x, values=True, nonempty=False):
        """Raise unless x is a (B, D) array of the model's dtype on its device (with
        ``values``: finite, and in [0, 1] for a Bernoulli likelihood; with ``nonempty``: B > 0)."""
        validation.float_array("x", x, shape=(None, self.x_dim), finite=values)
        self._check_device("x", x)
        validation.same_dtype("x", x, self.dtype)
        if nonempty and x.shape[0] == 0:
            raise ValueError(f"x must hold at least one image (a row of {self.x_dim} pixels), "
                             f"got shape {tuple(x.shape)}")
        if values and self.likelihood == "bernoulli":
            validation.in_unit_interval("x", x)

    def __repr__(self):
        return (f"VAE(x_dim={self.x_dim}, z_dim={self.z_dim}, hidden_dims={self.hidden_dims}, "
                f"likelihood={self.likelihood!r}, activation={self.activation!r}, "
                f"dtype={self.dtype.name}, device={self.device!r})")
