"""Access to the compiled kernels of ``lidarcl._C``, with a one-time warning per op when
they are absent and the pure-PyTorch reference runs instead."""
from __future__ import annotations

import functools
import warnings


@functools.lru_cache(maxsize=None)
def compiled():
    """The ``lidarcl._C`` module, or ``None`` when the extension was not built."""
    try:
        from lidarcl import _C
    except ImportError:
        return None
    return _C


@functools.lru_cache(maxsize=None)
def warn_reference_fallback(op: str) -> None:
    warnings.warn(f"lidarcl.ops.{op}: compiled kernels (lidarcl._C) not available, using the "
                  "pure-PyTorch reference (slower); reinstall with "
                  "`pip install --no-build-isolation -e .` to build them", RuntimeWarning,
                  stacklevel=3)
