"""Tolerances for the numeric tests, from the rounding error of the computation.

Two computations of the same value agree only up to rounding, and how they round depends on
the machine: BLAS libraries (MKL, OpenBLAS, AOCL) and their code paths for each instruction
set, the number of threads and the C kernels' vectorization all sum in different orders. So
a test allows what rounding can do to the computation it checks, scaled by the magnitudes
involved, never a bare number that one CPU happens to satisfy.

The rounding model (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed.,
sections 2.2 and 3.1-3.5): with unit roundoff ``u`` (half the machine epsilon: 2^-24 in
float32, 2^-53 in float64), a sum of n terms computed in ANY order (any blocking, any
reduction tree, fused multiply-adds or not) is off by at most

    gamma(n) * sum |terms|,        gamma(n) = n u / (1 - n u),

so a matrix product with inner dimension k is off by at most ``gamma(k) (|A| @ |B|)``,
elementwise. Two ways to check a computation follow:

- **Elementwise** (``Bounded``), for float32 code that must stay float32 (the C kernels):
  the formula is evaluated once more in float64, carrying beside each value the bound on
  what float32 rounding can add there (products, sums, elementwise functions, and the
  errors of their operands propagated). Each float32 result must lie within its bound of
  the float64 value (whose own error is 2^29 times smaller, and is ignored).
- **Through a whole network**, for a float32 model against its float64 evaluation:
  ``gamma(n) max|want|`` with n the terms summed along a path from input to output (every
  product's inner dimension, a norm's mean and variance, a softmax), as docs/testing.md
  counts them for the Swins of the tests.
- **Identities in float64** (``assert_identity``, ``assert_identities``), for two
  arrangements of the same algebra (a merged model against the unmerged one, a fused path
  against the plain formulas): both sides in float64, so an error of the algebra (a term
  left out or counted twice, a scale applied wrongly, a stray float32 cast) stands many
  orders of magnitude above the rounding that the tolerance allows.

``ADAPTERKIT_TOLERANCE_LOG=FILE`` appends every check's worst |error| / allowed to FILE
(test, what, ratio), to see the margins.
"""
import os
from typing import Callable, Optional, Sequence

import torch

# An identity in float64 is allowed 2 gamma(n) max|want| with n = 2^24 terms: more than the
# terms summed along any path through the networks these tests run, forward and backward
# (a loss averages 10^5 pixels, a gradient sums as many), with room for the growth that
# normalisations and cancelling sums bring. That is 3.7e-9 relative: float32 rounding
# (6e-8 per operation) leaking into a float64 computation would still show.
IDENTITY_TERMS = 2 ** 24


def unit_roundoff(dtype: torch.dtype) -> float:
    """u: half the distance from 1 to the next float of ``dtype``."""
    return torch.finfo(dtype).eps / 2


# A float32 result of a few operations checked against its exact formula (a loss by hand):
# up to 8 elementary functions (exp, log, log1p, sqrt), each within 3.5 ulp = 7u in the
# vectorized math libraries PyTorch uses (SLEEF's u35 functions), and a few roundings of
# sums and products: 64u relative to the magnitudes involved, 3.8e-6.
FEW_OPERATIONS = 64 * unit_roundoff(torch.float32)


def gamma(n: int, dtype: torch.dtype) -> float:
    """gamma(n) = n u / (1 - n u): the relative error bound of a sum of n terms."""
    nu = n * unit_roundoff(dtype)
    assert nu < 0.5, f'gamma({n}) is no bound in {dtype}'
    return nu / (1 - nu)


def _record(what: str, ratio: float) -> None:
    path = os.environ.get('ADAPTERKIT_TOLERANCE_LOG')
    if path:
        test = os.environ.get('PYTEST_CURRENT_TEST', '?').rsplit(' ', 1)[0]
        with open(path, 'a') as log:
            log.write(f'{test}\t{what}\t{ratio:.3g}\n')


def assert_within(got: torch.Tensor, want: torch.Tensor, allowed: torch.Tensor,
                  what: str = 'value') -> float:
    """|got - want| <= allowed, elementwise (``allowed`` broadcasts); answers the worst
    |got - want| / allowed, and fails naming the worst element and how many are over."""
    assert got.shape == want.shape, f'{what}: shape {tuple(got.shape)} != {tuple(want.shape)}'
    got, want = got.detach(), want.detach()
    error = (got.double() - want.double()).abs()
    allowed = torch.as_tensor(allowed, dtype=torch.float64).detach().expand_as(error)
    ratio = error / allowed.clamp_min(torch.finfo(torch.float64).tiny)
    worst = float(ratio.max()) if ratio.numel() else 0.0
    _record(what, worst)
    if not worst <= 1:  # NaN fails too
        at = tuple(int(i) for i in torch.unravel_index(ratio.nan_to_num(float('inf')).argmax(),
                                                        ratio.shape))
        raise AssertionError(
            f'{what}: {int((ratio > 1).sum())} of {ratio.numel()} elements beyond the '
            f'rounding bound; worst at {at}: |{float(got[at]):.9g} - {float(want[at]):.9g}| '
            f'= {float(error[at]):.3g} > {float(allowed[at]):.3g} allowed')
    return worst


