# %% [markdown]
# # Lesson 0: backpropagation by hand, checked by finite differences
#
# Every model in these lessons is trained by following a gradient, and scratchvae computes every
# gradient by hand: each module has a `forward` and, beside it, a `backward`. This lesson derives
# the backward of the three pieces everything else is built from (an activation, a linear layer,
# a two-layer MLP) and shows how to check each one with finite differences, the check every
# later lesson prints.
#
# **Notation.** $L$ is a scalar loss. For any array $v$ in the computation, $dv$ means
# $\partial L / \partial v$: an array of $v$'s shape whose entry $i$ says how fast $L$ changes when
# $v_i$ moves. A module's `backward` receives $dy$ for its output $y$ and returns $dx$ for its input
# (and fills $dW$, $db$ for its parameters). For $y = f(x)$ the chain rule reads
#
# $$
# dx_i = \sum_j dy_j \, \frac{\partial y_j}{\partial x_i}
# $$
#
# and backpropagation applies it module by module, from the loss back to the input, without ever
# building the matrix $\partial y_j / \partial x_i$.
#
# Plan: (1) central differences and their error; (2) the relative error and the 1e-7 threshold;
# (3) activations; (4) kinks; (5) a linear layer; (6) a two-layer MLP; (7) why checks run in float64.

# %%
import matplotlib.pyplot as plt
import numpy as np

from _lesson import Lesson
from scratchvae.activations import (relu, relu_backward, sigmoid, sigmoid_backward, softplus,
                                    softplus_backward, tanh, tanh_backward)
from scratchvae.gradcheck import (DEFAULT_DELTA, THRESHOLD, check_gradients, format_report,
                                  numerical_gradient, rel_error)
from scratchvae.layers import MLP, Linear

run = Lesson("00_backprop_and_gradient_checks")
rng = np.random.default_rng(run.seed)

# %% [markdown]
# ## 1. Central differences, and why their error is $O(\delta^2)$
#
# A derivative can be estimated from values of $f$ alone. Taylor's theorem around a point $a$ gives
#
# $$
# \begin{aligned}
# f(a + \delta) &= f(a) + \delta f'(a) + \frac{\delta^2}{2} f''(a) + \frac{\delta^3}{6} f'''(a) + O(\delta^4) \\
# f(a - \delta) &= f(a) - \delta f'(a) + \frac{\delta^2}{2} f''(a) - \frac{\delta^3}{6} f'''(a) + O(\delta^4)
# \end{aligned}
# $$
#
# The **forward difference** $[f(a + \delta) - f(a)] / \delta = f'(a) + \frac{\delta}{2} f''(a) + \dots$
# is off by a term proportional to $\delta$. Subtracting the two lines cancels every even power:
#
# $$
# \frac{f(a + \delta) - f(a - \delta)}{2\delta} = f'(a) + \frac{\delta^2}{6} f'''(a) + O(\delta^4)
# $$
#
# so the **central difference** has a truncation error of order $\delta^2$: a ten times smaller
# $\delta$, a hundred times smaller error. This is the formula of
# `scratchvae.gradcheck.numerical_gradient`.
#
# Smaller is not better without end. The computer holds $f(a \pm \delta)$ rounded to a relative
# precision $\varepsilon_{\mathrm{mach}}$ (2.2e-16 in float64, 1.2e-7 in float32), so their difference
# is uncertain by about $\varepsilon_{\mathrm{mach}} |f|$, and dividing by $2\delta$ magnifies that.
# Altogether, roughly,
#
# $$
# \operatorname{error}(\delta) \approx
# \underbrace{\frac{|f'''| \, \delta^2}{6}}_{\text{truncation: slope } 2}
# + \underbrace{\frac{\varepsilon_{\mathrm{mach}} |f|}{\delta}}_{\text{round-off: slope } -1}
# \qquad \text{(slopes on a log-log plot)}
# $$
#
# The sum is smallest near $\delta^* = (3 \varepsilon_{\mathrm{mach}} |f| / |f'''|)^{1/3}$: about 1e-5
# in float64 (the library's `DEFAULT_DELTA`), about 5e-3 in float32.
#
# Below, $f = \tanh$, whose derivatives we know exactly: with $t = \tanh(a)$, $f' = 1 - t^2$ and
# $f''' = (1 - t^2)(6 t^2 - 2)$. The relative error is taken at many points $a$ near 0.5 and
# averaged (root mean square), because round-off jumps from one point to the next.

