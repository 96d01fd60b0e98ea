r"""The Variational Autoencoder: from an image :math:`x` to the ELBO, and back to every gradient.

Forward, for a batch ``x`` of shape (B, D) and S samples per image:

.. math::

    [\mu, \text{logvar}] &= \operatorname{encoder}(x),
        \qquad q(z|x) = \mathcal{N}(\mu, \operatorname{diag}(\exp(\text{logvar}))) \\
    z_s &= \mu + \exp(\text{logvar}/2)\, \epsilon_s, \qquad \epsilon_s \sim \mathcal{N}(0, I)
        \qquad \text{(reparameterization)} \\
    \text{rec} &= \frac{1}{S} \sum_s \log p(x|z_s)
        \qquad \text{(the decoder's likelihood: Bernoulli or Gaussian)} \\
    \text{kl} &= \mathrm{KL}\big(q(z|x) \,\|\, \mathcal{N}(0, I)\big) \qquad \text{(closed form)} \\
    \text{elbo} &= \text{rec} - \text{kl} \qquad \text{(one value per image)} \\
    \text{loss} &= -\frac{1}{B} \sum_b \big(\text{rec}_b - w\, \text{kl}_b\big)
        \;\big[+\, \tfrac{\lambda}{2} \|\theta\|^2\big]

with :math:`w` = ``kl_weight`` and :math:`\lambda` = ``weight_decay``.
Backward runs the same path in reverse (see :meth:`VAE.backward`).

Extending it
------------
- a likelihood of your own: a :class:`~scratchvae.decoders.Decoder` registered with
  :func:`~scratchvae.decoders.register_decoder`, named by ``VAE(likelihood=...)``;
- a weighted KL (a beta-VAE, a KL warm-up): set :attr:`VAE.kl_weight`; ``backward`` follows;
- a subclass with constructor arguments of its own puts them in :meth:`VAE.config`, and is
  registered with :func:`register_model` so that ``scratchvae.load_model`` rebuilds it;
- submodules assigned as attributes are found by :meth:`Module.children
  <scratchvae.module.Module.children>` (no list to keep).
"""
import operator
from collections import namedtuple

import numpy as np

from . import validation
from .backend import device_of, make_rng, resolve_device, resolve_dtype, xp_for
from .decoders import DECODERS, _claim
from .distributions import kl_standard_normal, kl_standard_normal_grad, reparameterize, reparameterize_backward
from .layers import MLP
from .module import Module, flat_segments

ELBO = namedtuple("ELBO", ["elbo", "rec", "kl"])
ELBO.__doc__ = "Per-example lower bound ``elbo = rec - kl``, each an array of shape (B,)."

MODELS = {}        # registered name -> class that load_model builds
_SAVED_AS = {}     # class -> the registered name its checkpoints record


def register_model(cls=None, name=None, *, rebuild_as=None):
    """Register a model class so that checkpoints record it and ``scratchvae.load_model``
    rebuilds it as ``cls(**config(), device=...)``, without pickle. A class decorator::

        @register_model                    # under its class name, 'BetaVAE'
        class BetaVAE(VAE): ...

        @register_model(name="beta-vae")   # under a name of your choice
        class BetaVAE(VAE): ...

    Every argument of the constructor that changes the model must be in its ``config()``.
    The class's module must be imported before a checkpoint of it is loaded. Registering a
    name again is allowed for a class of the same module and name (a notebook cell run twice),
    refused for another class.

    ``rebuild_as``: the name of a registered class that checkpoints of ``cls`` rebuild as, for
    a subclass that only *trains* its parent's model differently and has the parent's
    ``config()`` (wake-sleep trains a VAE: its checkpoints load as a VAE)."""
    if isinstance(cls, str) and name is None:       # @register_model("beta-vae")
        cls, name = None, cls
    if cls is None:
        return lambda c: register_model(c, name, rebuild_as=rebuild_as)
    if not isinstance(cls, type) or not callable(getattr(cls, "config", None)):
        raise TypeError(f"register_model registers a model class with a config() method, got {cls!r}")
    if rebuild_as is not None:
        if rebuild_as not in MODELS:
            raise ValueError(f"rebuild_as={rebuild_as!r} is not a registered model name")
        _SAVED_AS[cls] = rebuild_as
        return cls
    name = cls.__name__ if name is None else name
    if not (isinstance(name, str) and name):
        raise TypeError(f"a model's registered name must be a non-empty string, got {name!r}")
    _claim(MODELS, name, cls, "model")
    _SAVED_AS[cls] = name
    return cls


