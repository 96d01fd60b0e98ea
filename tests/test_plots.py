"""Figures: real PNG files with something in them, and the grids they are built from."""
import json
import os

import numpy as np
import pytest
from matplotlib.image import imread
from scipy.stats import norm

import scratchvae as sv
from scratchvae.training import plots
from scratchvae.training.trainer import METRICS


def _png(path, min_size=(150, 150)):
    """Read a written PNG and check it is a real picture: big enough, not one flat colour."""
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(path)[..., :3]
    assert img.shape[0] >= min_size[0] and img.shape[1] >= min_size[1]
    assert img.std() > 0.05
    return img


def test_tile_places_each_image_row_by_row():
    images = np.repeat(np.arange(5, dtype=np.float32)[:, None], 6, axis=1)   # five 2 x 3 images
    grid = plots.tile(images, (2, 3), ncols=2, pad=1, pad_value=-1)
    assert grid.shape == (3 * 2 + 2, 2 * 3 + 1)
    for i in range(5):
        r, c = divmod(i, 2)
        np.testing.assert_array_equal(grid[3 * r: 3 * r + 2, 4 * c: 4 * c + 3], i)
    assert (grid[2, :] == -1).all() and (grid[:, 3] == -1).all()     # the padding
    assert (grid[6:, 4:] == -1).all()                                # the empty sixth cell


def test_latent_grid_is_the_inverse_normal_cdf_of_a_regular_grid():
    z = plots.latent_grid(5)
    assert z.shape == (25, 2)
    u = (np.arange(5) + 0.5) / 5
    np.testing.assert_allclose(norm.cdf(z[:5, 0]), u)               # z_1 grows along a row
    np.testing.assert_allclose(norm.cdf(z[::5, 1]), u[::-1])        # z_2 shrinks down a column
    np.testing.assert_allclose(z[12], [0, 0], atol=1e-12)           # the centre is the mode


@pytest.mark.parametrize("image_shape", [(28, 28), (28, 20), (8, 8)], ids=["mnist", "frey", "digits"])
def test_manifold_and_samples_for_each_image_shape(tmp_path, image_shape):
    d = int(np.prod(image_shape))
    model = sv.VAE(d, 2, (16,), likelihood="gaussian" if image_shape == (28, 20) else "bernoulli",
                   init="he", seed=0)
    img = _png(plots.plot_manifold(model, image_shape, tmp_path / "manifold.png"), (500, 500))
    assert img.shape[0] > img.shape[1] * 0.8                       # a square-ish grid
    _png(plots.plot_samples(model, image_shape, tmp_path / "samples.png", n=36), (500, 500))
    assert sorted(os.listdir(tmp_path)) == ["manifold.png", "samples.png"]   # no temp files


def test_manifold_needs_a_2d_latent_and_the_right_image_shape(tmp_path):
    with pytest.raises(ValueError, match="needs a 2-D latent space"):
        plots.plot_manifold(sv.VAE(64, 3, (8,)), (8, 8), tmp_path / "m.png")
    with pytest.raises(ValueError, match="image_shape"):
        plots.plot_manifold(sv.VAE(64, 2, (8,)), (28, 28), tmp_path / "m.png")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("z_dim, labels", [(2, True), (5, True), (2, False)])
def test_latents_with_and_without_labels(tmp_path, z_dim, labels):
    rng = np.random.default_rng(0)
    model = sv.VAE(64, z_dim, (16,), init="he", seed=0)
    x = rng.random((200, 64)).astype(np.float32)
    y = rng.integers(0, 10, 200) if labels else None
    _png(plots.plot_latents(model, x, tmp_path / "latents.png", labels=y, batch_size=64))


def test_reconstructions_show_originals_above_reconstructions(tmp_path):
    model = sv.VAE(64, 2, (16,), seed=0)
    x = np.random.default_rng(0).random((30, 64)).astype(np.float32)
    img = _png(plots.plot_reconstructions(model, x, (8, 8), tmp_path / "r.png", n=10), (100, 500))
    assert img.shape[1] > 3 * img.shape[0]                          # two rows of ten