# %%
points = rng.uniform(0.45, 0.55, run.pick(fast=200, full=2_000))
deltas = np.logspace(-14, -1, run.pick(fast=53, full=131))
t = tanh(points)
slope_exact = 1 - t ** 2                                        # f'(a)
third = (1 - t ** 2) * (6 * t ** 2 - 2)                         # f'''(a)


def rms(v):
    return float(np.sqrt(np.mean(v ** 2)))


errors = {"central, float64": [], "forward, float64": [], "central, float32": []}
for delta in deltas:
    central = (tanh(points + delta) - tanh(points - delta)) / (2 * delta)
    forward = (tanh(points + delta) - tanh(points)) / delta
    a32, d32 = points.astype(np.float32), np.float32(delta)    # the same in float32
    central32 = (tanh(a32 + d32) - tanh(a32 - d32)) / (2 * d32)
    exact32 = 1 - tanh(a32.astype(np.float64)) ** 2            # at the float32 points
    errors["central, float64"].append(rms((central - slope_exact) / slope_exact))
    errors["forward, float64"].append(rms((forward - slope_exact) / slope_exact))
    errors["central, float32"].append(rms((central32 - exact32) / exact32))
errors = {k: np.array(v) for k, v in errors.items()}
truncation = np.array([rms(d ** 2 * third / (6 * slope_exact)) for d in deltas])   # delta^2 f'''/(6 f')


def slope(curve, lo, hi):
    """The slope of log10(error) against log10(delta) for lo <= delta <= hi."""
    sel = (deltas >= lo) & (deltas <= hi)
    return np.polyfit(np.log10(deltas[sel]), np.log10(curve[sel]), 1)[0]


at = np.argmin(np.abs(deltas - 1e-3))
run.check("central difference error at delta = 1e-3 vs delta^2 |f'''| / (6 |f'|)",
          errors["central, float64"][at], truncation[at], tol=1e-3)
run.check("slope of the central difference's error, delta in [1e-4, 1e-2]",
          slope(errors["central, float64"], 1e-4, 1e-2), 2.0, tol=1e-3)
run.check("slope of the forward difference's error, delta in [1e-6, 1e-2]",
          slope(errors["forward, float64"], 1e-6, 1e-2), 1.0, tol=1e-3)
run.check("slope of the round-off error, float64, delta in [1e-13, 1e-9]",
          slope(errors["central, float64"], 1e-13, 1e-9), -1.0, tol=0.1)
m64, m32 = np.argmin(errors["central, float64"]), np.argmin(errors["central, float32"])
print(f"  smallest error, float64: {errors['central, float64'][m64]:.1e} at delta = {deltas[m64]:.0e}; "
      f"float32: {errors['central, float32'][m32]:.1e} at delta = {deltas[m32]:.0e}")
d5 = np.argmin(np.abs(deltas - DEFAULT_DELTA))
print(f"  at the default delta = {DEFAULT_DELTA:g}: float64 {errors['central, float64'][d5]:.1e}, "
      f"float32 {errors['central, float32'][d5]:.1e}")

# The library's numerical_gradient is the same formula, one coordinate at a time. It differences
# the whole loss (here a sum of 5 values, about 2.3), so it agrees with the formula applied to each
# value alone up to round-off of order eps_mach * 2.3 / delta = 5e-11, not to the last digit:
a = points[:5].copy()
run.check("numerical_gradient(sum tanh) vs the central difference written out",
          numerical_gradient(lambda: tanh(a).sum(), a),
          (tanh(a + DEFAULT_DELTA) - tanh(a - DEFAULT_DELTA)) / (2 * DEFAULT_DELTA), tol=1e-9)

