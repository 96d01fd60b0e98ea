"""The figures of Kingma & Welling (2013), as PNG files, without a display.

    manifold         Figure 4: decoder means on a grid of the 2-D latent space
    samples          Figure 5: decoder means of z ~ N(0, I)
    latents          encoder means mu(x) of held-out images, coloured by label
    reconstructions  images beside the decoder's picture of their encoding
    curves           Figure 2: the lower bound against training samples seen

Figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas, never
through ``pyplot``, so they work on a machine without a display and leave the
backend of a notebook alone. Each is saved through a temporary file and renamed,
so a figure on disk is always complete.
"""
import json
import math
from pathlib import Path

import numpy as np

from .. import validation
from ..backend import as_numpy, to_device
from .checkpoint import atomic_write, writable_dir
from .metrics import METRICS, numbered_records, shown


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    path = Path(path)
    with atomic_write(path) as f:
        fig.savefig(f, format="png")
    return path


def _check_shape(model, image_shape):
    image_shape = tuple(int(s) for s in image_shape)
    if math.prod(image_shape) != model.x_dim:
        raise ValueError(f"image_shape {image_shape} has {math.prod(image_shape)} pixels, "
                         f"the model's images have {model.x_dim}")
    return image_shape


def tile(images, image_shape, ncols, pad=1, pad_value=1.0):
    """Arrange the rows of ``images`` (N, D) as a grid of ``image_shape`` pictures,
    ``ncols`` per row, separated by ``pad`` pixels of ``pad_value``: a 2-D host array."""
    images = as_numpy(images).reshape(-1, *image_shape)
    n, (h, w) = images.shape[0], image_shape
    nrows = -(-n // ncols)
    grid = np.full((nrows * (h + pad) - pad, ncols * (w + pad) - pad), pad_value, dtype=np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        grid[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = img
    return grid


def _image_figure(grid, path, title, size=7.0):
    """Show a :func:`tile` grid ``size`` inches along its longer side, under a title."""
    h, w = grid.shape
    inch = size / max(h, w)
    band = 0.35  # inches for the title
    fig = _figure(w * inch, h * inch + band)
    ax = fig.add_axes([0, 0, 1, h * inch / (h * inch + band)])
    ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    fig.suptitle(title, fontsize=9, y=1 - 0.05 * band / (h * inch + band), va="top")
    return _save(fig, path)


def latent_grid(n=20):
    """The (n * n, 2) grid of Figure 4: linearly spaced points of the unit square,
    (i + 1/2) / n for i = 0..n-1, mapped through the inverse normal CDF so that equal
    steps carry equal prior probability. Row-major, top row = largest z_2."""
    from scipy.stats import norm

    n = validation.positive_int("n", n)
    u = norm.ppf((np.arange(n) + 0.5) / n)
    z1, z2 = np.meshgrid(u, u[::-1])
    return np.stack([z1.ravel(), z2.ravel()], axis=1)


def plot_manifold(model, image_shape, path, n=None):
    """Figure 4 as a PNG file: :func:`manifold_figure`, saved to ``path``."""
    return _save(manifold_figure(model, image_shape, n), path)


def manifold_figure(model, image_shape, n=None, new_figure=None, pixels=800):
    """Figure 4: decoder means E[x|z] for z on the n x n :func:`latent_grid` (a 2-D latent
    only); n defaults to 20 as in the paper, 12 for images as small as 8 x 8.

    Each image pixel is drawn as k x k screen pixels, k the largest integer that keeps the
    grid within ``pixels`` (so no pixel is doubled and its neighbour not), and the grey scale
    runs from the darkest to the brightest mean on the grid (a Gaussian decoder's faces use
    only part of [0, 1]). The axes give z_1 and z_2 at the images' centres.
    ``new_figure(figsize=..., dpi=...)``, if given, makes the figure (``plt.figure`` to show it)."""
    if model.z_dim != 2:
        raise ValueError(f"the manifold figure needs a 2-D latent space; this model has "
                         f"z_dim={model.z_dim} (train with --latent-dim 2)")
    image_shape = _check_shape(model, image_shape)
    n = (20 if min(image_shape) >= 16 else 12) if n is None else validation.positive_int("n", n)
    z = latent_grid(n)
    means = as_numpy(model.decode(to_device(z.astype(model.dtype), model.device)))
    lo, hi = float(means.min()), float(means.max())
    grid = tile(means, image_shape, n, pad_value=hi)
    k = max(1, pixels // max(grid.shape))
    left, right, bottom, top = 70, 20, 55, 40                     # margins, in pixels
    width, height = left + k * grid.shape[1] + right, bottom + k * grid.shape[0] + top
    fig = (_figure(width / 100, height / 100) if new_figure is None
           else new_figure(figsize=(width / 100, height / 100), dpi=100))
    ax = fig.add_axes([left / width, bottom / height, k * grid.shape[1] / width,
                       k * grid.shape[0] / height])
    ax.imshow(grid, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
    ax.spines[:].set_visible(False)             # a frame or tick marks would cover outer pixels
    ax.tick_params(length=0)
    (h, w), labelled = image_shape, np.unique(np.linspace(0, n - 1, 5).round().astype(int))
    ax.set_xticks(labelled * (w + 1) + (w - 1) / 2, [f"{z[i, 0]:.2f}" for i in labelled])
    ax.set_yticks(labelled * (h + 1) + (h - 1) / 2, [f"{z[i * n, 1]:.2f}" for i in labelled])
    ax.set(xlabel="$z_1$", ylabel="$z_2$")
    ax.set_title(f"decoder means on a {n} x {n} grid of z (grey: {lo:.2f} to {hi:.2f})", fontsize=9)
    return fig


def plot_samples(model, image_shape, path, n=100, seed=0):
    """Figure 5: decoder means E[x|z] for ``n`` draws z ~ N(0, I)."""
    from ..backend import make_rng

    image_shape = _check_shape(model, image_shape)
    x = model.sample(validation.positive_int("n", n), rng=make_rng(seed, model.device))
    return _image_figure(tile(x, image_shape, math.ceil(math.sqrt(n))), path,
                         f"samples from the prior, {model.z_dim}-D latent space")


def plot_reconstructions(model, x, image_shape, path, n=10):
    """The first ``n`` rows of ``x`` (top) above E[x | z = mu(x)] (bottom)."""
    image_shape = _check_shape(model, image_shape)
    x = x[: validation.positive_int("n", n)]
    pair = np.concatenate([as_numpy(x), as_numpy(model.reconstruct(x))])
    return _image_figure(tile(pair, image_shape, x.shape[0]), path,
                         "held-out images (top) and their reconstructions (bottom)")


def plot_latents(model, x, path, labels=None, batch_size=1000):
    """Encoder means mu(x) of the rows of ``x``, coloured by ``labels``. A latent space
    with more than two dimensions is shown through its first two principal components."""
    mu = np.concatenate([as_numpy(model.encode(x[i:i + batch_size])[0])
                         for i in range(0, x.shape[0], batch_size)]).astype(np.float64)
    axes = ("z_1", "z_2")
    if mu.shape[1] == 1:
        mu = np.concatenate([mu, np.zeros_like(mu)], axis=1)
        axes = ("z_1", "")
    elif mu.shape[1] > 2:
        centred = mu - mu.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        mu = centred @ vt[:2].T
        axes = ("first principal component of mu", "second principal component of mu")
    fig = _figure(6, 5)
    ax = fig.add_subplot()
    if labels is None:
        ax.scatter(mu[:, 0], mu[:, 1], s=4, alpha=0.6)
    else:
        labels = as_numpy(labels)
        points = ax.scatter(mu[:, 0], mu[:, 1], c=labels, cmap="tab10", s=4, alpha=0.8,
                            vmin=-0.5, vmax=9.5)
        fig.colorbar(points, ax=ax, ticks=range(10), label="label")
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(f"encoder means of {x.shape[0]} held-out images")
    return _save(fig, path)


def plot_curves(runs, path, labels=None, title="lower bound during training"):
    """Figure 2: ELBO per image against training samples seen (log scale), held-out
    (solid) and training (dashed), one colour per run.

    ``runs`` lists ``metrics.jsonl`` files, or run folders holding one."""
    runs = [Path(r) for r in runs]
    if not runs:
        raise ValueError("runs is empty: give at least one metrics file or run folder")
    labels = list(labels) if labels is not None else [
        (r.name if r.is_dir() else r.parent.name) for r in runs]
    if len(labels) != len(runs):
        raise ValueError(f"got {len(labels)} labels for {len(runs)} runs")
    fig = _figure(7, 5)
    ax = fig.add_subplot()
    for i, (run, label) in enumerate(zip(runs, labels)):
        file = run / METRICS if run.is_dir() else run
        if not file.is_file():
            raise FileNotFoundError(f"no metrics file at {str(file)!r}")
        records = [_curve_record(file, line, r) for line, r in numbered_records(file)]
        if not records:
            raise ValueError(f"{str(file)!r} holds no evaluation yet")
        n = [r["samples"] for r in records]
        color = f"C{i % 10}"
        ax.plot(n, [r["test_elbo"] for r in records], "-", color=color, label=f"{label} held-out")
        ax.plot(n, [r["train_elbo"] for r in records], "--", color=color, label=f"{label} train")
    ax.set_xscale("log")
    ax.set_xlabel("training samples evaluated")
    ax.set_ylabel("lower bound per image (nats)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def shrink_png(path, colors=32):
    """Re-save a PNG figure with a palette of ``colors`` colours (32 grey levels are plenty to
    read a picture of decoder means), so that the figures of a results page stay small."""
    from PIL import Image

    img = Image.open(path).convert("RGB")
    r, g, b = (np.asarray(c) for c in img.split())
    if (r == g).all() and (g == b).all():
        img = img.convert("L")
    img.quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return Path(path)


def _curve_record(file, line, record):
    """``record`` if it can be drawn (a number of samples > 0, the two bounds as numbers), else
    a ValueError naming the file, the line and what is missing: no record is dropped unsaid."""
    for key in ("samples", "train_elbo", "test_elbo"):
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{file}: line {line}: the record has no number {key!r} "
                             f"(got {value!r}): {shown(json.dumps(record))}")
    if not record["samples"] > 0:
        raise ValueError(f"{file}: line {line}: samples must be > 0 on the curves' log axis, "
                         f"got {record['samples']!r}")
    return record


FIGURES = ("manifold", "samples", "latents", "reconstructions", "curves")


def plot_run(model, image_shape, test_x, out, test_labels=None, kinds=FIGURES, runs=None,
             output=None):
    """Write the figures ``kinds`` of a trained model into the folder ``out`` as
    ``<kind>.png`` (or into ``output`` when one kind is asked for); returns their paths.
    ``manifold`` is left out for a latent space that is not 2-D, ``curves`` when no
    metrics file exists (``runs`` defaults to ``[out]``)."""
    out = writable_dir(out)
    kinds = [validation.choice("kind", kind, FIGURES) for kind in kinds]
    if output is not None and len(kinds) != 1:
        raise ValueError(f"output names one file but {len(kinds)} figures were asked for")
    paths = []
    for kind in kinds:
        path = Path(output) if output is not None else out / f"{kind}.png"
        if kind == "manifold" and model.z_dim == 2:
            paths.append(plot_manifold(model, image_shape, path))
        elif kind == "samples":
            paths.append(plot_samples(model, image_shape, path))
        elif kind == "latents":
            paths.append(plot_latents(model, test_x, path, labels=test_labels))
        elif kind == "reconstructions":
            paths.append(plot_reconstructions(model, test_x, image_shape, path))
        elif kind == "curves" and (runs or (out / METRICS).is_file()):
            paths.append(plot_curves(runs or [out], path))
    return paths
