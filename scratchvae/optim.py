r"""Optimizers that update parameters in place from the gradients backward left.

Each takes ``module.named_parameters()`` (or any list of ``(name, param, grad)``),
keeps its state in arrays allocated once, and can export and restore that state
by parameter name (checkpoints need it). With :math:`g` the gradient, :math:`t` the step and
:math:`\beta_1, \beta_2` = ``betas`` (everything elementwise, the square root too):

- SGD: :math:`v \leftarrow \text{momentum}\; v + g`, then
  :math:`\theta \leftarrow \theta - \text{lr}\; v`;
- Adagrad: :math:`h \leftarrow h + g^2`, then
  :math:`\theta \leftarrow \theta - \text{lr}\; g / (\sqrt{h} + \text{eps})`
  (after ``warmup`` steps);
- Adam:

  .. math::

      m &\leftarrow \beta_1 m + (1 - \beta_1)\, g,
          \qquad v \leftarrow \beta_2 v + (1 - \beta_2)\, g^2 \\
      \theta &\leftarrow \theta - \text{lr}\, \frac{\hat m}{\sqrt{\hat v} + \text{eps}}, \qquad
          \hat m = \frac{m}{1 - \beta_1^t}, \quad \hat v = \frac{v}{1 - \beta_2^t}

Two forms of each update
------------------------
``textbook_update`` is the formula above for one tensor, written as you would read it
(the functions :func:`sgd_momentum_update`, :func:`adagrad_update`, :func:`adam_update`).
It is the reference: ``textbook_step()`` applies it to every tensor, and the tests hold
``step()`` to it (float64, to rounding, after hundreds of steps).

``step()`` computes the same numbers faster, for four reasons:

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
   allows (it has no fused multiply-add): :math:`m \leftarrow m + (1 - \beta_1)(g - m)` is
   the same as :math:`m \leftarrow \beta_1 m + (1 - \beta_1)\, g` in three operations, and
   Adam's bias corrections are folded into two scalars per step. That leaves Adam twelve
   operations per block and Adagrad seven: each state update needs its products and its sum,
   and the step its square root, its eps, its division, its scale and its subtraction. The
   constants go in as 0-d arrays of the parameters' dtype (:func:`constants`), which NumPy
   takes as they are, instead of converting a Python float in every operation. The floor
   below that is the memory traffic: theta, g and the states read once, theta and the states
   written once (28 bytes per parameter for Adam, 20 for Adagrad, in float32);
   ``benchmarks/optim_step.py --passes`` times every operation against it.
4. *No subnormal numbers.* A state that decays geometrically (Adam's m and v, SGD's
   momentum) shrinks towards zero wherever the gradient is zero, as it is for a dead
   ReLU unit: after a few hundred steps :math:`m` falls below the smallest normal float
   (:math:`1.2 \times 10^{-38}` in float32). x86 CPUs handle such subnormal numbers in
   microcode, about a hundred times slower, and one Adam step takes two to six times as long
   (measured in benchmarks/README.md). Every :data:`FLUSH_EVERY` steps ``step()`` therefore
   rounds every decaying state value below :func:`flush_threshold` (:math:`2^{-100}` in
   float32) to zero, long before it could reach the subnormal range. Such a value moves a
   parameter by less than about :math:`\text{lr}\; 2^{-100} / \text{eps}` per step: nothing. GPUs
   have no such penalty.

A step in parts
---------------
Every update above is elementwise: the new value of a number depends on its own
gradient, its own state and the step count t, nothing else. So one step may be applied
to some tensors, then (after more computation, or on another thread) to the others, and
it is the same step, bit for bit. :meth:`Optimizer.step_in_parts` is the one way to do
it, and it has two users:

- wake-sleep in its authors' order updates the decoder, then computes the encoder's
  gradient on dreams of the *updated* decoder, then updates the encoder, all in one step
  (``scratchvae.training.step.train_step``);
- the overlapped training step (``scratchvae.training.overlap``, off by default)
  updates the decoder's parameters on a second thread while the encoder's backward pass
  runs on the first, then the encoder's. Each part walks its own blocks with a scratch
  array of its own, so two parts may run at the same time.

On CuPy arrays, Adagrad and Adam hand the whole flat buffer to one fused CUDA kernel
of ``scratchvae.kernels`` (optim.cu), as the ``@kernels.fused_by`` line above their
``update`` says: one launch per step for a whole model.
"""
import contextlib
import math
import threading

