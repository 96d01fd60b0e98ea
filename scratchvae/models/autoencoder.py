"""A plain autoencoder, and PCA to compare it with.

    h = encoder(x),   x_hat = decoder(h),   loss = 1/B sum_b |x_b - x_hat_b|^2

With no hidden layers and no nonlinearity (``linear_autoencoder``) the best encoder/decoder
pair spans the same subspace as the top principal components of the data (Baldi & Hornik
1989), although its weights need not be orthogonal: :func:`principal_angles` between the
decoder's columns and PCA's components measures how close training came.
"""
import numpy as np

from .. import validation
from ..backend import get_array_module
from ..layers import MLP
from ..module import Module
from ..optim import OPTIMIZERS


class Autoencoder(Module):
    """MLP encoder x -> h (code_dim) and MLP decoder h -> x_hat, trained on squared error.

    ``hidden_dims`` are the encoder's hidden sizes (the decoder mirrors them); the code
    and the reconstruction are linear (no output activation)."""

    def __init__(self, x_dim, code_dim, hidden_dims=(), activation="tanh", init="glorot",
                 dtype="float32", device="cpu", seed=0):
        super().__init__()
        self.x_dim = validation.positive_int("x_dim", x_dim)
        self.code_dim = validation.positive_int("code_dim", code_dim)
        hidden = validation.layer_sizes("hidden_dims", hidden_dims)
        rng = np.random.default_rng(validation.seed("seed", seed))
        common = dict(activation=activation, init=init, rng=rng, dtype=dtype, device=device)
        self.encoder = MLP([self.x_dim, *hidden, self.code_dim], **common)
        self.decoder = MLP([self.code_dim, *reversed(hidden), self.x_dim], **common)
        self.is_linear = not hidden

    def children(self):
        return {"encoder": self.encoder, "decoder": self.decoder}

    def encode(self, x):
        validation.float_array("x", x, shape=(None, self.x_dim))
        return self.encoder.forward(x)

    def decode(self, h):
        validation.float_array("h", h, shape=(None, self.code_dim))
        return self.decoder.forward(h)

    def reconstruct(self, x):
        return self.decode(self.encode(x))

    def loss(self, x):
        """1/B sum_b |x_b - x_hat_b|^2 (a float); keeps what :meth:`backward` needs."""
        x_hat = self.reconstruct(x)
        self.cache = (x, x_hat)
        diff = x_hat - x
        return float((diff * diff).sum()) / x.shape[0]

    def backward(self):
        """Fill ``grads`` for the last :meth:`loss`: d loss / d x_hat = 2 (x_hat - x) / B."""
        x, x_hat = self.cache
        dh = self.decoder.backward(2.0 * (x_hat - x) / x.shape[0])
        self.encoder.backward(dh)

    def loss_and_grads(self, x):
        loss = self.loss(x)
        self.backward()
        return loss

    def decoder_basis(self):
        """(D, code_dim) columns spanning the reconstructions of a linear autoencoder."""
        if not self.is_linear:
            raise ValueError("decoder_basis is defined for a linear autoencoder (no hidden layers)")
        return self.decoder.layers[0].params["W"].T


def linear_autoencoder(x_dim, code_dim, **kwargs):
    """x_hat = (x W_e + b_e) W_d + b_d: one Linear layer each way, no nonlinearity."""
    return Autoencoder(x_dim, code_dim, hidden_dims=(), **kwargs)


def fit(model, x, optimizer="adam", lr=1e-2, epochs=10, batch_size=64, seed=0):
    """Minibatch training on squared error; returns the mean loss of each epoch.

    Each epoch visits the rows of ``x`` once in a fresh random order (seeded)."""
    validation.choice("optimizer", optimizer, OPTIMIZERS)
    validation.float_array("x", x, shape=(None, model.x_dim))
    epochs = validation.positive_int("epochs", epochs)
    batch_size = validation.positive_int("batch_size", batch_size)
    opt = OPTIMIZERS[optimizer](model.named_parameters(), lr=lr)
    rng = np.random.default_rng(validation.seed("seed", seed))
    xp = get_array_module(x)
    history = []
    for _ in range(epochs):
        order = xp.asarray(rng.permutation(x.shape[0]))
        total = 0.0
        for i in range(0, x.shape[0], batch_size):
            batch = x[order[i:i + batch_size]]
            total += model.loss_and_grads(batch) * batch.shape[0]
            opt.step()
        history.append(total / x.shape[0])
    return history


def pca(x, k):
    """The top ``k`` principal components of ``x`` (N, D) through the SVD of the centred data
    X_c = U diag(s) V^T: returns ``(mean, components, variances)`` with components the first
    k rows of V^T (orthonormal, (k, D)) and variances s_i^2 / N, largest first."""
    validation.float_array("x", x, ndim=2)
    k = validation.positive_int("k", k)
    if k > min(x.shape):
        raise ValueError(f"k must be at most min(N, D) = {min(x.shape)}, got {k}")
    xp = get_array_module(x)
    mean = x.mean(axis=0)
    _, s, vt = xp.linalg.svd(x - mean, full_matrices=False)
    return mean, vt[:k], s[:k] ** 2 / x.shape[0]


def principal_angles(U, V):
    """Principal angles (radians, smallest first) between the column spaces of U (D, p) and
    V (D, q): with orthonormal bases Q_U, Q_V, the cosines are the singular values of
    Q_U^T Q_V (Bjorck & Golub 1973). All zero when the spaces coincide.

    (Cosines near 1 lose accuracy for angles below about 1e-8 rad; ample for comparing
    a trained autoencoder with PCA.)"""
    validation.float_array("U", U, ndim=2)
    validation.float_array("V", V, shape=(U.shape[0], None))
    xp = get_array_module(U, V)
    qu, _ = xp.linalg.qr(U)
    qv, _ = xp.linalg.qr(V)
    cos = xp.linalg.svd(qu.T @ qv, compute_uv=False)
    return xp.arccos(xp.clip(cos, -1.0, 1.0))
