"""What ``help()`` tells a new user: the entry points and the unit-cube requirement."""

from __future__ import annotations

import pydoc

import pytest

import pfn_kernels


@pytest.mark.parametrize("name", ["AmortizedSpectralKernel", "AmortizedSingleTaskGP", "SpectralDecoder"])
def test_help_names_the_entry_points_and_the_unit_cube(name):
    text = pydoc.render_doc(getattr(pfn_kernels, name), renderer=pydoc.plaintext)
    assert "unit cube" in text or "[0, 1]^d" in text
    if name != "AmortizedSingleTaskGP":
        assert "AmortizedSingleTaskGP" in text and "fit_amortized" in text
