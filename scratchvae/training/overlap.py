"""The second core at work while BLAS runs on one thread: the decoder's weight gradients and
update overlap the encoder's backward pass.

scratchvae runs NumPy's matrix products on one BLAS thread (README, "Threads"), so on a
machine with two cores one of them idles through training. Part of a training step does
not depend on the rest. The backward pass through a layer y = x W + b makes two products:
dx = dy W^T, which the layers before it wait for, and dW = x^T dy, which only the
optimizer needs. Once the decoder's backward has sent dz on to the encoder, the decoder's
dW products, its weight prior and then its optimizer update depend on nothing the encoder
does, and the encoder's backward reads none of the decoder's parameters. So the two run at
the same time, the way PyTorch's distributed training sends each layer's gradients while
the backward pass goes on through the layers before it:

    plain (train_step):  forward | decoder backward    | encoder backward        | update all
    overlapped:          forward | decoder dx products | encoder backward        | update encoder
                         (worker)                      | decoder dW, update decoder |

A worker thread runs the decoder's part. Threads can share the work because NumPy lets go
of Python's global interpreter lock inside its array operations and OpenBLAS inside its
products: while the main thread multiplies the encoder's matrices, the worker's products
and array operations run on the other core, each on one BLAS thread. Unlike a second BLAS
thread, the worker never spins waiting for anyone: if another program has the second core,
the main thread sleeps at the end of the step until the worker has done its part. That
costs a little, not the many times of BLAS threads waiting for each other: with both
cores of a 2-core machine busy with other programs (load average 7 to 29), the median
step was 5-10 % slower overlapped than plain (docs/threads.md).

The result is the plain step's, bit for bit. The same products are made, only later and
on another thread (``Linear.backward(defer=...)``); the optimizer's step is taken in two
parts, one per network, inside one :meth:`~scratchvae.optim.Optimizer.step_in_parts` (the
update is elementwise, so splitting it changes no value); the weight prior's
``lambda theta`` is added to each network's gradient by the same elementwise operation;
and the loss (with the prior's penalty) is read before any parameter changes.
``tests/test_overlap.py`` holds the two paths equal over hundreds of steps, for Adam and
Adagrad with a weight prior, across a checkpoint and resume.

It is off by default (``mode='off'``, the default of :class:`~scratchvae.training.Trainer`,
``scratchvae train`` and ``scratchvae bench``): under the load it was measured at it was
5-10 % slower, and no quiet run has shown it faster yet; ``scratchvae bench`` times the plain
and the overlapped step side by side (docs/threads.md). ``mode='on'`` (``--overlap on``)
runs it wherever it can run: a CPU model whose ``backward(decoder_done=...)`` hands over the
rest of the decoder's work (a :class:`~scratchvae.VAE` whose decoder's ``backward`` takes
``defer``, as the built-in ones do; not wake-sleep, whose sleep phase runs the decoder after
the wake phase's backward), its decoder's parameters named ``decoder.`` in an optimizer over
NumPy arrays. ``mode='auto'`` turns it on only where a core is idle besides: more CPUs for
this process than BLAS threads (off on the GPU, one stream of kernels, nothing to gain; on
a machine with one core; and when BLAS already has a thread per core: the worker would take
a core from a BLAS thread, and BLAS threads wait for each other).
"""
import inspect
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

MODES = ("auto", "on", "off")
DEFAULT = "off"      # see the module docstring: no measurement has shown it pays yet
DECODER = "decoder."   # the name prefix of the decoder's parameters (VAE.named_parameters)


