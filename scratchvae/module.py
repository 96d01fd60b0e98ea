"""The one interface every layer and model shares.

A module maps an input to an output in ``forward`` and maps the gradient of the
loss with respect to its output back to the gradient with respect to its input in
``backward``, keeping in ``self.cache`` only what ``backward`` needs. Optimizers,
checkpoints and the gradient checker reach every tensor through
``named_parameters()``, so they treat a Linear layer and a whole VAE alike.

Parameters and submodules
-------------------------
A module's own parameters live in ``self.params`` (a dict of arrays) and their gradients
under the same names in ``self.grads``. A submodule is simply an attribute::

    class Scaled(Module):
        def __init__(self, rng):
            super().__init__()
            self.inner = Linear(3, 4, rng=rng)                  # found: 'inner.W', 'inner.b'
            self.heads = [Linear(4, 2, rng=rng), Linear(4, 2, rng=rng)]   # 'heads.0.W', ...
            self.params = {"s": np.ones(2)}                     # its own: 's'
            self.grads = {"s": np.zeros(2)}

:meth:`Module.children` finds every attribute that holds a module, or a list, tuple or
dict of modules, in the order they were assigned; a module reached twice (an alias) is
counted once, under its first name. A class may override ``children()`` to choose other
names (the MLP names its layers ``'0'``, ``'2'``, ... like PyTorch's ``Sequential``). If
it then leaves out an attribute whose module holds parameters, the first call that
reaches the parameters (``named_parameters``, ``flatten_parameters``, an optimizer, a
checkpoint) raises :class:`ModuleError` naming the attribute: a forgotten submodule is
an error, never a silent loss of its parameters. A module used but deliberately not
owned (a frozen network borrowed from another model) is named in the class attribute
``borrowed``, and then neither found nor reported.

An array assigned as a plain attribute (``self.w = np.zeros(3)``) is *not* a
parameter: no optimizer moves it, no gradient check or checkpoint sees it. That is how
a module keeps state that is not learned: what ``forward`` leaves for ``backward``, or
Monte Carlo EM's persistent ``z``. A parameter is an entry of ``params`` with its
gradient in ``grads``; a gradient without its parameter, or a parameter without its
gradient, raises :class:`ModuleError` on first reach.

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
(``params['W'] = new_array`` would detach that tensor from the buffer). A submodule
added after the constructor flattened the model keeps its own arrays (optimizers handle
both); call ``flatten_parameters()`` again to bring it into the buffer.

Why: an optimizer's update is the same elementwise formula for every number of the
model. Over one flat array it is a handful of array operations per step, instead of a
handful per tensor, and it can walk the array in cache-sized blocks
(:mod:`scratchvae.optim`); on the GPU it is one kernel launch instead of one per
tensor. This is what PyTorch's ``foreach`` optimizers (one call over a list of
tensors) and ``fused`` optimizers (one kernel over all of them) buy; here the
layout itself makes it possible.
"""
from .backend import device_of, get_array_module


class ModuleError(TypeError):
    """A module whose parameters cannot all be reached: a submodule that an overridden
    ``children()`` leaves out, or a parameter and a gradient that do not pair up."""