def registered_name(cls):
    """The name that checkpoints of ``cls`` record (its own registration, never a parent's:
    an unregistered subclass of VAE is not a VAE's config), or None."""
    return _SAVED_AS.get(cls)


def model_class(name):
    """The class registered under ``name``; a clear ``KeyError`` when there is none."""
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise KeyError(f"no model class is registered under the name {name!r} (registered: "
                       f"{', '.join(sorted(MODELS))}). Define the class and decorate it with "
                       f"@scratchvae.register_model (import its module first), then load again") from None


def unregistered_hint(cls):
    """How to register ``cls``, for error messages."""
    return (f"{cls.__qualname__} is not registered: decorate the class with @scratchvae.register_model "
            f"(and put every constructor argument of its own in its config()) so that a checkpoint "
            f"can record it and load_model can rebuild it")


def encoder_output_grad(dz, mu, logvar, eps):
    r"""The gradient of the loss :math:`-\frac{1}{B} \sum_b \text{elbo}_b` with respect to the
    encoder's outputs.

    ``dz`` (S, B, Z) is what the decoder's backward sends back to :math:`z` (it already carries
    the loss's :math:`-1/(S B)`). Both routes from :math:`(\mu, \text{logvar})` to the loss add
    up: through every sample :math:`z_s = \mu + \exp(\text{logvar}/2)\, \epsilon_s`, and through
    the closed-form KL of each image, which enters the batch mean with weight :math:`1/B`:

    .. math::

        d\mu &= \sum_s dz_s + \frac{1}{B} \frac{\partial\, \mathrm{KL}}{\partial \mu},
            \qquad \frac{\partial\, \mathrm{KL}}{\partial \mu} = \mu \\
        d\,\text{logvar} &= \sum_s dz_s\, \epsilon_s \frac{\exp(\text{logvar}/2)}{2}
            + \frac{1}{B} \frac{\partial\, \mathrm{KL}}{\partial\, \text{logvar}},
            \qquad \frac{\partial\, \mathrm{KL}}{\partial\, \text{logvar}}
            = \frac{\exp(\text{logvar}) - 1}{2}

    Returns ``(dmu, dlogvar)``, each (B, Z).
    """
    B = mu.shape[0]
    dmu, dlogvar = reparameterize_backward(dz, logvar, eps)
    dmu_kl, dlogvar_kl = kl_standard_normal_grad(mu, logvar)
    return dmu + dmu_kl / B, dlogvar + dlogvar_kl / B


def kl_weight_grad(mu, logvar, weight):
    r"""What a KL weight :math:`w` changes in :func:`encoder_output_grad`, which assembles the
    gradient of :math:`-\frac{1}{B} \sum_b (\text{rec}_b - \mathrm{KL}_b)`: for
    :math:`-\frac{1}{B} \sum_b (\text{rec}_b - w\, \mathrm{KL}_b)` the KL's share is :math:`w`
    times larger, so :math:`\frac{w - 1}{B}` times
    :math:`\partial\, \mathrm{KL} / \partial (\mu, \text{logvar})` is added.
    Returns ``(dmu, dlogvar)``, each (B, Z)."""
    dmu_kl, dlogvar_kl = kl_standard_normal_grad(mu, logvar)
    scale = (weight - 1.0) / mu.shape[0]
    return scale * dmu_kl, scale * dlogvar_kl


