"""The one interface every layer and model shares.

A module maps an input to an output in ``forward`` and maps the gradient of the
loss with respect to its output back to the gradient with respect to its input in
``backward``, keeping in ``self.cache`` only what ``backward`` needs. Parameters
live in ``self.params`` and their gradients under the same names in
``self.grads``; containers list their sub-modules in ``children()``. Optimizers,
checkpoints and the gradient checker reach every tensor through
``named_parameters()``, so they treat a Linear layer and a whole VAE alike.

One buffer per model
--------------------
Each layer creates its own ``W`` and ``b``, but a finished model moves them all into
one contiguous array (:meth:`Module.flatten_parameters`, which the MLP and the VAE
call at the end of their constructors), and their gradients into a second one::

    flat theta:  [ encoder.0.W | encoder.0.b | encoder.2.W | ... | decoder.net.2.b ]
    flat grad:   [ the same layout                                                  ]

``params['W']`` is then a *view*: a window of the flat array with W's shape. A layer
still reads and writes its own ``W`` (``x @ W``, ``matmul(..., out=grads['W'])``),
checkpoints still save ``encoder.0.W``, and nothing outside sees a difference, as long
as parameters are changed in place (``W[...] = value``, ``W -= step``), never rebound
(``params['W'] = new_array`` would detach that tensor from the buffer).

Why: an optimizer's update is the same elementwise formula for every number of the
model. Over one flat array it is a handful of array operations per step, instead of a
handful per tensor, and it can walk the array in cache-sized blocks
(:mod:`scratchvae.optim`); on the GPU it is one kernel launch instead of one per
tensor. This is what PyTorch's ``foreach`` optimizers (one call over a list of
tensors) and ``fused`` optimizers (one kernel over all of them) buy; here the
layout itself makes it possible.
"""
from .backend import device_of, get_array_module


class Module:
    def __init__(self):
        self.params = {}
        self.grads = {}
        self.cache = None

    def children(self):
        """Sub-modules by name (none for a leaf layer)."""
        return {}

    def named_parameters(self, prefix=""):
        """Yield ``(name, param, grad)`` for every tensor, e.g. ``'encoder.0.W'``."""
        for key, param in self.params.items():
            yield prefix + key, param, self.grads[key]
        for name, child in self.children().items():
            yield from child.named_parameters(f"{prefix}{name}.")

    def parameters(self):
        """``{name: param}`` for every tensor (the arrays themselves, not copies)."""
        return {name: p for name, p, _ in self.named_parameters()}

    def gradients(self):
        """``{name: grad}``, filled in by the last ``backward``."""
        return {name: g for name, _, g in self.named_parameters()}

    def zero_grad(self):
        for _, _, g in self.named_parameters():
            g[...] = 0

    def _slots(self):
        """``(owner, key)`` for every tensor, in the order of :meth:`named_parameters`."""
        for key in self.params:
            yield self, key
        for child in self.children().values():
            yield from child._slots()

    def flatten_parameters(self):
        """Copy every parameter into one contiguous 1-D array per dtype and device (and
        every gradient into another), and make ``params[key]`` and ``grads[key]`` views
        into them, laid out in the order of :meth:`named_parameters`. Values are kept.
        Returns ``self``. Calling it again (say, on a model built from flattened parts)
        builds new buffers that cover the whole model."""
        groups = {}
        for owner, key in self._slots():
            p = owner.params[key]
            groups.setdefault((p.dtype, device_of(p)), []).append((owner, key))
        for (dtype, _), slots in groups.items():
            first = slots[0][0].params[slots[0][1]]
            xp = get_array_module(first)
            n = sum(owner.params[key].size for owner, key in slots)
            flat_p, flat_g = xp.empty(n, dtype), xp.empty(n, dtype)
            start = 0
            for owner, key in slots:
                p, g = owner.params[key], owner.grads[key]
                stop = start + p.size
                owner.params[key] = flat_p[start:stop].reshape(p.shape)
                owner.params[key][...] = p
                owner.grads[key] = flat_g[start:stop].reshape(p.shape)
                owner.grads[key][...] = g
                start = stop
        return self

    def flat_buffers(self):
        """``[(flat_param, flat_grad), ...]``: the contiguous arrays that hold every
        parameter and gradient (one pair per dtype and device), or one pair per tensor
        for a module whose parameters were never flattened. See :func:`flat_segments`."""
        return [(p, g) for p, g, _ in flat_segments(self.named_parameters())]

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def __repr__(self):
        return f"{type(self).__name__}()"


def _window(a):
    """``(buffer, start)``: the 1-D array that owns ``a``'s memory and the element where
    ``a`` begins in it, when ``a`` is a C-contiguous window of such an array; else None."""
    base = a.base
    if base is None or base.ndim != 1 or not (a.flags.c_contiguous and base.flags.c_contiguous) \
            or base.dtype != a.dtype:
        return None
    offset = _address(a) - _address(base)
    if offset % a.itemsize:
        return None
    return base, offset // a.itemsize


def _address(a):
    return a.data.ptr if hasattr(a.data, "ptr") else a.__array_interface__["data"][0]


def flat_segments(named):
    """Group ``(name, param, grad)`` triples into runs that lie back to back in one
    buffer. Returns ``[(flat_param, flat_grad, [(name, start, param), ...]), ...]``
    where the flat arrays are 1-D views covering the run and ``start`` is where each
    tensor begins in them. A flattened model gives one run per dtype and device;
    tensors that share no buffer give one run each (a contiguous 1-D view of each).
    """
    runs = []   # [p_buffer, p_start, g_buffer, g_start, length, members]
    for name, p, g in named:
        if p.shape != g.shape or p.dtype != g.dtype or device_of(p) != device_of(g):
            raise ValueError(f"the gradient of {name!r} has shape {tuple(g.shape)} ({g.dtype}, "
                             f"{device_of(g)}), its parameter {tuple(p.shape)} ({p.dtype}, "
                             f"{device_of(p)}); they must match")
        if not (p.flags.c_contiguous and g.flags.c_contiguous):
            raise ValueError(f"parameter {name!r} and its gradient must be C-contiguous arrays "
                             "(an optimizer updates them in place through flat views)")
        pw, gw = _window(p), _window(g)
        if runs and pw and gw:
            r = runs[-1]
            if (pw[0] is r[0] and gw[0] is r[2] and pw[1] == r[1] + r[4]
                    and gw[1] == r[3] + r[4]):
                r[5].append((name, r[4], p))
                r[4] += p.size
                continue
        if pw and gw:
            runs.append([pw[0], pw[1], gw[0], gw[1], p.size, [(name, 0, p)]])
        else:   # a tensor on its own: its own flat view is the whole run
            runs.append([p.reshape(-1) if p.ndim != 1 else p, 0, g.reshape(-1) if g.ndim != 1 else g,
                         0, p.size, [(name, 0, p)]])
    return [(_span(pb, ps, n), _span(gb, gs, n), members) for pb, ps, gb, gs, n, members in runs]


def _span(buffer, start, n):
    return buffer if start == 0 and buffer.size == n else buffer[start:start + n]
