"""Keras activations as TVMScript on the register tile: the formulas Keras uses, vectorized.

Why our own exp, tanh, erf and log1p: TVM 0.27 lowers `T.exp`, `T.tanh`, `T.erf`,
`T.sigmoid` and `T.log1p` on x86 to one scalar libm call per lane (16 calls per AVX-512
vector), which costs more than the layer's matrix product: on a 64-to-1,536 Dense at 128
rows (AVX-512, one thread) the product takes 251 us, libm's tanh adds 1,110 us and gelu with
`T.erf` 2,840 us; the forms below add 69 and 163 us. They use only multiply-add, divide,
floor, min/max, select and bit casts, all of which LLVM vectorizes; each is within 3 ulp of
the float64 function over float32 (TensorFlow's own CPU kernels, which Keras runs, are 3-6
ulp off).

Trap: a `name = expr` binding inside a `T.vectorized` loop reads a single lane in TVM 0.27
(it becomes one scalar stack slot, and every lane gets lane 15's value), so intermediate
values go to small per-lane buffers (`act0[c]`, `act1[c]`, ...), which LLVM keeps in
registers like the accumulators.

An activation is an `Activation`: a Keras name, its arguments, and optionally the activation
applied after it (`then`), so `Dense(relu) -> LayerNormalization -> gelu` is one pipeline.
A row-wise step (softmax, log_softmax, layer_norm, unit_norm) needs the whole row: at most one
per pipeline, run as a short pass after the layer's tiles; the steps before it run on the
register tile, the steps after it in that pass. Merge steps (add_skip, ...) combine the value
with an earlier node's output at the same row and column (`source`, its index in the graph).
Per-column steps (affine for BatchNormalization and Rescaling, normalize, prelu) read the
node's own parameter arrays (`scale`, `shift`, ... are indices into them), so nothing is
folded into a neighbouring kernel and the arithmetic is Keras' own, in its order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kerasport.errors import ExportError

# Each argument's Keras default; an `Activation` stores only what differs from the name's
# defaults being absent (`arg` falls back here). relu's max_value has no default (None).
_DEFAULTS: dict[str, dict[str, float]] = {
    "relu": {"negative_slope": 0.0, "threshold": 0.0},
    "leaky_relu": {"negative_slope": 0.2},
    "elu": {"alpha": 1.0},
    "celu": {"alpha": 1.0},
    "squareplus": {"b": 4.0},
    "soft_shrink": {"threshold": 0.5},
    "hard_shrink": {"threshold": 0.5},
    "layer_norm": {"epsilon": 1e-3},
    "divide": {"by": 2.0},
    "unit_norm": {},
}
_OPTIONAL = {"relu": ("max_value",), "layer_norm": ("gamma", "beta")}
# Per-column steps: the arguments that name parameter arrays of the node (indices), and the
# expression over the value x and those arrays' entries at the cell's column.
PER_COLUMN = {
    # tf.nn.batch_normalization and Rescaling: x * scale + shift (two roundings)
    "affine": (("scale", "shift"), "{x} * {scale} + {shift}"),
    # Normalization: (x - mean) / max(sqrt(variance), epsilon), the divisor precomputed
    "normalize": (("mean", "std"), "({x} - {mean}) / {std}"),
    # PReLU: relu(x) + (-alpha) * relu(-x), as Keras writes it
    "prelu": (("alpha",), "T.max({x}, T.float32(0.0)) + (T.float32(0.0) - {alpha}) * "
              "T.max(T.float32(0.0) - {x}, T.float32(0.0))"),
}
# Merge steps: the value x and an earlier layer's output h at the same cell, as Keras' merge
# layers compute them (Subtract is inputs[0] - inputs[1]: rsubtract when h is inputs[0]).
MERGES = {
    "add_skip": "{x} + {h}",
    "subtract_skip": "{x} - {h}",
    "rsubtract_skip": "{h} - {x}",
    "multiply_skip": "{x} * {h}",
    "average_skip": "({x} + {h}) / T.float32(2.0)",
    "maximum_skip": "T.max({x}, {h})",
    "minimum_skip": "T.min({x}, {h})",
}


@dataclass(frozen=True)
class Activation:
    """One activation step with its Keras arguments, and the step applied after it."""

    name: str
    args: tuple[tuple[str, float], ...] = ()
    then: Activation | None = None

    @classmethod
    def of(cls, name: str, **args: float | None) -> Activation:
        """`Activation.of("relu", max_value=6.0)`: None arguments are left out, and values
        are rounded to float32, as Keras casts them before it uses them."""
        given = {key: float(np.float32(value)) for key, value in args.items() if value is not None}
        return cls(name, tuple(sorted(given.items())))

    def arg(self, key: str) -> float | None:
        """The argument's value, its Keras default when not given, None if it has none."""
        given = dict(self.args)
        return given[key] if key in given else _DEFAULTS.get(self.name, {}).get(key)

    def value(self, key: str) -> float:
        """An argument that always has a value (given or defaulted)."""
        found = self.arg(key)
        if found is None:
            raise ExportError(f"activation {self.name!r} needs its argument {key!r}")
        return found

    def steps(self) -> list[Activation]:
        """The pipeline in order, each step without its `then`."""
        out: list[Activation] = []
        step: Activation | None = self
        while step is not None:
            out.append(Activation(step.name, step.args))
            step = step.then
        return out

    def followed_by(self, step: Activation) -> Activation:
        """This pipeline with `step` (itself possibly a pipeline) appended; linear steps drop."""
        steps = [s for s in (*self.steps(), *step.steps()) if s.name != "linear"]
        pipeline: Activation | None = None
        for item in reversed(steps):
            pipeline = Activation(item.name, item.args, pipeline)
        return pipeline or Activation("linear")

    @property
    def is_linear(self) -> bool:
        return all(step.name == "linear" for step in self.steps())

    def __str__(self) -> str:
        text = self.name
        if self.args:
            text += "(" + ", ".join(f"{key}={value:g}" for key, value in self.args) + ")"
        return text if self.then is None else f"{text} -> {self.then}"


