r"""Decoders :math:`p(x|z)`: a network from :math:`z` to the parameters of a likelihood, and how
to add one.

The decoder protocol: every decoder (a subclass of :class:`Decoder`) is built from one
network ``net`` (an MLP from :math:`z` to ``outputs_per_pixel * x_dim`` numbers, made by the
VAE) and has

``forward(z)``
    computes the likelihood's parameters for ``z`` (N, Z) and keeps them;
``log_prob(x)``
    :math:`\log p(x|z)` per row (N,), for the ``z`` of the last forward, keeping what
    backward needs;
``backward(dlogp)``
    the gradient of :math:`\sum_n \text{dlogp}_n \log p(x_n|z_n)` with respect to ``z``
    (N, Z), filling the net's gradients on the way (like every module's backward);
``mean(z)``
    :math:`\mathbb{E}[x|z]` (N, D), what a picture of the decoder shows.

The VAE calls them in that order in a training step: forward, log_prob, then backward with
:math:`\text{dlogp} = -1/(S B)` per row (see :meth:`scratchvae.vae.VAE.backward`). A decoder of
your own is registered under a name, which a VAE's ``likelihood`` then names, so ``config()``
and checkpoints record it and ``scratchvae.load_model`` rebuilds it::

    @register_decoder("fixed-gaussian")
    class FixedGaussianDecoder(Decoder):
        ...

    model = VAE(64, likelihood="fixed-gaussian")

A decoder's constructor takes the network only: anything else is fixed by its class (one
registered class per setting) or learned as a parameter.

The built-in decoders' ``backward`` also takes ``defer``, passed on to ``self.net.backward``
(see :meth:`~scratchvae.layers.Linear.backward`): only the overlapped training step
(``scratchvae.training.overlap``, off by default) uses it, and it stays off for a decoder
without it.
"""
from . import validation
from .activations import sigmoid
from .backend import get_array_module
from .distributions import bernoulli_log_likelihood_and_grad, gaussian_log_density, gaussian_log_density_grad
from .module import Module

DECODERS = {}   # likelihood name -> decoder class (register_decoder adds to it)


def register_decoder(name):
    """Class decorator: make the :class:`Decoder` subclass available to ``VAE(likelihood=name)``
    and to checkpoints. Registering the same name again is allowed for a class of the same
    module and name (a notebook cell run twice), refused for a different one."""
    if not (isinstance(name, str) and name):
        raise TypeError(f"register_decoder needs the likelihood's name, a non-empty string, "
                        f"as in @register_decoder('fixed-gaussian'); got {name!r}")

    def register(cls):
        if not (isinstance(cls, type) and issubclass(cls, Module)):
            raise TypeError(f"register_decoder({name!r}) decorates a decoder class (a subclass of "
                            f"scratchvae.Decoder), got {cls!r}")
        missing = [m for m in ("forward", "log_prob", "backward", "mean")
                   if not callable(getattr(cls, m, None))]
        if missing:
            raise TypeError(f"{cls.__name__} lacks {', '.join(missing)}: a decoder needs forward(z), "
                            f"log_prob(x), backward(dlogp) and mean(z) (see scratchvae.decoders)")
        validation.positive_int(f"{cls.__name__}.outputs_per_pixel", getattr(cls, "outputs_per_pixel", None))
        _claim(DECODERS, name, cls, "decoder")
        return cls

    return register


def _claim(registry, name, cls, what):
    """Put ``cls`` under ``name`` unless another class (not a redefinition of it) holds it."""
    old = registry.get(name)
    redefined = old is not None and (old.__module__, old.__qualname__) == (cls.__module__, cls.__qualname__)
    if old is not None and old is not cls and not redefined:
        raise ValueError(f"the {what} name {name!r} is taken by {old.__module__}.{old.__qualname__}; "
                         f"register {cls.__qualname__} under another name")
    registry[name] = cls


class Decoder(Module):
    """The decoder protocol (see the module docstring), with the network in ``self.net``.

    Class attributes: ``outputs_per_pixel``, how many numbers per pixel the network outputs
    (1 for Bernoulli logits, 2 for a Gaussian's mean and log-variance); ``x_in_unit_interval``,
    whether the data must lie in :math:`[0, 1]` (the VAE then checks it)."""
    outputs_per_pixel = 1
    x_in_unit_interval = False

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, z):
        """Compute (and keep) the likelihood's parameters for ``z`` (N, Z); return them."""
        raise NotImplementedError(f"{type(self).__name__}.forward(z) is not written yet")

    def log_prob(self, x):
        r""":math:`\log p(x|z)` per row (N,), for the ``z`` of the last forward; keep what backward
        needs."""
        raise NotImplementedError(f"{type(self).__name__}.log_prob(x) is not written yet")

    def backward(self, dlogp):
        r"""``dz`` (N, Z): the gradient of :math:`\sum_n \text{dlogp}_n \log p(x_n|z_n)` with
        respect to ``z``, through ``self.net.backward`` (which fills the network's gradients)."""
        raise NotImplementedError(f"{type(self).__name__}.backward(dlogp) is not written yet")

    def mean(self, z):
        r""":math:`\mathbb{E}[x|z]` (N, D)."""
        raise NotImplementedError(f"{type(self).__name__}.mean(z) is not written yet")


