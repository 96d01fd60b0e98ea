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

Gradients, for a minibatch of B images (L samples of z each) and S dreams:

    wake:  d/dtheta [-1/(L B) sum log p(x_b|z_lb)]      decoder backward of -1/(L B), as in
                                                          the VAE but stopping at z
    sleep: with [mu, logvar] = encoder(x_s) and v = exp(logvar),
           d(-1/S sum_s log q(z_s|x_s))/dmu     = -(z_s - mu) / v / S
           d(-1/S sum_s log q(z_s|x_s))/dlogvar = -1/2 [(z_s - mu)^2 / v - 1] / S
           then the encoder's backward

plus the same weight prior as the VAE (lambda theta on every tensor). Dreams are
Bernoulli samples for a Bernoulli decoder and Gaussian samples for a Gaussian one,
clipped to the pixels' range [0, 1] as the authors' code does.
"""
from .. import distributions as D
from .. import validation
from ..activations import sigmoid
from ..vae import VAE


class WakeSleep(VAE):
    """Wake-sleep with a :class:`~scratchvae.VAE`'s encoder, decoder, initialization and
    weight prior: the same constructor arguments, plus

    Args:
        sleep_batch_size: dreams per sleep phase (default: as many as the minibatch's
            images).

    Everything but training is the VAE's: :meth:`elbo` (the reported lower bound),
    ``encode``, ``decode``, ``sample``, ``config`` (so a checkpoint reloads as a VAE with
    the same parameters). :meth:`backward` fills the gradients with one wake-sleep step:
    the wake gradient in the decoder's tensors, the sleep gradient in the encoder's. The
    :class:`~scratchvae.training.trainer.Trainer` and every optimizer use it unchanged.
    """

    def __init__(self, *args, sleep_batch_size=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.sleep_batch_size = (None if sleep_batch_size is None
                                 else validation.positive_int("sleep_batch_size", sleep_batch_size))

    # -- the two phases ------------------------------------------------------------------
    def wake(self, x, eps=None):
        """Wake phase on data ``x`` (B, D): z = mu + sigma eps ~ q(z|x) (``eps`` (B, Z) or
        (L, B, Z) to freeze the noise). Fills the decoder's gradients with
        d[-mean log p(x|z)]/dtheta (the encoder's are left alone); returns log p(x|z)
        per image (averaged over the L samples)."""
        terms = self.elbo(x, eps)
        self._wake_backward()
        return terms.rec

    def _wake_backward(self):
        x_rep, _, _, eps = self.cache
        L, B = eps.shape[:2]
        dlogp = self.xp.full(L * B, -1.0 / (L * B), dtype=self.dtype)
        self.decoder.backward(x_rep, dlogp)          # its dz is not needed: z is held fixed

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
        """Sleep phase on dreams ``z`` (S, Z) and ``x`` (S, D). Fills the encoder's gradients
        with d[-mean log q(z|x)]/dphi (the decoder's are left alone); returns log q(z|x)
        per dream."""
        self._check_x(x)
        validation.float_array("z", z, shape=(x.shape[0], self.z_dim))
        self._check_device("z", z)
        validation.same_dtype("z", z, self.dtype)
        return self._sleep(z, x)

    def _sleep(self, z, x):
        h = self.encoder.forward(x)
        mu, logvar = h[:, : self.z_dim], h[:, self.z_dim:]
        log_q = D.gaussian_log_density(z, mu, logvar)
        dmu, dlogvar, _ = D.gaussian_log_density_grad(z, mu, logvar)   # of sum_s log q
        scale = -1.0 / z.shape[0]
        self.encoder.backward(self.xp.concatenate([dmu * scale, dlogvar * scale], axis=1),
                              input_grad=False)
        return log_q

    # -- one step's gradients ------------------------------------------------------------
    def backward(self):
        """Wake-sleep gradients after :meth:`elbo` on a minibatch: the wake phase on its
        z ~ q(z|x) into the decoder's tensors, then a sleep phase on fresh dreams into the
        encoder's, then the weight prior's lambda theta on every tensor."""
        if self.cache is None:
            raise RuntimeError("backward() needs a preceding elbo() call")
        self._wake_backward()
        B = self.cache[3].shape[1]
        self._sleep(*self.dream(self.sleep_batch_size or B))   # dreams need no checks
        if self.weight_decay:
            for _, p, g in self.named_parameters():
                g += self.weight_decay * p

    def __repr__(self):
        return "WakeSleep" + super().__repr__()[len("VAE"):]
