"""The one interface every layer and model shares.

A module maps an input to an output in ``forward`` and maps the gradient of the
loss with respect to its output back to the gradient with respect to its input in
``backward``, keeping in ``self.cache`` only what ``backward`` needs. Parameters
live in ``self.params`` and their gradients under the same names in
``self.grads``; containers list their sub-modules in ``children()``. Optimizers,
checkpoints and the gradient checker reach every tensor through
``named_parameters()``, so they treat a Linear layer and a whole VAE alike.
"""


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

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def __repr__(self):
        return f"{type(self).__name__}()"
