"""Shapes, ranges, standardization, reproducibility and ground truth of sample_tasks."""

from __future__ import annotations

import math

import pytest
import torch
from gpytorch.kernels import MaternKernel, PeriodicKernel

from pfn_kernels.kernels import spectral_mixture_covariance
from pfn_kernels.prior import DESIGNS, FAMILIES, PriorConfig, TaskBatch, sample_tasks
from pfn_kernels.prior.designs import kumaraswamy_cdf
from pfn_kernels.spectral_params import SpectralParams

CFG = PriorConfig()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Many small ops: one thread keeps the runtime stable on a shared machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def only(family: str, **kwargs) -> PriorConfig:
    return PriorConfig(family_probs={family: 1.0}, **kwargs)


# --------------------------------------------------------------------- shapes and dtypes
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "d, n, m, M", [(1, 1, 5, None), (3, 17, 9, None), (8, 40, 0, None), (2, 12, 7, 3)]
)
def test_shapes_and_dtypes(d, n, m, M, dtype):
    B = 5
    batch = sample_tasks(
        CFG, B, gen(), num_dims=d, num_context=n, num_targets=m, num_realizations=M, dtype=dtype
    )
    assert isinstance(batch, TaskBatch)
    tail = () if M is None else (M,)
    assert batch.x_context.shape == (B, n, d) and batch.x_target.shape == (B, m, d)
    for name in ("y_context", "f_context", "f_raw_context"):
        assert getattr(batch, name).shape == (B, n, *tail), name
    for name in ("y_target", "f_target", "f_raw_target"):
        assert getattr(batch, name).shape == (B, m, *tail), name
    for name in ("y_mean", "y_std", "offset_raw", "outputscale_raw", "noise_raw", "noise"):
        assert getattr(batch, name).shape == (B,), name
    assert (batch.batch_size, batch.num_dims, batch.num_context, batch.num_targets) == (B, d, n, m)
    assert batch.num_realizations == M
    p = batch.params
    assert p.batch_shape == (B,) and p.num_dims == d and p.num_mixtures == CFG.num_mixtures
    assert batch.num_peaks.shape == (B, d) and batch.num_peaks.dtype == torch.long
    assert batch.relevant.shape == (B, d) and batch.relevant.dtype == torch.bool
    assert batch.family.shape == (B,) and batch.family.dtype == torch.long
    assert batch.representable.dtype == torch.bool and batch.design.dtype == torch.long
    for value in (
        batch.x_context,
        batch.y_context,
        batch.f_target,
        batch.y_std,
        p.weights,
        p.noise,
    ):
        assert value.dtype == dtype
    for value in (batch.x_context, batch.y_context, batch.y_target, batch.f_context):
        assert torch.isfinite(value).all()
    assert batch.covariance(batch.x_context, batch.x_target).shape == (B, n, m)
    assert batch.covariance(batch.x_context, batch.x_context, diag=True).shape == (B, n)


def test_ranges_over_many_batches():
    cfg = PriorConfig(max_dims=6, max_context=64, num_targets=8)
    dims, sizes = set(), set()
    for seed in range(40):
        batch = sample_tasks(cfg, 8, gen(seed), dtype=torch.float64)
        d, n = batch.num_dims, batch.num_context
        dims.add(d)
        sizes.add(n)
        assert cfg.min_dims <= d <= cfg.max_dims and cfg.min_context <= n <= cfg.max_context
        for x in (batch.x_context, batch.x_target):
            assert x.min() >= 0.0 and x.max() <= 1.0
        ratio = batch.noise_raw / batch.outputscale_raw
        lo, hi = cfg.noise_ratio_range
        assert (ratio >= lo * (1 - 1e-9)).all() and (ratio <= hi * (1 + 1e-9)).all()
        lo, hi = cfg.outputscale_range
        assert (batch.outputscale_raw >= lo).all() and (batch.outputscale_raw <= hi).all()
        assert batch.relevant.any(-1).all()  # at least one relevant dimension per task
        sm = batch.family == FAMILIES.index("spectral_mixture")
        peaks = batch.num_peaks[sm][batch.relevant[sm]]
        assert ((peaks >= 1) & (peaks <= cfg.max_peaks)).all()
        assert (batch.num_peaks[~batch.relevant] == 1).all()
        batch.params._validate()  # SpectralParams validation
    assert len(dims) >= 5 and len(sizes) >= 15


