"""The implementation's derivations (every layer's backward, the whole VAE's gradient, the
optimizers' updates), one test per check of ``scratchvae.derivations.library``."""
from scratchvae.derivations import library


def test_layer_backward(xp):
    """Linear: dW = x^T dy, db = sum dy, dx = dy W^T; activations: da = dy f'(a); MLPs."""
    check = library.layer_backward(xp)
    assert check.passed, check


def test_vae_gradient(xp):
    """d(-ELBO + lambda/2 |theta|^2)/dtheta for every tensor, both decoders, eps frozen."""
    check = library.vae_gradient(xp)
    assert check.passed, check
    assert "bernoulli: 8 tensors" in check.details and "gaussian: 8 tensors" in check.details


def test_optimizers(xp):
    """SGD with momentum, Adagrad and Adam equal the textbook updates written out in plain Python."""
    check = library.optimizers(xp)
    assert check.passed, check