def available_cpus():
    """The CPUs this process may run on (its affinity where the system reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not Linux
        return os.cpu_count() or 1


def blas_threads():
    """The most threads NumPy's BLAS libraries will use (1 when threadpoolctl finds none)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return available_cpus()   # unknown: assume a thread per core, where the overlap is off
    return max([i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"] or [1])


def why_not(model, optimizer):
    """Why the overlapped step cannot run for this model and optimizer, or None if it can."""
    if getattr(model, "device", "cpu") != "cpu":
        return "the model is on the GPU"
    backward = getattr(model, "backward", None)
    if backward is None or "decoder_done" not in inspect.signature(backward).parameters:
        return f"{type(model).__name__}.backward does not report when the decoder is done"
    if not all(isinstance(p, np.ndarray) for _, p, _ in optimizer.named):
        return "the optimizer's parameters are not NumPy arrays"
    decoder_backward = getattr(getattr(model, "decoder", None), "backward", None)
    if decoder_backward is None or "defer" not in inspect.signature(decoder_backward).parameters:
        return "the decoder's backward takes no defer (see Linear.backward)"
    decoder = {id(p) for _, p, _ in model.decoder.named_parameters()}
    named = {id(p): name for name, p, _ in optimizer.named}
    if not decoder & set(named):
        return "the optimizer holds none of the decoder's parameters"
    if any((i in decoder) != name.startswith(DECODER) for i, name in named.items()):
        return f"the optimizer's names of the decoder's parameters do not all start with {DECODER!r}"
    rest = rest_prefixes(optimizer)
    if any(name.startswith(rest) for name in named.values() if name.startswith(DECODER)):
        return f"a name prefix of the other parameters, {rest}, also starts a decoder's name"
    return None


def rest_prefixes(optimizer):
    """The name prefixes of the parameters that are not the decoder's: their top-level names
    (``('encoder.',)`` for a VAE); a parameter of the model itself is its own full name."""
    return tuple(dict.fromkeys(name.split(".")[0] + ("." if "." in name else "")
                               for name, _, _ in optimizer.named if not name.startswith(DECODER)))


def why_off(model, optimizer):
    """Why ``mode='auto'`` leaves the overlap off here, or None where it turns it on."""
    reason = why_not(model, optimizer)
    if reason:
        return reason
    cpus = available_cpus()
    if cpus < 2:
        return "this process has one CPU"
    if blas_threads() >= cpus:
        return f"BLAS runs {blas_threads()} threads on {cpus} CPUs: no core is idle"
    return None


def make_overlap(model, optimizer, mode=DEFAULT):
    """The :class:`Overlap` of ``model`` and ``optimizer``, or None where it is off:
    ``'off'`` (the default) never, ``'on'`` always (ValueError where it cannot run),
    ``'auto'`` where a core is idle besides (see the module docstring)."""
    if mode not in MODES:
        raise ValueError(f"overlap must be one of {', '.join(MODES)}; got {mode!r}")
    if mode == "off":
        return None
    if mode == "on":
        reason = why_not(model, optimizer)
        if reason:
            raise ValueError(f"the overlapped step cannot run: {reason}")
        return Overlap(model, optimizer)
    return None if why_off(model, optimizer) else Overlap(model, optimizer)


class Overlap:
    """A training step whose decoder weight gradients and update run on a worker thread during
    the encoder's backward pass: :meth:`step` is :func:`~scratchvae.training.step.train_step`,
    bit for bit."""

    def __init__(self, model, optimizer):
        reason = why_not(model, optimizer)
        if reason:
            raise ValueError(f"the overlapped step cannot run: {reason}")
        self.model, self.optimizer = model, optimizer
        self.rest = rest_prefixes(optimizer)      # ('encoder.',) for a VAE
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scratchvae-overlap")

    def step(self, x):
        """One gradient step on the minibatch ``x``; returns the loss (a float). A loss that is
        NaN or Inf raises ``FloatingPointError`` before any parameter changes."""
        model, optimizer = self.model, self.optimizer
        terms = model.elbo(x, check=False)
        loss = model.objective(terms) + model.weight_penalty()   # as loss_and_grads
        if not math.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss}")
        with optimizer.step_in_parts() as update:
            decoder_update = []

            def decoder_done(finish_decoder):   # the rest of the decoder's work, on the worker
                decoder_update.append(self.worker.submit(self._decoder, finish_decoder, update))

            try:
                model.backward(decoder_done=decoder_done)
                if self.rest:
                    update(*self.rest)                  # the encoder's, here
            finally:
                for future in decoder_update:           # never leave the worker writing
                    future.result()
        return loss

    def _decoder(self, finish_decoder, update):
        """On the worker: the decoder's weight gradients and weight prior, then its update."""
        finish_decoder()
        update(DECODER)

    def close(self):
        """Stop the worker thread (it also stops when the Overlap is garbage-collected)."""
        self.worker.shutdown()
