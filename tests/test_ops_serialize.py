"""Pure-PyTorch reference of point serialization (lidarcl/ops/serialize.py), checked
against hand-computed codes, per-point scalar Python implementations written here (the
textbook bit interleave and Skilling's AxesToTranspose), and the defining properties of
the curves (bijection, Hilbert adjacency, batch grouping, locality)."""
from __future__ import annotations

import itertools

import pytest
import torch

from lidarcl.ops.serialize import (SERIALIZATION_ORDERS, serialize_reference,
                                   validate_serialize_args)


# ------------------------------------------------------------------ scalar references
def z_scalar(x: int, y: int, z: int, depth: int) -> int:
    """Textbook Morton interleave, most significant bit first: x, y, z per level."""
    code = 0
    for i in range(depth - 1, -1, -1):
        code = (code << 1) | ((x >> i) & 1)
        code = (code << 1) | ((y >> i) & 1)
        code = (code << 1) | ((z >> i) & 1)
    return code


def hilbert_scalar(x: int, y: int, z: int, depth: int) -> int:
    """Skilling's AxesToTranspose (AIP Conf. Proc. 707, 381 (2004)), one point at a time."""
    X = [x, y, z]
    n = 3
    M = 1 << (depth - 1)
    Q = M
    while Q > 1:
        P = Q - 1
        for i in range(n):
            if X[i] & Q:
                X[0] ^= P
            else:
                t = (X[0] ^ X[i]) & P
                X[0] ^= t
                X[i] ^= t
        Q >>= 1
    for i in range(1, n):
        X[i] ^= X[i - 1]
    t = 0
    Q = M
    while Q > 1:
        if X[n - 1] & Q:
            t ^= Q - 1
        Q >>= 1
    for i in range(n):
        X[i] ^= t
    code = 0
    for i in range(depth - 1, -1, -1):
        for d in range(n):
            code = (code << 1) | ((X[d] >> i) & 1)
    return code


def keys(coords, order="z", depth=16, batch=None):
    coords = torch.as_tensor(coords, dtype=torch.int64).reshape(-1, 3)
    if batch is None:
        batch = torch.zeros(coords.shape[0], dtype=torch.int64)
    return serialize_reference(coords, batch, order, depth)


def full_grid(depth: int) -> torch.Tensor:
    r = torch.arange(1 << depth)
    return torch.cartesian_prod(r, r, r)


def random_coords(n: int, depth: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 1 << depth, (n, 3), generator=g)


# ------------------------------------------------------------------ z-order
@pytest.mark.parametrize("xyz, depth, expected", [
    ((0, 0, 0), 16, 0),
    ((1, 0, 0), 16, 4),
    ((0, 1, 0), 16, 2),
    ((0, 0, 1), 16, 1),
    ((3, 0, 0), 16, 36),          # x bits 0, 1 -> code bits 2, 5: 4 + 32
    # (1, 2, 3): level 0 (x0 y0 z0) = 1 0 1 -> 5; level 1 (x1 y1 z1) = 0 1 1 -> 3 << 3 = 24
    ((1, 2, 3), 2, 29),
    # (5, 3, 6) = (101, 011, 110): level 0 = 1 1 0 -> 6; level 1 = 0 1 1 -> 3 << 3 = 24;
    # level 2 = 1 0 1 -> 5 << 6 = 320; total 350
    ((5, 3, 6), 3, 350),
    ((7, 7, 7), 3, 511),          # all nine bits set
    ((0, 0, 1 << 15), 16, 1 << 45),  # z bit 15 -> code bit 45
    ((1 << 15, 0, 0), 16, 1 << 47),  # x bit 15 -> code bit 47, the top one
])
def test_z_order_hand_computed(xyz, depth, expected):
    assert keys(xyz, "z", depth).tolist() == [expected]


@pytest.mark.parametrize("depth", [1, 3, 7, 16])
def test_z_order_matches_scalar_interleave(depth):
    c = random_coords(500, depth, seed=depth)
    expected = [z_scalar(*p, depth) for p in c.tolist()]
    assert keys(c, "z", depth).tolist() == expected


# ------------------------------------------------------------------ Hilbert
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_hilbert_full_grid_is_adjacent_bijection(depth):
    grid = full_grid(depth)
    code = keys(grid, "hilbert", depth)
    n = 8 ** depth
    # bijection onto 0 .. 8**depth - 1
    assert torch.equal(torch.sort(code).values, torch.arange(n))
    # walk the cells in code order: consecutive cells are face neighbours
    walk = grid[torch.argsort(code)]
    step = (walk[1:] - walk[:-1]).abs().sum(1)
    assert torch.all(step == 1)
    assert walk[0].tolist() == [0, 0, 0]
    assert code[0].item() == 0  # grid[0] is the origin


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_z_order_is_a_bijection_but_jumps(depth):
    grid = full_grid(depth)
    code = keys(grid, "z", depth)
    assert torch.equal(torch.sort(code).values, torch.arange(8 ** depth))
    walk = grid[torch.argsort(code)]
    step = (walk[1:] - walk[:-1]).abs().sum(1)
    assert step.max() > 1