ActivationSpec = Activation | str


def as_activation(spec: ActivationSpec) -> Activation:
    """An `Activation` from a name or an `Activation`, checked: known names, known and finite
    arguments, at most one row-wise step."""
    activation = Activation(spec) if isinstance(spec, str) else spec
    steps = activation.steps()
    for step in steps:
        if step.name not in ACTIVATIONS:
            raise ExportError(f"activation {step.name!r} is not one the TVM route compiles")
        allowed = set(_DEFAULTS.get(step.name, {})) | set(_OPTIONAL.get(step.name, ()))
        if step.name in MERGES:
            _check_index(step, "source")
            allowed = {"source"}
        for key in param_keys(step):
            _check_index(step, key)
        allowed |= set(PER_COLUMN.get(step.name, ((), ""))[0])
        for key, value in step.args:
            if key not in allowed:
                raise ExportError(f"activation {step.name!r} takes no argument {key!r}")
            if not math.isfinite(value):
                raise ExportError(f"activation {step.name!r}: {key}={value} is not finite")
    if sum(step.name in ROW_WISE for step in steps) > 1:
        raise ExportError(f"a pipeline takes at most one row-wise step (got {activation})")
    return activation


def param_keys(step: Activation) -> list[str]:
    """The arguments of `step` that index the node's parameter arrays."""
    if step.name in PER_COLUMN:
        return list(PER_COLUMN[step.name][0])
    if step.name == "layer_norm":
        return [key for key in ("gamma", "beta") if step.arg(key) is not None]
    return []


def _check_index(step: Activation, key: str) -> None:
    index = step.arg(key)
    if index is None or index != int(index) or index < 0:
        raise ExportError(f"step {step.name!r} needs an index as its {key!r}")


def merge_sources(activation: Activation) -> list[int]:
    """The graph nodes whose outputs the pipeline's merge steps read."""
    return [int(step.value("source")) for step in activation.steps() if step.name in MERGES]


def param_count(activation: Activation) -> int:
    """How many parameter arrays the pipeline reads (one past the highest index)."""
    indices = [int(step.value(key)) for step in activation.steps() for key in param_keys(step)]
    return max(indices, default=-1) + 1


def _row_cut(steps: list[Activation]) -> int:
    """The index of the row-wise step (len(steps) if there is none)."""
    return next((i for i, step in enumerate(steps) if step.name in ROW_WISE), len(steps))


