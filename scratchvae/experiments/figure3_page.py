"""Figure 3's page (``figure3 report``): its fixed text, its sections and :func:`report`, which
writes the figure, ``figure3.json`` and the page from the runs. The numbers and the sentences
worded from them are computed in :mod:`.figure3_report`."""
import json
from pathlib import Path

from . import figure3 as f3
from .figure3_report import (bound_sentences, bound_sizes, bounds_table, collect, machines_sentence,
                             markdown_table, overfit_sentences, plot, q_sentences, ranking_sentences, sci,
                             seconds_per_million, start_sentences, with_archive)


# ---------------------------------------------------------------------------------------
# the page
# ---------------------------------------------------------------------------------------
def settings_rows():
    m, e = f3.MCEM_SETTINGS, f3.ESTIMATOR
    return [
        ("data", "MNIST, pixels binarized once with a fixed seed (MCEM keeps one z per image, so an image "
                 "must not change between visits); every method trains and is measured on the same images"),
        ("model", f"Nz = {f3.Z_DIM}; decoder (and encoder for AEVB and wake-sleep) with one hidden layer of "
                  f"{f3.HIDDEN} tanh units; Bernoulli p(x|z); weights from N(0, 0.01^2) (wake-sleep: "
                  "N(0, 0.1^2), as on the Figure 2 page), a N(0, I) prior as weight decay 1/N"),
        ("training sets", f"small: the first {f3.SMALL_N} training images; large: every training image "
                          "`load_dataset(\"mnist\")` gives (the table says how many)"),
        ("AEVB, wake-sleep", f"minibatches of {f3.BATCH_SIZE}, Adagrad step {f3.LR}, its first "
                             f"{f3.ADAGRAD_WARMUP} steps only accumulating squared gradients (the authors' "
                             "`step_vae` and `step_wakesleep`)"),
        ("MCEM (batch)", f"per iteration, one HMC transition of {m['n_leapfrog']} leapfrog steps of every "
                         f"training point's z; one step size for all chains, from {m['step_size']}, multiplied "
                         f"by {m['tune_factor']} after each iteration whose mean acceptance is at least "
                         f"{m['target_accept']:.0%}, else divided by it; then {m['weight_updates']} Adagrad "
                         f"updates (step {f3.LR}, no warm-up), each on all N points with those z"),
        ("MCEM (on-line, an option)", "runs `mcem-online-*`, not in the paper's figure: the same E- and M-step "
                                      f"on one minibatch of {f3.BATCH_SIZE} at a time, each image's z a persistent "
                                      "chain moved only when its image is drawn; it shows what makes the paper's "
                                      "MCEM a batch algorithm (a sweep over all N points per weight update)"),
        ("estimator (appendix D)", f"on the first 1000 training and held-out images (`--n-eval`): one HMC chain "
                                   f"per image of {e['n_leapfrog']} leapfrog steps per transition, started at "
                                   f"the best of {e['n_init']} prior draws; the authors' chains "
                                   "(`chains=\"authors\"`: 5 burn-in transitions, each chain's step from 0.001 "
                                   "and multiplied by exp(1.02 (2a - 1)) after every transition); "
                                   f"{e['n_samples']} samples fit q, {e['n_samples']} more estimate 1/p(x); q "
                                   f"{e['q']} (full covariance), the authors' kernel estimate from the same "
                                   "samples beside it"),
        ("evaluation points", f"{f3.PER_DECADE} per decade of training samples from {sci(f3.FIRST_POINT)}; "
                              f"at the last one also ELBO (100 samples of z) and L_{f3.FINAL_K} on the first "
                              f"{f3.FINAL_IMAGES} evaluation images of each part, and the estimate with the "
                              "chains started at the model's own guess where that is better"),
    ]


STATIC_INTRO = """# Figure 3: the marginal likelihood of AEVB, wake-sleep and Monte Carlo EM

Kingma & Welling (2013) measure, in their Figure 3, not a lower bound but the marginal likelihood
log p(x) itself, for models with a 3-D latent space trained by AEVB, by wake-sleep and by Monte Carlo
EM (MCEM, which has no encoder), on a small and a large MNIST training set. This page does the same
with scratchvae: `scratchvae/models/hmc.py` (Hybrid Monte Carlo on z),
`scratchvae/training/marginal_likelihood.py` (the estimator of appendix D),
`scratchvae/models/mcem.py` (appendix E), `scratchvae/experiments/figure3.py` (the runs) and
`scratchvae/experiments/figure3_report.py` with `figure3_page.py` (this page, written from the
runs' data: every number below is computed from them). Lesson 12 (`lessons/12_posterior_sampling.py`) explains each piece and
checks it against an exact 2-D posterior.
"""

