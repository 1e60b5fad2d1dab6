"""spconv's CPU path against dense ``torch.nn.functional.conv3d``, at 2 threads.

A regression test for the sparse-convolution build the install picks: the CPU-only wheel
``spconv`` 2.3.8 was measured to race in its multithreaded scatter-add (wrong SubMConv3d
outputs on 2-6% of calls) and to fail in backward; ``spconv-cu120`` 2.3.6 was exact. Every
sparse conv here runs with ``ConvAlgo.Native`` (the default implicit-GEMM algorithm exists
on CUDA only). Outputs and gradients (features and weights) must equal the dense reference
on every one of many random calls. Measured here: spconv does not check that ``indices``
is contiguous and reads a transposed ``torch.nonzero`` result as garbage pairs (wrong
outputs everywhere), which the backbones must guard against with ``.contiguous()``."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

spconv = pytest.importorskip("spconv.pytorch")
from spconv.core import ConvAlgo  # noqa: E402

CALLS = 60


def random_sparse(gen, batch=2, grid=(10, 12, 11), channels=4, density=0.12):
    occupied = torch.rand(batch, *grid, generator=gen) < density
    # [b, z, y, x]; torch.nonzero's result is column-major: spconv reads the raw buffer
    # without checking strides, so non-contiguous indices silently give wrong outputs
    indices = torch.nonzero(occupied).to(torch.int32).contiguous()
    feats = torch.randn(len(indices), channels, generator=gen, dtype=torch.float64)
    return indices, feats


def dense_of(indices, feats, batch, grid):
    out = feats.new_zeros(batch, feats.shape[1], *grid)
    b, z, y, x = indices.long().unbind(1)
    out[b, :, z, y, x] = feats
    return out


@pytest.fixture(autouse=True)
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("kind", ["subm", "strided", "inverse"])
def test_sparse_conv_equals_dense_conv3d(kind):
    gen = torch.Generator().manual_seed({"subm": 0, "strided": 1, "inverse": 2}[kind])
    grid = (10, 12, 11)
    for call in range(CALLS):
        indices, feats = random_sparse(gen, grid=grid)
        feats.requires_grad_(True)
        x = spconv.SparseConvTensor(feats, indices, list(grid), 2)
        if kind == "subm":
            conv = spconv.SubMConv3d(4, 5, 3, padding=1, bias=True, indice_key="s",
                                     algo=ConvAlgo.Native)
        else:
            conv = spconv.SparseConv3d(4, 5, 3, stride=2, padding=1, bias=True,
                                       indice_key="down", algo=ConvAlgo.Native)
        conv = conv.double()
        with torch.no_grad():
            conv.weight.normal_(generator=gen)
            conv.bias.normal_(generator=gen)
        out = conv(x)
        if kind == "inverse":  # back up to the input sites
            up = spconv.SparseInverseConv3d(5, 3, 3, indice_key="down", bias=False,
                                            algo=ConvAlgo.Native).double()
            with torch.no_grad():
                up.weight.normal_(generator=gen)
            out = up(out)
        grad_out = torch.randn(out.features.shape, generator=gen, dtype=torch.float64)
        weights = [conv.weight] + ([up.weight] if kind == "inverse" else [])
        grads = torch.autograd.grad(out.features, [feats, *weights], grad_out)

        # dense reference: same weights (spconv stores them as (out, kz, ky, kx, in))
        dense_in = dense_of(indices, feats, 2, grid)
        w = conv.weight.permute(0, 4, 1, 2, 3)
        if kind == "subm":
            ref = F.conv3d(dense_in, w, conv.bias, padding=1)
        else:
            ref = F.conv3d(dense_in, w, conv.bias, stride=2, padding=1)
            # the sparse output exists only where an input site is in the receptive field
            active = F.conv3d(dense_of(indices, torch.ones_like(feats[:, :1]), 2, grid),
                              torch.ones(1, 1, 3, 3, 3, dtype=torch.float64), stride=2,
                              padding=1) > 0
            ref = ref * active
            if kind == "inverse":
                wt = up.weight.permute(4, 0, 1, 2, 3)  # transposed conv: (in, out, k, k, k)
                ref = F.conv_transpose3d(ref, wt, stride=2, padding=1,
                                         output_padding=[(g + 1) % 2 for g in grid])
        b, z, y, xx = out.indices.long().unbind(1)
        ref_at_sites = ref[b, :, z, y, xx]
        assert torch.allclose(out.features, ref_at_sites, atol=1e-9), (kind, call)
        ref_grads = torch.autograd.grad(ref_at_sites, [feats, *weights], grad_out)
        for got, want in zip(grads, ref_grads):
            assert torch.allclose(got, want, atol=1e-9), (kind, call)


def test_biased_subm_conv3d_runs_in_eval_mode_on_cpu():
    """spconv fuses a SubM conv's bias into its GEMM in eval mode and its CPU path refuses
    ("bias and act don't support cpu"); lidarcl's biased_subm_conv3d adds it after the GEMM
    there. Eval output = train output = dense conv3d + bias."""
    from lidarcl.models.backbones.base import biased_subm_conv3d

    gen = torch.Generator().manual_seed(3)
    grid = (10, 12, 11)
    conv = biased_subm_conv3d(4, 5, 3, padding=1, indice_key="s", algo=ConvAlgo.Native)
    conv = conv.double()
    plain = spconv.SubMConv3d(4, 5, 3, padding=1, bias=True, algo=ConvAlgo.Native).double()
    plain.load_state_dict(conv.state_dict())  # spconv's parameter names
    with pytest.raises(RuntimeError, match="cpu"):
        indices, feats = random_sparse(gen, grid=grid)
        with torch.no_grad():
            plain.eval()(spconv.SparseConvTensor(feats, indices, list(grid), 2))
    for _ in range(5):
        indices, feats = random_sparse(gen, grid=grid)
        x = spconv.SparseConvTensor(feats, indices, list(grid), 2)
        with torch.no_grad():
            evaluated = conv.eval()(x).features
            trained = conv.train()(x).features
        ref = F.conv3d(dense_of(indices, feats, 2, grid), conv.weight.permute(0, 4, 1, 2, 3),
                       conv.bias, padding=1)
        b, z, y, xx = indices.long().unbind(1)
        assert torch.allclose(evaluated, ref[b, :, z, y, xx], atol=1e-9)
        assert torch.equal(evaluated, trained)