import numpy as np

from . import kernels, validation
from .backend import as_numpy, device_of, get_array_module, to_device
from .module import flat_segments

# Measured on the Adam update of 652,824 parameters right after a step's matrix products
# (benchmarks/optim_step.py, table in benchmarks/README.md): 4K 0.82x, 8K 0.75x, 16K 0.69x,
# 32K 0.63x, 64K 0.64x, 128K 0.68x of the time of whole-tensor passes.
#: Elements per block of ``step()``'s walk. 32K float32 is 128 KB per array: Adam's five arrays
#: (theta, g, m, v, one scratch) fit a core's 2 MB L2 cache, and a block is long enough that
#: the ~1 us overhead of a NumPy call stays small beside its work.
BLOCK = 32768

#: How often ``step()`` flushes tiny values of the decaying states to zero (see the module
#: docstring). A value just above the threshold needs more than 170 steps of Adam's
#: :math:`\beta_1 = 0.9` decay to become subnormal, so every 100 steps catches every value in time.
FLUSH_EVERY = 100


def flush_threshold(dtype):
    r""":math:`2^{26}` times the smallest normal number of ``dtype`` (:math:`2^{-100}` in float32):
    below it a decaying state is set to zero. The margin of :math:`2^{26}` keeps the products the
    update forms from a state value, such as :math:`(1 - \beta_2) v`, normal too."""
    return float(np.finfo(dtype).tiny) * 2.0 ** 26


def flush_to_zero(a, threshold):
    r"""Round the values of ``a`` with :math:`|a| \le T` (:math:`T` = ``threshold``) to zero,
    in place, in two passes: :math:`(a + c) - c` with :math:`c = 1.5\, T\, 2^{p + 1}`, where
    :math:`p` is the number of mantissa bits of the dtype (23 in float32). Near :math:`c` the
    floats are :math:`2T` apart, so a small ``a`` lands on the nearest multiple of :math:`2T`
    (zero for :math:`|a| \le T`); for :math:`|a| \ge 2^{p + 2} c`, :math:`c` is below half a
    unit in the last place of ``a``, and ``a`` comes back exactly. (The 1.5 keeps
    :math:`c + a` and :math:`c - a` within one binade, so both signs round alike.)"""
    c = 1.5 * threshold * 2.0 ** (np.finfo(a.dtype).nmant + 1)
    a += c
    a -= c


def constants(dtype, *values):
    """``values`` (Python floats) as 0-d NumPy arrays of ``dtype``, for the update's operations.
    The same numbers as the floats themselves: NumPy rounds a Python float to the array's
    dtype either way, but it does so anew in every operation, about a microsecond each
    (``buf *= c`` with a float costs twice as long as with a 0-d array on a block of
    32K elements' worth of calls; benchmarks/optim_step.py)."""
    return [np.array(v, dtype) for v in values]


def _constants(p, *values):
    """:func:`constants` for a NumPy run ``p``; CuPy takes Python floats as they are."""
    return constants(p.dtype, *values) if isinstance(p, np.ndarray) else values


# ---------------------------------------------------------------------------------------
# The textbook updates, one tensor at a time (the classes' ``textbook_update`` calls them)
# ---------------------------------------------------------------------------------------
def sgd_momentum_update(p, g, v, lr, momentum):
    r"""One step of SGD with (heavy-ball) momentum on the parameter ``p`` (:math:`\theta`)
    with gradient ``g``, updating ``p`` and the velocity ``v`` in place:

    .. math::

        v &\leftarrow \text{momentum}\; v + g \\
        \theta &\leftarrow \theta - \text{lr}\; v
    """
    v[...] = momentum * v + g
    p -= lr * v


def adagrad_update(p, g, h, lr, eps=1e-8):
    r"""One step of Adagrad (Duchi et al. 2011) on the parameter ``p`` (:math:`\theta`) with
    gradient ``g``, updating ``p`` and the running sum of squared gradients ``h`` in place
    (elementwise):

    .. math::

        h &\leftarrow h + g^2 \\
        \theta &\leftarrow \theta - \text{lr}\, \frac{g}{\sqrt{h} + \text{eps}}
    """
    xp = get_array_module(p)
    h += g * g
    p -= lr * g / (xp.sqrt(h) + eps)