def test_hilbert_depth1_is_gray_code():
    # depth 1: only the Gray encode acts: X = [x, x^y, x^y^z]
    order = [(0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 1, 0),
             (1, 1, 0), (1, 1, 1), (1, 0, 1), (1, 0, 0)]
    assert keys(order, "hilbert", 1).tolist() == list(range(8))


def test_hilbert_hand_computed_depth2():
    # (1, 2, 3), Q = 2, P = 1: i=0 no-op; X1 & 2 -> X0 ^= 1 -> 0; X2 & 2 -> X0 ^= 1 -> 1.
    # Gray: X = [1, 3, 0]; t = 0. Rows MSB first: (0 1 0)(1 1 0) = 0b010110 = 22.
    assert keys((1, 2, 3), "hilbert", 2).tolist() == [22]
    # swapped (2, 1, 3): X0 & 2 -> X0 = 3; X1 = 1: t = (3 ^ 1) & 1 = 0; X2 & 2 -> X0 = 2.
    # Gray: X = [2, 3, 0]; t = 0. Rows: (1 1 0)(0 1 0) = 0b110010 = 50.
    assert keys((1, 2, 3), "hilbert-trans", 2).tolist() == [50]


@pytest.mark.parametrize("depth", [16, 5])
def test_hilbert_matches_scalar_skilling(depth):
    c = random_coords(300, depth, seed=100 + depth)
    expected = [hilbert_scalar(*p, depth) for p in c.tolist()]
    assert keys(c, "hilbert", depth).tolist() == expected


def test_hilbert_extreme_corners_depth16():
    m = (1 << 16) - 1
    corners = list(itertools.product((0, m), repeat=3))
    expected = [hilbert_scalar(*p, 16) for p in corners]
    assert keys(corners, "hilbert", 16).tolist() == expected
    assert expected[0] == 0


# ------------------------------------------------------------------ transposed orders
@pytest.mark.parametrize("plain", ["z", "hilbert"])
def test_transposed_is_plain_on_swapped_coords(plain):
    c = random_coords(400, 16, seed=7)
    b = torch.randint(0, 4, (400,), generator=torch.Generator().manual_seed(8))
    trans = serialize_reference(c, b, plain + "-trans", 16)
    assert torch.equal(trans, serialize_reference(c[:, [1, 0, 2]], b, plain, 16))
    assert not torch.equal(trans, serialize_reference(c, b, plain, 16))


def test_orders_differ_from_each_other():
    c = random_coords(200, 8, seed=3)
    codes = [keys(c, o, 8) for o in SERIALIZATION_ORDERS]
    for a, b in itertools.combinations(codes, 2):
        assert not torch.equal(a, b)


# ------------------------------------------------------------------ batch
@pytest.mark.parametrize("order", SERIALIZATION_ORDERS)
@pytest.mark.parametrize("depth", [3, 16])
def test_batch_ranges_and_grouping(order, depth):
    n = 600
    c = random_coords(n, depth, seed=11)
    b = torch.randint(0, 5, (n,), generator=torch.Generator().manual_seed(12))
    k = serialize_reference(c, b, order, depth)
    assert k.dtype == torch.int64 and k.shape == (n,)
    lo, hi = b << (3 * depth), (b + 1) << (3 * depth)
    assert torch.all((k >= lo) & (k < hi))
    # the low bits are the batch-free code
    assert torch.equal(k & ((1 << (3 * depth)) - 1), keys(c, order, depth))
    sorted_b = b[torch.argsort(k)]
    assert torch.all(sorted_b[1:] >= sorted_b[:-1])


def test_largest_batch_at_depth16():
    b = torch.tensor([(1 << 15) - 1])
    k = serialize_reference(torch.tensor([[1, 0, 0]]), b, "z", 16)
    assert k.tolist() == [(((1 << 15) - 1) << 48) | 4]
    assert k.item() > 0


# ------------------------------------------------------------------ locality
def test_hilbert_more_local_than_z():
    c = random_coords(20000, 16, seed=2024)

    def mean_step(order):
        walk = c[torch.argsort(keys(c, order, 16))]
        return (walk[1:] - walk[:-1]).abs().sum(1).double().mean().item()

    assert mean_step("hilbert") < mean_step("z")


# ------------------------------------------------------------------ misc input
def test_empty_input():
    k = serialize_reference(torch.zeros(0, 3, dtype=torch.int64),
                            torch.zeros(0, dtype=torch.int64), "hilbert", 16)
    assert k.shape == (0,) and k.dtype == torch.int64


