"""Monte Carlo EM (Kingma & Welling 2013, appendix E): the decoder learned without an encoder.

The model is the VAE's generative half alone: z ~ N(0, I), x | z ~ p_theta(x|z) (a scratchvae
decoder). EM (note 001) alternates an E-step, the posterior p(z|x) under the current theta, with
an M-step that raises the complete-data objective E_{p(z|x)}[log p_theta(x, z)]. Here the
posterior has no closed form, so the E-step is replaced by a sample of it, drawn by HMC
(:mod:`scratchvae.models.hmc`), and the M-step by a few gradient steps. Every training point n
keeps its own latent z_n, the state of its own Markov chain, from one iteration to the next.

**Batch MCEM** (:meth:`MCEM.batch_step`), the algorithm of the paper ("not an on-line
algorithm", Figure 3) as the authors' code runs it (``step_batch_mcem`` in ``anglepy/wzoptim.py``):

    E-step:  one HMC transition of *every* training point's z_n towards p_theta(z|x_n)
             (10 leapfrog steps; one step size shared by all chains, tuned once per iteration by
             the authors' rule: times 1.25 if the mean acceptance is >= 90 %, else divided by 1.25)
    M-step:  5 Adagrad updates of theta on the complete-data objective with those z fixed,

        J(theta) = 1/N sum_n [log p_theta(x_n|z_n) + log p(z_n)] - lambda/2 |theta|^2

each update on all N points (``m_batch_size=None``), or each on the next ``m_batch_size`` rows
of a fixed cycle through the training set (the authors' minibatch stepper, ``step_adagrad`` over
``FuncLikelihood`` blocks, walks its blocks in that order). The counts 10, 90 % and 5 are the
appendix's; the rule and the factor 1.25 are the code's (``hmc_step_autotune`` in ``anglepy/hmc.py``).

**On-line MCEM** (:meth:`MCEM.train_step`), kept as a named option because it shows what makes
batch MCEM batch: the same two steps on one minibatch at a time (the E-step moves only the
minibatch's z_n, the M-step uses only them). Because each chain keeps its state between visits
and theta changes slowly, the z_n stay close to posterior samples, and one transition per visit
is enough: a persistent chain, as in stochastic approximation EM. It trades the batch
algorithm's sweep over all data per weight update for chains that lag behind theta.

Arguments are checked before any state changes: a bad optimizer, NaN images, wrong shapes or
row numbers raise an error naming the argument, and the latents are untouched.
"""
import numpy as np

from .. import validation
from ..backend import get_array_module, make_rng, resolve_device, resolve_dtype, xp_for
from ..decoders import DECODERS
from ..distributions import standard_normal_log_density
from ..layers import MLP
from ..module import Module
from . import hmc