# %% [markdown]
# ## 2. The relative error, and the 1e-7 threshold
#
# A gradient check compares, coordinate by coordinate, the analytic derivative $g_a$ (from
# `backward`) with the numerical one $g_n$ (from central differences), through
# `gradcheck.rel_error`:
#
# $$
# \operatorname{rel}(g_a, g_n) = \frac{|g_a - g_n|}{\max(|g_a| + |g_n|, \ \text{tiny})}
# $$
#
# Relative, because derivatives range over many orders of magnitude: an absolute error of 1e-6 is
# excellent for a derivative of 1000 and a total failure for one of 1e-6. (`tiny` only keeps the
# division finite when both are zero; `check_gradients` sets it from the smallest derivative that
# central differences can resolve, as its docstring explains.)
#
# Section 1 says what a *correct* gradient scores in float64 at $\delta = 10^{-5}$: about 1e-11 for
# a derivative as large as $f$ itself. The round-off, about
# $\varepsilon_{\mathrm{mach}} |f| / \delta = 2 \times 10^{-11} |f|$, is the same for every
# coordinate, so a derivative a hundred times smaller than $|f|$ scores a hundred times worse (the
# MLP below has derivatives of 1e-3 on a loss of 2: errors up to 1e-8). A *wrong*
# gradient (a missing factor, a flipped sign, a derivative left out) is off by 1e-2 to 1. The library's
# `THRESHOLD` = 1e-7 sits in between with room on both sides: below it the gradient is right; from
# 1e-7 to 1e-4 look closer (a kink nearby, section 4, or a loss with a large value); above 1e-4
# it is almost certainly wrong.

# %% [markdown]
# ## 3. An activation: elementwise, so its backward is elementwise
#
# An activation applies one function $g$ to every entry, $y_i = g(a_i)$. Entry $y_i$ depends on
# $a_i$ alone, so the chain rule's sum over $j$ has the single term $j = i$:
#
# $$
# da = dy \odot g'(a)
# $$
#
# ($\odot$: an elementwise product, no matrix) and $g'$ is best written through what the forward
# already computed:
#
# * tanh: $y = \tanh(a)$, $g'(a) = 1 - \tanh(a)^2 = 1 - y^2$, so **$da = dy \odot (1 - y^2)$**;
# * sigmoid: $y = 1 / (1 + e^{-a})$, $g'(a) = e^{-a} / (1 + e^{-a})^2 = y (1 - y)$, so
#   **$da = dy \odot y \odot (1 - y)$**;
# * softplus: $y = \log(1 + e^{a})$, $g'(a) = e^{a} / (1 + e^{a}) = \operatorname{sigmoid}(a)$, so
#   **$da = dy \odot \operatorname{sigmoid}(a)$** (this one keeps its input $a$ rather than $y$);
# * ReLU: $y = \max(a, 0)$, $g'(a) = 1$ for $a > 0$ and $0$ for $a < 0$, so
#   **$da = dy \odot (y > 0)$**, the comparison counting as 1 or 0 (at $a = 0$ there is no
#   derivative; the library takes 0, section 4).
#
# These are `tanh_backward(dy, y)`, `sigmoid_backward(dy, y)`, `softplus_backward(dy, a)` and
# `relu_backward(dy, y)` in `scratchvae.activations`. To check one, build a scalar loss whose $dy$
# we know: $L = \sum_i dy_i \operatorname{act}(a)_i$ with a fixed random array $dy$ has
# $\partial L / \partial y = dy$, so the backward must turn $dy$ into $\partial L / \partial a$,
# which central differences estimate.

