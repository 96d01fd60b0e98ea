"""Optimizers that update parameters in place from the gradients backward left.

Each takes ``module.named_parameters()`` (or any list of ``(name, param, grad)``),
keeps its state in arrays allocated once, and can export and restore that state
by parameter name (checkpoints need it). With g the gradient and t the step:

    SGD:      v = momentum v + g;          theta -= lr v
    Adagrad:  h = h + g^2;                 theta -= lr g / (sqrt(h) + eps)   (after `warmup` steps)
    Adam:     m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
              theta -= lr m_hat / (sqrt(v_hat) + eps),  m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)

Two forms of each update
------------------------
``textbook_update`` is the formula above for one tensor, written as you would read it
(the functions :func:`sgd_momentum_update`, :func:`adagrad_update`, :func:`adam_update`).
It is the reference: ``textbook_step()`` applies it to every tensor, and the tests hold
``step()`` to it (float64, to rounding, after hundreds of steps).

``step()`` computes the same numbers faster, for three reasons:

1. *One buffer.* A model keeps all its parameters in one contiguous array and all its
   gradients in another (:mod:`scratchvae.module`), and the optimizer keeps each state
   (m, v, h) in one array of the same layout. The update is elementwise, so it can run
   over the whole flat array at once instead of tensor by tensor (PyTorch's
   ``foreach`` and ``fused`` optimizers exist for the same reason).
2. *Cache-sized blocks.* Every NumPy operation reads and writes whole arrays, and
   Adam takes twelve of them. Over 650,000 float32 parameters each array is 2.6 MB, so
   the twelve passes stream parameters, gradients, m and v through memory again and
   again. ``step()`` walks the flat arrays in blocks of :data:`BLOCK` elements and runs
   all the passes of the update over one block (about 640 KB for Adam's
   five arrays) while it sits in the core's cache, then moves on: the arrays cross the
   memory bus once per step instead of once per pass.
3. *Few passes.* The update is rearranged to use as few array operations as NumPy
   allows (it has no fused multiply-add): ``m += (1 - b1)(g - m)`` is the same as
   ``m = b1 m + (1 - b1) g`` in three operations, and Adam's bias corrections are
   folded into two scalars per step.

4. *No subnormal numbers.* A state that decays geometrically (Adam's m and v, SGD's
   momentum) shrinks towards zero wherever the gradient is zero, as it is for a dead
   ReLU unit: after a few hundred steps m falls below the smallest normal float
   (1.2e-38 in float32). x86 CPUs handle such subnormal numbers in microcode, about a
   hundred times slower, and one Adam step takes two to six times as long (measured in
   benchmarks/README.md). Every :data:`FLUSH_EVERY` steps ``step()`` therefore rounds
   every decaying state value below :func:`flush_threshold` (2^-100 in float32) to zero,
   long before it could reach the subnormal range. Such a value moves a parameter by
   less than lr 2^-100 / eps per step: nothing. GPUs have no such penalty.

A step in parts
---------------
Every update above is elementwise: the new value of a number depends on its own
gradient, its own state and the step count t, nothing else. So one step may be applied
to some tensors, then (after more computation) to the others, and it is the same step.
Wake-sleep in its authors' order needs exactly that: it updates the decoder, then
computes the encoder's gradient on dreams of the *updated* decoder, then updates the
encoder, all in one step (:meth:`Optimizer.step_in_parts`).

On CuPy arrays, Adagrad and Adam hand the whole flat buffer to one fused CUDA kernel
of :mod:`scratchvae.kernels` (optim.cu), as the ``@kernels.fused_by`` line above their
``update`` says: one launch per step for a whole model.
"""
import contextlib
import math

import numpy as np

from . import kernels, validation
from .backend import as_numpy, device_of, get_array_module, to_device
from .module import flat_segments

