"""Extending the library: what coursework does first must work, or fail loudly.

Submodules assigned as attributes are found (or forgetting one in children() is an error);
a custom decoder and a beta-VAE go through a checkpoint and come back as themselves; an
unregistered class is refused with the how-to; a loss that draws fresh noise is caught by
the gradient checker. Real models, real checkpoint files.
"""
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import scratchvae as sv
from scratchvae.activations import sigmoid
from scratchvae.module import _attribute_modules
from scratchvae.training import checkpoint as ckpt

ROOT = Path(__file__).resolve().parent.parent


# -- the models a student writes ------------------------------------------------------------------
@sv.register_decoder("test-fixed-gaussian")
class FixedGaussianDecoder(sv.Decoder):
    """p(x|z) = N(x; sigmoid(a), 0.1^2 I), a = net(z): a Gaussian with a fixed variance."""
    logvar_x = 2 * math.log(0.1)

    def forward(self, z):
        self.mu_x = sigmoid(self.net.forward(z))
        return self.mu_x

    def log_prob(self, x):
        self.cache = x
        var = math.exp(self.logvar_x)
        return -0.5 * (((x - self.mu_x) ** 2).sum(axis=1) / var
                       + x.shape[1] * (math.log(2 * math.pi) + self.logvar_x))

    def backward(self, dlogp):
        x, mu_x = self.cache, self.mu_x
        dmu_x = (x - mu_x) / math.exp(self.logvar_x)
        return self.net.backward(dmu_x * mu_x * (1 - mu_x) * dlogp[:, None])

    def mean(self, z):
        return sigmoid(self.net.forward(z))


@sv.register_model(name="test-beta-vae")
class BetaVAE(sv.VAE):
    """-1/B sum_b (rec_b - beta KL_b), through the VAE's kl_weight."""

    def __init__(self, *args, beta=4.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.beta = self.kl_weight = beta

    def config(self):
        return {**super().config(), "beta": self.beta}


class Regressor(sv.Module):
    """y = heads[k](tanh(hidden(x))) summed over the heads, plus a learned offset: every
    submodule is only an attribute (a module, a list of modules), no children() written."""

    def __init__(self, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.hidden = sv.Linear(3, 5, rng=rng, dtype="float64")
        self.act = sv.activations.Tanh()
        self.heads = [sv.Linear(5, 2, rng=rng, dtype="float64"), sv.Linear(5, 2, rng=rng, dtype="float64")]
        self.params = {"offset": np.full(2, 0.5)}
        self.grads = {"offset": np.zeros(2)}

    def forward(self, x):
        h = self.act.forward(self.hidden.forward(x))
        return sum(head.forward(h) for head in self.heads) + self.params["offset"]

    def loss(self, x, y):
        diff = self.forward(x) - y
        self.cache = diff
        return float((diff * diff).sum()) / x.shape[0]

    def backward(self):
        dy = 2 * self.cache / self.cache.shape[0]
        self.grads["offset"][...] = dy.sum(axis=0)
        dh = sum(head.backward(dy) for head in self.heads)
        self.hidden.backward(self.act.backward(dh))


class ForgetfulRegressor(Regressor):
    """The same model with a hand-written children() that forgets the second head."""

    def children(self):
        return {"hidden": self.hidden, "heads.0": self.heads[0]}


def _regression_data():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 3))
    return x, np.sin(x[:, :2]) + x[:, 2:]


def _digits():
    d = sv.load_dataset("digits")
    return d.train[:400], d.test[:200]


# -- submodules are found, or forgetting one is an error ------------------------------------------
def test_attribute_submodules_are_found_in_assignment_order():
    model = Regressor()
    assert list(model.parameters()) == ["offset", "hidden.W", "hidden.b", "heads.0.W", "heads.0.b",
                                        "heads.1.W", "heads.1.b"]


def test_a_model_whose_submodules_are_only_attributes_trains_every_tensor():
    """An optimizer built from named_parameters() moves every tensor, the list's too."""
    model = Regressor()
    x, y = _regression_data()
    before = {k: p.copy() for k, p in model.parameters().items()}
    opt = sv.Adam(model.named_parameters(), lr=0.05)
    first = model.loss(x, y)
    for _ in range(50):
        model.loss(x, y)
        model.backward()
        opt.step()
    assert model.loss(x, y) < 0.5 * first
    for name, p in model.parameters().items():
        assert not np.array_equal(p, before[name]), f"{name} never moved"


def test_a_model_whose_submodules_are_only_attributes_gradchecks_every_tensor():
    model = Regressor()
    x, y = _regression_data()
    model.loss(x, y)
    model.backward()
    report = sv.check_gradients(lambda: model.loss(x, y), model.parameters(), model.gradients())
    assert [r.name for r in report] == list(model.parameters()) and len(report) == 7
    assert all(r.passed for r in report), sv.format_report(report)