# %%
a = rng.standard_normal((4, 5))
dy = rng.standard_normal((4, 5))                    # L = sum(dy * y), so dL/dy = dy
print(f"  smallest |a| = {np.abs(a).min():.3f}, far from ReLU's kink at 0 compared with delta")
activations = {"tanh": (tanh, tanh_backward, "y"), "sigmoid": (sigmoid, sigmoid_backward, "y"),
               "softplus": (softplus, softplus_backward, "a"), "relu": (relu, relu_backward, "y")}
for name, (act, act_backward, keeps) in activations.items():
    da = act_backward(dy, act(a) if keeps == "y" else a)
    run.check(f"{name}_backward(dy, {keeps}) vs central differences", da,
              numerical_gradient(lambda: (dy * act(a)).sum(), a), tol=THRESHOLD)

# %% [markdown]
# Two mistakes, for contrast: tanh's derivative left out ($da = dy$, as if tanh were the
# identity), and a sigmoid backward written for the input,
# $dy \odot \operatorname{sigmoid}(a) (1 - \operatorname{sigmoid}(a))$, but called, as the layer
# does, with the output $y$: it computes $\operatorname{sigmoid}(y) (1 - \operatorname{sigmoid}(y))$,
# the sigmoid applied twice. Both score far above the threshold:

# %%
numeric_tanh = numerical_gradient(lambda: (dy * tanh(a)).sum(), a)
numeric_sigmoid = numerical_gradient(lambda: (dy * sigmoid(a)).sum(), a)
wrong = {"tanh, derivative left out: da = dy": rel_error(dy, numeric_tanh).max(),
         "sigmoid, sigmoid applied twice: dy * s(y) (1 - s(y))":
             rel_error(sigmoid_backward(dy, sigmoid(sigmoid(a))), numeric_sigmoid).max()}
for what, err in wrong.items():
    print(f"  {what:<55} worst relative error {err:.1e}")
    assert err > 1e-2

# %% [markdown]
# ## 4. Kinks: ReLU near 0
#
# ReLU has no derivative at $a = 0$: its slope is 0 on the left, 1 on the right. A central
# difference at a point with $|a| < \delta$ straddles the kink and sees part of each:
#
# $$
# \frac{\operatorname{relu}(a + \delta) - \operatorname{relu}(a - \delta)}{2\delta}
# = \frac{a + \delta}{2\delta} \qquad \text{for } |a| < \delta
# $$
#
# a ramp from 0 to 1 across $[-\delta, \delta]$, $1/2$ at $a = 0$. A correct backward then *fails*
# its check there: at $a = 3 \times 10^{-6}$ it says 1 and central differences say 0.65.

# %%
a_kink = np.array([-2e-5, -3e-6, 0.0, 3e-6, 2e-5])
numeric_kink = numerical_gradient(lambda: relu(a_kink).sum(), a_kink)
analytic = relu_backward(np.ones_like(a_kink), relu(a_kink))
for ai, an, nu in zip(a_kink, analytic, numeric_kink):
    print(f"  a = {ai:+.0e}: relu_backward {an:.2f}, central difference {nu:.3f}, "
          f"relative error {rel_error(an, nu):.2g}")
inside = np.abs(a_kink) < DEFAULT_DELTA
run.check("central difference of relu for |a| < delta vs (a + delta) / (2 delta)", numeric_kink[inside],
          (a_kink[inside] + DEFAULT_DELTA) / (2 * DEFAULT_DELTA), tol=1e-9)

