"""Autoencoders and PCA: a linear autoencoder learns the principal subspace."""
import numpy as np
import pytest
import scipy.linalg

from scratchvae.models.autoencoder import Autoencoder, fit, linear_autoencoder, pca, principal_angles
from scratchvae.backend import as_numpy
from scratchvae.gradcheck import THRESHOLD, check_directional, check_gradients


def _data(n=1000, d=10, k=3, seed=0):
    """n points near a k-dimensional affine subspace of R^d (scales 3, 2, 1.5; noise 0.1)."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((d, k)))[0]
    return (rng.standard_normal((n, k)) * [3.0, 2.0, 1.5]) @ basis.T + 0.1 * rng.standard_normal((n, d)) + 1.0


def test_pca_matches_the_covariance_eigenvectors(xp):
    """PCA by SVD of the centred data: components are the top eigenvectors of the covariance
    (up to sign) and variances its top eigenvalues."""
    x = _data()
    mean, comp, var = (as_numpy(a) for a in pca(xp.asarray(x), 3))
    evals, evecs = np.linalg.eigh(np.cov(x.T, bias=True))
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(var, evals[::-1][:3], rtol=1e-10)
    np.testing.assert_allclose(np.abs(comp @ evecs[:, ::-1][:, :3]), np.eye(3), atol=1e-10)


def test_principal_angles_match_scipy(xp):
    """Principal angles between column spaces equal scipy.linalg.subspace_angles (sorted)."""
    rng = np.random.default_rng(1)
    U, V = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    ours = as_numpy(principal_angles(xp.asarray(U), xp.asarray(V)))
    np.testing.assert_allclose(ours, np.sort(scipy.linalg.subspace_angles(U, V)), rtol=1e-10)


def test_principal_angles_ignore_the_basis(xp):
    """The same span in another basis (any invertible mixing of the columns) gives zero angles."""
    U = np.random.default_rng(2).standard_normal((6, 3))
    mixed = U @ np.array([[2.0, 1.0, 0.0], [0.0, -1.0, 3.0], [1.0, 0.0, 1.0]])
    assert as_numpy(principal_angles(xp.asarray(U), xp.asarray(mixed))).max() < 1e-7


def test_linear_autoencoder_recovers_the_pca_subspace(xp, device):
    """A linear autoencoder trained on squared error spans the top-k principal subspace (Baldi &
    Hornik 1989). Eckart-Young: its loss is at least PCA's, sum_{i>k} lambda_i; and the excess
    bounds the angles: sum_j sin^2 theta_j <= (loss - PCA loss) / (lambda_k - lambda_{k+1})."""
    x = _data()
    model = linear_autoencoder(10, 3, dtype="float64", device=device, seed=0)
    history = fit(model, xp.asarray(x), optimizer="adam", lr=1e-2, epochs=40, batch_size=50, seed=0)
    assert history[-1] < history[0] / 100
    lam = np.linalg.svd(x - x.mean(axis=0), compute_uv=False) ** 2 / len(x)
    loss, pca_loss = model.loss(xp.asarray(x)), lam[3:].sum()
    assert loss >= pca_loss * (1 - 1e-12)
    _, comp, _ = pca(xp.asarray(x), 3)
    angles = as_numpy(principal_angles(model.decoder_basis(), comp.T))
    assert (np.sin(angles) ** 2).sum() <= (loss - pca_loss) / (lam[2] - lam[3])
    assert np.degrees(angles).max() < 1.0
    assert loss < 1.5 * pca_loss


def test_nonlinear_autoencoder_gradient_every_tensor(xp, device):
    """d/dtheta of 1/B sum_b |x_b - decoder(encoder(x_b))|^2 for every tensor (tanh MLPs)."""
    model = Autoencoder(5, 2, hidden_dims=(4,), activation="tanh", dtype="float64", device=device, seed=1)
    x = xp.asarray(np.random.default_rng(3).standard_normal((6, 5)))
    model.loss_and_grads(x)
    grads = {k: g.copy() for k, g in model.gradients().items()}
    reports = check_gradients(lambda: model.loss(x), model.parameters(), grads)
    assert len(reports) == 8 and max(r.worst for r in reports) < THRESHOLD
    rel, _, _ = check_directional(lambda: model.loss(x), model.parameters(), grads)
    assert rel < THRESHOLD


def test_nonlinear_autoencoder_training_lowers_the_loss(xp, device):
    """Minibatch training with each optimizer lowers the reconstruction error, in float32."""
    x = xp.asarray(_data(n=300).astype(np.float32))
    for optimizer, lr in (("sgd", 1e-3), ("adagrad", 0.05), ("adam", 1e-2)):
        model = Autoencoder(10, 3, hidden_dims=(16,), activation="tanh", device=device, seed=2)
        before = model.loss(x)
        history = fit(model, x, optimizer=optimizer, lr=lr, epochs=15, batch_size=32, seed=1)
        assert model.loss(x) < 0.5 * before, optimizer
        assert model.parameters()["encoder.0.W"].dtype == np.float32 and len(history) == 15


def test_shapes_and_reconstruct(xp, device):
    """encode: (B, D) -> (B, k); decode: (B, k) -> (B, D); reconstruct = decode(encode(x))."""
    model = Autoencoder(6, 2, hidden_dims=(5,), device=device, seed=0)
    x = xp.asarray(np.random.default_rng(4).standard_normal((3, 6)).astype(np.float32))
    h = model.encode(x)
    assert h.shape == (3, 2) and model.decode(h).shape == (3, 6)
    np.testing.assert_array_equal(as_numpy(model.reconstruct(x)), as_numpy(model.decode(model.encode(x))))


def test_decoder_basis_only_for_linear():
    """decoder_basis is the (D, k) span of a linear autoencoder; a nonlinear one has none."""
    assert linear_autoencoder(7, 2).decoder_basis().shape == (7, 2)
    with pytest.raises(ValueError, match="linear"):
        Autoencoder(7, 2, hidden_dims=(4,)).decoder_basis()