def test_a_submodule_left_out_of_children_is_an_error_naming_it():
    model = ForgetfulRegressor()
    for reach in (lambda: list(model.named_parameters()), lambda: sv.Adam(model.named_parameters()),
                  model.flatten_parameters, model.parameters):
        with pytest.raises(sv.ModuleError, match=r"ForgetfulRegressor\.children\(\) leaves out "
                                                  r"self\.heads\[1\], a Linear holding 2 parameter") as err:
            reach()
        assert "children()" in str(err.value) and "borrowed" in str(err.value)


def test_a_dict_of_submodules_is_found_and_named_by_its_keys():
    class Heads(sv.Module):
        def __init__(self):
            super().__init__()
            rng = np.random.default_rng(0)
            self.heads = {"mu": sv.Linear(2, 2, rng=rng), "logvar": sv.Linear(2, 2, rng=rng)}

    assert list(Heads().parameters()) == ["heads.mu.W", "heads.mu.b", "heads.logvar.W", "heads.logvar.b"]
    Heads.children = lambda self: {"mu": self.heads["mu"]}
    with pytest.raises(sv.ModuleError, match=r"leaves out self\.heads\['logvar'\].*borrowed = \('heads',\)"):
        Heads().parameters()


def test_a_submodule_added_after_the_first_reach_is_checked_too():
    """A VAE subclass that writes children() and adds a layer after the VAE's constructor
    (which already reached every parameter to flatten them): still caught."""

    class WithExtra(sv.VAE):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.extra = sv.Linear(2, 2, rng=np.random.default_rng(0))

        def children(self):
            return {"encoder": self.encoder, "decoder": self.decoder}

    model = WithExtra(6, 2, (5,))
    with pytest.raises(sv.ModuleError, match=r"self\.extra, a Linear"):
        sv.Adam(model.named_parameters())


def test_a_vae_subclass_with_an_attribute_layer_needs_no_children():
    class WithExtra(sv.VAE):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.extra = sv.Linear(2, 2, rng=np.random.default_rng(0))

    names = list(WithExtra(6, 2, (5,)).parameters())
    assert names[-2:] == ["extra.W", "extra.b"] and names[0] == "encoder.0.W"


def test_borrowed_modules_and_aliases_are_not_counted_twice():
    class Student(sv.Module):
        borrowed = ("teacher",)

        def __init__(self, teacher):
            super().__init__()
            self.teacher = teacher                       # used, not owned: not trained here
            self.own = sv.Linear(2, 2, rng=np.random.default_rng(0))
            self.first = self.own                        # an alias: counted once

        def children(self):                            # leaving out teacher is no error
            return {"own": self.own}

    teacher = sv.VAE(6, 2, (5,))
    assert list(Student(teacher).parameters()) == ["own.W", "own.b"]
    Student.children = sv.Module.children               # the default: same answer
    assert list(Student(teacher).parameters()) == ["own.W", "own.b"]


def test_a_plain_array_attribute_is_not_a_parameter_and_a_gradient_without_one_is_an_error():
    class Plain(sv.Module):
        def __init__(self):
            super().__init__()
            self.w = np.ones(3)                          # state, not a parameter

    assert list(Plain().parameters()) == []

    class HalfRegistered(Plain):
        def __init__(self):
            super().__init__()
            self.grads["w"] = np.zeros(3)                # its gradient where parameters live

    with pytest.raises(sv.ModuleError, match=r"grads\['w'\] has no parameter.*self\.params\['w'\]"):
        list(HalfRegistered().named_parameters())

    class NoSuper(sv.Module):
        def __init__(self):
            self.layer = sv.Linear(2, 2)                 # super().__init__() forgotten

    with pytest.raises(sv.ModuleError, match=r"must call super\(\).__init__\(\)"):
        NoSuper().parameters()


def test_names_and_the_one_buffer_are_unchanged():
    model = sv.VAE(6, 2, (5,), likelihood="gaussian")
    assert list(model.parameters()) == [f"{net}.{i}.{t}" for net in ("encoder", "decoder.net")
                                        for i in (0, 2) for t in ("W", "b")]
    assert len(model.flat_buffers()) == 1
    assert [name for name, _ in _attribute_modules(model)] == ["encoder", "decoder"]


# -- load_model rebuilds the class that was saved ---------------------------------------------------
def _train(model, out, epochs=2):
    train, test = _digits()
    t = sv.Trainer(model, sv.Adam(model.named_parameters(), lr=3e-3), train, test, out=out,
                   progress=False, batch_size=50)
    t.fit(epochs=epochs)
    return t