def test_families_designs_and_warping_all_occur():
    batch = sample_tasks(CFG, 600, gen(3), num_dims=2, num_context=8, num_targets=2)
    counts = torch.bincount(batch.family, minlength=len(FAMILIES)).double() / 600
    expected = CFG.family_weights()
    assert (counts - expected).abs().max() < 0.06
    assert torch.bincount(batch.design, minlength=len(DESIGNS)).min() > 50
    warped = batch.warped.double().mean()
    assert 0.05 < warped < 0.16
    exact = (batch.family <= 1) & ~batch.warped
    assert torch.equal(batch.representable, exact)


def test_standardization_uses_context_statistics():
    batch = sample_tasks(CFG, 16, gen(1), num_dims=3, num_context=30, dtype=torch.float64)
    yc = batch.y_context
    assert torch.allclose(yc.mean(-1), torch.zeros(16, dtype=yc.dtype), atol=1e-10)
    assert torch.allclose(yc.std(-1), torch.ones(16, dtype=yc.dtype), atol=1e-10)
    # raw values are recovered, and f is standardized the same way (offset + GP draw)
    f_raw = batch.f_raw_context + batch.offset_raw[:, None]
    assert torch.allclose(batch.f_context * batch.y_std[:, None] + batch.y_mean[:, None], f_raw)
    # params are in standardized units
    assert torch.allclose(batch.params.outputscale, batch.outputscale_raw / batch.y_std**2)
    assert torch.allclose(batch.noise, batch.noise_raw / batch.y_std**2)


def test_standardization_with_realizations_is_joint():
    batch = sample_tasks(
        CFG, 6, gen(2), num_dims=2, num_context=20, num_realizations=4, dtype=torch.float64
    )
    flat = batch.y_context.reshape(6, -1)
    assert torch.allclose(flat.mean(-1), torch.zeros(6, dtype=flat.dtype), atol=1e-10)
    assert torch.allclose(flat.std(-1), torch.ones(6, dtype=flat.dtype), atol=1e-10)
    # the columns are different realizations of the same task
    assert not torch.allclose(batch.f_raw_context[..., 0], batch.f_raw_context[..., 1])


def test_single_context_point_has_unit_std():
    batch = sample_tasks(CFG, 4, gen(0), num_dims=2, num_context=1, dtype=torch.float64)
    assert torch.equal(batch.y_std, torch.ones(4, dtype=torch.float64))
    assert torch.allclose(batch.y_context, torch.zeros_like(batch.y_context))


# --------------------------------------------------------------------- reproducibility
def test_same_seed_gives_identical_batches():
    a = sample_tasks(CFG, 8, gen(123))
    b = sample_tasks(CFG, 8, gen(123))
    for name in (
        "x_context",
        "y_context",
        "x_target",
        "y_target",
        "f_context",
        "y_std",
        "family",
        "design",
        "num_peaks",
        "relevant",
    ):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.params.allclose(b.params, rtol=0, atol=0)
    c = sample_tasks(CFG, 8, gen(124))
    assert a.x_context.shape != c.x_context.shape or not torch.equal(a.x_context, c.x_context)


def test_fixed_sizes_still_depend_on_the_seed():
    a = sample_tasks(CFG, 4, gen(5), num_dims=3, num_context=10)
    b = sample_tasks(CFG, 4, gen(6), num_dims=3, num_context=10)
    assert not torch.equal(a.y_context, b.y_context)
    assert not torch.equal(a.x_context, b.x_context)


# --------------------------------------------------------------------- containers
def test_to_and_indexing():
    batch = sample_tasks(CFG, 6, gen(0), num_dims=2, num_context=5)
    double = batch.to(torch.float64)
    assert double.y_context.dtype == torch.float64 and double.params.dtype == torch.float64
    assert double.family.dtype == torch.long and double.relevant.dtype == torch.bool
    assert double.kernel.weights.dtype == torch.float64
    sub = batch[torch.tensor([0, 3])]
    assert sub.batch_size == 2 and sub.params.batch_shape == (2,)
    assert torch.equal(sub.y_context[1], batch.y_context[3])
    one = batch[2]
    assert one.batch_size == 1 and torch.equal(one.family, batch.family[2:3])
    K = one.covariance(one.x_context, one.x_context)
    assert torch.allclose(K, batch.covariance(batch.x_context, batch.x_context)[2:3])


# --------------------------------------------------------------------- ground truth
def test_representable_covariance_equals_closed_form_spectral_mixture():
    cfg = PriorConfig(family_probs={"spectral_mixture": 0.7, "rbf": 0.3}, warp_prob=0.0)
    batch = sample_tasks(cfg, 24, gen(7), num_dims=3, num_context=15, dtype=torch.float64)
    assert batch.representable.all()
    p = batch.params
    x1, x2 = batch.x_context, batch.x_target[:, :11]
    for a, b in ((x1, x1), (x1, x2)):
        expected = spectral_mixture_covariance(a, b, p.weights, p.means, p.scales, p.outputscale)
        assert torch.allclose(batch.covariance(a, b), expected, rtol=1e-10, atol=1e-12)
    diag = batch.covariance(x1, x1, diag=True)
    assert torch.allclose(diag, p.outputscale[:, None].expand_as(diag))