def assert_identity(got: torch.Tensor, want: torch.Tensor, what: str = 'value',
                    scale: Optional[float] = None) -> float:
    """Two float64 evaluations of the same algebra agree within 2 gamma(IDENTITY_TERMS)
    times ``scale`` (default max|want|)."""
    assert got.dtype == want.dtype == torch.float64, \
        f'{what}: an identity is checked in float64, not {got.dtype} / {want.dtype}'
    if scale is None:
        scale = float(want.detach().abs().max()) if want.numel() else 0.0
    return assert_within(got, want, 2 * gamma(IDENTITY_TERMS, torch.float64) * scale, what)


def assert_identities(got: Sequence[torch.Tensor], want: Sequence[torch.Tensor],
                      what: str = 'value') -> None:
    """``assert_identity`` for tensors that together are one quantity (a model's gradient,
    its outputs), at the scale of the largest: a tensor whose exact value is zero (the
    gradient of a bias before a batch norm) is rounding noise at its own scale."""
    got, want = list(got), list(want)
    assert len(got) == len(want), f'{what}: {len(got)} tensors != {len(want)}'
    scale = max((float(w.detach().abs().max()) for w in want if w.numel()), default=0.0)
    for index, (g, w) in enumerate(zip(got, want)):
        assert_identity(g, w, f'{what} {index}', scale)


class Bounded:
    """A value of a float32 (``dtype``) computation, evaluated in float64, with the bound on
    the rounding error that the float32 computation may carry there, elementwise.

    Operations give the value and the bound of the result: a product ``a @ b`` with inner
    dimension k rounds by gamma(k) |a| @ |b| and carries its operands' errors through
    (|a| + ea) @ (|b| + eb) - |a| @ |b|; a sum of n terms rounds by gamma(n) times the sum of
    their magnitudes; an elementwise function ``map`` carries errors through its largest
    slope and adds its own (its approximation and its rounding).
    """

    def __init__(self, value: torch.Tensor, error=None, dtype: torch.dtype = torch.float32):
        self.value = value.detach().double()
        self.error = torch.zeros_like(self.value) if error is None else error
        self.dtype = dtype

    def _like(self, value, error):
        return Bounded(value, error, self.dtype)

    def _other(self, other):
        return other if isinstance(other, Bounded) else Bounded(torch.as_tensor(other),
                                                                dtype=self.dtype)

    def _bilinear(self, other, combine: Callable, rounding: float) -> 'Bounded':
        """``combine`` (a product) of self and other: its value, and as its error the
        rounding of the result and the operands' errors carried through,
        (1 + rounding) combine(|a| + ea, |b| + eb) - combine(|a|, |b|)."""
        a, b = self.value.abs(), other.value.abs()
        upper = combine(a + self.error, b + other.error)
        return self._like(combine(self.value, other.value),
                          (1 + rounding) * upper - combine(a, b))

    @property
    def u(self) -> float:
        return unit_roundoff(self.dtype)

    @property
    def mT(self) -> 'Bounded':
        return self._like(self.value.mT, self.error.mT)

    def __matmul__(self, other) -> 'Bounded':
        other = self._other(other)
        return self._bilinear(other, torch.matmul, gamma(self.value.shape[-1], self.dtype))

    def __mul__(self, other) -> 'Bounded':
        return self._bilinear(self._other(other), torch.mul, self.u)

    def __add__(self, other) -> 'Bounded':
        other = self._other(other)
        value = self.value + other.value
        return self._like(value, self.u * value.abs() + self.error + other.error)

    def add_product(self, a: 'Bounded', b: 'Bounded') -> 'Bounded':
        """self + a @ b summed as one (as addmm and the C kernels do): k + 1 terms."""
        terms = gamma(a.value.shape[-1] + 1, self.dtype)
        product = a._bilinear(b, torch.matmul, terms)
        return self._like(self.value + product.value,
                          product.error + terms * self.value.abs() + self.error)

    def sum(self, dim) -> 'Bounded':
        """The sum over ``dim`` (an int or a tuple of them), in any order."""
        dims = (dim,) if isinstance(dim, int) else tuple(dim)
        count = 1
        for d in dims:
            count *= self.value.shape[d]
        error = gamma(count, self.dtype) * self.value.abs().sum(dims) + self.error.sum(dims)
        return self._like(self.value.sum(dims), error)

    def map(self, function: Callable, slope: float,
            own_error: Optional[Callable] = None) -> 'Bounded':
        """``function`` elementwise, whose |derivative| is at most ``slope`` and whose
        float32 evaluation is off by at most ``own_error(x)`` (default: u |function(x)|)."""
        value = function(self.value)
        own = self.u * value.abs() if own_error is None else own_error(self.value)
        return self._like(value, slope * self.error + own)

    def rounded_to(self, dtype: torch.dtype) -> 'Bounded':
        """The value as stored in the narrower ``dtype`` (bfloat16 under autocast)."""
        return self._like(self.value, self.error + unit_roundoff(dtype) * (
            self.value.abs() + self.error))

    def check(self, got: torch.Tensor, what: str = 'value') -> float:
        """``got``, computed in float32, lies within the bound of the float64 value."""
        return assert_within(got, self.value, self.error, what)