def _same_elbo(a, b, x):
    ea, eb = sv.evaluate_elbo(a, x, n_samples=3), sv.evaluate_elbo(b, x, n_samples=3)
    assert ea == eb
    return ea


def test_a_custom_decoder_round_trips_through_a_checkpoint(tmp_path):
    model = sv.VAE(64, 2, (32,), likelihood="test-fixed-gaussian", seed=0)
    assert model.config()["likelihood"] == "test-fixed-gaussian"
    t = _train(model, tmp_path)
    again, c = sv.load_model(tmp_path / "checkpoint.npz")
    assert type(again) is sv.VAE and type(again.decoder) is FixedGaussianDecoder
    assert c.model_class == "VAE" and c.config["likelihood"] == "test-fixed-gaussian"
    _same_elbo(again, model, t.images.eval_sets["test"])
    # the network outputs one number per pixel (outputs_per_pixel = 1)
    assert again.decoder.net.sizes == [2, 32, 64]


def test_a_beta_vae_round_trips_through_a_checkpoint_and_resumes(tmp_path):
    model = BetaVAE(64, 2, (32,), beta=3.0, seed=0)
    t = _train(model, tmp_path, epochs=1)
    again, c = sv.load_model(tmp_path / "checkpoint.npz")
    assert type(again) is BetaVAE and again.beta == again.kl_weight == 3.0
    assert c.model_class == "test-beta-vae" and c.config["beta"] == 3.0
    x = t.images.eval_sets["test"]
    _same_elbo(again, model, x)
    eps = np.random.default_rng(0).standard_normal((x.shape[0], 2)).astype(np.float32)
    assert again.loss(x, eps=eps) == model.loss(x, eps=eps)      # the beta objective, too
    # resuming: into the same class, yes; into a plain VAE, no
    for other in (BetaVAE(64, 2, (32,), beta=3.0, seed=5), sv.VAE(64, 2, (32,), seed=5)):
        u = sv.Trainer(other, sv.Adam(other.named_parameters(), lr=3e-3), *_digits(), out=tmp_path,
                       progress=False, batch_size=50)
        if type(other) is BetaVAE:
            u.resume()
            assert all(np.array_equal(p, model.parameters()[k]) for k, p in other.parameters().items())
        else:
            with pytest.raises(ckpt.CheckpointError, match="holds a test-beta-vae, not a VAE"):
                u.resume()


def test_an_old_checkpoint_without_a_class_name_loads_as_a_vae(tmp_path):
    model = sv.VAE(64, 2, (16,), seed=0)
    _train(model, tmp_path, epochs=1)
    path = tmp_path / "checkpoint.npz"
    with np.load(path) as z:
        arrays = dict(z)
    meta = json.loads(str(arrays["meta"]))
    del meta["model_class"]
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "old.npz", **arrays)
    again, c = sv.load_model(tmp_path / "old.npz")
    assert type(again) is sv.VAE and c.model_class == "VAE"
    _same_elbo(again, model, _digits()[1])


def test_an_unregistered_class_cannot_be_saved_and_the_error_says_how(tmp_path):
    class Unregistered(sv.VAE):
        pass

    model = Unregistered(64, 2, (16,))
    train, test = _digits()
    how = r"Unregistered is not registered: decorate the class with @scratchvae\.register_model"
    with pytest.raises(ckpt.CheckpointError, match=how):           # before any training
        sv.Trainer(model, sv.Adam(model.named_parameters()), train, test, out=tmp_path, progress=False)
    with pytest.raises(ckpt.CheckpointError, match=how):
        ckpt.save(tmp_path / "c.npz", model, sv.Adam(model.named_parameters()), {})
    assert list(tmp_path.iterdir()) == []
    sv.Trainer(model, sv.Adam(model.named_parameters()), train, test, progress=False).fit(epochs=1)


def _load_elsewhere(path):
    """load_model in a fresh Python process that never defined this file's classes."""
    code = f"import scratchvae as sv; sv.load_model({str(path)!r})"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)


def test_a_checkpoint_of_a_class_not_registered_where_it_is_loaded_is_refused_with_the_how_to(tmp_path):
    model = BetaVAE(64, 2, (16,), beta=2.0)
    _train(model, tmp_path / "beta", epochs=1)
    done = _load_elsewhere(tmp_path / "beta" / "checkpoint.npz")
    assert done.returncode != 0
    assert re.search(r"CheckpointError: .* holds a model of class 'test-beta-vae', which cannot be "
                     r"rebuilt: no model class is registered under the name 'test-beta-vae'", done.stderr)
    assert "@scratchvae.register_model" in done.stderr
    # a registered model with a decoder that is not registered there
    _train(sv.VAE(64, 2, (16,), likelihood="test-fixed-gaussian"), tmp_path / "fixed", epochs=1)
    done = _load_elsewhere(tmp_path / "fixed" / "checkpoint.npz")
    assert done.returncode != 0 and "@scratchvae.register_decoder" in done.stderr
    assert "'test-fixed-gaussian'" in done.stderr


