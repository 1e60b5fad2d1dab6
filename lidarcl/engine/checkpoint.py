"""Checkpoints that are never half-written, and backbone-only export / import.

mmengine writes a checkpoint by ``torch.save`` into memory, then ``put`` on the file backend
of the path; its local backend opens the final path and writes into it, so a run killed
mid-write leaves a truncated ``iter_N.pth`` (and ``last_checkpoint`` pointing at it), and
``--resume`` then fails. :class:`AtomicLocalBackend` writes to a temporary file in the same
folder, flushes and fsyncs it, then ``os.replace``-s it over the final name: a reader sees the
old file or the new one, never a part. :func:`install_atomic_checkpoints` registers it as
mmengine's backend for local paths.
"""
from __future__ import annotations

import os
import tempfile

import torch
from mmengine.fileio.backends import LocalBackend

__all__ = ["AtomicLocalBackend", "install_atomic_checkpoints", "export_backbone",
           "load_backbone", "atomic_torch_save"]


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend with atomic ``put`` / ``put_text``."""

    def put(self, obj: bytes, filepath) -> None:
        folder = os.path.dirname(os.path.abspath(filepath))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(obj)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, filepath)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def put_text(self, obj: str, filepath, encoding: str = "utf-8") -> None:
        self.put(obj.encode(encoding), filepath)


def install_atomic_checkpoints() -> None:
    """Make mmengine write local files (checkpoints, ``last_checkpoint``) atomically."""
    from mmengine.fileio import io as file_io
    from mmengine.fileio import register_backend

    register_backend("local", AtomicLocalBackend, force=True)
    # drop cached instances of the plain backend so the next lookup builds ours
    for key, instance in list(file_io.backend_instances.items()):
        if type(instance) is LocalBackend:
            file_io.backend_instances.pop(key)


def atomic_torch_save(obj, path) -> None:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    AtomicLocalBackend().put(buffer.getvalue(), path)


def export_backbone(model: torch.nn.Module, path, meta: dict | None = None) -> str:
    """Write ``{"state_dict": backbone weights, "meta": {...}}`` atomically; loadable with
    ``torch.load(path, weights_only=True)`` and :func:`load_backbone`."""
    model = getattr(model, "module", model)  # DDP / mmengine wrappers
    backbone = model.backbone
    state = {k: v.detach().cpu() for k, v in backbone.state_dict().items()}
    atomic_torch_save({"state_dict": state, "meta": dict(meta or {})}, path)
    return str(path)


def load_backbone(backbone: torch.nn.Module, path, strict: bool = True) -> dict:
    """Load a backbone exported by :func:`export_backbone`, or the ``backbone.*`` weights of
    a full mmengine checkpoint; returns the meta dict. Errors name the file."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read a checkpoint ({exc})") from exc
    state = data.get("state_dict", data) if isinstance(data, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: no state_dict in the checkpoint")
    if any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    try:
        backbone.load_state_dict(state, strict=strict)
    except RuntimeError as exc:
        raise ValueError(f"{path}: the weights do not fit the backbone: {exc}") from exc
    return data.get("meta", {}) if isinstance(data, dict) else {}
