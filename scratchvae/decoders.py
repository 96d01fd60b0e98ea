"""Decoders p(x|z): a network from z to the parameters of a likelihood.

Each decoder has ``forward(z)`` (computes and keeps the likelihood parameters),
``log_prob(x)`` (log p(x|z) per row, for the z of the last forward),
``backward(x, dlogp)`` (gradient of sum_n dlogp_n * log p(x_n|z_n) back to z) and
``mean(z)`` (E[x|z], what a picture of the decoder shows).
"""
from . import distributions as D
from .activations import sigmoid
from .backend import get_array_module
from .module import Module


class BernoulliDecoder(Module):
    """p(x|z) = prod_d Bernoulli(x_d; sigmoid(l_d)),  l = net(z)  (binary or grey MNIST)."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.dlogits = None  # (x, d log p(x|z) / d logits), from the last log_prob

    def children(self):
        return {"net": self.net}

    def forward(self, z):
        self.cache = self.net.forward(z)
        self.dlogits = None
        return self.cache

    def log_prob(self, x):
        """log p(x|z) per row. Its gradient with respect to the logits comes out of the
        same work, so it is kept for ``backward(x, ...)``."""
        logp, dlogits = D.bernoulli_log_likelihood_and_grad(x, self.cache)
        self.dlogits = (x, dlogits)
        return logp

    def backward(self, x, dlogp):
        kept, self.dlogits = self.dlogits, None   # used once: scaled in place below
        if kept is not None and kept[0] is x:
            dlogits = kept[1]
        else:
            dlogits = D.bernoulli_log_likelihood_grad(x, self.cache)
        dlogits *= dlogp[:, None]
        return self.net.backward(dlogits)

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

    def children(self):
        return {"net": self.net}

    def forward(self, z):
        out = self.net.forward(z)
        d = out.shape[-1] // 2
        mu_x, logvar_x = sigmoid(out[:, :d]), out[:, d:]
        self.cache = (mu_x, logvar_x)
        return mu_x, logvar_x

    def log_prob(self, x):
        mu_x, logvar_x = self.cache
        return D.gaussian_log_density(x, mu_x, logvar_x)

    def backward(self, x, dlogp):
        mu_x, logvar_x = self.cache
        xp = get_array_module(x)
        dmu, dlogvar, _ = D.gaussian_log_density_grad(x, mu_x, logvar_x)
        w = dlogp[:, None]
        da = dmu * mu_x * (1 - mu_x) * w          # through mu_x = sigmoid(a)
        return self.net.backward(xp.concatenate([da, dlogvar * w], axis=1))

    def mean(self, z):
        out = self.net.forward(z)
        return sigmoid(out[:, : out.shape[-1] // 2])


DECODERS = {"bernoulli": BernoulliDecoder, "gaussian": GaussianDecoder}