# %% [markdown]
# How often does a check land on a kink? A pre-activation drawn from a smooth distribution falls
# within $\delta$ of 0 with probability about $2 \delta \, p(0)$, 8e-6 for a standard normal: rare,
# but a check over a large network, or inputs that are exactly 0 (a zero bias on an all-zero
# input), can hit one. So: check at points away from kinks, and when a single coordinate of a ReLU
# network fails, look at whether its pre-activation is within $\delta$ of 0 before hunting for a
# bug. Other kinks behave the same: $|a|$, $\max$, a clip.
#
# ## 5. A linear layer
#
# `Linear` computes $y = x W + b$ for a batch: $x$ is $(B, n)$, one example per row, $W$ is
# $(n, m)$, $b$ is $(m,)$, $y$ is $(B, m)$. Entry by entry,
#
# $$
# y_{bj} = \sum_i x_{bi} W_{ij} + b_j
# $$
#
# Each backward line is the chain rule's sum over the entries $y_{bj}$ in which the variable
# appears:
#
# * $W_{ij}$ appears in $y_{bj}$ for every example $b$, with coefficient $x_{bi}$:
#   $dW_{ij} = \sum_b x_{bi} \, dy_{bj}$, that is **$dW = x^\top dy$** $(n, m)$;
# * $b_j$ appears in $y_{bj}$ for every $b$, with coefficient 1:
#   $db_j = \sum_b dy_{bj}$, that is **$db$ = $dy$ summed over the batch** $(m,)$;
# * $x_{bi}$ appears in $y_{bj}$ for every output $j$, with coefficient $W_{ij}$:
#   $dx_{bi} = \sum_j dy_{bj} W_{ij}$, that is **$dx = dy \, W^\top$** $(B, n)$.
#
# A quick test of such formulas: each gradient has its variable's shape, and only one product of
# $x$ $(B, n)$ and $dy$ $(B, m)$ gives an $(n, m)$ array. Shapes do not catch everything, though:
# for a square $W$, $dy^\top x$ has the right shape too, and is the transpose of the right answer.
#
# The sums over the batch are where a mean in the loss shows up: with
# $L = \frac{1}{B} \sum_b \text{loss}_b$ the factor $1/B$ is already in $dy$, and the layer never
# needs to know $B$. `Linear.backward(dy)` computes these three lines ($W$, $b$ and the cached $x$
# are the layer's own).

# %%
B, n, m = 5, 4, 4
layer = Linear(n, m, dtype="float64", rng=np.random.default_rng(1))
x = rng.standard_normal((B, n))
dy = rng.standard_normal((B, m))                   # L = sum(dy * y), so dL/dy = dy
layer.forward(x)
dx = layer.backward(dy)
W, b = layer.params["W"], layer.params["b"]
dW, db = layer.grads["W"].copy(), layer.grads["b"].copy()
run.check("Linear.backward: dW vs x^T dy", dW, x.T @ dy, tol=1e-12)
run.check("Linear.backward: db vs dy summed over the batch", db, dy.sum(axis=0), tol=1e-12)
run.check("Linear.backward: dx vs dy W^T", dx, dy @ W.T, tol=1e-12)

reports = check_gradients(lambda: (dy * layer.forward(x)).sum(), {"W": W, "b": b, "x": x},
                          {"W": dW, "b": db, "x": dx})
print(format_report(reports))
assert all(r.passed for r in reports)
print(f"  the transposed mistake dW = dy^T x (same shape here): worst relative error "
      f"{rel_error(dy.T @ x, numerical_gradient(lambda: (dy * layer.forward(x)).sum(), W)).max():.1e}")

# %% [markdown]
# ## 6. A two-layer MLP: the chain rule, one module at a time, in reverse
#
# `MLP([n, h, m], activation="tanh")` is a Linear, a tanh and a second Linear:
#
# $$
# a_1 = x W_1 + b_1, \qquad h = \tanh(a_1), \qquad y = h W_2 + b_2
# $$
#
# trained here on the mean squared error against targets $t$,
# $L = \frac{1}{2B} \sum_b \lVert y_b - t_b \rVert^2$, whose gradient is $dy = (y - t) / B$.
# Backward runs the same steps in reverse, each a line derived above:
#
# $$
# \begin{aligned}
# & dW_2 = h^\top dy, \quad db_2 = \textstyle\sum_b dy, \quad dh = dy \, W_2^\top
#   && \text{(the second Linear, section 5)} \\
# & da_1 = dh \odot (1 - h^2) && \text{(the tanh, section 3)} \\
# & dW_1 = x^\top da_1, \quad db_1 = \textstyle\sum_b da_1, \quad dx = da_1 W_1^\top
#   && \text{(the first Linear)}
# \end{aligned}
# $$
#
# Each module needs only what its own forward kept ($x$ for a Linear, $h$ for the tanh) and the
# gradient handed down by the module after it. `MLP.backward(dy)` calls each module's backward,
# last module first: that loop over the list of modules is the whole chain rule.