# Elements per block of step()'s walk. 32K float32 is 128 KB per array: Adam's five arrays
# (theta, g, m, v, one scratch) fit a core's 2 MB L2 cache, and a block is long enough that
# the ~1 us overhead of a NumPy call stays small beside its work. Measured on the Adam
# update of 652,824 parameters right after a step's matrix products (benchmarks/optim_step.py,
# table in benchmarks/README.md): 4K 0.82x, 8K 0.75x, 16K 0.69x, 32K 0.63x, 64K 0.64x,
# 128K 0.68x of the time of whole-tensor passes.
BLOCK = 32768

# How often step() flushes tiny values of the decaying states to zero (see the docstring).
# A value just above the threshold needs > 170 steps of Adam's b1 = 0.9 decay to become
# subnormal, so every 100 steps catches every value in time.
FLUSH_EVERY = 100


def flush_threshold(dtype):
    """2^26 times the smallest normal number of ``dtype`` (2^-100 in float32): below it a
    decaying state is set to zero. The margin of 2^26 keeps the products the update forms
    from a state value, such as (1 - b2) v, normal too."""
    return float(np.finfo(dtype).tiny) * 2.0 ** 26


def flush_to_zero(a, threshold):
    """Round the values of ``a`` with |a| <= threshold to zero, in place, in two passes:
    (a + c) - c with c = 1.5 threshold 2^(mantissa bits + 1). Near c the floats are
    2 threshold apart, so a small ``a`` lands on the nearest multiple of 2 threshold
    (zero for |a| <= threshold); for |a| > 2c 2^(mantissa bits) c is below half a unit
    in the last place of a, and a comes back exactly. (The 1.5 keeps c + a and c - a
    within one binade, so both signs round alike.)"""
    c = 1.5 * threshold * 2.0 ** (np.finfo(a.dtype).nmant + 1)
    a += c
    a -= c


# ---------------------------------------------------------------------------------------
# The textbook updates, one tensor at a time (the classes' ``textbook_update`` calls them)
# ---------------------------------------------------------------------------------------
def sgd_momentum_update(p, g, v, lr, momentum):
    """One step of SGD with (heavy-ball) momentum on the parameter ``p`` with gradient ``g``,
    updating ``p`` and the velocity ``v`` in place:

        v = momentum v + g
        theta = theta - lr v
    """
    v[...] = momentum * v + g
    p -= lr * v


def adagrad_update(p, g, h, lr, eps=1e-8):
    """One step of Adagrad (Duchi et al. 2011) on the parameter ``p`` with gradient ``g``,
    updating ``p`` and the running sum of squared gradients ``h`` in place:

        h = h + g^2
        theta = theta - lr g / (sqrt(h) + eps)
    """
    xp = get_array_module(p)
    h += g * g
    p -= lr * g / (xp.sqrt(h) + eps)