STATIC_SOURCES = """## What the paper and the authors' code say

The paper (section 5 and appendices D and E, as this project reads them) gives: Nz = 3 and 100 hidden units; MNIST; a small and
a large training set; MCEM "not an on-line algorithm"; per MCEM step 10 HMC leapfrog steps with the
step size tuned automatically to 90 % acceptance, then 5 weight updates with the sample; Adagrad for
every algorithm; the estimator on the first 1000 training and test points, 50 posterior samples per
point from HMC with 4 leapfrog steps, a density q fitted to posterior samples and averaged over new
ones.

The authors' public code (the anglepy repository of the first author) settles more. It is their
library, not the scripts that made the paper's figures (those are not public), and its files changed
over its history (an earlier `hmc.py` tunes the estimator's chains with one shared step and uses a
kernel estimate with Scott's bandwidth); where it and the paper give different numbers (20 leapfrog
steps by default in `step_batch_mcem`, 10 in `ll_estimator`), the paper's are used. Followed here:

- `wzoptim.py`, `step_batch_mcem`: one HMC transition of the z of *every* point it is given (the E-step
  over the whole training set), then `m_steps = 5` calls of the weight-update function it is passed.
  That function belongs to the unpublished script; the library's Adagrad stepper (`woptim.py`,
  `step_adagrad` over `BNModel.FuncLikelihood`) walks the training set's minibatches in a fixed
  cycle. Here each of the 5 updates uses all N points (`MCEM(m_batch_size=None)`; a fixed cycle of
  minibatches is `m_batch_size=100`).
- `hmc.py`, `hmc_step_autotune` (the E-step's tuning): one step for all chains, from 0.01, multiplied
  by min(1.25, 1.02^min(100, B)) after every transition if the fraction of B chains accepted is at
  least the target (0.9), else divided by it; the tuning never stops.
- `hmc_est.py` (commit c23d603), `ll_estimator` and `estimate_mcmc_likelihood`: chains started at a
  draw of the model (for z given x, the prior), `n_burnin = 5` transitions, then `n_leaps = 100`
  transitions kept; each chain its own step (`hmc_step_autotune_indiv`), from 0.001, multiplied by
  exp(1.02 (2a - 1)) after every transition (a = 1 if it accepted), burn-in and sampling alike: a
  rule whose fixed point is 50 % acceptance (its target argument is not used). The first half of the
  samples fits q, the second half estimates. q is `kde2` by default: `scipy.stats.gaussian_kde` with
  the bandwidth factor chosen among Scott's factor times e^((i - 5)/2), i = 0..9, by how well a
  kernel estimate of the half's second half predicts its first half; a diagonal Gaussian for one
  latent dimension or fewer than 4 fitting samples per dimension; `cov`, a full-covariance
  Gaussian, is the other choice.

Where neither says, this page chooses: each MCEM weight update on all N points (above); the
estimator's chains start at the best of 64 prior draws rather than one (the same rule for every
method, no encoder used), and at the end again at the model's own guess (the encoder's mean, MCEM's
kept z); the tuning rules see each chain's acceptance probability, whose mean is that of the
accept/reject outcome the authors' code uses and whose noise is smaller; a leapfrog trajectory of
n steps makes n position updates (the authors' makes n + 1) and its step is jittered by +-10 % rather
than given a random sign; MNIST is binarized once; the large training set is every image
`load_dataset` gives (50000 in the paper).
"""


def xaxis_section(runs):
    lines = ["## The x-axis: training samples evaluated", "",
             "The paper labels Figure 3's axis, like Figure 2's, \"# training samples evaluated\", and does not "
             "say how MCEM's samples are counted. Here: for AEVB and wake-sleep, the images of the minibatches "
             "trained on (100 per weight update); for batch MCEM, the N training points of each iteration, "
             "whose posterior samples that iteration draws (one HMC transition each) and then learns from "
             "(5 weight updates, each over the same N points with the same z). That is the count "
             "`step_batch_mcem` itself keeps: it calls the points it is given its batch. Counting every point "
             "each weight update evaluates as well would put MCEM's points 6 times further right. In work, an "
             "MCEM sample so counted costs 16 forward and backward passes through the decoder (1 + 10 for the "
             "transition, 5 for the updates), an AEVB or wake-sleep sample one pass through the encoder and "
             "one through the decoder, each forward and back."]
    costs = [(n, seconds_per_million(r), seconds_per_million(r, "train_cpu_time")) for n, r in runs.items()]
    if costs:
        lines += ["", "Measured cost of a training sample as counted (training only, without the estimates): "
                  + "; ".join(f"{n} {s:.0f} s per 10^6 samples ({c:.0f} s of CPU)" for n, s, c in costs)
                  + ". " + machines_sentence(runs) + " The page compares times only between runs made on "
                  "one machine."]
    return "\n".join(lines)


def estimator_section(check):
    return "\n".join(["## The estimator: which q", "",
                      "Both densities are fitted to the same chains; the figure's curves use the Gaussian q, "
                      "and the authors' kernel estimate (`q=\"kde\"`) is recorded beside it at every point "
                      "(`*_log_px_kde` in the data). Why the Gaussian: the ratio q(z) / p(x, z) has a finite "
                      "variance under the posterior only if q falls off faster than the posterior far from it; "
                      "a kernel estimate falls off as one kernel, of covariance f^2 C (C the samples' covariance, "
                      "close to the posterior's), which a bandwidth factor f above sqrt(2) makes wider than "
                      "twice the posterior's. Measured "
                      "(`scratchvae.derivations.hmc.compare_q`, also a test):", ""]
                     + [f"- {s}" for s in q_sentences({}, check)]
                     + ["", "The heavier tails show as an upward bias. The estimate is minus the log of an "
                        "average of 50 ratios; when rare, very large ratios carry much of the ratio's "
                        "expectation, the average of 50 is most of the time below that expectation, and minus "
                        "its log above log p(x). `scratchvae gradcheck` runs the Gaussian q's check "
                        "(`appendix_d_estimator`)."])


