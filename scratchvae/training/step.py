"""One training step: Kingma & Welling (2013), Algorithm 1, for one minibatch.

    x     = a minibatch of B images
    loss  = -1/B sum_b elbo(x_b)      with one eps ~ N(0, I) per image   (model.loss_and_grads)
    theta = theta - (optimizer's update of d loss / d theta)              (optimizer.step)

The trainer, ``scratchvae bench`` and ``benchmarks/gpu_bench.py`` all train with
:func:`train_step`, so a change to the step shows in every one of them. Any model
that offers ``loss_and_grads(x, check=False) -> (loss, ...)``, filling the gradients of
the parameters its optimizer holds, is trained by it: the VAE, or another model with
the same two methods.

A model whose step must update some parameters before it can compute the gradients of
the others says so with ``updates_in_phases = True`` and offers ``elbo(x, check=False)``
and ``backward(update=...)``; the step then runs inside one
:meth:`~scratchvae.optim.Optimizer.step_in_parts`, and the model calls ``update(prefix)``
between its phases. Wake-sleep in its authors' order is such a model: it updates the
decoder, then dreams with the updated decoder to compute the encoder's gradient
(:class:`~scratchvae.models.wake_sleep.WakeSleep`). This is the one place where an
optimizer step is taken in parts.
"""
import math


def train_step(model, optimizer, x):
    """One gradient step on the minibatch ``x``; returns the loss.

    On the CPU the loss is a float, and one that is NaN or Inf raises ``FloatingPointError``
    *before* the update, so the parameters keep their last finite values. The values of
    ``x`` are not checked (check the data once, before training).

    On the GPU the step neither waits for the device nor reads anything back: the loss
    is the mean -ELBO (with the model's ``kl_weight`` on the KL) as a 0-d device array (without the weight penalty, a sum over every
    parameter), to be checked by the caller when it reads losses back."""
    cpu = getattr(model, "device", "cpu") == "cpu"
    if getattr(model, "updates_in_phases", False):
        with optimizer.step_in_parts() as update:
            terms = model.elbo(x, check=False)
            loss = _finite(-float(terms.elbo.mean()) + model.weight_penalty()) if cpu \
                else -terms.elbo.mean()
            model.backward(update=update)        # calls update(prefix) between its phases
        return loss
    if cpu:
        loss, _ = model.loss_and_grads(x, check=False)
        _finite(loss)
    else:   # a float would make the host wait for the GPU at every step
        terms = model.elbo(x, check=False)
        w = getattr(model, "kl_weight", 1.0)      # the KL's weight in the objective (a beta-VAE's beta)
        loss = -(terms.elbo if w == 1.0 else terms.rec - w * terms.kl).mean()
        model.backward()
    optimizer.step()
    return loss


def _finite(loss):
    if not math.isfinite(loss):
        raise FloatingPointError(f"the loss became {loss}")
    return loss