def adam_update(p, g, m, v, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    """Step ``t`` (1 for the first) of Adam (Kingma & Ba 2015) on the parameter ``p`` with
    gradient ``g``, updating ``p`` and the moment estimates ``m`` and ``v`` in place:

        m = b1 m + (1 - b1) g             (mean of the gradients)
        v = b2 v + (1 - b2) g^2           (mean of their squares)
        m_hat = m / (1 - b1^t),  v_hat = v / (1 - b2^t)     (bias corrections: m, v start at 0)
        theta = theta - lr m_hat / (sqrt(v_hat) + eps)
    """
    xp = get_array_module(p)
    m[...] = b1 * m + (1 - b1) * g
    v[...] = b2 * v + (1 - b2) * g * g
    m_hat = m / (1 - b1 ** t)
    v_hat = v / (1 - b2 ** t)
    p -= lr * m_hat / (xp.sqrt(v_hat) + eps)


def _span(flat, a, b):
    """Elements a to b of a flat array (the array itself when that is all of it)."""
    return flat if a == 0 and b == flat.size else flat[a:b]


def _view(flat, start, shape):
    """The window of ``flat`` that holds a tensor of ``shape`` starting at ``start``
    (``flat`` itself when the tensor is the whole 1-D array)."""
    size = math.prod(shape)
    if start == 0 and flat.shape == tuple(shape):
        return flat
    return flat[start:start + size].reshape(shape)


class Optimizer:
    state_names = ()  # per-parameter state arrays, e.g. ("m", "v") for Adam
    decaying = ()     # those that shrink geometrically without a gradient (flushed, see FLUSH_EVERY)

    def __init__(self, named_parameters, lr):
        self.named = [(name, p, g) for name, p, g in named_parameters]
        if not self.named:
            raise ValueError("named_parameters is empty: nothing to optimize")
        self.lr = validation.positive_number("lr", lr)
        self.t = 0
        self._setup_buffers()

    def _setup_buffers(self):
        """The flat runs of parameters (one for a flattened model), a flat state array per
        run and state name, the per-name views of the state that ``state_dict`` exports,
        and the blocks ``step()`` walks (on the GPU, one block: the whole run)."""
        self._segments = []   # (flat theta, flat grad, [flat state ...], blocks)
        self._members = []    # per run: [(name, start, param), ...]
        self._parts = {}      # name prefix -> its windows of the runs, as _segments (step_in_parts)
        self.state = {s: {} for s in self.state_names}
        segments = flat_segments(self.named)
        scratch = {}          # one block-sized scratch array per dtype, shared by all runs
        for p, _, _ in segments:
            if isinstance(p, np.ndarray):
                scratch[p.dtype] = max(scratch.get(p.dtype, 0), min(BLOCK, p.size))
        self._scratch = {dtype: np.empty(n, dtype) for dtype, n in scratch.items()}
        for p, g, members in segments:
            xp = get_array_module(p)
            flat_state = [xp.zeros_like(p) for _ in self.state_names]
            for s, flat in zip(self.state_names, flat_state):
                for name, start, param in members:
                    self.state[s][name] = _view(flat, start, param.shape)
            self._segments.append((p, g, flat_state, self._blocks(p, g, flat_state)))
            self._members.append(members)

    def _blocks(self, p, g, flat_state):
        """The windows ``step()`` walks over a flat run: on the CPU :data:`BLOCK` elements of
        each array at a time, with as many of the shared scratch array; on the GPU one block."""
        if isinstance(p, np.ndarray):
            buf = self._scratch[p.dtype]
            return [(p[a:a + BLOCK], g[a:a + BLOCK], *(f[a:a + BLOCK] for f in flat_state),
                     buf[:min(BLOCK, p.size - a)]) for a in range(0, p.size, BLOCK)]
        xp = get_array_module(p)   # on the GPU the whole run is one block (kernels off: plain CuPy passes)
        return [(p, g, *flat_state, xp.empty_like(p))]

    def step(self):
        """One update of every parameter, over the flat buffers (see the module docstring)."""
        self._begin_step()
        for p, g, state, blocks in self._segments:
            self._apply(p, g, state, blocks)
        self._end_step()

    def _begin_step(self):
        """Count the step (and, in subclasses, set what the update needs from t)."""
        self.t += 1

    def _apply(self, p, g, state, blocks):
        """The update of one flat run (or a window of one, for a step in parts)."""
        self.update(p, g, *state, blocks=blocks)

    def _end_step(self):
        if self.decaying and self.t % FLUSH_EVERY == 0:
            self._flush()

    def _flush(self):
        for p, _, state, _ in self._segments:
            if isinstance(p, np.ndarray):     # a CPU concern only
                for name, flat in zip(self.state_names, state):
                    if name in self.decaying:
                        flush_to_zero(flat, flush_threshold(flat.dtype))

    @contextlib.contextmanager
    def step_in_parts(self):
        """One step, applied to the parameters part by part, for a model that computes some
        gradients only after other parameters were updated::

            with optimizer.step_in_parts() as update:
                ...                        # fill the decoder's gradients
                update("decoder.")         # update the tensors whose names start with "decoder."
                ...                        # fill the encoder's gradients, with the new decoder
                update("encoder.")

        It is one step: ``t`` advances once, at the first ``update``, and every parameter must
        be updated exactly once before the block ends (else ``RuntimeError``; a name prefix
        that matches nothing, or a tensor updated twice, is a ``ValueError``). The update of
        each number depends only on its own gradient and state and on t (see the module
        docstring), so given the same gradients the parameters and the state come out bit for
        bit as from :meth:`step`. An exception before the first ``update`` leaves the
        optimizer as it was."""
        done = set()
        everything = [name for name, _, _ in self.named]

        def update(prefix):
            names = [name for name in everything if name.startswith(prefix)]
            if not names:
                raise ValueError(f"no parameter's name starts with {prefix!r}; the optimizer "
                                 f"holds {everything}")
            twice = [name for name in names if name in done]
            if twice:
                raise ValueError(f"{twice} were already updated in this step")
            if not done:
                self._begin_step()
            for p, g, state, blocks in self._part(prefix):
                self._apply(p, g, state, blocks)
            done.update(names)

        yield update
        left = [name for name in everything if name not in done]
        if left:
            raise RuntimeError(f"a step in parts must update every parameter once; "
                               f"{left} were not updated")
        self._end_step()

    def _part(self, prefix):
        """The windows of the flat runs that hold the tensors named ``prefix...``, as
        ``(theta, grad, [state ...], blocks)``: adjacent tensors make one window. Cached."""
        if prefix not in self._parts:
            windows = []
            for (p, g, state, _), members in zip(self._segments, self._members):
                spans = []
                for name, start, param in members:
                    if not name.startswith(prefix):
                        continue
                    if spans and spans[-1][1] == start:
                        spans[-1][1] = start + param.size
                    else:
                        spans.append([start, start + param.size])
                for a, b in spans:
                    win = [_span(x, a, b) for x in (p, g, *state)]
                    windows.append((win[0], win[1], win[2:], self._blocks(win[0], win[1], win[2:])))
            self._parts[prefix] = windows
        return self._parts[prefix]

    def update(self, p, g, *state, blocks):
        """Update the flat run ``p`` (gradient ``g``, state arrays ``state``) in place,
        on the CPU block by block: ``blocks`` lists the same window of each array and of
        a scratch array."""
        raise NotImplementedError

    def textbook_step(self):
        """The same step as :meth:`step`, one tensor at a time in the textbook form."""
        self.t += 1
        for name, p, g in self.named:
            self.textbook_update(p, g, *(self.state[s][name] for s in self.state_names))

    def textbook_update(self, p, g, *state):
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
            a[...] = to_device(state[key], device_of(a))   # in place: the views stay in the buffer
        self.t = int(state["t"])


class SGD(Optimizer):
    """Stochastic gradient descent with (heavy-ball) momentum."""

    def __init__(self, named_parameters, lr=0.01, momentum=0.0):
        if not 0 <= validation.real_number("momentum", momentum) < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)
        self.state_names = self.decaying = ("v",) if momentum else ()
        super().__init__(named_parameters, lr)

    def update(self, p, g, *state, blocks):
        xp = get_array_module(p)
        for p, g, *v, buf in blocks:  # 2 passes over one block (4 with momentum), in cache
            if v:
                v = v[0]
                v *= self.momentum
                v += g                # v = momentum v + g
                g = v
            xp.multiply(g, self.lr, out=buf)
            p -= buf                  # theta -= lr v

    def textbook_update(self, p, g, *state):
        if state:
            sgd_momentum_update(p, g, *state, self.lr, self.momentum)
        else:
            p -= self.lr * g