def test_the_registry_refuses_a_taken_name_and_accepts_a_redefinition():
    with pytest.raises(ValueError, match="'VAE' is taken by scratchvae.vae.VAE"):
        sv.register_model(name="VAE")(type("Other", (sv.VAE,), {}))
    redefined = type("BetaVAE", (sv.VAE,), {"__module__": __name__, "config": BetaVAE.config})
    try:
        assert sv.register_model(name="test-beta-vae")(redefined) is redefined     # a cell run again
    finally:
        sv.register_model(name="test-beta-vae")(BetaVAE)
    with pytest.raises(TypeError, match="lacks log_prob, backward"):
        sv.register_decoder("half")(type("Half", (sv.Module,), {"forward": lambda s, z: z, "mean": None}))
    with pytest.raises(ValueError, match=r"likelihood must be one of .*register_decoder"):
        sv.VAE(6, likelihood="poisson")


# -- the beta-VAE's gradient, from the VAE's backward ---------------------------------------------
@pytest.mark.parametrize("beta", [0.0, 1.0, 4.0])
def test_the_kl_weight_is_in_the_loss_and_in_its_gradient(beta):
    model = BetaVAE(7, 3, (6,), beta=beta, likelihood="test-fixed-gaussian", activation="tanh",
                    dtype="float64", seed=2)
    rng = np.random.default_rng(3)
    x, eps = rng.uniform(0, 1, (5, 7)), rng.standard_normal((5, 3))
    loss, terms = model.loss_and_grads(x, eps=eps)
    assert loss == pytest.approx(-float((terms.rec - beta * terms.kl).mean()), rel=1e-12)
    report = sv.check_gradients(lambda: model.loss(x, eps=eps), model.parameters(), model.gradients())
    assert all(r.passed for r in report), sv.format_report(report)


def test_kl_weight_one_is_the_vae_bit_for_bit():
    a, b = BetaVAE(7, 3, (6,), beta=1.0, seed=2), sv.VAE(7, 3, (6,), seed=2)
    x = np.random.default_rng(3).uniform(0, 1, (5, 7)).astype(np.float32)
    assert a.loss_and_grads(x)[0] == b.loss_and_grads(x)[0]
    for (n, g), h in zip(a.gradients().items(), b.gradients().values()):
        assert np.array_equal(g, h), n


# -- a loss that draws fresh noise ------------------------------------------------------------------
def test_a_random_loss_is_caught_with_the_freeze_the_noise_message():
    model = sv.VAE(7, 3, (6,), dtype="float64", seed=0)
    x = np.random.default_rng(0).uniform(0, 1, (5, 7))
    model.loss_and_grads(x)
    for check in (sv.check_gradients, sv.check_directional):
        with pytest.raises(sv.NondeterministicLoss, match=r"not deterministic.*draws fresh noise.*"
                                                           r"Freeze the noise.*model\.loss\(x, eps=eps\)"):
            check(lambda: model.loss(x), model.parameters(), model.gradients())
    eps = np.random.default_rng(1).standard_normal((5, 3))     # frozen: it passes
    model.loss_and_grads(x, eps=eps)
    report = sv.check_gradients(lambda: model.loss(x, eps=eps), model.parameters(), model.gradients())
    assert all(r.passed for r in report)


# -- the README's example runs -----------------------------------------------------------------------
def readme_section(title):
    """The python code blocks of the README's section ``title``, up to the next heading (a line
    starting with '#' outside a code block)."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = lines.index(title)
    blocks, block, fence = [], None, False
    for line in lines[start + 1:]:
        if line.startswith("```"):
            fence = not fence
            if fence and line.strip() == "```python":
                block = []
            elif not fence and block is not None:
                blocks.append("\n".join(block))
                block = None
            continue
        if not fence and line.startswith("#"):
            break
        if block is not None:
            block.append(line)
    return blocks


def test_the_readme_example_of_writing_a_model_runs(tmp_path, monkeypatch, capsys):
    blocks = readme_section("### Writing a model of your own")
    assert blocks
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme_example"}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "BetaVAE 4.0 fixed-gaussian" in out
    assert (tmp_path / "runs" / "beta-vae" / "checkpoint.npz").exists()