@register_model
class VAE(Module):
    r"""An MLP encoder and decoder with a :math:`\mathcal{N}(0, I)` prior on :math:`z`.

    :param x_dim: pixels per image (D).
    :param z_dim: latent size (Z).
    :param hidden_dims: hidden layer sizes of the encoder; the decoder mirrors them.
    :param likelihood: the name of a registered decoder: ``'bernoulli'`` (logits; MNIST),
        ``'gaussian'`` (sigmoid mean and learned log-variance; Frey Face), or one of
        your own (:func:`~scratchvae.decoders.register_decoder`).
    :param activation: hidden nonlinearity, ``'relu' | 'tanh' | 'sigmoid' | 'softplus'``.
    :param init: ``'paper' | 'glorot' | 'he' | 'pytorch'`` (see
        :func:`~scratchvae.layers.init_weights`).
    :param weight_decay: :math:`\lambda` of an isotropic Gaussian prior on the weights, adding
        :math:`\frac{\lambda}{2} \|\theta\|^2` to the loss. The paper's :math:`\mathcal{N}(0, I)`
        prior spread over :math:`N` training points is ``weight_decay = 1 / N``.
    :param dtype: float32 (default) or float64.
    :param device: ``'cpu' | 'gpu' | 'auto'``.
    :param seed: seeds both the initial weights and the generator that draws ``eps``.

    ``kl_weight`` (class attribute, 1.0): the weight :math:`w` of the KL in the training
    objective, :math:`\text{loss} = -\frac{1}{B} \sum_b (\text{rec}_b - w\, \mathrm{KL}_b)`.
    :math:`w = 1` is the ELBO; a beta-VAE sets it to :math:`\beta` in its constructor, a KL
    warm-up changes it between steps. :meth:`elbo` always reports the true ELBO
    (rec - kl); :meth:`loss` and :meth:`backward` use the weight.
    """
    #: The weight :math:`w` of the KL in the training objective (1: the ELBO; see above).
    kl_weight = 1.0

    def __init__(self, x_dim, z_dim=20, hidden_dims=(400,), likelihood="bernoulli",
                 activation="relu", init="glorot", weight_decay=0.0, dtype="float32",
                 device="cpu", seed=0):
        super().__init__()
        self.x_dim = validation.positive_int("x_dim", x_dim)
        self.z_dim = validation.positive_int("z_dim", z_dim)
        self.hidden_dims = validation.layer_sizes("hidden_dims", hidden_dims)
        if likelihood not in DECODERS:
            raise ValueError(f"likelihood must be one of {sorted(DECODERS)}, got {likelihood!r} "
                             f"(a decoder of your own is registered with @scratchvae.register_decoder(name))")
        self.likelihood = likelihood
        self.activation = activation
        self.init = init
        self.weight_decay = validation.non_negative_number("weight_decay", weight_decay)
        self.dtype = resolve_dtype(dtype)
        self.device = resolve_device(device)
        self.xp = xp_for(self.device)
        self.seed = validation.seed("seed", seed)

        init_rng = np.random.default_rng(seed)
        decoder_cls = DECODERS[likelihood]
        out_dim = validation.positive_int(f"{decoder_cls.__name__}.outputs_per_pixel",
                                          decoder_cls.outputs_per_pixel) * self.x_dim
        common = dict(activation=activation, init=init, rng=init_rng, dtype=self.dtype,
                      device=self.device)
        # Submodules are attributes: children() finds them, encoder first ('encoder.0.W', ...).
        self.encoder = MLP([self.x_dim, *self.hidden_dims, 2 * self.z_dim], **common)
        self.decoder = decoder_cls(MLP([self.z_dim, *reversed(self.hidden_dims), out_dim], **common))
        self.flatten_parameters()   # encoder and decoder in one buffer (see scratchvae.module)
        self.rng = make_rng(seed, self.device)

    def config(self):
        """The constructor arguments, enough to rebuild this model (checkpoints store it, and
        ``scratchvae.load_model`` calls ``cls(**config())``). A subclass with constructor
        arguments of its own adds them: ``return {**super().config(), "beta": self.beta}``."""
        return dict(x_dim=self.x_dim, z_dim=self.z_dim, hidden_dims=list(self.hidden_dims),
                    likelihood=self.likelihood, activation=self.activation, init=self.init,
                    weight_decay=self.weight_decay, dtype=self.dtype.name)

    # -- the pieces ------------------------------------------------------------------
    def encode(self, x):
        r""":math:`q(z|x) = \mathcal{N}(\mu, \operatorname{diag}(\exp(\text{logvar})))`: returns
        ``(mu, logvar)``, each (B, Z)."""
        self.check_x(x)
        out = self.encoder.forward(x)
        return out[:, : self.z_dim], out[:, self.z_dim:]

    def decode(self, z):
        r""":math:`\mathbb{E}[x|z]`: pixel probabilities (Bernoulli) or means (Gaussian), shape
        (B, D)."""
        validation.float_array("z", z, shape=(None, self.z_dim))
        self._check_device("z", z)
        validation.same_dtype("z", z, self.dtype)
        return self.decoder.mean(z)

    def sample(self, n, rng=None):
        r"""Decoder means for ``n`` draws :math:`z \sim \mathcal{N}(0, I)` from the prior."""
        n = validation.positive_int("n", n)
        rng = self.rng if rng is None else rng
        return self.decoder.mean(rng.standard_normal((n, self.z_dim), dtype=self.dtype))

    def reconstruct(self, x):
        r""":math:`\mathbb{E}[x \mid z = \mu(x)]`: the decoder's picture of the encoder's mean."""
        mu, _ = self.encode(x)
        return self.decoder.mean(mu)

    # -- the objective -----------------------------------------------------------------
    def forward(self, x, eps):
        r"""The path of a batch ``x`` (B, D) with noise ``eps`` (S, B, Z), without input checks
        (:meth:`elbo` checks first): returns ``(mu, logvar, z, log_lik)`` with
        :math:`z = \mu + \exp(\text{logvar}/2)\, \epsilon` of shape (S, B, Z) and
        ``log_lik`` :math:`= \log p(x|z)` of shape (S, B). Keeps what :meth:`backward` needs."""
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

        ``check=False`` skips the checks of the *values* of ``x`` and ``eps`` (finite, in [0, 1]),
        not those of their shape, dtype and device. On the GPU each value check copies a
        flag to the host and waits for the device, so a training loop that checked its
        data once passes ``check=False`` to keep its step free of host/device transfers."""
        eps = self._checked_noise(x, eps, n_samples, values=check)         # (S, B, Z)
        mu, logvar, _, log_lik = self.forward(x, eps)
        rec = log_lik.mean(axis=0)                   # 1/S sum_s log p(x|z_s)
        kl = kl_standard_normal(mu, logvar)          # KL(q(z|x) || N(0, I)), closed form
        return ELBO(rec - kl, rec, kl)

    def loss(self, x, eps=None, n_samples=1):
        """The training objective (a float): the mean over the batch of
        ``-(rec - kl_weight * kl)``, the negative ELBO for the default ``kl_weight = 1``, plus the
        weight prior's penalty (:meth:`weight_penalty`).
        Without ``eps`` it draws fresh noise at every call; pass ``eps`` to freeze it (a
        gradient check needs the same function at every evaluation)."""
        return self.objective(self.elbo(x, eps, n_samples)) + self.weight_penalty()

    def objective(self, terms):
        r""":math:`-\frac{1}{B} \sum_b (\text{rec}_b - w\, \mathrm{KL}_b)` with :math:`w` =
        ``kl_weight``, for the :class:`ELBO` ``terms`` (a float)."""
        if self.kl_weight == 1.0:
            return -float(terms.elbo.mean())
        return -float((terms.rec - self.kl_weight * terms.kl).mean())

    def weight_penalty(self):
        r""":math:`\frac{\lambda}{2} \|\theta\|^2` with :math:`\lambda` = ``weight_decay``: minus
        the log of the Gaussian weight prior, up to a constant. (:math:`\|W\|^2` as the dot
        product of :math:`W` with itself: one pass, and no array of squares.)"""
        if not self.weight_decay:
            return 0.0
        return 0.5 * self.weight_decay * sum(float(self.xp.vdot(p, p)) for p, _ in self._prior_arrays())

    def _prior_arrays(self, part="all"):
        """``[(theta, dtheta), ...]`` on which the weight prior acts elementwise: the flat
        buffers that hold every parameter and gradient (one pair for a flattened model), so
        that the prior costs a few array operations per step, not a few per tensor. Found
        again whenever the model's tensors are not the same arrays as last time. ``part``:
        ``'all'``; the overlapped step's ``'decoder'`` and ``'rest'`` (every other tensor)."""
        named = [a for name, p, g in self.named_parameters()
                 if part == "all" or (part == "decoder") == name.startswith("decoder.") for a in (p, g)]
        memos = self.__dict__.setdefault("_prior_memos", {})   # part -> _PriorMemo
        memo = memos.get(part)
        if memo is None or len(memo.tensors) != len(named) or not all(map(operator.is_, memo.tensors, named)):
            memo = memos[part] = _PriorMemo(named, [(p, g) for p, g, _ in flat_segments(
                (str(i), named[2 * i], named[2 * i + 1]) for i in range(len(named) // 2))])
        return memo.arrays

    def backward(self, decoder_done=None):
        r"""Fill ``grads`` with the gradient of :meth:`loss` for the last :meth:`elbo` call.

        With :math:`\text{loss} = -\frac{1}{B} \sum_b (\text{rec}_b - w\, \mathrm{KL}_b)`,
        :math:`\text{rec}_b = \frac{1}{S} \sum_s \log p(x_b|z_{sb})` and :math:`w` =
        :attr:`kl_weight` (1: the ELBO), in this order:

        1. :math:`\text{dlogp} = \partial\, \text{loss} / \partial \log p(x_b|z_{sb}) = -1/(S B)`;
        2. ``dz``: the decoder's backward of ``dlogp`` (it fills the decoder's gradients);
        3. ``dmu`` and ``dlogvar`` (:func:`encoder_output_grad`):

           .. math::

               d\mu &= \sum_s dz_s + \frac{1}{B} \frac{\partial\, \mathrm{KL}}{\partial \mu} \\
               d\,\text{logvar} &= \sum_s dz_s\, \epsilon_s \frac{\exp(\text{logvar}/2)}{2}
                   + \frac{1}{B} \frac{\partial\, \mathrm{KL}}{\partial\, \text{logvar}}

           plus :math:`\frac{w - 1}{B} \partial\, \mathrm{KL} / \partial (\mu, \text{logvar})`
           when :math:`w \ne 1` (:func:`kl_weight_grad`);
        4. the encoder's backward of ``[dmu, dlogvar]`` (it fills the encoder's gradients);
        5. :math:`\lambda \theta` (:math:`\lambda` = ``weight_decay``) added to the gradient of
           every tensor.

        What it reads: ``self.cache = (mu, logvar, eps)``, kept by :meth:`forward` (eps of shape
        (S, B, Z)); the decoder's own cache, kept by its ``log_prob`` (used once); each layer's
        input, kept by its forward. So every backward follows exactly one forward. A subclass
        changes the objective through ``kl_weight`` or its decoder, not by copying this method;
        one that needs more in backward keeps it in attributes of its own after
        ``super().forward`` (``self.cache`` is the VAE's).

        ``decoder_done`` is for the overlapped training step only
        (``scratchvae.training.overlap``; see ``_hand_over_decoder``): the same numbers,
        with the end of the decoder's work handed to the caller.
        """
        if self.cache is None:
            raise RuntimeError("backward() needs a preceding elbo() call")
        mu, logvar, eps = self.cache
        S, B = eps.shape[:2]
        xp = self.xp
        dlogp = xp.full(S * B, -1.0 / (S * B), dtype=self.dtype)
        if decoder_done is None:
            dz = self.decoder.backward(dlogp)
        else:                            # the overlapped step: see _hand_over_decoder
            dz = self._hand_over_decoder(dlogp, decoder_done)
        dz = dz.reshape(S, B, self.z_dim)
        dmu, dlogvar = encoder_output_grad(dz, mu, logvar, eps)
        if self.kl_weight != 1.0:        # a weighted KL: the KL's share once more, times (w - 1)
            dmu_w, dlogvar_w = kl_weight_grad(mu, logvar, self.kl_weight)
            dmu += dmu_w
            dlogvar += dlogvar_w
        self.encoder.backward(xp.concatenate([dmu, dlogvar], axis=1), input_grad=False)
        self._add_weight_decay("all" if decoder_done is None else "rest")

    def _add_weight_decay(self, part):
        r"""``grad += weight_decay * theta`` for every tensor of ``part`` (see
        :meth:`_prior_arrays`): the gradient of :math:`\frac{\lambda}{2} \|\theta\|^2`."""
        if self.weight_decay:
            for p, g in self._prior_arrays(part):
                g += self.weight_decay * p

    def _hand_over_decoder(self, dlogp, decoder_done):
        r"""The decoder's backward for the overlapped training step: returns dz as
        ``self.decoder.backward(dlogp)`` does, but leaves its layers' weight gradients
        :math:`x^\top dy` for later (``dx`` needs ``W``, not ``dW``: ``defer`` in
        :meth:`~scratchvae.layers.Linear.backward`) and calls
        ``decoder_done(finish_decoder)`` with the function that computes them and adds the
        decoder's weight prior. From then on :meth:`backward` reads neither the decoder's
        parameters nor its gradients, so the caller may finish and update the decoder while
        the encoder's backward runs (on a second core: ``scratchvae.training.overlap``).
        Every number comes out as in the plain backward, bit for bit (tests/test_overlap.py)."""
        weight_grads = []
        dz = self.decoder.backward(dlogp, defer=weight_grads)

        def finish_decoder():
            for weight_grad in weight_grads:
                weight_grad()
            self._add_weight_decay("decoder")
        decoder_done(finish_decoder)
        return dz

    def loss_and_grads(self, x, eps=None, n_samples=1, check=True):
        """One training step's work: returns ``(loss, ELBO)`` and fills ``grads``.
        (``check``: as in :meth:`elbo`.)"""
        terms = self.elbo(x, eps, n_samples, check=check)
        loss = self.objective(terms) + self.weight_penalty()   # before backward changes anything
        self.backward()
        return loss, terms

    # -- input checks ------------------------------------------------------------------
    def _checked_noise(self, x, eps, n_samples, values=True):
        """Check ``x`` and the noise before anything changes, and return ``eps`` of shape
        (S, B, Z): the given one (a (B, Z) ``eps`` gains a leading axis), or S = ``n_samples``
        fresh draws."""
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
        """Raise unless ``x`` is a (B, D) array of the model's dtype on its device (with
        ``values``: finite, and in [0, 1] for a Bernoulli likelihood; with ``nonempty``: B > 0)."""
        validation.float_array("x", x, shape=(None, self.x_dim), finite=values)
        self._check_device("x", x)
        validation.same_dtype("x", x, self.dtype)
        if nonempty and x.shape[0] == 0:
            raise ValueError(f"x must hold at least one image (a row of {self.x_dim} pixels), "
                             f"got shape {tuple(x.shape)}")
        if values and getattr(self.decoder, "x_in_unit_interval", False):
            validation.in_unit_interval("x", x)

    def __repr__(self):
        return (f"VAE(x_dim={self.x_dim}, z_dim={self.z_dim}, hidden_dims={self.hidden_dims}, "
                f"likelihood={self.likelihood!r}, activation={self.activation!r}, "
                f"dtype={self.dtype.name}, device={self.device!r})")


class _PriorMemo:
    """The tensors :meth:`VAE._prior_arrays` last saw, and the flat arrays that hold them."""

    def __init__(self, tensors, arrays):
        self.tensors, self.arrays = tensors, arrays