class Adagrad(Optimizer):
    """Adagrad (Duchi et al. 2011), the optimizer of Kingma & Welling (2013)."""
    state_names = ("h",)

    def __init__(self, named_parameters, lr=0.01, eps=1e-8, warmup=0):
        self.eps = validation.positive_number("eps", eps)   # it divides: sqrt(h) + eps > 0
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"warmup must be an integer >= 0 (steps), got {warmup!r}")
        self.warmup = warmup
        super().__init__(named_parameters, lr)

    def _apply(self, p, g, state, blocks):
        # Warm-up (Kingma & Welling's code): the first `warmup` steps only add g^2 to h,
        # so that the first real steps are not divided by one tiny gradient.
        if self.t <= self.warmup:
            (h,) = state
            h += g * g
            return
        super()._apply(p, g, state, blocks)

    @kernels.fused_by("adagrad_update", args=lambda self, p, g, h, blocks: (p, g, h, self.lr, self.eps))
    def update(self, p, g, h, blocks):
        xp = get_array_module(p)
        lr, eps = self.lr, self.eps
        for p, g, h, buf in blocks:   # 7 passes over one block, in cache
            xp.multiply(g, g, out=buf)
            h += buf                  # h = h + g^2
            xp.sqrt(h, out=buf)
            buf += eps
            xp.divide(g, buf, out=buf)
            buf *= lr
            p -= buf                  # theta -= lr g / (sqrt(h) + eps)

    def textbook_update(self, p, g, h):
        if self.t > self.warmup:
            adagrad_update(p, g, h, self.lr, self.eps)
        else:
            h += g * g


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015).

    ``step()`` folds the bias corrections into the step size, which is algebraically
    the same update: lr m_hat / (sqrt(v_hat) + eps) = lr_t m / (sqrt(v) + eps_t) with
    lr_t = lr sqrt(1 - b2^t) / (1 - b1^t) and eps_t = eps sqrt(1 - b2^t)."""
    state_names = decaying = ("m", "v")

    def __init__(self, named_parameters, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise TypeError(f"betas must be a pair (b1, b2), got {betas!r}")
        b1, b2 = (validation.real_number(f"betas[{i}]", b) for i, b in enumerate(betas))
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        self.b1, self.b2 = b1, b2
        self.eps = validation.positive_number("eps", eps)   # it divides: sqrt(v_hat) + eps > 0
        super().__init__(named_parameters, lr)

    def _begin_step(self):
        super()._begin_step()
        t = self.t                       # the step being taken
        c2 = math.sqrt(1 - self.b2 ** t)
        self._lr_t = self.lr * c2 / (1 - self.b1 ** t)
        self._eps_t = self.eps * c2

    @kernels.fused_by("adam_update", args=lambda self, p, g, m, v, blocks:
                      (p, g, m, v, self.b1, self.b2, self._lr_t, self._eps_t))
    def update(self, p, g, m, v, blocks):
        xp = get_array_module(p)
        c1, c2, lr_t, eps_t = 1 - self.b1, 1 - self.b2, self._lr_t, self._eps_t
        for p, g, m, v, buf in blocks:   # 12 passes over one block, in cache
            xp.subtract(g, m, out=buf)
            buf *= c1
            m += buf                     # m = m + (1 - b1)(g - m) = b1 m + (1 - b1) g
            xp.multiply(g, g, out=buf)
            buf -= v
            buf *= c2
            v += buf                     # v = v + (1 - b2)(g^2 - v) = b2 v + (1 - b2) g^2
            xp.sqrt(v, out=buf)
            buf += eps_t
            xp.divide(m, buf, out=buf)
            buf *= lr_t
            p -= buf                     # theta -= lr_t m / (sqrt(v) + eps_t)

    def textbook_update(self, p, g, m, v):
        adam_update(p, g, m, v, self.t, self.lr, self.b1, self.b2, self.eps)


OPTIMIZERS = {"sgd": SGD, "adagrad": Adagrad, "adam": Adam}
