"""One parameter buffer per model: every tensor is a view of it, and nothing outside notices."""
import tracemalloc

import numpy as np
import pytest

from scratchvae import VAE
from scratchvae.backend import as_numpy
from scratchvae.layers import MLP, Linear
from scratchvae.module import Module, flat_segments
from scratchvae.optim import OPTIMIZERS, Adam
from scratchvae.training import checkpoint as ckpt


class Pair(Module):
    """Two Linear layers that nobody flattened: each tensor has its own array."""

    def __init__(self, dtype="float64"):
        super().__init__()
        rng = np.random.default_rng(0)
        self.a, self.b = Linear(3, 4, rng=rng, dtype=dtype), Linear(4, 2, rng=rng, dtype=dtype)

    def children(self):
        return {"a": self.a, "b": self.b}


def _buffer_of(a):
    return a.base if a.base is not None else a


def test_a_vae_keeps_every_parameter_and_gradient_in_one_buffer_in_name_order(xp, device):
    model = VAE(12, 3, (5, 4), device=device, seed=0)
    named = list(model.named_parameters())
    assert [n for n, _, _ in named][:4] == ["encoder.0.W", "encoder.0.b", "encoder.2.W", "encoder.2.b"]
    (flat_p, flat_g), = model.flat_buffers()
    assert flat_p.size == sum(p.size for _, p, _ in named) and flat_p.ndim == 1
    start = 0
    for name, p, g in named:
        assert _buffer_of(p) is _buffer_of(flat_p), name
        assert _buffer_of(g) is _buffer_of(flat_g), name
        np.testing.assert_array_equal(as_numpy(flat_p[start:start + p.size]), as_numpy(p).ravel())
        start += p.size
    flat_g[...] = 0
    named[-1][2][...] = 7.0            # writing a tensor writes the buffer, and back
    assert float(as_numpy(flat_g)[-1]) == 7.0
    flat_p[0] = 3.5
    assert float(as_numpy(model.encoder.layers[0].params["W"])[0, 0]) == 3.5


def test_flattening_keeps_names_values_and_shapes():
    pair = Pair()
    before = {k: p.copy() for k, p in pair.parameters().items()}
    grads_before = {k: g.copy() for k, g in pair.gradients().items()}
    assert len(flat_segments(pair.named_parameters())) == 4      # one run per tensor
    pair.flatten_parameters()
    assert len(flat_segments(pair.named_parameters())) == 1
    assert list(pair.parameters()) == list(before)
    for k, p in pair.parameters().items():
        np.testing.assert_array_equal(p, before[k])
        np.testing.assert_array_equal(pair.gradients()[k], grads_before[k])
    x = np.random.default_rng(1).standard_normal((5, 3))
    y = pair.b.forward(pair.a.forward(x))                       # the layers still work
    np.testing.assert_allclose(y, (x @ before["a.W"] + before["a.b"]) @ before["b.W"] + before["b.b"])


def test_segments_refuse_gradients_that_do_not_match_their_parameter():
    with pytest.raises(ValueError, match="gradient of 'w'"):
        flat_segments([("w", np.zeros(3), np.zeros(4))])
    with pytest.raises(ValueError, match="'w'.*C-contiguous"):
        flat_segments([("w", np.zeros((3, 4)).T, np.zeros((3, 4)).T)])


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_one_buffer_or_one_array_per_tensor_step_alike_bit_for_bit(name):
    """The blocked walk over a flattened model and over separate tensors does the same
    arithmetic on every number."""
    flat, loose = Pair().flatten_parameters(), Pair()
    opts = [OPTIMIZERS[name](m.named_parameters(), lr=0.05) for m in (flat, loose)]
    rng = np.random.default_rng(2)
    for _ in range(20):
        for (_, _, g1), (_, _, g2) in zip(flat.named_parameters(), loose.named_parameters()):
            g1[...] = g2[...] = rng.standard_normal(g1.shape)
        for opt in opts:
            opt.step()
    for k, p in flat.parameters().items():
        np.testing.assert_array_equal(p, loose.parameters()[k])


def test_restoring_a_checkpoint_keeps_the_views(tmp_path):
    """load_model and the optimizer's load_state_dict write in place: after a restore the
    model still has one buffer and the optimizer still updates the model."""
    model = VAE(6, 2, (4,), dtype="float64", seed=1)
    opt = Adam(model.named_parameters(), lr=0.01)
    x = np.random.default_rng(0).random((8, 6))
    model.loss_and_grads(x)
    opt.step()
    path = tmp_path / "c.npz"
    ckpt.save(path, model, opt, meta={})
    loaded, c = ckpt.load_model(path)
    (flat_p, _), = loaded.flat_buffers()
    for k, p in loaded.parameters().items():
        assert _buffer_of(p) is _buffer_of(flat_p)
        np.testing.assert_array_equal(p, model.parameters()[k])
    fresh = Adam(loaded.named_parameters(), lr=0.01)
    fresh.load_state_dict(c.optimizer_state)
    for s in fresh.state_names:    # each state is still one buffer
        assert len({id(_buffer_of(a)) for a in fresh.state[s].values()}) == 1
    loaded.loss_and_grads(x)
    fresh.step()
    assert not np.array_equal(flat_p, np.concatenate([p.ravel() for p in model.parameters().values()]))


def test_an_optimizer_step_allocates_nothing_in_proportion_to_the_parameters():
    model = MLP([300, 400, 300], dtype="float32", rng=np.random.default_rng(0))   # 240k parameters
    for name in sorted(OPTIMIZERS):
        opt = OPTIMIZERS[name](model.named_parameters(), lr=1e-3)
        opt.step()
        tracemalloc.start()
        opt.step()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 20_000, (name, peak)     # bytes; one parameter copy would be 960,000


@pytest.mark.gpu
def test_on_the_gpu_the_fused_kernel_runs_once_per_step_for_a_whole_model(xp, device):
    if xp is np:
        pytest.skip("a GPU check")
    from scratchvae import kernels
    model = VAE(12, 3, (5, 4), device=device, seed=0)
    opt = Adam(model.named_parameters())
    with kernels.use_kernels(True):
        before = kernels.LAUNCHES["adam_update"]
        opt.step()
        opt.step()
        assert kernels.LAUNCHES["adam_update"] - before == 2
