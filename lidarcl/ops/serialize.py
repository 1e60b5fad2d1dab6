"""Point serialization by space-filling curves: pure-PyTorch reference.

Point Transformer V3 (Wu et al., arXiv 2312.10035) replaces neighbourhood search by
*serialization*: every voxelised point gets an integer code from a space-filling curve,
the points are sorted by ``(batch, code)``, and attention runs inside patches of
consecutive points of that order. Points close on the curve are close in space, so a
patch is a compact neighbourhood. Several orders (z-order and Hilbert, each also with x
and y swapped) are used in turn by successive blocks so that patch borders move.

This module is the reference that the compiled kernels (C++ and CUDA) are tested
against; they implement exactly the layout below.

Input: ``coords (N, 3)`` integer voxel coordinates ``x, y, z`` in ``[0, 2**depth)`` and
``batch_index (N,)`` integers ``>= 0``, with ``1 <= depth <= 16`` and
``batch_index < 2**(63 - 3 * depth)`` so that the key fits in a signed int64.

Orders (``SERIALIZATION_ORDERS``):

* ``"z"`` (Morton order): bit ``i`` of ``x``, ``y``, ``z`` goes to bit ``3i + 2``,
  ``3i + 1``, ``3i`` of the code (``x`` is the most significant within each triple).
  E.g. ``(1, 0, 0) -> 4``, ``(0, 1, 0) -> 2``, ``(0, 0, 1) -> 1``, ``(3, 0, 0) -> 36``.
* ``"hilbert"``: J. Skilling's ``AxesToTranspose`` ("Programming the Hilbert curve",
  AIP Conf. Proc. 707, 381 (2004)) on ``X = [x, y, z]`` with ``b = depth`` bits and
  ``n = 3`` dimensions::

      M = 1 << (b - 1)
      for Q = M; Q > 1; Q >>= 1:                  # inverse undo
          P = Q - 1
          for i in 0 .. n-1:                      # sequential: X[0] changes along the way
              if X[i] & Q: X[0] ^= P              # invert
              else: t = (X[0] ^ X[i]) & P; X[0] ^= t; X[i] ^= t   # exchange
      for i in 1 .. n-1: X[i] ^= X[i-1]           # Gray encode
      t = 0
      for Q = M; Q > 1; Q >>= 1:
          if X[n-1] & Q: t ^= Q - 1
      for i in 0 .. n-1: X[i] ^= t

  The transposed form is then read most significant bit first, x-row first::

      for i = depth-1 down to 0: for d = 0, 1, 2: code = (code << 1) | ((X[d] >> i) & 1)

  i.e. the same interleave as z-order applied to ``X``. Code 0 is the origin and
  consecutive codes are face-adjacent cells (L1 distance 1).
* ``"z-trans"`` / ``"hilbert-trans"``: the same on ``coords[:, [1, 0, 2]]`` (x and y
  swapped).

Key: ``(batch_index << (3 * depth)) | code`` as int64 ``(N,)`` on the input's device, so
sorting keys groups the points by sample and orders them along the curve within each.
"""
from __future__ import annotations

import torch

__all__ = ["SERIALIZATION_ORDERS", "serialize_reference", "validate_serialize_args"]

SERIALIZATION_ORDERS = ("z", "z-trans", "hilbert", "hilbert-trans")
MAX_DEPTH = 16


def _is_integer_dtype(dtype: torch.dtype) -> bool:
    if dtype == torch.bool or dtype.is_floating_point or dtype.is_complex:
        return False
    try:
        torch.iinfo(dtype)
    except TypeError:  # quantized and other exotic dtypes
        return False
    return True