# %%
B, n, hidden, m = 8, 6, 8, 3
mlp = MLP([n, hidden, m], activation="tanh", dtype="float64", rng=np.random.default_rng(2))
x, target = rng.standard_normal((B, n)), rng.standard_normal((B, m))


def mse():
    """L = 1/(2B) sum_b |y_b - t_b|^2 at the current parameters."""
    return float(((mlp.forward(x) - target) ** 2).sum() / (2 * B))


y = mlp.forward(x)
dy = (y - target) / B
dx = mlp.backward(dy)
grads = {name: grad.copy() for name, grad in mlp.gradients().items()}    # '0.W', '0.b', '2.W', '2.b'
print(f"  {mlp}: modules {mlp.layers}, parameters {list(grads)}")

h = mlp.layers[1].cache                                              # tanh kept its output
W1, W2 = mlp.layers[0].params["W"], mlp.layers[2].params["W"]
dh = dy @ W2.T
da1 = dh * (1 - h ** 2)
run.check("MLP: dW2 vs h^T dy", grads["2.W"], h.T @ dy, tol=1e-12)
run.check("MLP: db2 vs sum_b dy", grads["2.b"], dy.sum(axis=0), tol=1e-12)
run.check("MLP: dW1 vs x^T (dy W2^T * (1 - h^2))", grads["0.W"], x.T @ da1, tol=1e-12)
run.check("MLP: db1 vs sum_b da1", grads["0.b"], da1.sum(axis=0), tol=1e-12)
run.check("MLP: dx vs da1 W1^T", dx, da1 @ W1.T, tol=1e-12)

sizes = np.abs(np.concatenate([grad.ravel() for grad in grads.values()]))
print(f"  L = {mse():.3f}; its derivatives range from {sizes.min():.0e} to {sizes.max():.0e} in size, so "
      f"round-off (about 2e-11 L) weighs most on the smallest")
reports = check_gradients(mse, {**mlp.parameters(), "x": x}, {**grads, "x": dx})
print(format_report(reports))
assert all(r.passed for r in reports)

# %% [markdown]
# Every coordinate at once, for the picture: the relative error of each parameter's derivative,
# for the library's gradient and for two classic mistakes, the mean's $1/B$ left out
# ($dy = y - t$) and tanh's derivative left out ($da_1 = dh$). The first scales every derivative by
# $B$, so each is off by the same relative $(B - 1) / (B + 1)$; the second is off everywhere in the
# first layer.

# %%
numeric = {name: numerical_gradient(mse, p) for name, p in mlp.parameters().items()}
mlp.forward(x)
mlp.backward(y - target)                                             # the 1/B left out
no_mean = {name: grad.copy() for name, grad in mlp.gradients().items()}
no_tanh = dict(grads, **{"0.W": x.T @ dh, "0.b": dh.sum(axis=0)})      # tanh's derivative left out
per_coordinate = {label: np.concatenate([rel_error(gr[k], numeric[k]).ravel() for k in numeric])
                  for label, gr in [("library's backward", grads), ("1/B left out", no_mean),
                                    ("tanh' left out", no_tanh)]}
run.check("relative error of every derivative with the 1/B left out vs (B - 1) / (B + 1)",
          per_coordinate["1/B left out"], np.full(per_coordinate["1/B left out"].size, (B - 1) / (B + 1)),
          tol=1e-6)
