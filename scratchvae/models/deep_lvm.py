"""The deep latent-variable model of note 000: a mixture of infinitely many Gaussians.

    z ~ N(0, I)                                   (Z latent dimensions)
    p(x | z) = N(x; mu(z), diag(exp(s(z))))       (D observed dimensions)
    mu(z) = sigmoid(A z + c),   s(z) = sigmoid(B z + d),   theta = (A, B, c, d)

so log p(x|z) is a diagonal Gaussian log-density with mean mu(z) and log-variance s(z).
Its gradient, for the upstream gradient dlogp_n of each row (the gradient of an objective
with respect to log p(x_n|z_n)), by the chain rule through the two sigmoids:

    dmu = (x - mu) / exp(s),   ds = 1/2 [(x - mu)^2 / exp(s) - 1]
    da  = dlogp dmu mu (1 - mu),   db = dlogp ds s (1 - s)  (a = A z + c, b = B z + d)
    dA  = sum_n da_n z_n^T,    dc = sum_n da_n,   dB = sum_n db_n z_n^T,   dd = sum_n db_n
    dz  = A^T da + B^T db

Even though p(x|z) is a simple Gaussian, the marginal p(x) = E_{z ~ N(0, I)} p(x|z) is
not; :meth:`DeepLVM.log_marginal` estimates it by Monte Carlo, on a grid for a heat map.
Rows are examples: ``z`` is (N, Z) and ``A z`` is written ``z @ A.T``.
"""
import numpy as np

from .. import validation
from ..activations import sigmoid
from ..backend import get_array_module, resolve_device, resolve_dtype, to_device
from ..distributions import (gaussian_log_density, gaussian_log_density_grad, log_mean_exp, reparameterize,
                             standard_normal_log_density)
from ..module import Module