def test_rbf_ground_truth_is_exact():
    batch = sample_tasks(
        only("rbf", irrelevant_prob=0.0), 8, gen(0), num_dims=2, num_context=4, dtype=torch.float64
    )
    ell = batch.kernel.lengthscale
    assert torch.allclose(batch.params.scales[..., 0], 1 / (2 * math.pi * ell))
    assert (batch.params.means == 0).all() and (batch.num_peaks == 1).all()


@pytest.mark.parametrize("family, nu", [("matern12", 0.5), ("matern32", 1.5), ("matern52", 2.5)])
def test_matern_matches_gpytorch(family, nu):
    """A product over dimensions of one-dimensional gpytorch Matérn kernels."""
    d, n = 2, 12
    batch = sample_tasks(
        only(family, irrelevant_prob=0.0, warp_prob=0.0),
        4,
        gen(1),
        num_dims=d,
        num_context=n,
        dtype=torch.float64,
    )
    assert not batch.representable.any()
    x = batch.x_context
    K = batch.kernel.covariance(x, x)
    for b in range(4):
        ref = torch.ones(n, n, dtype=x.dtype)
        for j in range(d):
            k = MaternKernel(nu=nu).double()
            k.lengthscale = batch.kernel.lengthscale[b, j]
            ref = ref * k(x[b, :, j : j + 1]).to_dense()
        assert torch.allclose(K[b], ref, atol=1e-10)


def test_periodic_matches_gpytorch():
    d = 2
    batch = sample_tasks(
        only("periodic", irrelevant_prob=0.0, warp_prob=0.0),
        3,
        gen(2),
        num_dims=d,
        num_context=10,
        dtype=torch.float64,
    )
    x = batch.x_context
    K = batch.kernel.covariance(x, x)
    for b in range(3):
        k = PeriodicKernel(ard_num_dims=d).double()
        k.period_length = batch.kernel.period[b]
        k.lengthscale = batch.kernel.lengthscale[b] ** 2  # gpytorch does not square it
        assert torch.allclose(K[b], k(x[b]).to_dense(), atol=1e-10)


@pytest.mark.parametrize(
    "family, tolerance",
    [("matern12", 0.16), ("matern32", 0.03), ("matern52", 0.01), ("periodic", 0.1)],
)
def test_spectral_approximations_are_close(family, tolerance):
    """The best-effort SpectralParams of non-representable families stay near the true kernel
    (per-factor error bounds: the Matérn quadrature errors in families.py; the periodic one is
    the dropped harmonics' weight, under 0.1 for the default lengthscale range)."""
    batch = sample_tasks(
        only(family, warp_prob=0.0), 16, gen(4), num_dims=1, num_context=40, dtype=torch.float64
    )
    p = batch.params
    tau = torch.linspace(0, 1, 101, dtype=torch.float64)[:, None]
    true = batch.kernel.covariance(tau, tau[:1])
    approx = spectral_mixture_covariance(
        tau.expand(16, -1, -1), tau[:1].expand(16, -1, -1), p.weights, p.means, p.scales
    )
    assert (true - approx).abs().max() < tolerance
    p._validate()


def test_irrelevant_dimensions_are_almost_constant():
    cfg = PriorConfig(irrelevant_prob=0.5, warp_prob=0.0, family_probs={"matern52": 1.0})
    batch = sample_tasks(cfg, 32, gen(8), num_dims=3, num_context=6, dtype=torch.float64)
    assert (~batch.relevant).any() and batch.relevant.any(-1).all()
    b, j = (~batch.relevant).nonzero()[0].tolist()
    x = torch.full((2, 3), 0.5, dtype=torch.float64)
    x[1, j] = 0.0  # move along the irrelevant dimension only
    K = batch.kernel.covariance(x, x)[b]
    assert abs(K[0, 1].item() - 1.0) < 1e-4


def test_warping_is_applied_in_the_kernel():
    batch = sample_tasks(
        PriorConfig(warp_prob=1.0, irrelevant_prob=0.0),
        4,
        gen(9),
        num_dims=2,
        num_context=8,
        dtype=torch.float64,
    )
    assert batch.warped.all() and not batch.representable.any()
    kern = batch.kernel
    x = batch.x_context
    warped = kumaraswamy_cdf(x, kern.warp_a[:, None], kern.warp_b[:, None])
    unwarped = type(kern)(**{**kern.__dict__, "warped": torch.zeros_like(kern.warped)})
    assert torch.allclose(kern.covariance(x, x), unwarped.covariance(warped, warped))


