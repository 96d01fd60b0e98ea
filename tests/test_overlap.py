"""The overlapped training step (the decoder's update on a worker thread during the encoder's
backward) is the plain step, bit for bit, and is on only where it can pay."""
import numpy as np
import pytest

import scratchvae as sv
from scratchvae import optim
from scratchvae.models.wake_sleep import WakeSleep
from scratchvae.training import overlap as ov
from scratchvae.training.step import train_step
from scratchvae.training.trainer import Trainer


def _pair(make_model, make_optimizer):
    """Two identical models with an optimizer each: (model, optimizer), (model, optimizer)."""
    out = []
    for _ in range(2):
        model = make_model()
        out.append((model, make_optimizer(model)))
    return out


def _identical(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


CASES = {
    # the paper's two workloads, scaled down: Adam on a Bernoulli VAE; Adagrad with warm-up and
    # the weight prior on a Gaussian one; momentum SGD with a weight prior, and two hidden layers
    "adam": (lambda: sv.VAE(60, 4, (48,), seed=0, weight_decay=1e-3),
             lambda m: sv.Adam(m.named_parameters(), lr=3e-3)),
    "adagrad": (lambda: sv.VAE(60, 4, (48,), likelihood="gaussian", activation="tanh",
                               init="paper", weight_decay=1 / 300, seed=0),
                lambda m: sv.Adagrad(m.named_parameters(), lr=0.02, warmup=3)),
    "sgd": (lambda: sv.VAE(60, 4, (40, 24), seed=0, weight_decay=1e-2),
            lambda m: sv.SGD(m.named_parameters(), lr=1e-2, momentum=0.9)),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_overlapped_step_is_the_plain_step_bit_for_bit(monkeypatch, case, dtype):
    """350 steps (past three of the optimizer's flushes of tiny state values), blocks of 1024
    elements so that both parts have several and the plain step's blocks straddle the line
    between encoder and decoder: the same losses, parameters and optimizer state, bit for bit."""
    monkeypatch.setattr(optim, "BLOCK", 1024)
    make_model, make_optimizer = CASES[case]
    (m1, o1), (m2, o2) = _pair(lambda: _as(make_model(), dtype), make_optimizer)
    overlap = ov.Overlap(m2, o2)
    encoder_size = sum(p.size for p in m2.encoder.parameters().values())
    blocks = lambda prefixes: o2._part(prefixes)[1][0][3]   # noqa: E731  (the first window's)
    assert encoder_size % optim.BLOCK and len(blocks((ov.DECODER,))) > 2 and len(blocks(overlap.rest)) > 2
    rng = np.random.default_rng(0)
    x = rng.random((300, 60)).astype(dtype)
    for step in range(350):
        batch = x[rng.choice(300, 32, replace=False)]
        assert train_step(m1, o1, batch) == overlap.step(batch), step
    assert _identical(m1.parameters(), m2.parameters())
    assert _identical(o1.state_dict(), o2.state_dict()) and o1.t == o2.t == 350
    start = make_model().parameters()
    assert not any(np.array_equal(start[k], p) for k, p in m2.parameters().items())   # it trained
    overlap.close()


def _as(model, dtype):
    """``model`` rebuilt in ``dtype`` (same seed and configuration)."""
    if dtype == "float32":
        return model
    config = {k: v for k, v in model.config().items() if k != "dtype"}
    return type(model)(**config, dtype=dtype, seed=model.seed)


def test_a_vae_with_parameters_beside_encoder_and_decoder_overlaps_bit_for_bit():
    """A subclass's tensors outside the encoder and the decoder get the weight prior and their
    update in the encoder's part, as in the plain step."""
    from scratchvae.layers import Linear

    class WithExtra(sv.VAE):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.extra = Linear(3, 2, rng=np.random.default_rng(1))   # backward leaves its gradient to the prior

    (m1, o1), (m2, o2) = _pair(lambda: WithExtra(60, 4, (16,), seed=0, weight_decay=1e-2),
                               lambda m: sv.Adam(m.named_parameters(), lr=1e-2))
    overlap = ov.Overlap(m2, o2)
    assert overlap.rest == ("encoder.", "extra.")
    x = np.random.default_rng(0).random((40, 60)).astype(np.float32)
    start = m1.extra.params["W"].copy()
    for step in range(20):
        assert train_step(m1, o1, x[step % 2::2]) == overlap.step(x[step % 2::2]), step
    assert _identical(m1.parameters(), m2.parameters()) and not np.array_equal(start, m2.extra.params["W"])
    overlap.close()


def test_a_non_finite_loss_stops_the_overlapped_step_before_anything_changes():
    (model, opt), = _pair(*CASES["adam"])[:1]
    overlap = ov.Overlap(model, opt)
    x = np.random.default_rng(0).random((16, 60)).astype(np.float32)
    overlap.step(x)
    model.decoder.net.layers[0].params["W"][0, 0] = np.inf
    before = {k: p.copy() for k, p in model.parameters().items()}
    state = opt.state_dict()
    with pytest.raises(FloatingPointError, match="the loss became nan"), np.errstate(all="ignore"):
        overlap.step(x)
    assert all(np.array_equal(before[k], p, equal_nan=True) for k, p in model.parameters().items())
    assert opt.t == 1 and _identical(state, opt.state_dict())


def test_an_error_in_the_encoders_backward_waits_for_the_workers_update(monkeypatch):
    """The step never returns, or raises, while the worker still writes parameters."""
    (model, opt), = _pair(*CASES["adam"])[:1]
    overlap = ov.Overlap(model, opt)
    finished = []
    real = opt._apply
    decoder_part = opt._part((ov.DECODER,))[1]

    def slow_update(part):
        if part is decoder_part:
            import time
            time.sleep(0.2)
            real(part)
            finished.append(True)
        else:
            real(part)

    monkeypatch.setattr(opt, "_apply", slow_update)

    def broken(*args, **kwargs):
        raise RuntimeError("broken encoder")

    monkeypatch.setattr(model.encoder, "backward", broken)
    with pytest.raises(RuntimeError, match="broken encoder"):
        overlap.step(np.random.default_rng(0).random((16, 60)).astype(np.float32))
    assert finished == [True]


def _trainer(data, out=None, overlap="auto", **kw):
    model = sv.VAE(64, 2, (32,), seed=1, weight_decay=1e-3)
    optimizer = sv.Adagrad(model.named_parameters(), lr=0.02)
    return Trainer(model, optimizer, *data, batch_size=64, seed=3, out=out, progress=False,
                   checkpoint_every=0, overlap=overlap, **kw)


def test_a_run_overlapped_and_resumed_ends_where_the_plain_run_does(tmp_path):
    """Trainer(overlap='on'), stopped after 2 epochs and resumed from its checkpoint to 5,
    against Trainer(overlap='off') straight to 5: the same parameters and metrics, bit for bit."""
    d = sv.data.load_dataset("digits")
    data = d.train[:300], d.test[:100]
    plain = _trainer(data, overlap="off")
    plain.fit(epochs=5)
    _trainer(data, tmp_path, overlap="on").fit(epochs=2)
    resumed = _trainer(data, tmp_path, overlap="on").resume()
    resumed.fit(epochs=5)
    assert _identical(plain.model.parameters(), resumed.model.parameters())
    strip = lambda h: [{k: v for k, v in r.items() if k != "wall_time"} for r in h]   # noqa: E731
    assert strip(plain.history) == strip(resumed.history)


def test_the_overlap_is_off_by_default_and_auto_turns_it_on_only_where_a_core_is_idle(monkeypatch):
    model = sv.VAE(20, 2, (8,), seed=0)
    opt = sv.Adam(model.named_parameters())
    monkeypatch.setattr(ov, "available_cpus", lambda: 2)
    monkeypatch.setattr(ov, "blas_threads", lambda: 1)
    assert ov.DEFAULT == "off" and ov.make_overlap(model, opt) is None      # even with a core idle
    assert Trainer.__init__.__defaults__[-1] == "off"
    assert ov.why_off(model, opt) is None and isinstance(ov.make_overlap(model, opt, "auto"), ov.Overlap)
    monkeypatch.setattr(ov, "blas_threads", lambda: 2)        # BLAS has a thread per core
    assert "no core is idle" in ov.why_off(model, opt) and ov.make_overlap(model, opt, "auto") is None
    assert isinstance(ov.make_overlap(model, opt, "on"), ov.Overlap)   # forced: it still works
    monkeypatch.setattr(ov, "available_cpus", lambda: 1)
    monkeypatch.setattr(ov, "blas_threads", lambda: 1)
    assert "one CPU" in ov.why_off(model, opt) and ov.make_overlap(model, opt, "auto") is None
    assert ov.make_overlap(model, opt, "off") is None
    with pytest.raises(ValueError, match="overlap must be one of"):
        ov.make_overlap(model, opt, "sometimes")


def test_models_that_cannot_overlap_say_why(monkeypatch):
    monkeypatch.setattr(ov, "available_cpus", lambda: 4)
    monkeypatch.setattr(ov, "blas_threads", lambda: 1)
    ws = WakeSleep(20, 2, (8,), seed=0)          # its sleep phase runs the decoder after the wake backward
    opt = sv.Adam(ws.named_parameters())
    assert "does not report when the decoder is done" in ov.why_off(ws, opt)
    assert ov.make_overlap(ws, opt, "auto") is None
    with pytest.raises(ValueError, match="cannot run"):
        ov.make_overlap(ws, opt, "on")
    model = sv.VAE(20, 2, (8,), seed=0)
    encoder_only = sv.Adam(model.encoder.named_parameters())
    assert "none of the decoder's parameters" in ov.why_off(model, encoder_only)
    renamed = sv.Adam([("dec" + name[len("decoder"):] if name.startswith("decoder.") else name, p, g)
                       for name, p, g in model.named_parameters()])
    assert "do not all start with 'decoder.'" in ov.why_off(model, renamed)

    class PlainDecoder(sv.decoders.BernoulliDecoder):    # a decoder of one's own, without defer
        def backward(self, dlogp):
            return super().backward(dlogp)
    custom = sv.VAE(20, 2, (8,), seed=0)
    custom.decoder = PlainDecoder(custom.decoder.net)
    assert "takes no defer" in ov.why_off(custom, sv.Adam(custom.named_parameters()))
    model.device = "gpu"                          # what a GPU model reports (no GPU needed)
    assert ov.why_off(model, sv.Adam(sv.VAE(20, 2, (8,), seed=0).named_parameters())) == \
        "the model is on the GPU"


def test_a_step_in_parts_by_names_makes_the_step_in_either_order_and_refuses_a_wrong_partition(monkeypatch):
    monkeypatch.setattr(optim, "BLOCK", 256)
    models = [sv.VAE(30, 3, (20,), seed=0) for _ in range(2)]
    opts = [sv.Adam(m.named_parameters(), lr=1e-2) for m in models]
    names = [n for n, _, _ in opts[1].named]
    odd, even = names[1::2], names[::2]                    # windows that are not back to back
    rng = np.random.default_rng(0)
    for _ in range(5):
        for (_, _, g1), (_, _, g2) in zip(*(m.named_parameters() for m in models)):
            g1[...] = g2[...] = rng.standard_normal(g1.shape)
        opts[0].step()
        with opts[1].step_in_parts() as update:
            for part in (odd, even)[::-1]:
                update(*part)
    assert _identical(models[0].parameters(), models[1].parameters())
    with pytest.raises(RuntimeError, match="must update every parameter once"):
        with opts[1].step_in_parts() as update:
            update(*odd)
            update(*even[1:])
    with pytest.raises(ValueError, match="already updated in this step"):
        with opts[1].step_in_parts() as update:
            update(*names)
            update(*even[:1])


def test_a_deferred_weight_gradient_is_the_same_products_made_later():
    """Linear/MLP backward with ``defer``: the same dx at once, the weight gradients untouched
    until the deferred functions run, then the same, bit for bit."""
    from scratchvae.layers import MLP
    rng = np.random.default_rng(0)
    nets = [MLP([12, 9, 7, 5], activation="tanh", rng=np.random.default_rng(1)) for _ in range(2)]
    x = rng.standard_normal((6, 12)).astype(np.float32)
    dy = rng.standard_normal((6, 5)).astype(np.float32)
    for net in nets:
        net.forward(x)
        net.zero_grad()
    dx_now = nets[0].backward(dy.copy())
    later = []
    dx_later = nets[1].backward(dy.copy(), defer=later)
    assert np.array_equal(dx_now, dx_later) and len(later) == 3
    assert all(not g.any() for g in nets[1].gradients().values())
    for weight_grad in later:
        weight_grad()
    assert _identical(nets[0].gradients(), nets[1].gradients())