def adam_update(p, g, m, v, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    r"""Step ``t`` (1 for the first) of Adam (Kingma & Ba 2015) on the parameter ``p``
    (:math:`\theta`) with gradient ``g``, updating ``p`` and the moment estimates ``m`` and ``v``
    in place (elementwise; :math:`\beta_1, \beta_2` = ``b1, b2``):

    .. math::

        m &\leftarrow \beta_1 m + (1 - \beta_1)\, g
            \qquad \text{(mean of the gradients)} \\
        v &\leftarrow \beta_2 v + (1 - \beta_2)\, g^2
            \qquad \text{(mean of their squares)} \\
        \hat m &= \frac{m}{1 - \beta_1^t}, \quad \hat v = \frac{v}{1 - \beta_2^t}
            \qquad \text{(bias corrections: } m, v \text{ start at 0)} \\
        \theta &\leftarrow \theta - \text{lr}\, \frac{\hat m}{\sqrt{\hat v} + \text{eps}}
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
    """The base of the optimizers: the flat runs of parameters and state, the step (whole or
    in parts), and the state's export and import. A subclass names its ``state_names`` and
    writes :meth:`update` (the fast form) and ``textbook_update`` (the reference)."""
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
        run and state name, and the per-name views of the state that ``state_dict`` exports."""
        self._segments = []   # (flat theta, flat grad, [flat state ...])
        self._members = []    # per run: [(name, start, param), ...]
        self._parts = {}      # name prefixes -> (names, part), see _part; () -> every parameter
        self.state = {s: {} for s in self.state_names}
        for p, g, members in flat_segments(self.named):
            xp = get_array_module(p)
            flat_state = [xp.zeros_like(p) for _ in self.state_names]
            for s, flat in zip(self.state_names, flat_state):
                for name, start, param in members:
                    self.state[s][name] = _view(flat, start, param.shape)
            self._segments.append((p, g, flat_state))
            self._members.append(members)

    def step(self):
        """One update of every parameter, over the flat buffers (see the module docstring)."""
        self._begin_step()
        self._apply(self._part(())[1])
        self._end_step()

    def _begin_step(self):
        """Count the step (and, in subclasses, set what the update needs from t)."""
        self.t += 1

    def _apply(self, part):
        """The update of the windows of ``part`` (see :meth:`Optimizer._part`)."""
        for p, g, state, blocks in part:
            self.update(p, g, *state, blocks=blocks)

    def _end_step(self):
        if self.decaying and self.t % FLUSH_EVERY == 0:
            self._flush()

    def _flush(self):
        for p, _, state in self._segments:
            if isinstance(p, np.ndarray):     # a CPU concern only
                for name, flat in zip(self.state_names, state):
                    if name in self.decaying:
                        flush_to_zero(flat, flush_threshold(flat.dtype))

    @contextlib.contextmanager
    def step_in_parts(self):
        """One step, applied to the parameters part by part (see "A step in parts" in the
        module docstring), for a model that computes some gradients only after other
        parameters were updated, or that updates some while it computes others::

            with optimizer.step_in_parts() as update:
                ...                        # fill the decoder's gradients
                update("decoder.")         # update the tensors whose names start with "decoder."
                ...                        # fill the encoder's gradients, with the new decoder
                update("encoder.")         # (several prefixes: update("encoder.", "prior."))

        It is one step: ``t`` advances once, at the first ``update``, and every parameter must
        be updated exactly once before the block ends (else ``RuntimeError``; a name prefix
        that matches nothing, or a tensor updated twice, is a ``ValueError``). The update of
        each number depends only on its own gradient and state and on t, so given the same
        gradients the parameters and the state come out bit for bit as from :meth:`step`. An
        exception before the first ``update`` leaves the optimizer as it was.

        ``update`` may be called from two threads at the same time for different parameters
        (the overlapped training step does): the bookkeeping above is under a lock, and each
        part has a scratch array of its own. The block must not end before every ``update``
        has returned."""
        lock = threading.Lock()
        done = set()

        def update(*prefixes):
            names, part = self._part(prefixes)
            with lock:
                twice = [name for name in names if name in done]
                if twice:
                    raise ValueError(f"{twice} were already updated in this step")
                if not done:
                    self._begin_step()
                done.update(names)
            self._apply(part)

        yield update
        left = [name for name, _, _ in self.named if name not in done]
        if left:
            raise RuntimeError(f"a step in parts must update every parameter once; "
                               f"{left} were not updated")
        self._end_step()

    def _part(self, prefixes):
        """``(names, part)``: the tensors whose names start with one of ``prefixes`` (every
        tensor for ``()``), and the windows of the flat runs that hold them, as
        ``[(theta, grad, [state ...], blocks), ...]`` (adjacent tensors make one window). A
        block is the same stretch of at most :data:`BLOCK` elements of each array of a window
        and of a scratch array that this part's blocks share (one per dtype) and no other
        part uses; on the GPU a window is one block. Cached: a step looks up, not builds."""
        if prefixes not in self._parts:
            everything = [name for name, _, _ in self.named]
            for prefix in prefixes:
                if not any(name.startswith(prefix) for name in everything):
                    raise ValueError(f"no parameter's name starts with {prefix!r}; the optimizer "
                                     f"holds {everything}")
            chosen = lambda name: not prefixes or name.startswith(prefixes)   # noqa: E731
            windows = []          # (theta, grad, [state ...]) of each window
            for (p, g, state), members in zip(self._segments, self._members):
                spans = []
                for name, start, param in members:
                    if not chosen(name):
                        continue
                    if spans and spans[-1][1] == start:
                        spans[-1][1] = start + param.size      # back to back: one window
                    else:
                        spans.append([start, start + param.size])
                for a, b in spans:
                    win = [_span(x, a, b) for x in (p, g, *state)]
                    windows.append((win[0], win[1], win[2:]))
            size = {}             # the longest block per dtype: the scratch array's size
            for p, _, _ in windows:
                if isinstance(p, np.ndarray):
                    size[p.dtype] = max(size.get(p.dtype, 0), min(BLOCK, p.size))
            scratch = {dtype: np.empty(n, dtype) for dtype, n in size.items()}
            part = []
            for p, g, state in windows:
                if isinstance(p, np.ndarray):
                    buf = scratch[p.dtype]
                    blocks = [(p[a:a + BLOCK], g[a:a + BLOCK], *(f[a:a + BLOCK] for f in state),
                               buf[:min(BLOCK, p.size - a)]) for a in range(0, p.size, BLOCK)]
                else:   # on the GPU the window is one block (kernels off: plain CuPy passes)
                    blocks = [(p, g, *state, get_array_module(p).empty_like(p))]
                part.append((p, g, state, blocks))
            self._parts[prefixes] = ([name for name in everything if chosen(name)], part)
        return self._parts[prefixes]

    def update(self, p, g, *state, blocks):
        """Update the flat run ``p`` (gradient ``g``, state arrays ``state``) in place,
        on the CPU block by block: ``blocks`` lists the windows to update, the same window
        of each array and a scratch array. (On the GPU the fused kernel takes the whole run.)"""
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
        momentum, lr = _constants(p, self.momentum, self.lr)
        for p, g, *v, buf in blocks:  # 2 passes over one block (4 with momentum), in cache
            if v:
                v = v[0]
                v *= momentum
                v += g                # v = momentum v + g
                g = v
            xp.multiply(g, lr, out=buf)
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

    def _apply(self, part):
        # Warm-up (Kingma & Welling's code): the first `warmup` steps only add g^2 to h,
        # so that the first real steps are not divided by one tiny gradient.
        if self.t > self.warmup:
            return super()._apply(part)
        for p, _, _, blocks in part:
            xp = get_array_module(p)
            for _, g, h, buf in blocks:
                xp.multiply(g, g, out=buf)
                h += buf              # h = h + g^2

    @kernels.fused_by("adagrad_update", args=lambda self, p, g, h, blocks: (p, g, h, self.lr, self.eps))
    def update(self, p, g, h, blocks):
        xp = get_array_module(p)
        lr, eps = _constants(p, self.lr, self.eps)
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
    r"""Adam (Kingma & Ba 2015).

    ``step()`` folds the bias corrections into the step size, which is algebraically
    the same update:

    .. math::

        \text{lr}\, \frac{\hat m}{\sqrt{\hat v} + \text{eps}}
            = \text{lr}_t\, \frac{m}{\sqrt{v} + \text{eps}_t}
        \quad\text{with}\quad
        \text{lr}_t = \text{lr}\, \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t},
        \quad \text{eps}_t = \text{eps} \sqrt{1 - \beta_2^t}

    (:math:`\beta_1, \beta_2` = ``betas``)."""
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
        c1, c2, lr_t, eps_t = _constants(p, 1 - self.b1, 1 - self.b2, self._lr_t, self._eps_t)
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
