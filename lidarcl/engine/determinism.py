"""Repeatable runs: the deterministic mode and the trace that finds where two runs part.

Deterministic mode (``randomness=dict(seed=..., deterministic=True)`` in a config, or
``--deterministic`` on the tools): mmengine's ``set_random_seed`` then turns on
``torch.use_deterministic_algorithms(True)`` (an op without a deterministic implementation
raises instead of running) and cuDNN's deterministic algorithms. ``docs/reproducibility.md``
lists each source of variation found and what removes it.

``DeterminismTraceHook`` (``custom_hooks=[dict(type="DeterminismTraceHook")]``, or
``--trace`` on ``tools/pretrain.py``) writes ``<work_dir>/trace.jsonl``: per training
iteration, a SHA-1 of every tensor of the data batch, of every gradient just before the
optimiser step, of every parameter and buffer after it, and the loss values.
:func:`first_divergence` (``tools/compare_runs.py``) reads two traces and names the first
iteration and tensors that differ, which is how the sources in the docs were found.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from lidarcl.registry import HOOKS

__all__ = ["DeterminismTraceHook", "tensor_digest", "read_trace", "first_divergence",
           "run_environment"]


def run_environment() -> dict:
    """What a bit-for-bit repeat also needs to share: the versions of the libraries that
    compute (torch, spconv, numpy, open3d), the CPU (model and the instruction set torch
    dispatches to) and torch's thread count. The same seeded command on another CPU or
    with other versions may differ in the last bits, and 80 iterations of training carry
    such differences into the probe's second decimal (docs/reproducibility.md)."""
    import platform

    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "numpy": np.__version__}
    for name in ("spconv", "open3d"):
        try:
            versions[name] = __import__(name).__version__
        except (ImportError, AttributeError):
            versions[name] = None
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)()
    return {**versions, "cpu": cpu, "cpu_capability": capability,
            "threads": torch.get_num_threads()}


def tensor_digest(value) -> str | None:
    """SHA-1 (12 hex digits) of a tensor's or array's dtype, shape and bytes; None for
    anything else."""
    if torch.is_tensor(value):
        array = value.detach().cpu().contiguous()
        if array.dtype == torch.bfloat16:
            array = array.view(torch.int16)
        array = array.numpy()
    elif isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
    else:
        return None
    digest = hashlib.sha1(f"{array.dtype}{array.shape}".encode())
    # an object array's bytes are pointers: digest its values instead (e.g. box names)
    digest.update(repr(array.tolist()).encode() if array.dtype.kind == "O"
                  else array.tobytes())
    return digest.hexdigest()[:12]


def _flat_digests(value, prefix: str, out: dict) -> dict:
    """Digests of every tensor / array inside nested dicts, lists and tuples."""
    if isinstance(value, dict):
        for key, item in value.items():
            _flat_digests(item, f"{prefix}{key}.", out)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _flat_digests(item, f"{prefix}{index}.", out)
    else:
        digest = tensor_digest(value)
        if digest is not None:
            out[prefix.rstrip(".")] = digest
    return out


@HOOKS.register_module()
class DeterminismTraceHook(Hook):
    """Write ``<work_dir>/trace.jsonl``, one line per training iteration (module doc).

    ``parameters``: also digest every parameter and buffer after the step (the largest
    part of the cost: one pass over the model's bytes per iteration)."""

    priority = "LOWEST"

    def __init__(self, filename: str = "trace.jsonl", parameters: bool = True):
        self.filename = filename
        self.parameters = parameters
        self._record: dict = {}
        self._handle = None

    def _model(self, runner):
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def before_train(self, runner) -> None:
        from mmengine.dist import get_rank

        name = self.filename if get_rank() == 0 else f"rank{get_rank()}_{self.filename}"
        self._handle = open(os.path.join(runner.work_dir, name), "a")
        model = self._model(runner)
        names = {id(p): n for n, p in model.named_parameters()}

        def record_grads(optimizer, args, kwargs):
            grads = {}
            for group in optimizer.param_groups:
                for param in group["params"]:
                    if param.grad is not None:
                        grads[names.get(id(param), str(id(param)))] = tensor_digest(param.grad)
            self._record["grads"] = dict(sorted(grads.items()))

        self._step_hook = runner.optim_wrapper.optimizer.register_step_pre_hook(record_grads)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._record = {"iter": runner.iter, "batch": _flat_digests(data_batch, "", {})}

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        record = self._record
        record["outputs"] = {k: float(v.detach()) if torch.is_tensor(v) and v.numel() == 1
                             else tensor_digest(v) for k, v in (outputs or {}).items()}
        if self.parameters:
            record["state"] = {k: tensor_digest(v)
                               for k, v in self._model(runner).state_dict().items()}
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()

    def after_train(self, runner) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if getattr(self, "_step_hook", None) is not None:
            self._step_hook.remove()


def read_trace(path: str) -> list[dict]:
    """The records of a ``trace.jsonl`` (a resumed run appends; the last record of each
    iteration wins)."""
    records = {}
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {number} is not JSON ({exc.msg})") from exc
            records[record["iter"]] = record
    return [records[i] for i in sorted(records)]


def first_divergence(first: list[dict], second: list[dict]) -> dict | None:
    """The first iteration where two traces differ, in the order data batch -> gradients ->
    loss values -> parameters and buffers after the step, with the names that differ
    (``{"iter", "part", "names", "count", "of"}``); None when every common iteration
    agrees."""
    by_iter = {r["iter"]: r for r in second}
    for record in first:
        other = by_iter.get(record["iter"])
        if other is None:
            continue
        for part in ("batch", "grads", "outputs", "state"):
            a, b = record.get(part) or {}, other.get(part) or {}
            names = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            if names:
                return {"iter": record["iter"], "part": part, "names": names,
                        "count": len(names), "of": len(set(a) | set(b))}
    return None