def test_duplicated_points_equal_codes():
    c = torch.tensor([[5, 9, 1], [5, 9, 1], [2, 2, 2], [5, 9, 1]])
    for order in SERIALIZATION_ORDERS:
        k = keys(c, order, 4)
        assert k[0] == k[1] == k[3]
        assert k[2] != k[0]


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
def test_other_integer_dtypes_accepted(dtype):
    c = random_coords(100, 7, seed=5)
    b = torch.randint(0, 3, (100,), generator=torch.Generator().manual_seed(6))
    for order in SERIALIZATION_ORDERS:
        expected = serialize_reference(c, b, order, 7)
        got = serialize_reference(c.to(dtype), b.to(torch.int32), order, 7)
        assert got.dtype == torch.int64
        assert torch.equal(got, expected)


def test_validate_returns_int64_contiguous_and_order_code():
    c = torch.zeros(3, 4, dtype=torch.int32)[:, :3]  # non-contiguous
    b = torch.zeros(6, dtype=torch.int16)[::2]
    cc, bb, code = validate_serialize_args(c, b, "hilbert-trans", 4)
    assert cc.dtype == bb.dtype == torch.int64
    assert cc.is_contiguous() and bb.is_contiguous()
    assert code == 3
    assert [validate_serialize_args(c, b, o, 4)[2] for o in SERIALIZATION_ORDERS] == [0, 1, 2, 3]


# ------------------------------------------------------------------ validation errors
C = torch.zeros(4, 3, dtype=torch.int64)
B = torch.zeros(4, dtype=torch.int64)


@pytest.mark.parametrize("args, exc, words", [
    (([[0, 0, 0]], B[:1], "z", 16), TypeError, ["coords", "torch.Tensor"]),
    ((C, [0, 0, 0, 0], "z", 16), TypeError, ["batch_index", "torch.Tensor"]),
    ((C.float(), B, "z", 16), TypeError, ["coords", "integer", "float32"]),
    ((C, B.double(), "z", 16), TypeError, ["batch_index", "integer", "float64"]),
    ((C.bool(), B, "z", 16), TypeError, ["coords", "integer", "bool"]),
    ((C, B, "z", 4.0), TypeError, ["depth", "int"]),
    ((C, B, "z", True), TypeError, ["depth", "int"]),
    ((C[:, :2], B, "z", 16), ValueError, ["coords", "(N, 3)", "(4, 2)"]),
    ((C.reshape(-1), B, "z", 16), ValueError, ["coords", "(N, 3)"]),
    ((C, B.reshape(2, 2), "z", 16), ValueError, ["batch_index", "(N,)"]),
    ((C, B[:3], "z", 16), ValueError, ["batch_index", "N=4", "3"]),
    ((C, B, "z", 0), ValueError, ["depth", "[1, 16]", "0"]),
    ((C, B, "z", 17), ValueError, ["depth", "[1, 16]", "17"]),
    ((C, B, "morton", 16), ValueError, ["order", "'morton'", "'z'", "'z-trans'",
                                        "'hilbert'", "'hilbert-trans'"]),
    ((C, B, None, 16), ValueError, ["order", "None"]),
    ((torch.tensor([[0, 0, 0], [1, -2, 0]]), B[:2], "z", 4), ValueError,
     ["coords", "[0, 16)", "min -2", "max 1"]),
    ((torch.tensor([[0, 0, 0], [1, 16, 3]]), B[:2], "z", 4), ValueError,
     ["coords", "depth=4", "min 0", "max 16"]),
    ((torch.tensor([[0, 0, 1 << 16]]), B[:1], "hilbert", 16), ValueError,
     ["coords", "max 65536"]),
    ((C, torch.tensor([0, -1, 0, 0]), "z", 16), ValueError, ["batch_index", ">= 0", "-1"]),
    ((C, torch.tensor([0, 1 << 15, 0, 0]), "z", 16), ValueError,
     ["batch_index", "int64", "32768"]),
    ((C[:1], torch.tensor([1 << 57]), "z", 2), ValueError,
     ["batch_index", "depth=2", str(1 << 57)]),
])
def test_validation_errors(args, exc, words):
    with pytest.raises(exc) as info:
        serialize_reference(*args)
    msg = str(info.value)
    for w in words:
        assert w in msg, (w, msg)


def test_device_mismatch():
    c = torch.zeros(2, 3, dtype=torch.int64, device="meta")
    with pytest.raises(ValueError, match=r"batch_index is on cpu but coords are on meta"):
        serialize_reference(c, torch.zeros(2, dtype=torch.int64), "z", 16)


def test_empty_input_still_validated():
    with pytest.raises(ValueError, match="coords"):
        serialize_reference(torch.zeros(0, 2, dtype=torch.int64),
                            torch.zeros(0, dtype=torch.int64))
    with pytest.raises(ValueError, match="order"):
        serialize_reference(torch.zeros(0, 3, dtype=torch.int64),
                            torch.zeros(0, dtype=torch.int64), "zz")