def tile_steps(activation: Activation) -> list[Activation]:
    """The steps before the row-wise one (all of them if none): computed on the tile."""
    steps = activation.steps()
    return steps[: _row_cut(steps)]


def after_row_steps(activation: Activation) -> list[Activation]:
    """The elementwise steps after the row-wise one, computed in its pass."""
    steps = activation.steps()
    return steps[_row_cut(steps) + 1 :]


def row_step(activation: Activation) -> Activation | None:
    """The row-wise step (softmax, log_softmax, layer_norm, unit_norm), if any."""
    steps = activation.steps()
    cut = _row_cut(steps)
    return steps[cut] if cut < len(steps) else None


# --- TVMScript text ---------------------------------------------------------------------------


def _f(value: float) -> str:
    """A float32 literal (rounded to float32 first, so the text says what is computed)."""
    rounded = float(np.float32(value))
    if math.isinf(rounded):
        return 'T.float32("inf")' if rounded > 0 else 'T.float32("-inf")'
    return f"T.float32({rounded!r})"


def _poly(var: str, coefficients: tuple[float, ...]) -> str:
    """Horner form, highest power first."""
    text = _f(coefficients[0])
    for c in coefficients[1:]:
        text = f"({text} * {var} + {_f(c)})"
    return text


class _Steps:
    """Intermediate per-lane values: each `let` is one `actN[c] = expr` line (see the trap
    in the module docstring)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def let(self, expr: str) -> str:
        name = f"act{len(self.lines)}"
        self.lines.append(f"{name}[c] = {expr}")
        return f"{name}[c]"


ZERO, ONE = _f(0.0), _f(1.0)

# exp: Cephes' expf. x = n ln2 + r with ln2 split in two so n*LN2_HI is exact, a degree-7
# polynomial for exp(r) on |r| <= ln2/2, and 2^n built in the exponent bits. Arguments are
# clamped to [EXP_LO, EXP_SAFE] (n in [-125, 127]); below EXP_LO the result stays 2.4e-38
# instead of flushing to zero, above EXP_SAFE it stays exp(88) = 1.7e38, which no caller but
# `exponential` can tell from the true value (it divides by it, or never passes more than 0).
# `exponential` itself takes the range up to log(FLT_MAX), as 2^(n-1) * 2, and infinity above.
EXP_SAFE = 88.0
EXP_HI = 88.72283935546875  # log(FLT_MAX)
EXP_LO = -86.6
LOG2E = 1.4426950408889634
LN2_HI, LN2_LO = 0.693359375, -2.12194440e-4
EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
            1.6666665459e-1, 5.0000001201e-1)
# expm1(r) = r + r^2 * P(r) on |r| <= ln2/2 (fitted), for tanh.
EXPM1_POLY = (0.0001989927695831284, 0.0013933643931522965, 0.0083332983776927,
              0.04166646674275398, 0.1666666716337204, 0.5)
# erf(a) = a + a * Q(a^2) for a < 1 (fitted; 1.34 ulp), else 1 - E(a - 2.5) with E a
# polynomial fitted to erfc on [1, 4] (1.3 ulp; no exp, no divide); erf rounds to 1 beyond 4.
ERF_ONE = 3.9196  # erfc(3.9196) = 2.98e-8, half an ulp of 1
ERF_SMALL = (7.933493907330558e-05, -0.0008034846396185458, 0.005191218573600054,
             -0.02685539983212948, 0.11283625662326813, -0.3761262893676758,
             0.12837916612625122)
ERFC_BIG = (8.709440407983493e-06, -2.1406009182101116e-05, -5.941381095908582e-05,
            0.00028087192913517356, -0.0002919994294643402, -0.0005742026842199266,
            0.0028237542137503624, -0.0061000254936516285, 0.008612779900431633,
            -0.008354324847459793, 0.005447070114314556, -0.0021779793314635754,
            0.0004069206479471177)
# log1p(y) on [0, 1] = 2 atanh(s), s = y / (2 + y): 2s + 2s * z * P(z), z = s^2 <= 1/9,
# with atanh's own series (1.8 ulp). No cancellation for small y: s keeps y's precision.
LOG1P_SERIES = (1 / 13, 1 / 11, 1 / 9, 1 / 7, 1 / 5, 1 / 3)
# selu, as TensorFlow's kernel writes it: scale * x, or scale * alpha * (exp(x) - 1).
SELU_SCALE = 1.0507009873554804934193349852946
SELU_SCALE_ALPHA = 1.7580993408473768599402175208123


def _exp(
    s: _Steps, x: str, *, upper: bool = True, lower: bool = True, overflow: bool = False
) -> str:
    """exp(x). A caller whose argument is known to stay below EXP_SAFE (or above EXP_LO)
    drops that clamp (one instruction each); `overflow` gives the whole float32 range and
    infinity beyond (for `exponential`)."""
    xc = x
    if upper:
        xc = f"T.min({xc}, {_f(EXP_HI if overflow else EXP_SAFE)})"
    if lower:
        xc = f"T.max({xc}, {_f(EXP_LO)})"
    xc = s.let(xc)
    n = s.let(f"T.floor({xc} * {_f(LOG2E)} + {_f(0.5)})")
    r = s.let(f"{xc} - {n} * {_f(LN2_HI)} - {n} * {_f(LN2_LO)}")
    p = s.let(f"{_poly(r, EXP_POLY)} * {r} * {r} + {r} + {ONE}")
    if not overflow:
        return f'{p} * T.reinterpret("float32", T.shift_left(T.Cast("int32", {n}) + 127, 23))'
    half = f'T.reinterpret("float32", T.shift_left(T.Cast("int32", {n}) + 126, 23))'
    return f"T.Select({x} > {_f(EXP_HI)}, {_f(math.inf)}, {p} * {half} * {_f(2.0)})"


def _neg_abs(x: str) -> str:
    return f"{ZERO} - T.abs({x})"


def _log1p_unit(s: _Steps, y: str) -> str:
    """log(1 + y) for y in [0, 1]."""
    t = s.let(f"{y} / ({_f(2.0)} + {y})")
    z = s.let(f"{t} * {t}")
    two_t = s.let(f"{t} + {t}")
    return f"{two_t} + {two_t} * ({z} * {_poly(z, LOG1P_SERIES)})"


def _with_sign(x: str, magnitude: str) -> str:
    return f"T.Select({x} < {ZERO}, {ZERO} - {magnitude}, {magnitude})"


def _sigmoid(s: _Steps, x: str) -> str:
    """1 / (1 + exp(-x)): the clamps keep exp finite and nonzero, so no branch is needed."""
    return f"{ONE} / ({ONE} + {s.let(_exp(s, f'{ZERO} - {x}'))})"


def _silu(s: _Steps, x: str, act: Activation) -> str:
    """x * sigmoid(x), as x / (1 + exp(-x)): one divide, no multiply (within an ulp)."""
    return f"{x} / ({ONE} + {s.let(_exp(s, f'{ZERO} - {x}'))})"


def _tanh(s: _Steps, x: str) -> str:
    """tanh(a) = -m / (2 + m), m = expm1(-2a): one exp-like evaluation and one divide, no
    branch and no sign fix-up (the form is odd by itself); expm1 keeps its relative
    precision near 0, where 1 - 2 / (exp(2a) + 1) would cancel. 2.5 ulp at most
    (TensorFlow's own tanh: 5.5). |tanh| rounds to 1 beyond 9.01, and at 10 too."""
    a = s.let(f"T.max(T.min({x}, {_f(10.0)}), {_f(-10.0)})")
    m = s.let(_expm1(s, f"{a} * {_f(-2.0)}"))
    return f"{m} / ({_f(-2.0)} - {m})"


def _expm1(s: _Steps, y: str) -> str:
    """exp(y) - 1 for y in [-20, 20], accurate relative to the result near 0 too: y = n ln2 + r,
    expm1(y) = 2^n expm1(r) + (2^n - 1), expm1(r) = r + r^2 P(r) (fitted on |r| <= ln2/2)."""
    n = s.let(f"T.floor({y} * {_f(LOG2E)} + {_f(0.5)})")
    r = s.let(f"{y} - {n} * {_f(LN2_HI)} - {n} * {_f(LN2_LO)}")
    p = s.let(f"{r} + {r} * {r} * {_poly(r, EXPM1_POLY)}")
    scale = s.let(f'T.reinterpret("float32", T.shift_left(T.Cast("int32", {n}) + 127, 23))')
    return f"{scale} * {p} + ({scale} - {ONE})"


def _erf(s: _Steps, x: str) -> str:
    a = s.let(f"T.min(T.abs({x}), {_f(4.0)})")
    a2 = s.let(f"{a} * {a}")
    small = s.let(f"{a} + {a} * {_poly(a2, ERF_SMALL)}")
    t = s.let(f"{a} - {_f(2.5)}")
    # Beyond ERF_ONE erf rounds to 1, where E's absolute error (8e-8) could still move it.
    big = s.let(f"T.Select({a} < {_f(ERF_ONE)}, {ONE} - {_poly(t, ERFC_BIG)}, {ONE})")
    return _with_sign(x, s.let(f"T.Select({a} < {ONE}, {small}, {big})"))


def _softplus(s: _Steps, x: str) -> str:
    """max(x, 0) + log1p(exp(-|x|)): stable at both ends."""
    e = s.let(_exp(s, _neg_abs(x), upper=False))
    return f"T.max({x}, {ZERO}) + {s.let(_log1p_unit(s, e))}"


def _relu(s: _Steps, x: str, act: Activation) -> str:
    """Keras' ReLU.static_call, branch for branch (its result differs from a plain clip where
    threshold != 0: x in (threshold, 0) passes through unless max_value clips it)."""
    slope, threshold = act.value("negative_slope"), act.value("threshold")
    max_value = act.arg("max_value")
    if slope != 0.0 and max_value is None and threshold == 0.0:
        return f"T.Select({x} > {ZERO}, {x}, {x} * {_f(slope)})"  # tf.nn.leaky_relu
    clip_to = max_value
    if threshold != 0.0:
        y = f"T.Select({x} > {_f(threshold)}, {x}, {ZERO})"
    elif max_value == 6.0:
        y, clip_to = f"T.min(T.max({x}, {ZERO}), {_f(6.0)})", None  # tf.nn.relu6
    else:
        y = f"T.max({x}, {ZERO})"
    if clip_to is not None:
        y = f"T.min(T.max({y}, {ZERO}), {_f(clip_to)})"
    if slope != 0.0:
        y = f"{y} - {_f(slope)} * T.max({_f(threshold)} - {x}, {ZERO})"
    return y


def _elu(s: _Steps, x: str, act: Activation) -> str:
    """tf.nn.elu (exp(x) - 1 below 0), times alpha where x <= 0 as Keras does for alpha != 1."""
    alpha = act.value("alpha")
    em1 = s.let(f"{_exp(s, f'T.min({x}, {ZERO})', upper=False)} - {ONE}")
    if alpha == 1.0:
        return f"T.Select({x} < {ZERO}, {em1}, {x})"
    return f"T.Select({x} > {ZERO}, {x}, {_f(alpha)} * {em1})"


def _selu(s: _Steps, x: str, act: Activation) -> str:
    em1 = s.let(f"{_exp(s, f'T.min({x}, {ZERO})', upper=False)} - {ONE}")
    return f"T.Select({x} < {ZERO}, {_f(SELU_SCALE_ALPHA)} * {em1}, {_f(SELU_SCALE)} * {x})"


def _celu(s: _Steps, x: str, act: Activation) -> str:
    alpha = _f(act.value("alpha"))
    em1 = s.let(f"{_exp(s, f'T.min({x}, {ZERO}) / {alpha}')} - {ONE}")
    return f"T.max({x}, {ZERO}) + {alpha} * {em1}"


def _gelu(s: _Steps, x: str, act: Activation) -> str:
    """tf.nn.gelu(approximate=False): 0.5 * x * (1 + erf(x / sqrt(2)))."""
    erf = s.let(_erf(s, s.let(f"{x} / {_f(math.sqrt(2.0))}")))
    return f"{_f(0.5)} * {x} * ({ONE} + {erf})"


def _gelu_tanh(s: _Steps, x: str, act: Activation) -> str:
    """tf.nn.gelu(approximate=True): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    inner = s.let(f"{_f(0.7978845608028654)} * ({x} + {_f(0.044715)} * ({x} * {x} * {x}))")
    return f"{_f(0.5)} * {x} * ({ONE} + {s.let(_tanh(s, inner))})"


def _hard_sigmoid(x: str) -> str:
    """relu6(x + 3) / 6, divided (not multiplied by 1/6) as Keras does."""
    return f"T.min(T.max({x} + {_f(3.0)}, {ZERO}), {_f(6.0)}) / {_f(6.0)}"


def _soft_shrink(s: _Steps, x: str, act: Activation) -> str:
    t = act.value("threshold")
    inner = f"T.Select({x} < {_f(-t)}, {x} + {_f(t)}, {ZERO})"
    return f"T.Select({x} > {_f(t)}, {x} - {_f(t)}, {inner})"


def _sparse_plus(s: _Steps, x: str, act: Activation) -> str:
    quarter = f"{_f(0.25)} * (({x} + {ONE}) * ({x} + {ONE}))"
    return f"T.Select({x} <= {_f(-1.0)}, {ZERO}, T.Select({x} < {ONE}, {quarter}, {x}))"


def _sparse_sigmoid(s: _Steps, x: str, act: Activation) -> str:
    half = f"{_f(0.5)} * ({x} + {ONE})"
    return f"T.Select({x} <= {_f(-1.0)}, {ZERO}, T.Select({x} >= {ONE}, {ONE}, {half}))"


def _squareplus(s: _Steps, x: str, act: Activation) -> str:
    """(x + sqrt(x^2 + b)) / 2, with x^2 rounded on its own as TensorFlow computes it (a fused
    multiply-add would move the result where x << 0 and the sum cancels)."""
    square = s.let(f"{x} * {x}")
    return f"({x} + T.sqrt({square} + {_f(act.value('b'))})) / {_f(2.0)}"


def _log_sigmoid(s: _Steps, x: str, act: Activation) -> str:
    """-softplus(-x) = min(x, 0) - log1p(exp(-|x|))."""
    e = s.let(_exp(s, _neg_abs(x), upper=False))
    return f"T.min({x}, {ZERO}) - {s.let(_log1p_unit(s, e))}"


_Emit = Callable[[_Steps, str, Activation], str]

# Every elementwise activation of keras.activations, by the name Keras gives its function
# (swish and hard_swish are aliases Keras resolves to silu and hard_silu), plus gelu_tanh
# (gelu's tanh approximation, which Keras has no name for).
ELEMENTWISE: dict[str, _Emit] = {
    "linear": lambda s, x, a: x,
    "relu": _relu,
    "relu6": lambda s, x, a: f"T.min(T.max({x}, {ZERO}), {_f(6.0)})",
    "leaky_relu": lambda s, x, a: (
        f"T.Select({x} > {ZERO}, {x}, {x} * {_f(a.value('negative_slope'))})"
    ),
    "elu": _elu,
    "selu": _selu,
    "celu": _celu,
    "gelu": _gelu,
    "gelu_tanh": _gelu_tanh,
    "sigmoid": lambda s, x, a: _sigmoid(s, x),
    "hard_sigmoid": lambda s, x, a: _hard_sigmoid(x),
    "silu": _silu,
    "hard_silu": lambda s, x, a: f"{x} * ({_hard_sigmoid(x)})",
    "mish": lambda s, x, a: f"{x} * {s.let(_tanh(s, s.let(_softplus(s, x))))}",
    "softplus": lambda s, x, a: _softplus(s, x),
    "softsign": lambda s, x, a: f"{x} / ({ONE} + T.abs({x}))",
    "tanh": lambda s, x, a: _tanh(s, x),
    "hard_tanh": lambda s, x, a: f"T.min(T.max({x}, {_f(-1.0)}), {ONE})",
    "tanh_shrink": lambda s, x, a: f"{x} - {s.let(_tanh(s, x))}",
    "soft_shrink": _soft_shrink,
    "hard_shrink": lambda s, x, a: (
        f"T.Select(T.abs({x}) > {_f(a.value('threshold'))}, {x}, {ZERO})"
    ),
    "sparse_plus": _sparse_plus,
    "sparse_sigmoid": _sparse_sigmoid,
    "squareplus": _squareplus,
    "log_sigmoid": _log_sigmoid,
    "exponential": lambda s, x, a: _exp(s, x, overflow=True),
    "divide": lambda s, x, a: f"{x} / {_f(a.value('by'))}",  # Average of n inputs: sum / n
}
# Need the whole row: a pass over the layer's true width after its tiles are written.
ROW_WISE = ("softmax", "log_softmax", "layer_norm", "unit_norm")
ACTIVATIONS = (*ELEMENTWISE, *ROW_WISE, *MERGES, *PER_COLUMN)


@dataclass(frozen=True)
class Cell:
    """Where a step's operands are read: the load of node `source`'s output and of the
    node's parameter array `index` at the cell being computed."""

    hidden: Callable[[int], str]
    param: Callable[[int], str]


_SYMBOLIC = Cell(lambda source: f"H{source}[c]", lambda index: f"P{index}[c]")
Param = Callable[[int, str], str]  # (parameter array index, column expression) -> its load


def tile_code(x: str, steps: list[Activation], cell: Cell = _SYMBOLIC) -> tuple[list[str], str]:
    """TVMScript for elementwise steps on one vector `x` (lane variable `c`): the lines that
    fill the `act*` buffers, and the value expression; `cell` gives the loads of merge and
    per-column operands.

    A step's input is inlined when the step is a few instructions (LLVM merges the repeated
    subexpressions), and stored in a lane buffer first when the step is long, so a short
    pipeline such as add_skip -> relu stays on the registers."""
    s = _Steps()
    value = x
    for step in steps:
        if step.name == "linear":
            continue
        # Each step's text is parenthesized: the next step inlines it into its own formula.
        if step.name in MERGES:
            h = cell.hidden(int(step.value("source")))
            value = "(" + MERGES[step.name].format(x=value, h=h) + ")"
            continue
        if step.name in PER_COLUMN:
            keys, form = PER_COLUMN[step.name]
            if step.name == "prelu" and value != x:
                value = s.let(value)  # read twice: compute it once
            loads = {key: cell.param(int(step.value(key))) for key in keys}
            value = "(" + form.format(x=value, **loads) + ")"
            continue
        emit = ELEMENTWISE[step.name]
        if value != x and _is_long(emit, step):
            value = s.let(value)
        value = "(" + emit(s, value, step) + ")"
    return s.lines, value


def _is_long(emit: _Emit, step: Activation) -> bool:
    scratch = _Steps()
    emit(scratch, "v", step)
    return bool(scratch.lines)


def tile_buffers(steps: list[Activation]) -> int:
    """How many `act*` lane buffers `tile_code` uses for these steps."""
    return len(tile_code("x[c]", steps)[0])


def _row_softmax(dst: str, n: int, log: bool) -> list[tuple[int, str]]:
    """Softmax or log-softmax over columns 0..n-1 of row r, in a fixed order (tf.nn.softmax
    and tf.nn.log_softmax subtract the row maximum first, as here)."""
    lines = [
        (0, "mx = T.alloc_buffer((1,), 'float32', scope='global')"),
        (0, "sm = T.alloc_buffer((1,), 'float32', scope='global')"),
        (0, f"mx[0] = {dst}[r, 0]"),
        (0, f"for c in range(1, {n}):"),
        (1, f"mx[0] = T.max(mx[0], {dst}[r, c])"),
        (0, f"sm[0] = {ZERO}"),
    ]
    if log:
        return [
            *lines,
            (0, f"for c in range({n}):"),
            (1, f"sm[0] = sm[0] + T.exp({dst}[r, c] - mx[0])"),
            (0, "sm[0] = T.log(sm[0])"),
            (0, f"for c in range({n}):"),
            (1, f"{dst}[r, c] = {dst}[r, c] - mx[0] - sm[0]"),
        ]
    return [
        *lines,
        (0, f"for c in range({n}):"),
        (1, f"{dst}[r, c] = T.exp({dst}[r, c] - mx[0])"),
        (1, f"sm[0] = sm[0] + {dst}[r, c]"),
        (0, f"for c in range({n}):"),
        (1, f"{dst}[r, c] = {dst}[r, c] / sm[0]"),
    ]


def _row_sum(dst: str, n: int, lanes: int, into: str, term: Callable[[str], str]) -> list[str]:
    """into[0] = sum of term(x) over columns 0..n-1 of row r: lane-wise partial sums over the
    whole vectors, added up lane by lane, then the tail; a fixed order, so every kernel and
    row count gives the same bits (a scalar running sum was one dependent add per column)."""
    whole, part = n // lanes * lanes, f"{into}_lanes"
    return [
        f"{part} = T.alloc_buffer(({lanes},), 'float32', scope='global')",
        f"for c in T.vectorized({lanes}):",
        f"    {part}[c] = {ZERO}",
        f"for q in range({n // lanes}):",
        f"    for c in T.vectorized({lanes}):",
        f"        {part}[c] = {part}[c] + {term(f'{dst}[r, q * {lanes} + c]')}",
        f"{into}[0] = {ZERO}",
        f"for c in range({lanes}):",
        f"    {into}[0] = {into}[0] + {part}[c]",
        f"for c in range({whole}, {n}):",
        f"    {into}[0] = {into}[0] + {term(f'{dst}[r, c]')}",
    ]


def _lines(code: list[str]) -> list[tuple[int, str]]:
    """(extra indent, line) pairs from lines indented by four spaces a level."""
    return [((len(line) - len(line.lstrip(" "))) // 4, line.lstrip(" ")) for line in code]


def _row_layer_norm(
    dst: str, n: int, lanes: int, step: Activation, param: Param
) -> list[tuple[int, str]]:
    """Keras' layer_normalization in float32: inv = rsqrt(variance + epsilon) * gamma,
    x * inv + (-mean * inv + beta), with gamma and beta the node's parameter arrays when
    the layer has them."""
    gamma, beta = step.arg("gamma"), step.arg("beta")
    col = f"q * {lanes} + c"
    inv = "var[0]" if gamma is None else f"(var[0] * {param(int(gamma), col)})"
    shift = f"(({ZERO} - mu[0]) * {inv})"
    if beta is not None:
        shift = f"({shift} + {param(int(beta), col)})"
    code = [
        "mu = T.alloc_buffer((1,), 'float32', scope='global')",
        "var = T.alloc_buffer((1,), 'float32', scope='global')",
        *_row_sum(dst, n, lanes, "mu", lambda x: x),
        f"mu[0] = mu[0] / {_f(float(n))}",
        *_row_sum(dst, n, lanes, "var", lambda x: f"({x} - mu[0]) * ({x} - mu[0])"),
        f"var[0] = {ONE} / T.sqrt(var[0] / {_f(float(n))} + {_f(step.value('epsilon'))})",
        f"for q in range({-(-n // lanes)}):",
        f"    for c in T.vectorized({lanes}):",
        f"        {dst}[r, {col}] = {dst}[r, {col}] * {inv} + {shift}",
    ]
    return _lines(code)


def _row_unit_norm(dst: str, n: int, lanes: int) -> list[tuple[int, str]]:
    """x * min(rsqrt(sum(x^2)), 1 / 1e-12): keras.ops.normalize(order=2, epsilon=1e-12), as
    UnitNormalization calls it (a zero row stays zero)."""
    code = [
        "ss = T.alloc_buffer((1,), 'float32', scope='global')",
        *_row_sum(dst, n, lanes, "ss", lambda x: f"{x} * {x}"),
        f"ss[0] = T.min({ONE} / T.sqrt(ss[0]), {_f(1e12)})",
        f"for q in range({-(-n // lanes)}):",
        f"    for c in T.vectorized({lanes}):",
        f"        {dst}[r, q * {lanes} + c] = {dst}[r, q * {lanes} + c] * ss[0]",
    ]
    return _lines(code)


def row_code(
    dst: str, n: int, lanes: int, step: Activation, param: Param
) -> list[tuple[int, str]]:
    """The body of `for r in ...:` for one row-wise step over the first n columns of `dst`,
    as (extra indent, line) pairs; `param(index, column)` loads a parameter array."""
    if step.name in ("softmax", "log_softmax"):
        return _row_softmax(dst, n, step.name == "log_softmax")
    if step.name == "layer_norm":
        return _row_layer_norm(dst, n, lanes, step, param)
    if step.name == "unit_norm":
        return _row_unit_norm(dst, n, lanes)
    raise ExportError(f"{step.name!r} is not a row-wise activation")