def test_designs():
    for name in DESIGNS:
        cfg = PriorConfig(design_probs={name: 1.0})
        for d in (1, 3):
            batch = sample_tasks(
                cfg, 4, gen(11), num_dims=d, num_context=20, num_targets=12, dtype=torch.float64
            )
            x = torch.cat([batch.x_context, batch.x_target], 1)  # (4, 32, d)
            assert (batch.design == DESIGNS.index(name)).all()
            assert x.min() >= 0 and x.max() <= 1
            if name == "grid" and d == 1:
                gaps = x[..., 0].sort(-1).values.diff(dim=-1)
                assert torch.allclose(gaps, gaps[:, :1].expand_as(gaps))  # regular grid
            if name in ("grid", "sobol", "uniform"):
                dist = torch.cdist(x, x) + torch.eye(32, dtype=x.dtype)
                assert dist.min() > 0  # distinct points


def test_grid_on_a_large_lattice_has_distinct_points():
    cfg = PriorConfig(design_probs={"grid": 1.0})
    batch = sample_tasks(cfg, 3, gen(12), num_dims=8, num_context=256, num_targets=100)
    x = torch.cat([batch.x_context, batch.x_target], 1).double()
    dist = torch.cdist(x, x) + torch.eye(356, dtype=x.dtype)
    assert dist.min() > 0


def test_max_peaks_override():
    cfg = only("spectral_mixture", irrelevant_prob=0.0)
    batch = sample_tasks(cfg, 20, gen(13), num_dims=4, num_context=5, max_peaks=1)
    assert (batch.num_peaks == 1).all()
    batch = sample_tasks(cfg, 20, gen(13), num_dims=4, num_context=5, max_peaks=3)
    assert batch.num_peaks.max() == 3


def test_covariance_accepts_shared_inputs_and_is_psd():
    batch = sample_tasks(CFG, 8, gen(14), num_dims=2, num_context=30, dtype=torch.float64)
    x = torch.rand(25, 2, dtype=torch.float64)
    K = batch.covariance(x, x)
    assert K.shape == (8, 25, 25)
    assert torch.allclose(K, K.transpose(-1, -2))
    assert torch.allclose(K, batch.covariance(x, x.clone()))
    evals = torch.linalg.eigvalsh(K)
    assert (evals > -1e-8 * batch.params.outputscale[:, None]).all()
    assert torch.allclose(
        K.diagonal(dim1=-2, dim2=-1), batch.params.outputscale[:, None].expand(8, 25)
    )


def test_params_are_valid_spectral_params():
    batch = sample_tasks(CFG, 64, gen(15), num_dims=5, num_context=10)
    p = batch.params
    SpectralParams(p.weights, p.means, p.scales, p.outputscale, p.noise)  # validates


def test_lower_covariance_is_the_lower_triangle():
    batch = sample_tasks(CFG, 6, gen(16), num_dims=3, num_context=20, dtype=torch.float64)
    x = batch.x_context
    full = batch.kernel.covariance(x, x)
    assert torch.equal(batch.kernel.lower_covariance(x), full.tril())
    assert torch.allclose(full, batch.kernel.covariance(x, x.clone()), rtol=0, atol=1e-15)


def test_dtype_only_changes_the_cast():
    a = sample_tasks(CFG, 5, gen(17), num_dims=2, num_context=9, dtype=torch.float32)
    b = sample_tasks(CFG, 5, gen(17), num_dims=2, num_context=9, dtype=torch.float64)
    assert torch.equal(a.y_context, b.y_context.float())
    assert torch.equal(a.x_target, b.x_target.float())
    assert a.params.allclose(b.params.to(torch.float32), rtol=0, atol=0)


def test_oracle_scores_use_true_kernel_noise_and_mean():
    from pfn_kernels.exact_gp import exact_gp_scores
    from pfn_kernels.prior import PriorConfig, sample_tasks

    b = sample_tasks(PriorConfig(max_dims=2), 4, torch.Generator().manual_seed(0), num_context=20,
                     num_targets=10, dtype=torch.float64)
    m = b.mean_offset[:, None]
    ref = exact_gp_scores(b.covariance(b.x_context, b.x_context), b.covariance(b.x_target, b.x_context),
                          b.covariance(b.x_target, b.x_target, diag=True), b.noise,
                          b.y_context - m, b.y_target - m)
    got = b.oracle_scores()
    assert torch.allclose(got.target_nll, ref.target_nll) and torch.allclose(got.target_mse, ref.target_mse)