def _metrics(path, values):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"samples": n, "train_elbo": v + 1, "test_elbo": v}) + "\n"
                            for n, v in values))


def test_curves_compare_several_runs_on_a_log_axis(tmp_path):
    _metrics(tmp_path / "z3" / METRICS, [(10 ** e, -150 + 10 * e) for e in range(3, 8)])
    _metrics(tmp_path / "z10" / METRICS, [(10 ** e, -140 + 8 * e) for e in range(3, 8)])
    with open(tmp_path / "z10" / METRICS, "a") as f:
        f.write('{"samples": 1000000')                   # cut short by a crash: ignored
    path = plots.plot_curves([tmp_path / "z3", tmp_path / "z10" / METRICS], tmp_path / "c.png",
                             labels=["N_z = 3", "N_z = 10"])
    _png(path, (400, 600))


def test_curves_report_missing_or_empty_metrics(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metrics file"):
        plots.plot_curves([tmp_path / "nothing"], tmp_path / "c.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / METRICS).write_text("")
    with pytest.raises(ValueError, match="no evaluation yet"):
        plots.plot_curves([tmp_path / "empty"], tmp_path / "c.png")
    with pytest.raises(ValueError, match="2 labels for 1 runs"):
        plots.plot_curves([tmp_path / "empty"], tmp_path / "c.png", labels=["a", "b"])
    assert not (tmp_path / "c.png").exists()


def test_plot_run_writes_every_figure(tmp_path):
    model = sv.VAE(64, 2, (16,), seed=0)
    x = np.random.default_rng(0).random((50, 64)).astype(np.float32)
    _metrics(tmp_path / METRICS, [(100, -40.0), (200, -35.0)])
    paths = plots.plot_run(model, (8, 8), x, tmp_path, test_labels=np.arange(50) % 10)
    assert [p.name for p in paths] == [f"{k}.png" for k in plots.FIGURES]
    for p in paths:
        _png(p, (100, 300))
    model5 = sv.VAE(64, 5, (16,), seed=0)            # no manifold for a 5-D latent space
    paths = plots.plot_run(model5, (8, 8), x, tmp_path / "z5")
    assert [p.name for p in paths] == ["samples.png", "latents.png", "reconstructions.png"]


@pytest.mark.parametrize("image_shape", [(28, 20), (8, 8)], ids=["frey", "digits"])
def test_manifold_is_drawn_at_integer_scale_over_the_full_grey_range(tmp_path, image_shape):
    """Each image pixel becomes a k x k block of screen pixels (nothing resized by a fraction),
    the darkest mean is black and the brightest white, and the axes are z_1 and z_2."""
    d = int(np.prod(image_shape))
    model = sv.VAE(d, 2, (16,), likelihood="gaussian" if d == 560 else "bernoulli", seed=0)
    fig = plots.manifold_figure(model, image_shape)
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("$z_1$", "$z_2$")
    z = plots.latent_grid(20 if d == 560 else 12)
    assert float(ax.get_xticklabels()[0].get_text()) == pytest.approx(z[0, 0], abs=0.005)
    img = imread(plots._save(fig, tmp_path / "m.png"))[..., 0]
    grid = plots.tile(model.decode(z.astype(np.float32)), image_shape, int(np.sqrt(len(z))))
    x0, y0, x1, y1 = np.round(ax.get_window_extent().extents).astype(int)
    shown = img[img.shape[0] - y1: img.shape[0] - y0, x0:x1]     # the axes, top row first
    k = shown.shape[0] // grid.shape[0]
    assert shown.shape == (k * grid.shape[0], k * grid.shape[1])
    assert (shown == np.kron(shown[::k, ::k], np.ones((k, k)))).all()          # k x k blocks
    inside = shown[::k, ::k][grid < grid.max()]                              # not the padding
    assert inside.min() == 0 and shown.max() == 1
    assert len(np.unique(inside)) > 100                                       # grey, not 32 levels
