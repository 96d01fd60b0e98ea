"""The wake-sleep algorithm (Hinton et al. 1995) on the VAE's encoder and decoder.

Kingma & Welling (2013) compare AEVB with wake-sleep in their Figure 2, using the same
encoder as wake-sleep's recognition model. Wake-sleep trains the two networks on two
different objectives, one phase each per step:

    wake:   x from the data,  z ~ q(z|x)                  (the encoder's guess)
            decoder theta: maximize log p(x|z)              -- fit the generative model
            to the data as if the encoder's z were the true causes
    sleep:  z ~ p(z) = N(0, I),  x ~ p(x|z)                 (a "dream" of the decoder)
            encoder phi:   maximize log q(z|x)              -- fit the recognition model
            to the decoder's own (z, x) pairs, where the true cause z is known

The wake phase is the decoder's part of the ELBO's gradient (the KL term has no theta in
it). The sleep phase is not: it fits q(z|x) to p(z|x) by minimizing KL(p(z|x) || q(z|x))
averaged over dreams x ~ p(x), the reverse of the KL the ELBO's encoder gradient
minimizes, and on the model's dreams instead of the data. So no single objective is
ascended; the lower bound is still a fair report of the model (it is the ELBO of the same
encoder and decoder), computed by :meth:`VAE.elbo`.

Gradients, for a minibatch of B images (S samples of z each) and n dreams:

    wake:  d/dtheta [-1/(S B) sum log p(x_b|z_sb)]      decoder backward of -1/(S B), as in
                                                          the VAE but stopping at z
    sleep: with [mu, logvar] = encoder(x_i) and v = exp(logvar),
           d(-1/n sum_i log q(z_i|x_i))/dmu     = -(z_i - mu) / v / n
           d(-1/n sum_i log q(z_i|x_i))/dlogvar = -1/2 [(z_i - mu)^2 / v - 1] / n
           (:func:`sleep_gradient`), then the encoder's backward

plus the same weight prior as the VAE (lambda theta on every tensor). Dreams are
Bernoulli samples for a Bernoulli decoder and Gaussian samples for a Gaussian one,
clipped to the pixels' range [0, 1] as the authors' code does.

The authors' order and initialization
-------------------------------------
The paper's own script is not public; the authors' library (``anglepy``, 2014, after the
paper) has a wake-sleep step (``wzoptim.step_wakesleep``) and recognition models
(``VAE_Z_X``, ``MLBN_Inverse``) that this class follows by default:

- ``update_order='decoder-first'``: the wake gradient updates the decoder at once (an
  Adagrad step), and the sleep phase dreams with the *updated* decoder before the encoder
  is updated. Both networks' updates count as one step (Adagrad's warm-up counts steps).
  The Trainer's :func:`~scratchvae.training.step.train_step` does it by handing
  :meth:`backward` an ``update`` that applies the optimizer to one network
  (:meth:`~scratchvae.optim.Optimizer.step_in_parts`). ``'together'`` is the order this
  class had before: both gradients at the same parameters, then one update.
- ``logvar_init='zero'`` (with ``init='paper'``): the weights and biases of the encoder's
  log-variance outputs start at zero, every other weight from N(0, 0.01^2); so q(z|x) starts
  as N(mu(x), I). ``'drawn'`` draws them like the rest, as the VAE does.

Which one mattered: neither the order nor the log-variance initialization, but the scale of
the initial weights. Measured on Frey Face (1600 training frames, the paper's networks of
200 tanh units, Adagrad 0.01 with the authors' warm-up): from N(0, 0.01^2), the standard
deviation of the authors' ``init_w``, wake-sleep stays at the prior at Nz = 2 and 5, in
every combination of order and initialization and in every seed tried. It is held near the
fixed point where the encoder ignores x and the decoder ignores z, because each phase
learns only from what the other network gives it: dreams of a decoder that ignores z say
nothing about z, and codes that ignore x give the wake phase no reason to use z. From
weights of 0.01 the path z -> x passes two small matrices, so the pull away from the point
is too weak to be seen. At Nz = 2, after 10^6 samples, in each of the four combinations
alike:

    KL term on the held-out frames                 <= 0.001 nats
    spread of the encoder's mu over held-out frames 0.0003-0.0005 (0.0038 at the start: falling)
    dreams: sum over pixels of Var_z E[x|z]        1e-4, against sum of Var[x|z] = 6.36:
            a dream carries 1.5e-5 of its variance from z
    sleep gradient of the encoder's mean weights   0.04-0.06 on average over dreams, against
            0.17-0.21 of noise in one minibatch of 100 dreams

The other changes tried do not move it (held-out KL term, Nz = 2, seed 0): Adagrad 0.02
(0.001 at 5.6 x 10^5 samples) or 0.1 (0.12, the bound below the prior's); no weight prior
(0.0004 at 10^6); dreams without the decoder's noise, its means (0.0000 at 10^6); Adam 1e-3
instead of Adagrad (0.006 at 10^6); seeds 1, 2 and 3 at Nz = 2 and 5 (held-out bound
558.4-559.2 at 5.2-6.2 x 10^6 samples, the prior's 559). The scale does: from
N(0, 0.1^2), the paper's "N(0, 0.01)" read as a variance (its notation is N(mu, sigma^2)),
the KL term is 3.1-3.3 at 10^5 samples and 4.1-4.4 at 3 x 10^5 at Nz = 2 (seeds 0, 1, 2),
4.0-5.1 and 6.6-8.2 at Nz = 5; at 10^6, 5.1 and 9.6 (seed 0), the held-out bound 745 and 869
against the prior's 559. Glorot's initialization leaves the point as well (4.6 at 10^6,
Nz = 2). The 8 x 8 digits show the same at Adagrad 0.01 (``init='paper'`` stays,
``'paper-variance'`` leaves: tests/test_wake_sleep.py). So the paper's runs
(``scratchvae.experiments.runs``) start wake-sleep from ``init='paper-variance'``.
"""
from .. import validation
from ..activations import sigmoid
from ..distributions import gaussian_log_density, gaussian_log_density_grad
from ..layers import Linear
from ..vae import VAE

