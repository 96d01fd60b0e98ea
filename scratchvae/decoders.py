"""Decoders p(x|z): a network from z to the parameters of a likelihood.

Each decoder has ``forward(z)`` (computes and keeps the likelihood's parameters),
``log_prob(x)`` (log p(x|z) per row, for the z of the last forward, keeping what backward
needs), ``backward(dlogp)`` (the gradient of sum_n dlogp_n * log p(x_n|z_n) back to z, like
every module's backward) and ``mean(z)`` (E[x|z], what a picture of the decoder shows).
"""
from .activations import sigmoid
from .backend import get_array_module
from .distributions import bernoulli_log_likelihood_and_grad, gaussian_log_density, gaussian_log_density_grad
from .module import Module


class BernoulliDecoder(Module):
    """p(x|z) = prod_d Bernoulli(x_d; sigmoid(l_d)),  l = net(z)  (binary or grey MNIST)."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.logits = None

    def children(self):
        return {"net": self.net}

    def forward(self, z):
        self.logits = self.net.forward(z)
        self.cache = None
        return self.logits

    def log_prob(self, x):
        """log p(x|z) per row. Its gradient with respect to the logits, x - sigmoid(l), comes
        out of the same work, so it is kept for :meth:`backward`."""
        logp, dlogits = bernoulli_log_likelihood_and_grad(x, self.logits)
        self.cache = dlogits
        return logp

    def backward(self, dlogp, defer=None):
        """dz for the upstream gradient ``dlogp`` (one value per row): the net's backward of
        dlogits = dlogp_n (x - sigmoid(l)). (``defer``: see :meth:`MLP.backward`.)"""
        if self.cache is None:
            raise RuntimeError("backward() needs a preceding log_prob()")
        dlogits, self.cache = self.cache, None     # used once: scaled in place
        dlogits *= dlogp[:, None]
        return self.net.backward(dlogits, defer=defer)

    def mean(self, z):
        return sigmoid(self.net.forward(z))


class GaussianDecoder(Module):
    """p(x|z) = N(x; mu_x, diag(exp(logvar_x))) with [a, logvar_x] = net(z), mu_x = sigmoid(a).

    The sigmoid keeps the mean in (0, 1) like the pixels; the log-variance is
    learned per pixel and per z, as for Frey Face in Kingma & Welling (2013).
    ``net`` must output ``2 * x_dim`` values: the mean's logits, then the log-variances.
    """

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.mu_x = self.logvar_x = None

    def children(self):
        return {"net": self.net}

    def forward(self, z):
        out = self.net.forward(z)
        d = out.shape[-1] // 2
        self.mu_x, self.logvar_x = sigmoid(out[:, :d]), out[:, d:]
        self.cache = None
        return self.mu_x, self.logvar_x

    def log_prob(self, x):
        """log p(x|z) per row; keeps x for :meth:`backward`."""
        self.cache = x
        return gaussian_log_density(x, self.mu_x, self.logvar_x)

    def backward(self, dlogp, defer=None):
        """dz for the upstream gradient ``dlogp`` (one value per row): the net's backward of
        [d/da, d/dlogvar_x] log p, each row scaled by dlogp_n, with da = dmu_x mu_x (1 - mu_x).
        (``defer``: see :meth:`MLP.backward`.)"""
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


DECODERS = {"bernoulli": BernoulliDecoder, "gaussian": GaussianDecoder}