def validate_serialize_args(coords, batch_index, order, depth
                            ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Check the arguments of :func:`serialize_reference`.

    Returns:
        ``(coords, batch_index, order_code)``: both tensors as contiguous int64 on their
        device, and the index of ``order`` in :data:`SERIALIZATION_ORDERS` (0..3).

    Raises:
        TypeError: a tensor argument is not a tensor or not of an integer dtype, or
            ``depth`` is not an int.
        ValueError: bad shape, mismatched ``N``, tensors on different devices, ``depth``
            outside ``[1, 16]``, unknown ``order``, coordinates outside
            ``[0, 2**depth)``, negative batch indices or batch indices too large for the
            int64 key.
    """
    for name, t in (("coords", coords), ("batch_index", batch_index)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not _is_integer_dtype(t.dtype):
            raise TypeError(f"{name} must be an integer tensor, got dtype {t.dtype}")
    if coords.dim() != 2 or coords.shape[1] != 3:
        raise ValueError(f"coords must have shape (N, 3), got {tuple(coords.shape)}")
    if batch_index.dim() != 1:
        raise ValueError(f"batch_index must have shape (N,), got {tuple(batch_index.shape)}")
    if batch_index.shape[0] != coords.shape[0]:
        raise ValueError(f"batch_index must have N={coords.shape[0]} entries like coords, "
                         f"got {batch_index.shape[0]}")
    if batch_index.device != coords.device:
        raise ValueError(f"batch_index is on {batch_index.device} but coords are on "
                         f"{coords.device}")
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise TypeError(f"depth must be an int, got {type(depth).__name__}")
    if not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"depth must be in [1, {MAX_DEPTH}], got {depth}")
    if not isinstance(order, str) or order not in SERIALIZATION_ORDERS:
        raise ValueError(f"order must be one of {', '.join(map(repr, SERIALIZATION_ORDERS))}, "
                         f"got {order!r}")
    order_code = SERIALIZATION_ORDERS.index(order)

    coords = coords.to(torch.int64).contiguous()
    batch_index = batch_index.to(torch.int64).contiguous()
    if coords.shape[0] > 0:
        lo, hi = int(coords.min()), int(coords.max())
        if lo < 0 or hi >= (1 << depth):
            raise ValueError(f"coords must lie in [0, 2**depth) = [0, {1 << depth}) for "
                             f"depth={depth}, got min {lo}, max {hi}")
        blo, bhi = int(batch_index.min()), int(batch_index.max())
        if blo < 0:
            raise ValueError(f"batch_index must be >= 0, got min {blo}")
        limit = 1 << (63 - 3 * depth)
        if bhi >= limit:
            raise ValueError(f"batch_index must be < 2**(63 - 3*depth) = {limit} for "
                             f"depth={depth} so the key fits in int64, got max {bhi}")
    return coords, batch_index, order_code


def _interleave(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, depth: int) -> torch.Tensor:
    """Bit ``i`` of x, y, z to bits ``3i + 2``, ``3i + 1``, ``3i`` of the result."""
    code = torch.zeros_like(x)
    for i in range(depth):
        code |= ((x >> i) & 1) << (3 * i + 2)
        code |= ((y >> i) & 1) << (3 * i + 1)
        code |= ((z >> i) & 1) << (3 * i)
    return code


def _hilbert_transpose(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, depth: int
                       ) -> list[torch.Tensor]:
    """Skilling's AxesToTranspose for n = 3, vectorised over points (int64 tensors)."""
    X = [x.clone(), y.clone(), z.clone()]
    n = 3
    M = 1 << (depth - 1)
    # Inverse undo. X[0] is updated sequentially over i (i = 0 first).
    Q = M
    while Q > 1:
        P = Q - 1
        for i in range(n):
            bit = (X[i] & Q) != 0
            if i == 0:
                # exchange of X[0] with itself is a no-op
                X[0] = torch.where(bit, X[0] ^ P, X[0])
            else:
                t = (X[0] ^ X[i]) & P
                t = torch.where(bit, torch.zeros_like(t), t)
                X[0] = torch.where(bit, X[0] ^ P, X[0] ^ t)
                X[i] = X[i] ^ t
        Q >>= 1
    # Gray encode.
    for i in range(1, n):
        X[i] = X[i] ^ X[i - 1]
    t = torch.zeros_like(X[0])
    Q = M
    while Q > 1:
        t = torch.where((X[n - 1] & Q) != 0, t ^ (Q - 1), t)
        Q >>= 1
    return [Xi ^ t for Xi in X]


def serialize_reference(coords: torch.Tensor, batch_index: torch.Tensor, order: str = "z",
                        depth: int = 16) -> torch.Tensor:
    """Serialization keys ``(batch_index << 3*depth) | code`` of voxelised points.

    Args:
        coords: ``(N, 3)`` integer voxel coordinates ``x, y, z`` in ``[0, 2**depth)``.
        batch_index: ``(N,)`` integer sample index of each point, ``>= 0`` and
            ``< 2**(63 - 3*depth)``.
        order: one of :data:`SERIALIZATION_ORDERS` (see the module docstring).
        depth: bits per coordinate, ``1 <= depth <= 16``.

    Returns:
        ``(N,)`` int64 keys on the input's device.
    """
    coords, batch_index, order_code = validate_serialize_args(coords, batch_index, order, depth)
    if coords.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=coords.device)
    name = SERIALIZATION_ORDERS[order_code]
    if name.endswith("-trans"):
        y, x, z = coords.unbind(1)
    else:
        x, y, z = coords.unbind(1)
    if name.startswith("hilbert"):
        x, y, z = _hilbert_transpose(x, y, z, depth)
    code = _interleave(x, y, z, depth)
    return (batch_index << (3 * depth)) | code