def commands_section(runs):
    lines = ["## Commands", "", "```bash",
             "export SCRATCHVAE_DATA_DIR=/path/to/data OPENBLAS_NUM_THREADS=1"]
    for name in f3.RUNS:
        target = runs[name]["samples"] if name in runs else f3.TARGETS[name]
        lines.append(f"scratchvae reproduce figure3 train {name} --samples {target} --runs-dir runs/figure3")
    lines += ["scratchvae reproduce figure3 report --runs-dir runs/figure3 --page docs/figure3.md", "```", "",
              "A run resumes from its checkpoint when started again (bitwise, on one machine and BLAS "
              "kernel); `--max-minutes M` stops it before an evaluation point it cannot reach within M "
              "minutes; `mcem-online-small` and `mcem-online-large` run the on-line variant. "]
    if runs:
        lines += ["Wall times of the runs on this page (training and estimates, one core each): "
                  + "; ".join(f"{n} {r['wall_time'] / 3600:.2f} h to {sci(r['samples'])} samples"
                              for n, r in runs.items()) + "."]
    return "\n".join(lines)


def results_section(runs, check, figure="results/figure3.png", data="results/figure3.json"):
    if not runs:
        return ("## Results\n\nNo Figure-3 runs made with this code are on this page yet: the commands "
                "below make them, and `figure3 report` then writes the figure, the table and the sentences "
                "that compare them.")
    parts = ["## Results", "", f"![Figure 3: estimated log p(x) against training samples]({figure})", "",
             f"Data: [`{data}`]({data}). \"est.\" is the curve's last point (chains started at the best of "
             f"{f3.ESTIMATOR['n_init']} prior draws; +- the standard error over images, which differ far more "
             "than the estimator's noise); the next column starts them at the model's own guess; the kernel "
             "q is fitted to the same samples as the Gaussian.", "", markdown_table(runs), ""]
    bt = bounds_table(runs)
    if bt:
        K, N = bound_sizes(runs)
        parts += [f"The same estimates on the first {N} images of each part, beside "
                  f"L_{K} and the ELBO there (+- the standard error of the difference image by image):",
                  "", bt, ""]
    parts += ["What the numbers say:", ""]
    for group in (bound_sentences(runs), start_sentences(runs), overfit_sentences(runs),
                  ranking_sentences(runs), q_sentences(runs, check)[-1:] if runs else []):
        parts += [f"- {s}" for s in group]
    return "\n".join(parts)


def write_page(runs, check, path, figure="results/figure3.png", data="results/figure3.json"):
    settings = "\n".join(["## Settings", "", "| | |", "|---|---|"] +
                         [f"| {k} | {v} |" for k, v in settings_rows()])
    text = "\n\n".join([STATIC_INTRO, settings, STATIC_SOURCES, xaxis_section(runs), estimator_section(check),
                        results_section(runs, check, figure, data), commands_section(runs)]) + "\n"
    from ..training.checkpoint import atomic_write
    with atomic_write(Path(path), "w") as f:
        f.write(text)
    return text


def report(runs_dir, results_dir, page=None, print_fn=print, n_replicas=2000):
    """Figure, data (``figure3.json``: the runs and the estimator's check) and, with ``page``,
    the page, from the runs in ``runs_dir`` and, for those not there, the ``figure3.json`` an
    earlier report wrote. A missing runs folder is an error; without any run the page has no
    results."""
    from ..derivations.hmc import compare_q
    from ..training.checkpoint import atomic_write

    if not Path(runs_dir).is_dir():
        raise FileNotFoundError(f"no runs folder at {runs_dir} (train runs with `figure3 train` first)")
    out = Path(results_dir)
    runs = with_archive(collect(runs_dir), out / "figure3.json")
    out.mkdir(parents=True, exist_ok=True)
    check = compare_q(n_replicas=n_replicas)
    if runs:
        path = plot(runs, out / "figure3.png")
        from ..training.plots import shrink_png
        shrink_png(path)
        print_fn(f"written: {path}")
    with atomic_write(out / "figure3.json", "w") as f:
        json.dump({"runs": runs, "estimator_check": check}, f, indent=1)
    print_fn(f"written: {out / 'figure3.json'}")
    if page:
        rel = Path(out).resolve()
        try:
            rel = rel.relative_to(Path(page).resolve().parent)
        except ValueError:
            pass
        write_page(runs, check, page, figure=f"{rel.as_posix()}/figure3.png",
                   data=f"{rel.as_posix()}/figure3.json")
        print_fn(f"written: {page}")
    print_fn(markdown_table(runs) if runs else f"no Figure-3 runs under {runs_dir}")
    return 0