class DeepLVM(Module):
    """p(x|z) = N(sigmoid(A z + c), diag(exp(sigmoid(B z + d)))),  z ~ N(0, I).

    Args:
        A, B: (D, Z) weights of the mean and of the log-variance.
        c, d: (D,) their offsets.
    Parameters live in ``params`` ('A', 'B', 'c', 'd') with gradients in ``grads``,
    like every module, so the gradient checker and optimizers reach them alike.
    """

    def __init__(self, A, B, c, d):
        super().__init__()
        validation.float_array("A", A, ndim=2)
        Dx, Z = A.shape
        validation.float_array("B", B, shape=(Dx, Z))
        validation.float_array("c", c, shape=(Dx,))
        validation.float_array("d", d, shape=(Dx,))
        for name, a in (("B", B), ("c", c), ("d", d)):
            validation.same_dtype(name, a, A.dtype)
        self.params = {"A": A, "B": B, "c": c, "d": d}
        self.grads = {k: get_array_module(v).zeros_like(v) for k, v in self.params.items()}

    @classmethod
    def random(cls, x_dim=2, z_dim=1, scale=2.0, seed=0, dtype="float64", device="cpu"):
        """A model with every entry of A, B, c, d drawn from N(0, scale^2)."""
        x_dim = validation.positive_int("x_dim", x_dim)
        z_dim = validation.positive_int("z_dim", z_dim)
        dtype, device = resolve_dtype(dtype), resolve_device(device)
        rng = np.random.default_rng(validation.seed("seed", seed))
        shapes = {"A": (x_dim, z_dim), "B": (x_dim, z_dim), "c": (x_dim,), "d": (x_dim,)}
        return cls(**{k: to_device(rng.normal(0.0, scale, s).astype(dtype), device)
                      for k, s in shapes.items()})

    @property
    def x_dim(self):
        return self.params["A"].shape[0]

    @property
    def z_dim(self):
        return self.params["A"].shape[1]

    def likelihood_params(self, z):
        """mu(z) = sigmoid(A z + c) and logvar(z) = sigmoid(B z + d), each (N, D)."""
        validation.float_array("z", z, shape=(None, self.z_dim))
        p = self.params
        return sigmoid(z @ p["A"].T + p["c"]), sigmoid(z @ p["B"].T + p["d"])

    def log_prob(self, x, z):
        """log p(x_n | z_n) per row (N,); keeps what :meth:`backward` needs."""
        mu, logvar = self.likelihood_params(z)
        validation.float_array("x", x, shape=(z.shape[0], self.x_dim))
        self.cache = (x, z, mu, logvar)
        return gaussian_log_density(x, mu, logvar)

    def backward(self, dlogp=None):
        """Fill ``grads`` with d/dtheta of sum_n dlogp_n log p(x_n|z_n) and return dz (N, Z),
        for the last :meth:`log_prob`; ``dlogp`` (N,) is all ones by default."""
        if self.cache is None:
            raise RuntimeError("backward() needs a preceding log_prob() call")
        x, z, mu, logvar = self.cache
        xp = get_array_module(x, z)
        if dlogp is None:
            dlogp = xp.ones(x.shape[0], dtype=x.dtype)
        dmu, dlogvar, _ = gaussian_log_density_grad(x, mu, logvar)
        da = dmu * mu * (1 - mu) * dlogp[:, None]               # through mu = sigmoid(a)
        db = dlogvar * logvar * (1 - logvar) * dlogp[:, None]   # through logvar = sigmoid(b)
        self.grads["A"][...] = da.T @ z
        self.grads["c"][...] = da.sum(axis=0)
        self.grads["B"][...] = db.T @ z
        self.grads["d"][...] = db.sum(axis=0)
        return da @ self.params["A"] + db @ self.params["B"]

    def log_joint(self, x, z):
        """log p(x, z) = log p(x|z) + log N(z; 0, I), per row."""
        return self.log_prob(x, z) + standard_normal_log_density(z)

    def sample(self, n, rng):
        """Ancestral sampling: z ~ N(0, I), then x = mu(z) + exp(logvar(z)/2) eps with eps ~ N(0, I)
        (the reparameterization, read as a sampler). Returns ``(x, z)``."""
        n = validation.positive_int("n", n)
        xp = get_array_module(self.params["A"])
        dtype = self.params["A"].dtype
        z = xp.asarray(rng.standard_normal((n, self.z_dim)), dtype=dtype)
        eps = xp.asarray(rng.standard_normal((n, self.x_dim)), dtype=dtype)
        mu, logvar = self.likelihood_params(z)
        return reparameterize(mu, logvar, eps), z

    def pairwise_log_prob(self, x, z):
        """(N, S) matrix of log p(x_n | z_s) for every point against every latent sample."""
        validation.float_array("x", x, shape=(None, self.x_dim))
        mu, logvar = self.likelihood_params(z)
        return gaussian_log_density(x[:, None, :], mu[None], logvar[None])

    def log_marginal(self, x, n_samples=1000, rng=None, z=None, chunk=4096):
        """Monte Carlo estimate of log p(x_n) = log E_{z ~ N(0, I)} p(x_n | z), per row:

            log p(x) ~ log (1/S) sum_s p(x | z_s)   (log-mean-exp, so no p underflows)

        The same S draws (or the given ``z``, (S, Z)) serve every row, so a grid of
        estimates is smooth. Rows are taken ``chunk`` at a time to bound memory."""
        if z is None:
            n_samples = validation.positive_int("n_samples", n_samples)
            rng = np.random.default_rng(0) if rng is None else rng
            xp = get_array_module(self.params["A"])
            z = xp.asarray(rng.standard_normal((n_samples, self.z_dim)), dtype=self.params["A"].dtype)
        xp = get_array_module(x, z)
        return xp.concatenate([log_mean_exp(self.pairwise_log_prob(x[i:i + chunk], z), axis=1)
                               for i in range(0, x.shape[0], chunk)])

    def grid_log_marginal(self, x1, x2, n_samples=1000, rng=None):
        """log p(x) on the grid x = (x1[j], x2[i]) of a 2-D model: an (len(x2), len(x1))
        array, row i for x2[i], ready for ``plt.imshow(np.exp(...), origin='lower')``."""
        if self.x_dim != 2:
            raise ValueError(f"grid_log_marginal needs a model with x_dim = 2, this one has {self.x_dim}")
        xp = get_array_module(x1, x2)
        g1, g2 = xp.meshgrid(x1, x2)
        points = xp.stack([g1.ravel(), g2.ravel()], axis=1).astype(self.params["A"].dtype)
        return self.log_marginal(points, n_samples, rng).reshape(g1.shape)

    def __repr__(self):
        return f"DeepLVM(x_dim={self.x_dim}, z_dim={self.z_dim})"
