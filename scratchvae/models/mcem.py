"""Monte Carlo EM (Kingma & Welling 2013, appendix E): the decoder learned without an encoder.

The model is the VAE's generative half alone: z ~ N(0, I), x | z ~ p_theta(x|z) (a scratchvae
decoder). EM (note 001) alternates an E-step, the posterior p(z|x) under the current theta, with
an M-step that raises the complete-data objective E_{p(z|x)}[log p_theta(x, z)]. Here the
posterior has no closed form, so the E-step is replaced by a sample of it, drawn by HMC
(:mod:`scratchvae.models.hmc`), and the M-step by a few gradient steps:

    every training point n keeps its own latent z_n between visits; for a minibatch:
    E-step:  one HMC transition of each z_n towards p_theta(z|x_n)
             (10 leapfrog steps; one step size, tuned after every minibatch towards 90 % acceptance)
    M-step:  5 Adagrad updates of theta on the complete-data objective with those z fixed,

        J(theta) = 1/B sum_b [log p_theta(x_b|z_b) + log p(z_b)] - lambda/2 |theta|^2

These counts are the appendix's. A chain that keeps its z between visits continues where it
stopped, so as theta changes slowly the z_n stay close to posterior samples, which is what makes
a single transition per visit enough (a persistent chain, as in stochastic approximation EM).
"""
import numpy as np

from .. import validation
from ..backend import make_rng, resolve_device, resolve_dtype, xp_for
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
        n_leapfrog: leapfrog steps of the HMC transition per visit (10 in the paper).
        target_accept: acceptance rate the step size is tuned towards (0.9 in the paper).
        weight_updates: optimizer steps per sampled z (5 in the paper).
        step_size: the initial HMC step size.
    """

    def __init__(self, x_dim, n_train, z_dim=3, hidden_dims=(100,), likelihood="bernoulli",
                 activation="tanh", init="paper", weight_decay=0.0, n_leapfrog=10, target_accept=0.9,
                 weight_updates=5, step_size=0.1, dtype="float32", device="cpu", seed=0):
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
        self.accept_rate = None        # mean acceptance probability of the last E-step

    def children(self):
        return {"decoder": self.decoder}

    def _check(self, x, idx):
        validation.float_array("x", x, shape=(None, self.x_dim))
        if x.dtype != self.dtype:
            raise TypeError(f"x must have dtype {self.dtype} (the model's), got {x.dtype}")
        idx = self.xp.asarray(idx)
        if idx.shape != (x.shape[0],) or idx.dtype.kind not in "iu":
            raise ValueError(f"idx must be {x.shape[0]} integer row numbers of the training set "
                             f"(one per row of x), got shape {tuple(idx.shape)} and dtype {idx.dtype}")
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= self.n_train):
            raise ValueError(f"idx must lie in [0, n_train) = [0, {self.n_train})")
        return idx

    # -- the two steps ------------------------------------------------------------------------
    def e_step(self, x, idx):
        """One HMC transition of z_n for each training point n = idx[b] (row b of ``x``) under
        the current decoder; the shared step size is then tuned. Returns the acceptance
        probabilities (B,)."""
        idx = self._check(x, idx)
        target = hmc.decoder_log_joint(self.decoder, x)
        z, _, _, accept_prob = hmc.hmc_step(target, self.z[idx], self.step_size, self.n_leapfrog, self.rng)
        self.z[idx] = z
        self.step_size = hmc.tune_step_size(self.step_size, accept_prob, self.target_accept)
        self.accept_rate = float(accept_prob.mean())
        return accept_prob

    def complete_data_objective(self, x, z):
        """J = 1/B sum_b [log p(x_b|z_b) + log p(z_b)] - lambda/2 |theta|^2 (a float)."""
        self.decoder.forward(z)
        joint = self.decoder.log_prob(x) + standard_normal_log_density(z)
        return float(joint.mean()) - self.weight_penalty()

    def weight_penalty(self):
        if not self.weight_decay:
            return 0.0
        return 0.5 * self.weight_decay * sum(float((p * p).sum()) for p in self.parameters().values())

    def loss_and_grads(self, x, z):
        """-J and its gradient in every decoder weight (filled into ``grads``):
        d(-J)/d log p(x_b|z_b) = -1/B through the decoder's backward, plus lambda theta.
        (log p(z) does not depend on theta.)"""
        B = x.shape[0]
        loss = -self.complete_data_objective(x, z)
        self.decoder.backward(self.xp.full(B, -1.0 / B, dtype=self.dtype))
        if self.weight_decay:
            for _, p, g in self.named_parameters():
                g += self.weight_decay * p
        return loss

    def train_step(self, x, idx, optimizer):
        """The E-step on z[idx], then ``weight_updates`` optimizer steps with those z.
        Returns the complete-data objective J before the first weight update."""
        self.e_step(x, idx)
        z = self.z[self.xp.asarray(idx)]
        first = None
        for _ in range(self.weight_updates):
            loss = self.loss_and_grads(x, z)
            first = -loss if first is None else first
            optimizer.step()
        return first

    def __repr__(self):
        return (f"MCEM(x_dim={self.x_dim}, n_train={self.n_train}, z_dim={self.z_dim}, "
                f"hidden_dims={self.hidden_dims}, likelihood={self.likelihood!r})")
