r"""Input checks shared by the decoder and the fitting functions, and their warning categories.

Errors are ``ValueError`` with a message that names what is wrong and where (the first rows with
non-finite values, the offending shape); data the decoder was not trained on gives a
:class:`DecoderWarning` and is handled by a documented fallback (see
:class:`~pfn_kernels.network.SpectralDecoder` and :mod:`pfn_kernels.fit`).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

#: How many offending rows an error message lists.
MAX_ROWS_LISTED = 5
#: Inputs within this distance of :math:`[0, 1]^d` count as inside (BoTorch uses the same).
UNIT_CUBE_ATOL = 1e-2


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


def outside_unit_cube(X: Tensor, atol: float = UNIT_CUBE_ATOL) -> tuple[float, float] | None:
    """``(min, max)`` of ``X`` if it leaves :math:`[-atol, 1 + atol]`, else ``None``."""
    if X.numel() == 0:
        return None
    lo, hi = float(X.min()), float(X.max())
    return (lo, hi) if lo < -atol or hi > 1 + atol else None


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
    "MAX_ROWS_LISTED",
    "OutsideUnitCubeWarning",
    "UNIT_CUBE_ATOL",
    "check_finite_rows",
    "outside_unit_cube",
    "warn_outside_unit_cube",
]