for label, errs in per_coordinate.items():
    print(f"  {label:<20} worst relative error {errs.max():.1e} over {errs.size} derivatives")

# %% [markdown]
# ## 7. Why the check runs in float64
#
# Section 1 measured it: in float32 ($\varepsilon_{\mathrm{mach}} = 1.2 \times 10^{-7}$) the central
# difference of tanh is off by about 1e-3 at $\delta = 10^{-5}$, where round-off dominates, and by a
# few times 1e-6 even at its best $\delta$ (a few times 1e-3): some fifty times the threshold,
# whatever $\delta$ is chosen. A float32
# check cannot tell a right gradient from one that is wrong in the sixth digit, so
# `check_gradients` refuses float32 arrays. Build the model with `dtype="float64"` to check it:
# that changes the precision, not the formulas, and what passes in float64 is the same code that
# trains in float32.

# %%
mlp32 = MLP([n, hidden, m], activation="tanh", dtype="float32", rng=np.random.default_rng(2))
try:
    check_gradients(lambda: 0.0, mlp32.parameters(), mlp32.gradients())
except TypeError as err:
    print(f"  check_gradients on a float32 model: TypeError: {err}")
best32 = errors["central, float32"].min()
print(f"  float32's best central difference of tanh (section 1): relative error {best32:.1e}, "
      f"{best32 / THRESHOLD:.0f} times the threshold")
assert best32 > 10 * THRESHOLD

# %% [markdown]
# ## The picture
#
# (a) the relative error of the derivative of tanh against $\delta$: the central difference falls
# with slope 2 (dashed: the truncation term $\delta^2 f'''/6$, relative to $f'$) until round-off
# takes over and it rises with slope $-1$; the forward difference falls with slope 1 only;
# float32's round-off rises about $10^9$ times higher, so its best error stays above the 1e-7
# threshold. (b) ReLU's kink: the central difference is a ramp across $[-\delta, \delta]$ where the
# derivative jumps. (c) the relative error
# of every derivative of the MLP, for the library's backward and two mistakes: the threshold
# separates them by orders of magnitude. (The second layer's derivatives do not pass through the
# tanh, so they stay right when its derivative is left out: a check per tensor also says where
# the mistake is.)

# %%
fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
ax = axes[0]
eps64, eps32 = np.finfo(np.float64).eps, np.finfo(np.float32).eps
ratio = rms(t / slope_exact)                                    # |f| / |f'|
for (label, curve), style in zip(errors.items(), ["C0.-", "C2.-", "C3.-"]):
    ax.loglog(deltas, curve, style, ms=3, lw=1, label=label)
ax.loglog(deltas, truncation, "k--", lw=1, label="delta^2 |f'''| / (6 |f'|)  (slope 2)")
ax.loglog(deltas, eps64 * ratio / deltas, "C0:", lw=1, label="eps_mach |f| / (delta |f'|)  (slope -1)")
ax.loglog(deltas, eps32 * ratio / deltas, "C3:", lw=1, label="the same, float32's eps_mach")
ax.axhline(THRESHOLD, color="0.5", lw=1)
ax.text(deltas[0], THRESHOLD * 1.5, "threshold 1e-7", fontsize=8, color="0.4")
ax.axvline(DEFAULT_DELTA, color="0.5", lw=1, ls="-.", label="the default delta = 1e-5")
ax.set(ylim=(1e-13, 3), title="(a) error of a finite difference of tanh", xlabel="delta",
       ylabel="relative error (rms over points)")
ax.legend(fontsize=7, loc="lower left")