UPDATE_ORDERS = ("decoder-first", "together")
LOGVAR_INITS = ("zero", "drawn")


def sleep_gradient(z, mu, logvar):
    """The sleep phase's gradient at the encoder's outputs: of

        loss = -1/n sum_i log q(z_i|x_i),   q(z|x) = N(mu, diag(v)),  v = exp(logvar),
        log q(z_i|x_i) = -1/2 sum_j [log 2pi + logvar_ij + (z_ij - mu_ij)^2 / v_ij],

    with respect to ``mu`` and ``logvar`` (each (n, Z), row i the encoder's output for the
    dream x_i, whose true cause is z_i):

        dloss/dmu_ij     = -(z_ij - mu_ij) / v_ij / n
        dloss/dlogvar_ij = -1/2 [(z_ij - mu_ij)^2 / v_ij - 1] / n

    Both vanish where q fits the dreams: mu at the mean of z given x, v at its variance
    (the mean of (z - mu)^2 / v is then 1). Returns ``(dmu, dlogvar)``, each (n, Z)."""
    validation.float_array("z", z, ndim=2, finite=False)
    if z.shape[0] == 0:
        raise ValueError("z must hold at least one dream (a row), got shape (0, ...)")
    validation.float_array("mu", mu, shape=z.shape, finite=False)
    validation.float_array("logvar", logvar, shape=z.shape, finite=False)
    dmu, dlogvar, _ = gaussian_log_density_grad(z, mu, logvar)      # of +sum_i log q(z_i|x_i)
    scale = -1.0 / z.shape[0]
    return dmu * scale, dlogvar * scale


