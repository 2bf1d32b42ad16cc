r"""Input checks shared by the decoder and the fitting functions, and their warning categories.

Errors are ``ValueError`` with a message that names what is wrong and where (the first rows with
non-finite values, the offending shape); data the decoder was not trained on gives a
:class:`DecoderWarning` and is handled by a documented fallback (see
:class:`~pfn_kernels.network.SpectralDecoder` and :mod:`pfn_kernels.fit`).
"""

from __future__ import annotations

import warnings

import torch
from botorch.exceptions.errors import InputDataError
from botorch.models.utils.assorted import check_min_max_scaling
from torch import Tensor

#: How many offending rows an error message lists.
MAX_ROWS_LISTED = 5
#: Inputs within this distance of :math:`[0, 1]^d` count as inside (BoTorch uses the same).
UNIT_CUBE_ATOL = 1e-2
#: Hard limit on the input dimension d of a decoder pass (a ``ValueError`` beyond).
MAX_INPUT_DIMS = 64


class DecoderWarning(UserWarning):
    """Data outside the decoder's training range (handled by a documented fallback), or a
    decoder output that had to be repaired."""


class OutsideUnitCubeWarning(DecoderWarning):
    """Inputs outside the unit cube: the decoder expects normalized inputs."""


def check_finite_rows(name: str, values: Tensor, row_dim: int) -> None:
    """Raise a ``ValueError`` naming the rows of ``values`` that hold NaN or inf.

    :param name: what to call the tensor in the message (``"train_X"``).
    :param values: `(*batch, n, ...)` tensor; rows run along ``row_dim``, the dimensions after it
        are the row's entries, the ones before it are batch dimensions.
    :param row_dim: the (negative) dimension of the rows.
    """
    bad = ~torch.isfinite(values)
    if not bad.any():
        return
    row_dim = row_dim % values.dim()
    if row_dim + 1 < values.dim():
        bad = bad.flatten(row_dim + 1).any(-1)  # (*batch, n)
    where = bad.nonzero().tolist()
    listed = [str(i[0]) if len(i) == 1 else str(tuple(i)) for i in where[:MAX_ROWS_LISTED]]
    more = ", ..." if len(where) > MAX_ROWS_LISTED else ""
    kind = "rows" if bad.dim() == 1 else "rows (batch index, ..., row)"
    raise ValueError(
        f"{name} has non-finite values (NaN or inf) in {len(where)} of {bad.numel()} rows; "
        f"{kind}: {', '.join(listed)}{more}. Remove or impute these rows."
    )


def check_decoder_inputs(X: Tensor, y: Tensor, trained_max_dims: int | None = None) -> None:
    """The errors of a decoder pass: X `(*batch, n, d)`, y `(*batch, n)` or `(*batch, n, M)`.

    :raises TypeError: for non-tensors.
    :raises ValueError: shapes that do not match, n = 0, d = 0, non-floating tensors, tensors on
        different devices, NaN or inf (naming the rows), d > :data:`MAX_INPUT_DIMS`.
    """
    if not (isinstance(X, Tensor) and isinstance(y, Tensor)):
        raise TypeError(f"X and y must be tensors, got {type(X).__name__} and {type(y).__name__}.")
    if X.dim() < 2:
        raise ValueError(f"X must have shape (*batch, n, d); got {tuple(X.shape)}.")
    n, d = X.shape[-2:]
    if y.shape[: X.dim() - 1] != X.shape[:-1] or y.dim() not in (X.dim() - 1, X.dim()):
        raise ValueError(
            f"y must have shape (*batch, n) or (*batch, n, M) matching X {tuple(X.shape)}; "
            f"got {tuple(y.shape)}."
        )
    if not (X.is_floating_point() and y.is_floating_point()):
        raise ValueError(f"X and y must be floating-point tensors; got {X.dtype} and {y.dtype}.")
    if X.device != y.device:
        raise ValueError(f"X and y must be on the same device; got {X.device} and {y.device}.")
    if n < 1:
        raise ValueError("The decoder needs at least one data point (n >= 1).")
    if d < 1:
        raise ValueError("The decoder needs at least one input dimension (d >= 1).")
    if d > MAX_INPUT_DIMS:
        trained = "" if trained_max_dims is None else f" (it was trained on d <= {trained_max_dims})"
        raise ValueError(
            f"X has d={d} input dimensions; the decoder supports at most {MAX_INPUT_DIMS}{trained}. "
            "Reduce the dimension (e.g. fix or embed some inputs) or use a standard kernel."
        )
    check_finite_rows("X", X, row_dim=-2)
    check_finite_rows("y", y, row_dim=X.dim() - 2)


def outside_unit_cube(X: Tensor, atol: float = UNIT_CUBE_ATOL) -> tuple[float, float] | None:
    """``(min, max)`` of ``X`` if it leaves :math:`[-atol, 1 + atol]`, else ``None`` (the test of
    BoTorch's ``check_min_max_scaling``)."""
    if X.numel() == 0:
        return None
    try:
        check_min_max_scaling(X, atol=atol, raise_on_fail=True)
    except InputDataError:
        return float(X.min()), float(X.max())
    return None


def warn_outside_unit_cube(X: Tensor, what: str, hint: str, stacklevel: int = 3) -> None:
    """Warn (:class:`OutsideUnitCubeWarning`) if ``X`` is not in the unit cube (up to
    :data:`UNIT_CUBE_ATOL`)."""
    span = outside_unit_cube(X)
    if span is not None:
        warnings.warn(
            f"{what} span [{span[0]:.4g}, {span[1]:.4g}], outside the unit cube the decoder was "
            f"trained on; its kernel will be poor. {hint}",
            OutsideUnitCubeWarning,
            stacklevel=stacklevel,
        )


__all__ = [
    "DecoderWarning",
    "MAX_INPUT_DIMS",
    "MAX_ROWS_LISTED",
    "OutsideUnitCubeWarning",
    "UNIT_CUBE_ATOL",
    "check_decoder_inputs",
    "check_finite_rows",
    "outside_unit_cube",
    "warn_outside_unit_cube",
]
