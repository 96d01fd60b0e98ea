"""Optimizers that update parameters in place from the gradients backward left.

Each takes ``module.named_parameters()`` (or any list of ``(name, param, grad)``),
keeps its state in arrays allocated once, and can export and restore that state
by parameter name (checkpoints need it). With g the gradient and t the step:

    SGD:      v = momentum v + g;          theta -= lr v
    Adagrad:  h = h + g^2;                 theta -= lr g / (sqrt(h) + eps)   (after `warmup` steps)
    Adam:     m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
              theta -= lr m_hat / (sqrt(v_hat) + eps),  m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)

On CuPy arrays, Adagrad and Adam update each tensor with one fused CUDA kernel of
:mod:`scratchvae.kernels` (optim.cu) instead of the sequence of in-place operations below.
"""
import math

from . import kernels, validation
from .backend import as_numpy, get_array_module, to_device, device_of


class Optimizer:
    state_names = ()  # per-parameter state arrays, e.g. ("m", "v") for Adam

    def __init__(self, named_parameters, lr):
        self.named = [(name, p, g) for name, p, g in named_parameters]
        if not self.named:
            raise ValueError("named_parameters is empty: nothing to optimize")
        if validation.real_number("lr", lr) <= 0:
            raise ValueError(f"lr must be a positive number, got {lr}")
        self.lr = float(lr)
        self.t = 0
        self.state = {s: {name: get_array_module(p).zeros_like(p) for name, p, _ in self.named}
                      for s in self.state_names}
        # One scratch array per parameter, so a step allocates nothing.
        self._buf = {name: get_array_module(p).empty_like(p) for name, p, _ in self.named}

    def step(self):
        self.t += 1
        for name, p, g in self.named:
            self.update(p, g, *(self.state[s][name] for s in self.state_names), buf=self._buf[name])

    def update(self, p, g, *state, buf):
        raise NotImplementedError

    def state_dict(self):
        """Host copies of the state: ``{'t': t, 'm/encoder.0.W': array, ...}``."""
        out = {"t": self.t}
        for s, arrays in self.state.items():
            for name, a in arrays.items():
                out[f"{s}/{name}"] = as_numpy(a).copy()
        return out

    def load_state_dict(self, state):
        """Restore state written by :meth:`state_dict` (checked before anything changes)."""
        want = {f"{s}/{name}": a for s, arrays in self.state.items() for name, a in arrays.items()}
        missing = sorted(set(want) - set(state))
        if missing or "t" not in state:
            raise ValueError(f"optimizer state does not match this optimizer: missing {missing or ['t']}")
        for key, a in want.items():
            if tuple(state[key].shape) != tuple(a.shape):
                raise ValueError(f"optimizer state {key!r} has shape {tuple(state[key].shape)}, "
                                 f"expected {tuple(a.shape)}")
        for key, a in want.items():
            a[...] = to_device(state[key], device_of(a))
        self.t = int(state["t"])


class SGD(Optimizer):
    """Stochastic gradient descent with (heavy-ball) momentum."""

    def __init__(self, named_parameters, lr=0.01, momentum=0.0):
        if not 0 <= validation.real_number("momentum", momentum) < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)
        self.state_names = ("v",) if momentum else ()
        super().__init__(named_parameters, lr)

    def update(self, p, g, *state, buf):
        if state:
            (v,) = state
            v *= self.momentum
            v += g                    # v = momentum v + g
            g = v
        get_array_module(p).multiply(g, self.lr, out=buf)
        p -= buf                      # theta -= lr v


class Adagrad(Optimizer):
    """Adagrad (Duchi et al. 2011), the optimizer of Kingma & Welling (2013)."""
    state_names = ("h",)

    def __init__(self, named_parameters, lr=0.01, eps=1e-8, warmup=0):
        self.eps = float(eps)
        # warm-up: the first `warmup` steps only add g^2 to h (as Kingma & Welling's code
        # does), so that the first real steps are not divided by one tiny gradient
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"warmup must be an integer >= 0 (steps), got {warmup!r}")
        self.warmup = warmup
        super().__init__(named_parameters, lr)

    def update(self, p, g, h, buf):
        if self.t <= self.warmup:
            get_array_module(p).multiply(g, g, out=buf)
            h += buf                  # h = h + g^2; theta stays
            return
        if kernels.active(p, g, h):
            return kernels.adagrad_update(p, g, h, self.lr, self.eps)
        xp = get_array_module(p)
        xp.multiply(g, g, out=buf)
        h += buf                      # h = h + g^2
        xp.sqrt(h, out=buf)
        buf += self.eps
        xp.divide(g, buf, out=buf)
        buf *= self.lr
        p -= buf                      # theta -= lr g / (sqrt(h) + eps)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015).

    The bias corrections are folded into the step size, which is algebraically the
    same update: lr m_hat / (sqrt(v_hat) + eps) = lr_t m / (sqrt(v) + eps_t) with
    lr_t = lr sqrt(1 - b2^t) / (1 - b1^t) and eps_t = eps sqrt(1 - b2^t)."""
    state_names = ("m", "v")

    def __init__(self, named_parameters, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise TypeError(f"betas must be a pair (b1, b2), got {betas!r}")
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        self.b1, self.b2, self.eps = float(b1), float(b2), float(eps)
        super().__init__(named_parameters, lr)

    def step(self):
        self.t += 1
        c2 = math.sqrt(1 - self.b2 ** self.t)
        self._lr_t = self.lr * c2 / (1 - self.b1 ** self.t)
        self._eps_t = self.eps * c2
        for name, p, g in self.named:
            self.update(p, g, self.state["m"][name], self.state["v"][name], buf=self._buf[name])

    def update(self, p, g, m, v, buf):
        if kernels.active(p, g, m, v):
            return kernels.adam_update(p, g, m, v, self.b1, self.b2, self._lr_t, self._eps_t)
        xp = get_array_module(p)
        m *= self.b1
        xp.multiply(g, 1 - self.b1, out=buf)
        m += buf                      # m = b1 m + (1 - b1) g
        v *= self.b2
        xp.multiply(g, g, out=buf)
        buf *= 1 - self.b2
        v += buf                      # v = b2 v + (1 - b2) g^2
        xp.sqrt(v, out=buf)
        buf += self._eps_t
        xp.divide(m, buf, out=buf)
        buf *= self._lr_t
        p -= buf                      # theta -= lr_t m / (sqrt(v) + eps_t)


OPTIMIZERS = {"sgd": SGD, "adagrad": Adagrad, "adam": Adam}