class WakeSleep(VAE):
    """Wake-sleep with a :class:`~scratchvae.VAE`'s encoder, decoder, initialization and
    weight prior: the same constructor arguments, plus

    Args:
        sleep_batch_size: dreams per sleep phase (default: as many as the minibatch's
            images).
        update_order: ``'decoder-first'`` (the authors' code: the wake phase's update of the
            decoder is made first, and the sleep phase dreams with the updated decoder) or
            ``'together'`` (both gradients at the same parameters, then one update of both).
        logvar_init: ``'zero'`` (the authors' code: the weights and biases of the encoder's
            log-variance outputs start at zero, so q(z|x) = N(mu(x), I) at the start) or
            ``'drawn'`` (drawn by ``init`` like every other weight). Default: ``'zero'`` with
            ``init='paper'``, as the authors' code initializes, ``'drawn'`` with any other init.

    Everything but training is the VAE's: :meth:`elbo` (the reported lower bound),
    ``encode``, ``decode``, ``sample``, ``config`` (so a checkpoint reloads as a VAE with
    the same parameters). :meth:`backward` fills the gradients of one wake-sleep step: the
    wake gradient in the decoder's tensors, the sleep gradient in the encoder's; given an
    ``update`` it updates the decoder between the two. The
    :func:`~scratchvae.training.step.train_step` of the Trainer runs either order with any
    optimizer (``updates_in_phases`` tells it which).
    """

    def __init__(self, *args, sleep_batch_size=None, update_order="decoder-first",
                 logvar_init=None, **kwargs):
        self.update_order = validation.choice("update_order", update_order, UPDATE_ORDERS)
        if logvar_init is not None:
            validation.choice("logvar_init", logvar_init, LOGVAR_INITS)
        super().__init__(*args, **kwargs)
        self.sleep_batch_size = (None if sleep_batch_size is None
                                 else validation.positive_int("sleep_batch_size", sleep_batch_size))
        self.logvar_init = logvar_init or ("zero" if self.init.startswith("paper") else "drawn")
        if self.logvar_init == "zero":
            last = [layer for layer in self.encoder.layers if isinstance(layer, Linear)][-1]
            last.params["W"][:, self.z_dim:] = 0.0       # [mu, logvar] = h W + b
            last.params["b"][self.z_dim:] = 0.0

    @property
    def updates_in_phases(self):
        """True when a training step updates the decoder between the two phases (read by
        :func:`~scratchvae.training.step.train_step`)."""
        return self.update_order == "decoder-first"

    def settings(self):
        """What a resumed run must share with the run it continues, beyond ``config``."""
        return {"update_order": self.update_order, "logvar_init": self.logvar_init, "init": self.init}

    # -- the two phases ------------------------------------------------------------------
    def wake(self, x, eps=None):
        """Wake phase on data ``x`` (B, D): z = mu + sigma eps ~ q(z|x) (``eps`` (B, Z) or
        (S, B, Z) to freeze the noise). Fills the decoder's gradients with
        d[-mean log p(x|z)]/dtheta (the encoder's are left alone); returns log p(x|z)
        per image (averaged over the S samples)."""
        terms = self.elbo(x, eps)
        self._wake_backward()
        return terms.rec

    def _wake_backward(self):
        _, _, eps = self.cache
        S, B = eps.shape[:2]
        dlogp = self.xp.full(S * B, -1.0 / (S * B), dtype=self.dtype)
        self.decoder.backward(dlogp)                 # its dz is not needed: z is held fixed

    def dream(self, n, rng=None):
        """``n`` dreams ``(z, x)``: z ~ N(0, I), then x ~ p(x|z) -- Bernoulli samples of the
        pixel probabilities, or Gaussian samples mu_x + sigma_x * noise clipped to [0, 1]."""
        n = validation.positive_int("n", n)
        rng = self.rng if rng is None else rng
        z = rng.standard_normal((n, self.z_dim), dtype=self.dtype)
        if self.likelihood == "bernoulli":
            p = sigmoid(self.decoder.forward(z))
            x = (rng.random(p.shape, dtype=self.dtype) < p).astype(self.dtype)
        else:
            mu_x, logvar_x = self.decoder.forward(z)
            noise = rng.standard_normal(mu_x.shape, dtype=self.dtype)
            x = self.xp.clip(mu_x + self.xp.exp(0.5 * logvar_x) * noise, 0.0, 1.0)
        return z, x

    def sleep(self, z, x):
        """Sleep phase on dreams ``z`` (n, Z) and ``x`` (n, D). Fills the encoder's gradients
        with d[-mean log q(z|x)]/dphi (the decoder's are left alone); returns log q(z|x)
        per dream."""
        self.check_x(x, nonempty=True)
        validation.float_array("z", z, shape=(x.shape[0], self.z_dim))
        self._check_device("z", z)
        validation.same_dtype("z", z, self.dtype)
        return self._sleep(z, x)

    def _sleep(self, z, x):
        out = self.encoder.forward(x)
        mu, logvar = out[:, : self.z_dim], out[:, self.z_dim:]
        log_q = gaussian_log_density(z, mu, logvar)
        dmu, dlogvar = sleep_gradient(z, mu, logvar)
        self.encoder.backward(self.xp.concatenate([dmu, dlogvar], axis=1), input_grad=False)
        return log_q

    # -- one step's gradients ------------------------------------------------------------
    def backward(self, update=None):
        """Wake-sleep gradients after :meth:`elbo` on a minibatch, each phase with the weight
        prior's lambda theta on its own tensors.

        Without ``update``: the wake phase on the minibatch's z ~ q(z|x) into the decoder's
        tensors, then a sleep phase on fresh dreams into the encoder's, both at the current
        parameters (``update_order='together'``, and what the gradient checks test).

        With ``update``, a function that applies the optimizer's update to the tensors whose
        names begin with a prefix (see :meth:`~scratchvae.optim.Optimizer.step_in_parts`):
        the wake gradient, ``update('decoder.')``, then the sleep phase on dreams of the
        *updated* decoder, ``update('encoder.')`` -- the authors' order."""
        if self.cache is None:
            raise RuntimeError("backward() needs a preceding elbo() call")
        self._wake_backward()
        if update is not None:
            self._add_weight_prior(self.decoder)
            update("decoder.")
        B = self.cache[2].shape[1]
        self._sleep(*self.dream(self.sleep_batch_size or B))   # dreams need no checks
        if update is not None:
            self._add_weight_prior(self.encoder)
            update("encoder.")
        else:
            self._add_weight_prior(self)

    def _add_weight_prior(self, module):
        if self.weight_decay:
            for _, p, g in module.named_parameters():
                g += self.weight_decay * p

    def __repr__(self):
        return "WakeSleep" + super().__repr__()[len("VAE"):]