class Module:
    """The base of every layer and model: ``forward``, ``backward``, and the parameters and
    gradients of the module and of every submodule under dotted names (see the module
    docstring)."""
    borrowed = ()   # attributes holding modules this one uses but does not own (see above)

    def __init__(self):
        self.params = {}
        self.grads = {}
        self.cache = None

    def children(self):
        """Sub-modules by name: every attribute that holds a module (``'encoder'``), or a
        list, tuple or dict of modules (``'heads.0'``, ``'heads.mu'``), in the order the
        attributes were assigned, except those named in ``borrowed``. Override it to choose
        other names; a submodule holding parameters that the override leaves out is then an
        error (see the module docstring)."""
        return dict(_attribute_modules(self))

    def named_parameters(self, prefix=""):
        """Yield ``(name, param, grad)`` for every tensor, e.g. ``'encoder.0.W'``: this
        module's ``params``, then each child's, depth first; each module once."""
        for path, module in self._modules(prefix):
            grads = module.grads
            for key, param in module.params.items():
                yield path + key, param, grads[key]

    def parameters(self):
        """``{name: param}`` for every tensor (the arrays themselves, not copies)."""
        return {name: p for name, p, _ in self.named_parameters()}

    def gradients(self):
        """``{name: grad}``, filled in by the last ``backward``."""
        return {name: g for name, _, g in self.named_parameters()}

    def zero_grad(self):
        for _, _, g in self.named_parameters():
            g[...] = 0

    def _modules(self, prefix=""):
        """``[(prefix, module), ...]`` for this module and every module below it, depth first,
        each once (a module reached twice keeps its first name). Checks each module's
        structure when it is first reached, and again whenever it has gained attributes since."""
        out, seen, stack = [], set(), [(prefix, self)]
        while stack:
            path, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            d = module.__dict__
            if d.get("_checked") != len(d):
                module._check_structure()
            out.append((path, module))
            if type(module).children is _DEFAULT_CHILDREN:     # the same as children(), one call less
                children = _attribute_modules(module)
            else:
                children = module.children().items()
            if children:
                stack.extend([(f"{path}{name}.", child) for name, child in children][::-1])
        return out

    def _check_structure(self):
        """Raise :class:`ModuleError` unless every parameter has its gradient and every
        gradient its parameter, and (for a class that overrides ``children()``) unless every
        attribute whose module holds parameters is reached through ``children()``."""
        d = self.__dict__
        d["_checked"] = None          # counted in len(d) below
        cls = type(self).__name__
        params, grads = d.get("params"), d.get("grads")
        if not (isinstance(params, dict) and isinstance(grads, dict)):
            raise ModuleError(f"{cls} has no params and grads dicts: its __init__ must call "
                              f"super().__init__() before anything else")
        for key in params:
            if key not in grads:
                raise ModuleError(f"{cls}.params[{key!r}] has no gradient: add "
                                  f"grads[{key!r}] (zeros of its shape) beside it")
        for key in grads:
            if key not in params:
                raise ModuleError(
                    f"{cls}.grads[{key!r}] has no parameter params[{key!r}]. A parameter kept as "
                    f"a plain attribute (self.{key} = ...) is never trained, checked or saved; "
                    f"put it in params: self.params[{key!r}] = value")
        if type(self).children is not Module.children:
            listed = set()
            for child in self.children().values():
                _reachable(child, listed)
            for name, module in _attribute_modules(self):
                if id(module) in listed or module is self:
                    continue
                n = sum(len(m.params) for m in _reachable(module, set()))
                if n:
                    raise ModuleError(
                        f"{cls}.children() leaves out {_label(self, name)}, a "
                        f"{type(module).__name__} holding {n} parameter tensor{'s' if n > 1 else ''}: they would never be trained, "
                        f"gradient-checked or saved. Return it from children(), or delete the "
                        f"children() method so that Module finds every submodule attribute itself; "
                        f"if leaving it out is deliberate (a module borrowed from another model), "
                        f"name it in the class attribute borrowed = ({name.split('.')[0]!r},)")
        d["_checked"] = len(d)

    def _slots(self):
        """``(owner, key)`` for every tensor, in the order of :meth:`named_parameters`."""
        for _, module in self._modules():
            for key in module.params:
                yield module, key

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


_OWN = frozenset(("params", "grads", "cache"))
# Types of attribute values that are neither a module nor a list, tuple or dict: skipped at
# once. It starts with the usual ones and learns every other such type it meets (a type either
# is a subclass of those four or is not, so the answer never changes).
_PLAIN = {int, float, str, bool, type(None)}


def _attribute_modules(module):
    """``[(name, submodule), ...]`` for every attribute of ``module`` that holds a module, or a
    list, tuple or dict of them, in assignment order, skipping ``borrowed``: ``('encoder',
    <MLP>)``, ``('heads.0', <Linear>)``, ``('heads.mu', <Linear>)``. (It runs at every
    ``named_parameters`` call, so it is written for speed.)"""
    found = []
    borrowed = module.borrowed
    for attr, value in module.__dict__.items():
        if type(value) in _PLAIN or attr in _OWN or attr in borrowed:
            continue
        if isinstance(value, Module):
            found.append((attr, value))
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if isinstance(item, Module):
                    found.append((f"{attr}.{i}", item))
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, Module):
                    found.append((f"{attr}.{key}", item))
        else:
            _PLAIN.add(type(value))
    return found


def _label(module, name):
    """How the attribute ``name`` of :func:`_attribute_modules` reads in code: ``self.heads[0]``."""
    attr, _, key = name.partition(".")
    if not key:
        return f"self.{attr}"
    if isinstance(module.__dict__[attr], (list, tuple)):
        return f"self.{attr}[{key}]"
    return f"self.{attr}[{key!r}]"


_DEFAULT_CHILDREN = Module.children


def _reachable(module, seen):
    """The modules reachable from ``module`` through ``children()`` (itself first), each once;
    their ids are added to ``seen``."""
    out = []
    stack = [module]
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        out.append(m)
        stack.extend(m.children().values())
    return out


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