@register_decoder("bernoulli")
class BernoulliDecoder(Decoder):
    r""":math:`p(x|z) = \prod_d \operatorname{Bernoulli}(x_d; \operatorname{sigmoid}(l_d))` with
    logits :math:`l = \operatorname{net}(z)` (binary or grey MNIST)."""
    x_in_unit_interval = True

    def __init__(self, net):
        super().__init__(net)
        self.logits = None

    def forward(self, z):
        self.logits = self.net.forward(z)
        self.cache = None
        return self.logits

    def log_prob(self, x):
        r""":math:`\log p(x|z)` per row. Its gradient with respect to the logits,
        :math:`x - \operatorname{sigmoid}(l)`, comes out of the same work, so it is kept for
        :meth:`backward`."""
        logp, dlogits = bernoulli_log_likelihood_and_grad(x, self.logits)
        self.cache = dlogits
        return logp

    def backward(self, dlogp, defer=None):
        r"""``dz`` for the upstream gradient ``dlogp`` (one value per row): the net's backward of
        :math:`\text{dlogits}_n = \text{dlogp}_n \big(x_n - \operatorname{sigmoid}(l_n)\big)`.
        (``defer``: see :meth:`scratchvae.layers.MLP.backward`.)"""
        if self.cache is None:
            raise RuntimeError("backward() needs a preceding log_prob()")
        dlogits, self.cache = self.cache, None     # used once: scaled in place
        dlogits *= dlogp[:, None]
        return self.net.backward(dlogits, defer=defer)

    def mean(self, z):
        return sigmoid(self.net.forward(z))


@register_decoder("gaussian")
class GaussianDecoder(Decoder):
    r""":math:`p(x|z) = \mathcal{N}(x; \mu_x, \operatorname{diag}(\exp(\text{logvar}_x)))` with
    :math:`[a, \text{logvar}_x] = \operatorname{net}(z)` and
    :math:`\mu_x = \operatorname{sigmoid}(a)`.

    The sigmoid keeps the mean in (0, 1) like the pixels; the log-variance is
    learned per pixel and per z, as for Frey Face in Kingma & Welling (2013).
    ``net`` must output ``2 * x_dim`` values: the mean's logits, then the log-variances.
    """
    outputs_per_pixel = 2

    def __init__(self, net):
        super().__init__(net)
        self.mu_x = self.logvar_x = None

    def forward(self, z):
        out = self.net.forward(z)
        d = out.shape[-1] // 2
        self.mu_x, self.logvar_x = sigmoid(out[:, :d]), out[:, d:]
        self.cache = None
        return self.mu_x, self.logvar_x

    def log_prob(self, x):
        r""":math:`\log p(x|z)` per row; keeps ``x`` for :meth:`backward`."""
        self.cache = x
        return gaussian_log_density(x, self.mu_x, self.logvar_x)

    def backward(self, dlogp, defer=None):
        r"""``dz`` for the upstream gradient ``dlogp`` (one value per row): the net's backward of
        :math:`\big[\partial/\partial a,\ \partial/\partial\, \text{logvar}_x\big] \log p(x_n|z_n)`,
        each row scaled by :math:`\text{dlogp}_n`, with
        :math:`\partial \log p / \partial a
        = \partial \log p / \partial \mu_x \cdot \mu_x (1 - \mu_x)`.
        (``defer``: see :meth:`scratchvae.layers.MLP.backward`.)"""
        if self.cache is None:
            raise RuntimeError("backward() needs a preceding log_prob()")
        x, self.cache = self.cache, None
        mu_x, logvar_x = self.mu_x, self.logvar_x
        dmu_x, dlogvar_x, _ = gaussian_log_density_grad(x, mu_x, logvar_x)
        w = dlogp[:, None]
        da = dmu_x * mu_x * (1 - mu_x) * w           # through mu_x = sigmoid(a)
        return self.net.backward(get_array_module(x).concatenate([da, dlogvar_x * w], axis=1), defer=defer)

    def mean(self, z):
        out = self.net.forward(z)
        return sigmoid(out[:, : out.shape[-1] // 2])

