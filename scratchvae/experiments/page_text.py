"""The words of the results page (``docs/results.md``); :func:`.page.report` fills in every
number from the runs."""

PAGE = """\
# Reproducing Kingma & Welling (2013), section 5

This page puts scratchvae beside the experiments of "Auto-Encoding Variational Bayes"
(Kingma & Welling, 2013): the lower bound of AEVB and of the wake-sleep algorithm against
training samples (their Figure 2), the 2-D manifold (Figure 4) and samples from the prior
(Figure 5). It is written by `python -m scratchvae.experiments.reproduce report --page
docs/results.md` from the runs that exist when it is run, finished or not: each run is shown
as far as it got. The figures and the data behind the table are in [`results/`]({results}/);
a model whose run folder is no longer there is shown from the data an earlier report saved
there.

Figure 3 (the marginal likelihood of AEVB, wake-sleep and Monte Carlo EM) has its own page: [figure3.md](figure3.md).

## Settings

From the paper (section 5), in `scratchvae/experiments/runs.py`:

| | Frey Face | MNIST |
|---|---|---|
| encoder and decoder | one hidden layer of 200 tanh units | one hidden layer of 500 tanh units |
| p(x\\|z) | Gaussian, sigmoid mean, learned variance; pixels / 256 | Bernoulli |
| minibatch, samples of z per image | 100, S = 1 (the paper's L = 1) | the same |
| optimizer | Adagrad, global step size from {{0.01, 0.02, 0.1}} | the same |
| initial weights | N(0, 0.01): AEVB from N(0, 0.01^2), wake-sleep from N(0, 0.1^2) (below) | the same |
| prior on the parameters | N(0, I): weight decay 1/N per image | the same |
| wake-sleep | the same encoder (as recognition model), decoder, optimizer, step-size rule and prior; the encoder's log-variance outputs start at zero | the same |

Where the paper is silent, scratchvae follows the authors' public code (the `anglepy` library
and the experiment script `gpulearn_z_x.py` of the same author). That code is not the paper's
own: the paper is of December 2013, and the script was published with the authors' 2014 paper
on semi-supervised learning (the `nips14-ssl` repository; the result folders named in it carry
Unix times of October 2014). It trains with Adam where the paper names Adagrad, and MNIST in
minibatches of 1000 where the paper uses 100; the `anglepy` functions cited below
(`step_vae`, `step_wakesleep`) are not dated to the paper either. The script that made the
paper's figures is not public, so where the two could differ, which one the paper's runs did
is not known.

- **Frey Face split**: the script shuffles the 1965 frames (`np.random.shuffle`) and trains on
  the first 1600, keeping the other 365 as held-out frames. scratchvae does the same with a
  documented shuffle: the held-out frames are the first 365 of
  `np.random.default_rng(0).permutation(1965)` (`load_dataset("frey")`; `--split-seed S` for
  another shuffle).
- **Adagrad's warm-up**: the authors' `step_vae` and `step_wakesleep` add every squared gradient
  to Adagrad's sum from the first step but update the parameters only once their step counter
  (from 0) exceeds 100, so the first 101 steps only accumulate. scratchvae's
  `Adagrad(..., warmup=101)` does the same. Without it the first update divides each gradient
  by its own magnitude and moves every weight by the whole step size.
- **Weight decay**: the authors add batch / N_train times the prior's gradient to the gradient of
  the minibatch's *summed* bound; scratchvae averages the bound over the minibatch and adds
  1/N_train times the prior's gradient. The two differ by the factor batch, which Adagrad's
  update does not see.
- **Wake-sleep dreams**: Bernoulli samples for MNIST; Gaussian samples for Frey Face, clipped to
  the pixels' range [0, 1] as the authors' model of sigmoid-Gaussian pixels does.
- **A wake-sleep step** updates the decoder with the wake gradient first and dreams with the
  updated decoder for the sleep phase, as the authors' `step_wakesleep` does; and the
  encoder's log-variance outputs start with zero weights and biases, as in the authors'
  recognition models (`VAE_Z_X`, `MLBN_Inverse`). `WakeSleep(update_order=..., logvar_init=...)`
  also offers the earlier step (both gradients at the same parameters) and start.{ws_versions}
- **Initial weights.** The paper draws them from "N(0, 0.01)"; in its own notation, N(mu,
  sigma^2), 0.01 is the variance (standard deviation 0.1), while the authors' code draws them
  with standard deviation 0.01 (`init_w(std=1e-2)`). AEVB's runs here follow the code
  (`init="paper"`). Wake-sleep's start from N(0, 0.1^2) (`init="paper-variance"`): from the
  code's scale wake-sleep never leaves the prior on Frey Face at Nz = 2 and 5 (every seed, step
  size and order tried; `scratchvae/models/wake_sleep.py`), and in the paper's Figure 2 it
  learns at every Nz. The two algorithms therefore start from different scales here, a
  departure from the paper's one rule: AEVB's runs were made with the code's scale before
  this was found and are not yet rerun. What the scale does, measured with runs named
  `-sd0.1` (AEVB from wake-sleep's scale) and `-sd0.01` (wake-sleep from AEVB's), seed 0,
  {init_scale}

scratchvae's own choices, where the authors' code differs or says nothing:

- **The prior covers the biases too.** The authors' model puts N(0, I) on the weight matrices
  only; scratchvae's `VAE(weight_decay=...)` decays every parameter tensor. With 1/N = 1/1600
  per image the pull on a bias b is b/1600 per image; on the largest biases (the decoder's
  log-variances, about -7) it shifts them by about 0.01 against a curvature of 0.5 per pixel,
  which by this estimate (not measured) changes the bound by well under a nat.
- **Minibatches** are drawn without replacement, one random permutation per epoch (the authors
  draw each minibatch with replacement); Adagrad's epsilon is added outside the square root
  (1e-8; the authors add 1e-8 inside it).
- **MNIST**: these runs had only the MNIST *test* file (10,000 images) to work with, so
  the 9000/1000 split of that file is used (held-out = the first 1000 of
  `np.random.default_rng(0).permutation(10000)`). The paper does not say how many training
  images it used; most likely 50,000: the authors' script sets `n_train = 50000` for MNIST, and
  its loader (`anglepy/data/mnist.py`, `load_numpy`) reads a pickled (train, valid, test)
  triple, the layout of the 50,000 / 10,000 / 10,000 `mnist.pkl.gz` made from the 60,000
  images of the training file.
  Each training minibatch is binarized afresh (pixels are read as probabilities); the held-out
  images are binarized once, with a fixed seed.
- **Evaluation**: at 8 log-spaced points per decade of training samples, the ELBO with one
  sample of z per image on all held-out images (365 Frey Face frames, 1000 MNIST images) and on a
  fixed random subset of as many training images.

**The images of each run**, from its settings:

{splits}

**Step size.** The paper chose it "based on performance on the training set in the first few
iterations"; `reproduce stepsize` compares the candidates after 10^5 training samples:

{stepsize}

## Results

Lower bound per image, training / held-out, at 10^6, 10^7 and 10^8 training samples, and
where each run is now (samples reached, bound there, training wall time). The paper's numbers
are AEVB's, read off its Figure 2 (about +-20 nats; "-" where a curve cannot be read apart).

{table}

{machines}

{figures}

## Commands and wall times

Long runs go through a queue that runs at most two at a time, each on one core
(`OPENBLAS_NUM_THREADS=1`, `nice -n 5`), on a 2-core machine shared with other work; a run
checkpoints at every evaluation point and the same command resumes it. Each line below is one
call of `python -m scratchvae.experiments.reproduce` with `--runs-dir /path/to/runs` and the
data folder in `SCRATCHVAE_DATA_DIR=/path/to/data`; a later line with a larger `--samples`
continues the run an earlier one began if its folder was still there, and otherwise starts it
again from the beginning. A line marked "interrupted, resumed" is a run whose machine stopped
before it ended; the next line of the same command resumed it from its checkpoint. The table
above shows each model's run that got furthest. `scratchvae reproduce run all` runs every one
of them (and Figure 3's) from one command on a Dask cluster, one run per core, resuming what
exists; `--dry-run` lists them with the time each is estimated to take.

{commands}{reruns}

The step-size runs: `reproduce stepsize frey-z20 frey-z20-ws mnist-z20 mnist-z20-ws`
({stepsize_seconds}). This page: `reproduce report --runs-dir /path/to/runs --page
docs/results.md --log /path/to/runs/queue.log` (seconds; `reproduce run` writes that log: a
START and an END line for every run).

## Where the results differ from the paper, and why

- **Training length.** Runs that have not reached 10^8 samples (see the table) are compared at
  the points they reached. A Frey Face run of 10^8 samples is 10^6 steps; the table gives each
  run's training time.
- **Against the paper's numbers**, where a run reached them (ours - paper, train / held-out):
  {paper_gap} Where the training bound is above the paper's and the held-out bound below it,
  the model fits its training images more closely than the paper's did, and the held-out bound
  peaks and then falls while the training bound still rises: {heldout_peaks} What differs
  between the two trainings is listed under Settings (the shuffle, minibatches drawn without
  replacement, the prior on the biases, where Adagrad's epsilon goes); these runs do not say
  which of them matters.
- **MNIST data.** {mnist_train} training images instead of (most likely) 50,000: fewer images are
  fitted more closely, and the held-out bound falls behind the training bound: {mnist_gap}
- **Frey Face split.** The paper's split is random, like the one used here, but the shuffle
  itself is not published: another shuffle gives other held-out frames. {split_seeds} How much
  the shuffle and the run's own seed move the result, on one machine and across machines:
  *Run to run*, below.
- **Wake-sleep against AEVB.** {ws_vs_aevb}{ws_collapse}
- **The paper's numbers** are read off a plot: +-20 nats.

## Run to run: the spread of a Frey Face result

{spread}

## A lesson about held-out data: the contiguous split

An earlier version of this page held out the *last* 465 frames of the video (`--split
contiguous`) and found held-out bounds far below the paper's ({contiguous_elbos}). The model
was not at fault: neighbouring frames of a video are near copies, so
a random split tests on frames very like training frames, while the end of the video holds
poses and expressions the model never saw. The held-out ELBO of every 100 consecutive held-out
frames of those runs (no warm-up, 1500 training frames) shows where it fails:

{contiguous}

{contiguous_worst}: the decoder's per-pixel variances shrink on the training frames and
punish pixels unlike any it saw. Both splits are fair
questions; they are different questions (interpolation between seen frames, or extrapolation
to a new stretch of video), and a result is only comparable with one that asked the same.
"""