ax = axes[1]
s = np.linspace(-3, 3, 601) * DEFAULT_DELTA
ramp = numerical_gradient(lambda: relu(s).sum(), s)
ax.plot(s / DEFAULT_DELTA, relu_backward(np.ones_like(s), relu(s)), "C0", lw=2, label="relu_backward: 0 or 1")
ax.plot(s / DEFAULT_DELTA, ramp, "C3--", lw=2, label="central difference")
ax.plot(a_kink / DEFAULT_DELTA, numeric_kink, "ko", ms=5, label="the points checked above")
ax.set(title="(b) a kink: ReLU's derivative near a = 0", xlabel="a / delta", ylabel="d relu / da")
ax.legend(fontsize=8)

ax = axes[2]
bins = np.logspace(-16, 1, 69)
for (label, errs), color in zip(per_coordinate.items(), ["C0", "C1", "C3"]):
    ax.hist(np.maximum(errs, 1e-16), bins=bins, color=color, alpha=0.6, label=label)
ax.axvline(THRESHOLD, color="k", ls="--", label="threshold 1e-7")
ax.set(xscale="log", title="(c) every derivative of the MLP, checked", xlabel="relative error",
       ylabel="derivatives")
ax.legend(fontsize=8)
fig.tight_layout()
run.save(fig, "gradient_checks")

# %% [markdown]
# ## What to remember
#
# * Backward is the chain rule, one module at a time in reverse: each module turns the gradient of
#   its output into that of its input (and of its parameters), using only what its forward kept.
# * Activations: $da = dy \odot g'(a)$, elementwise. Linear: $dW = x^\top dy$, $db$ = $dy$ summed
#   over the batch, $dx = dy \, W^\top$. Each gradient has its variable's shape.
# * Central differences are accurate to $O(\delta^2)$ until round-off, which grows like
#   $\varepsilon_{\mathrm{mach}} / \delta$, takes over; $\delta = 10^{-5}$ in float64 balances the two.
# * Judge a gradient by its relative error: below 1e-7 in float64 it is right, above 1e-4 it is
#   wrong. Check in float64 (float32 cannot resolve 1e-7) and away from kinks.
#
# ## Exercises
#
# Start a workbook once; it holds the exercises of every lesson, one file per topic:
#
#     scratchvae exercises start my-workbook
#
# This lesson's functions are in `my-workbook/00_backprop.py`, each with the library's signature and
# docstring and its body left to you. Grade one or several with
#
#     scratchvae exercises check my-workbook NAME [NAME ...]
#
# which checks your function against central differences and against the library's own function
# on random inputs (in float64), and names the mistake when it recognizes one. The worked answers to
# the questions are in `lessons/answers/00_backprop_and_gradient_checks.md`; try first.
#
# 1. **The activations' backward** (code): `relu_backward(dy, y)`, `tanh_backward(dy, y)`,
#    `sigmoid_backward(dy, y)` and `softplus_backward(dy, a)`, from section 3. Mind what each one
#    receives: the activation's output $y$, except softplus, which gets its input $a$.
#    `scratchvae exercises check my-workbook relu_backward tanh_backward sigmoid_backward softplus_backward`
# 2. **A linear layer** (code): `linear_backward(dy, x, W)`, returning `(dx, dW, db)`, the three
#    lines of section 5. `scratchvae exercises check my-workbook linear_backward`
# 3. **The chain rule** (code): `mlp_backward(layers, dy)`: given the MLP's list of modules (Linear,
#    activation, Linear, ...) after a forward pass, send $dy$ back through every one of them and
#    return $dx$. `scratchvae exercises check my-workbook mlp_backward`
# 4. **The limits of a check** (question). (a) For $f = \tanh$ at $a = 0.5$, use the error formula
#    of section 1 to predict the best $\delta$ and the smallest relative error of a central
#    difference, in float64 and in float32. Which of the two can pass a 1e-7 check, and how do the
#    predictions compare with figure (a)? (b) A correct ReLU backward is checked at
#    $a = +3 \times 10^{-6}$ and at $a = -3 \times 10^{-6}$ with $\delta = 10^{-5}$. Which relative
#    errors does the check report, and what would you do about it?