class MCEM(Module):
    """A decoder with one persistent latent per training point, trained by Monte Carlo EM.

    Args:
        x_dim: pixels per image.
        n_train: training points, each with its own z (row n of ``self.z``).
        z_dim, hidden_dims, likelihood, activation, init, weight_decay, dtype, device, seed:
            as for :class:`scratchvae.VAE` (the decoder is built the same way).
        n_leapfrog: leapfrog steps of the HMC transition per iteration (10 in the paper).
        target_accept: acceptance rate the step size is tuned towards (0.9 in the paper).
        weight_updates: optimizer steps per E-step (5 in the paper).
        step_size: the initial HMC step size (0.01, the authors' ``hmc_stepsize``).
        tune_factor: the step is multiplied or divided by it after each E-step (1.25, theirs).
        m_batch_size: rows per weight update of :meth:`batch_step`; None: all of them.
        block_size: rows that go through the decoder at once (memory only; results do not
            depend on it except through the order of random draws, which it does not change).
    """

    def __init__(self, x_dim, n_train, z_dim=3, hidden_dims=(100,), likelihood="bernoulli",
                 activation="tanh", init="paper", weight_decay=0.0, n_leapfrog=10, target_accept=0.9,
                 weight_updates=5, step_size=0.01, tune_factor=1.25, m_batch_size=None, block_size=1000,
                 dtype="float32", device="cpu", seed=0):
        super().__init__()
        self.x_dim = validation.positive_int("x_dim", x_dim)
        self.n_train = validation.positive_int("n_train", n_train)
        self.z_dim = validation.positive_int("z_dim", z_dim)
        self.hidden_dims = validation.layer_sizes("hidden_dims", hidden_dims)
        self.likelihood = validation.choice("likelihood", likelihood, DECODERS)
        self.n_leapfrog = validation.positive_int("n_leapfrog", n_leapfrog)
        self.target_accept = hmc.check_target_accept(target_accept)
        self.weight_updates = validation.positive_int("weight_updates", weight_updates)
        self.step_size = validation.positive_number("step_size", step_size)
        if not validation.real_number("tune_factor", tune_factor) >= 1:
            raise ValueError(f"tune_factor must be a number >= 1, got {tune_factor}")
        self.tune_factor = float(tune_factor)
        if m_batch_size is not None:
            validation.positive_int("m_batch_size", m_batch_size)
            if m_batch_size > self.n_train:
                raise ValueError(f"m_batch_size must be at most n_train ({self.n_train}), got {m_batch_size}")
        self.m_batch_size = m_batch_size
        self.block_size = validation.positive_int("block_size", block_size)
        self.weight_decay = validation.non_negative_number("weight_decay", weight_decay)
        self.dtype = resolve_dtype(dtype)
        self.device = resolve_device(device)
        self.xp = xp_for(self.device)
        out_dim = DECODERS[likelihood].outputs_per_pixel * self.x_dim
        init_rng = np.random.default_rng(seed)
        self.decoder = DECODERS[likelihood](
            MLP([self.z_dim, *self.hidden_dims, out_dim], activation=activation, init=init,
                rng=init_rng, dtype=self.dtype, device=self.device))
        self.rng = make_rng(seed, self.device)
        self.z = self.rng.standard_normal((self.n_train, self.z_dim), dtype=self.dtype)  # from the prior
        self.m_cursor = 0              # where the next minibatch weight update starts (m_batch_size)
        self.accept_rate = None        # mean acceptance probability of the last E-step

    def children(self):
        return {"decoder": self.decoder}

    # -- checks (before any state changes) ----------------------------------------------------
    def check_optimizer(self, optimizer):
        """``optimizer`` must be a scratchvae optimizer over this model's parameters."""
        named = getattr(optimizer, "named", None)
        if not callable(getattr(optimizer, "step", None)) or named is None:
            raise TypeError("optimizer must be a scratchvae optimizer over this model's parameters, "
                            f"e.g. Adagrad(model.named_parameters()); got {optimizer!r}")
        theirs = [p for _, p, _ in named]
        for name, p, _ in self.named_parameters():
            xp = get_array_module(p)
            if not any(q is p or (type(q) is type(p) and xp.shares_memory(p, q)) for q in theirs):
                raise ValueError(f"optimizer does not update this model's parameter {name!r}: build it "
                                 "with Adagrad(model.named_parameters()) of this model")
        return optimizer

    def _check_x(self, x, rows=None):
        validation.float_array("x", x, shape=(rows, self.x_dim))
        if x.dtype != self.dtype:
            raise TypeError(f"x must have dtype {self.dtype} (the model's), got {x.dtype}")
        return x

    def _check(self, x, idx):
        self._check_x(x)
        idx = self.xp.asarray(idx)
        if idx.shape != (x.shape[0],) or idx.dtype.kind not in "iu":
            raise ValueError(f"idx must be {x.shape[0]} integer row numbers of the training set "
                             f"(one per row of x), got shape {tuple(idx.shape)} and dtype {idx.dtype}")
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= self.n_train):
            raise ValueError(f"idx must lie in [0, n_train) = [0, {self.n_train})")
        return idx

    def _check_training_set(self, x):
        """Batch MCEM is given the whole training set: row n of ``x`` is the image of z_n."""
        if getattr(x, "ndim", 0) == 2 and x.shape[0] != self.n_train:
            raise ValueError(f"x must be the whole training set, one row per z ({self.n_train} rows), "
                             f"got {x.shape[0]} rows")
        return self._check_x(x, self.n_train)

    # -- the two steps ------------------------------------------------------------------------
    def _transition(self, x, idx):
        """One HMC transition of z[idx] (block by block) under the current decoder, with the
        current shared step; returns the acceptance probabilities. Does not tune."""
        xp = self.xp
        accept = []
        for start in range(0, len(idx), self.block_size):
            rows = idx[start:start + self.block_size]
            target = hmc.decoder_log_joint(self.decoder, x[start:start + self.block_size])
            z, _, _, a = hmc.hmc_step(target, self.z[rows], self.step_size, self.n_leapfrog, self.rng)
            self.z[rows] = z
            accept.append(a)
        return xp.concatenate(accept)

    def _tune(self, accept_prob):
        self.step_size = hmc.tune_step_size_sign(self.step_size, accept_prob, self.target_accept,
                                                 self.tune_factor)
        self.accept_rate = float(accept_prob.mean())

    def e_step(self, x, idx=None):
        """One HMC transition of z_n for each training point n = idx[b] (row b of ``x``), or,
        with ``idx`` None, of every training point (``x`` the whole training set), under the
        current decoder; the shared step size is then tuned once. Returns the acceptance
        probabilities (one per chain moved)."""
        if idx is None:
            self._check_training_set(x)
            idx = self.xp.arange(self.n_train)
        else:
            idx = self._check(x, idx)
        a = self._transition(x, idx)
        self._tune(a)
        return a

    def complete_data_objective(self, x, z):
        """J = 1/B sum_b [log p(x_b|z_b) + log p(z_b)] - lambda/2 |theta|^2 (a float)."""
        joint = 0.0
        for start in range(0, x.shape[0], self.block_size):
            zb = z[start:start + self.block_size]
            self.decoder.forward(zb)
            joint += float((self.decoder.log_prob(x[start:start + self.block_size])
                            + standard_normal_log_density(zb)).sum())
        return joint / x.shape[0] - self.weight_penalty()

    def weight_penalty(self):
        if not self.weight_decay:
            return 0.0
        return 0.5 * self.weight_decay * sum(float((p * p).sum()) for p in self.parameters().values())

    def loss_and_grads(self, x, z):
        """-J and its gradient in every decoder weight (filled into ``grads``):
        d(-J)/d log p(x_b|z_b) = -1/B through the decoder's backward, plus lambda theta.
        (log p(z) does not depend on theta.) Rows go through in blocks of ``block_size``,
        their gradients summed."""
        B = x.shape[0]
        named = list(self.named_parameters())
        total = None
        joint = 0.0
        for start in range(0, B, self.block_size):
            xb, zb = x[start:start + self.block_size], z[start:start + self.block_size]
            self.decoder.forward(zb)
            joint += float((self.decoder.log_prob(xb) + standard_normal_log_density(zb)).sum())
            self.decoder.backward(self.xp.full(xb.shape[0], -1.0 / B, dtype=self.dtype))
            if B > self.block_size:
                if total is None:
                    total = [g.copy() for _, _, g in named]
                else:
                    for acc, (_, _, g) in zip(total, named):
                        acc += g
        if total is not None:
            for acc, (_, _, g) in zip(total, named):
                g[...] = acc
        loss = -(joint / B - self.weight_penalty())
        if self.weight_decay:
            for _, p, g in named:
                g += self.weight_decay * p
        return loss

    def m_step(self, x, optimizer, z=None):
        """``weight_updates`` optimizer steps on the complete-data objective with the latents
        ``z`` (default: the kept z of every training point, ``x`` the training set) held fixed:
        each on all rows, or, with ``m_batch_size``, on the next rows of a fixed cycle through
        them. Returns J before the first update (on the rows of that update)."""
        cycle = z is None and self.m_batch_size is not None
        z = self.z if z is None else z
        first = None
        for _ in range(self.weight_updates):
            xb, zb = x, z
            if cycle:
                rows = self.xp.asarray((self.m_cursor + np.arange(self.m_batch_size)) % self.n_train)
                self.m_cursor = int((self.m_cursor + self.m_batch_size) % self.n_train)
                xb, zb = x[rows], z[rows]
            loss = self.loss_and_grads(xb, zb)
            first = -loss if first is None else first
            optimizer.step()
        return first

    def batch_step(self, x, optimizer):
        """One iteration of batch MCEM: the E-step on every training point (``x`` the whole
        training set, row n the image of z_n), then :meth:`m_step`. Returns J before the first
        weight update. Checks ``x`` and ``optimizer`` before anything changes."""
        self.check_optimizer(optimizer)
        self._check_training_set(x)
        self.e_step(x)
        return self.m_step(x, optimizer)

    def train_step(self, x, idx, optimizer):
        """One step of on-line MCEM: the E-step on z[idx] only, then ``weight_updates``
        optimizer steps with those z on the minibatch ``x``. Returns the complete-data
        objective J before the first weight update. Checks its arguments before anything
        changes."""
        self.check_optimizer(optimizer)
        idx = self._check(x, idx)
        self.e_step(x, idx)
        return self.m_step(x, optimizer, z=self.z[idx])

    def __repr__(self):
        return (f"MCEM(x_dim={self.x_dim}, n_train={self.n_train}, z_dim={self.z_dim}, "
                f"hidden_dims={self.hidden_dims}, likelihood={self.likelihood!r})")
