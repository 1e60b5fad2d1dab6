"""Checkpoints that are never half-written, resuming from the work dir's newest checkpoint
that loads, and backbone-only export / import.

mmengine writes a checkpoint by ``torch.save`` into memory, then ``put`` on the file backend
it picks by the path's prefix (``prefix_to_backends``; ``''`` for a plain local path). Its
local backend opens the final path and writes into it, so a run killed mid-write leaves a
truncated ``iter_N.pth``, and ``--resume`` then dies in torch's zip reader.
:class:`AtomicLocalBackend` writes through :func:`lidarcl.utils.fileio.atomic_write` (a
temporary file in the same folder, fsynced, given the umask's mode, then ``os.replace``-d
over the final name): a reader sees the old file or the new one, never a part.
:func:`install_atomic_checkpoints` makes it the backend of plain local paths.
``last_checkpoint`` is written by :class:`lidarcl.engine.hooks.AtomicCheckpointHook`.

:func:`find_resume_checkpoint` chooses what ``--resume`` loads. ``last_checkpoint`` is read
as a file name inside the work dir (mmengine writes an absolute path, so a copied work dir
would resume from the original's checkpoint, or from whatever now lies at that path); a
candidate that does not load (truncated, corrupt, missing) is skipped with a warning naming
it, in favour of the next newest ``iter_N.pth`` / ``epoch_N.pth``.
"""
from __future__ import annotations

import os
import re

import torch
from mmengine.fileio.backends import LocalBackend

from lidarcl.errors import DataError
from lidarcl.utils.fileio import atomic_write_bytes

__all__ = ["AtomicLocalBackend", "install_atomic_checkpoints", "export_backbone",
           "load_backbone", "atomic_torch_save", "find_resume_checkpoint",
           "checkpoint_problem", "weights_digest", "backbone_key_report", "report_text",
           "read_state_dict"]

_NUMBERED = re.compile(r"(?:iter|epoch)_(\d+)\.pth")


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend with atomic ``put`` / ``put_text``."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write_bytes(filepath, obj)

    def put_text(self, obj: str, filepath, encoding: str = "utf-8") -> None:
        self.put(obj.encode(encoding), filepath)


def install_atomic_checkpoints() -> None:
    """Make mmengine write local files (checkpoints, ``put`` / ``dump``) atomically.

    ``get_file_backend`` looks a path up by its prefix, so registering under the name
    ``local`` alone is not enough: the class must also replace the ``''`` prefix (plain
    paths). Cached instances of the plain backend are dropped so no caller keeps one.
    """
    from mmengine.fileio import io as file_io
    from mmengine.fileio import register_backend

    register_backend("local", AtomicLocalBackend, force=True, prefixes="")
    for key, instance in list(file_io.backend_instances.items()):
        if type(instance) is LocalBackend:
            file_io.backend_instances.pop(key)


def checkpoint_problem(path) -> str | None:
    """Why mmengine could not resume from ``path`` (one line), or None when it loads.

    Loads it the way the Runner will (``weights_only=True``), so a truncated zip, a corrupt
    pickle or a foreign file is caught before the Runner has changed any state.
    """
    if not os.path.isfile(path):
        return "not found"
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (any failure means: do not resume from it)
        first = (str(exc).splitlines() or [""])[0]
        return f"does not load ({type(exc).__name__}: {first})"
    if not isinstance(data, dict) or not isinstance(data.get("state_dict"), dict):
        return "is not an mmengine checkpoint (no state_dict)"
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    expected = meta.get("state_dict_sha256")
    if expected is not None:
        try:
            actual = weights_digest(data["state_dict"])
        except (AttributeError, TypeError, RuntimeError) as exc:
            return f"holds a malformed state_dict ({exc})"
        if actual != expected:
            return "fails its state_dict_sha256 (corrupt weights)"
    return None


def find_resume_checkpoint(work_dir, checkpoint_dir=None) -> tuple[str | None, list[str]]:
    """The checkpoint to resume from, and a warning per candidate skipped.

    ``checkpoint_dir`` is where the checkpoints are (default ``work_dir``; the checkpoint
    hook's ``out_dir/<work dir name>`` when it has an ``out_dir``). Candidates, in order:
    the file named by ``<work_dir>/last_checkpoint`` (its base name, looked up in
    ``checkpoint_dir``: an entry pointing elsewhere is never followed), then ``iter_N.pth`` /
    ``epoch_N.pth`` newest first. The first that loads wins. With no candidate at all it
    returns ``(None, [])`` (train from scratch, as mmengine does); when there are
    candidates but none loads it raises :class:`~lidarcl.errors.DataError` listing them,
    rather than silently starting over (and then overwriting them).
    """
    work_dir = os.fspath(work_dir)
    folder = os.fspath(checkpoint_dir) if checkpoint_dir is not None else work_dir
    names = sorted((n for n in (os.listdir(folder) if os.path.isdir(folder) else ())
                    if _NUMBERED.fullmatch(n)),
                   key=lambda n: int(_NUMBERED.fullmatch(n).group(1)), reverse=True)
    last_file = os.path.join(work_dir, "last_checkpoint")
    if os.path.isfile(last_file):
        with open(last_file, encoding="utf-8", errors="replace") as handle:
            entry = os.path.basename(handle.read().strip())
        if entry:
            names = [entry] + [n for n in names if n != entry]
    skipped = []
    for name in names:
        path = os.path.join(folder, name)
        problem = checkpoint_problem(path)
        if problem is None:
            return path, [f"{p}; resuming from {path} instead" for p in skipped]
        skipped.append(f"{path}: {problem}")
    if skipped:
        raise DataError(folder, "cannot resume, no checkpoint loads: " + "; ".join(skipped)
                        + " (delete them, or run without --resume, to start from scratch)")
    return None, []


def atomic_torch_save(obj, path) -> None:
    """``torch.save`` that never leaves a partial file (and gets the umask's mode)."""
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def weights_digest(state: dict) -> str:
    """SHA-256 over a state dict's names, dtypes, shapes and bytes (sorted by name)."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def export_backbone(model: torch.nn.Module, path, meta: dict | None = None) -> str:
    """Write ``{"state_dict": backbone weights, "meta": {...}}`` atomically; loadable with
    ``torch.load(path, weights_only=True)`` and :func:`load_backbone`. ``meta`` gets
    ``weights_sha256`` (:func:`weights_digest`), so a flipped bit in the weights, which
    torch's reader does not notice, is caught when the file is loaded."""
    model = getattr(model, "module", model)  # DDP / mmengine wrappers
    backbone = model.backbone
    state = {k: v.detach().cpu() for k, v in backbone.state_dict().items()}
    meta = {**dict(meta or {}), "weights_sha256": weights_digest(state)}
    atomic_torch_save({"state_dict": state, "meta": meta}, path)
    return str(path)


def backbone_key_report(backbone: torch.nn.Module, state: dict) -> dict:
    """How a state dict fits a backbone: ``{"missing": [...], "unexpected": [...],
    "shape_mismatch": [(key, checkpoint shape, model shape), ...]}`` (empty lists when it
    fits exactly)."""
    own = backbone.state_dict()
    return {"missing": sorted(set(own) - set(state)),
            "unexpected": sorted(set(state) - set(own)),
            "shape_mismatch": [(k, tuple(state[k].shape), tuple(own[k].shape))
                               for k in sorted(set(own) & set(state))
                               if tuple(state[k].shape) != tuple(own[k].shape)]}


def report_text(report: dict, limit: int = 20) -> str:
    """The key report as lines: every missing and unexpected key and shape mismatch (up to
    ``limit`` of each, then a count)."""
    lines = []
    for name, items in (("missing keys (in the model, not the checkpoint)", report["missing"]),
                        ("unexpected keys (in the checkpoint, not the model)",
                         report["unexpected"]),
                        ("shape mismatches (checkpoint vs model)", [
                            f"{k}: {tuple(a)} vs {tuple(b)}"
                            for k, a, b in report["shape_mismatch"]])):
        if items:
            shown = list(items)[:limit]
            more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
            lines.append(f"  {len(items)} {name}:\n    " + "\n    ".join(shown) + more)
    return "\n".join(lines)


def read_state_dict(path) -> tuple[dict, dict]:
    """``(state_dict, meta)`` of a checkpoint read with ``weights_only=True`` (a bare state
    dict, or mmengine's / :func:`export_backbone`'s ``{"state_dict", "meta"}``); DataError
    naming the file when it cannot be read or holds no named tensors."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch's zip and unpickling errors vary by corruption
        raise DataError(path, f"cannot read a checkpoint ({type(exc).__name__}: "
                              f"{str(exc)[:200]})") from exc
    state = data.get("state_dict", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise DataError(path, "no state_dict of named tensors in the checkpoint")
    meta = data.get("meta", {}) if isinstance(data, dict) else {}
    return state, meta if isinstance(meta, dict) else {}


def load_backbone(backbone: torch.nn.Module, path, strict: bool = True,
                  allow_partial: bool = False) -> dict:
    """Load a backbone exported by :func:`export_backbone`, or the ``backbone.*`` weights of
    a full mmengine checkpoint; returns the meta dict, with ``meta["key_report"]``
    (:func:`backbone_key_report`). Raises :class:`DataError` naming the file when it cannot
    be read, holds no state dict or fails its ``weights_sha256``, and, with ``strict``,
    when it does not fit the backbone exactly: the message lists every missing and
    unexpected key and shape mismatch. ``allow_partial`` loads the tensors that fit and
    leaves the others as they are."""
    state, meta = read_state_dict(path)
    expected = meta.get("weights_sha256")
    if expected is not None and expected != weights_digest(state):
        raise DataError(path, "the weights do not match their weights_sha256: the file is "
                              "corrupt; export the backbone again")
    if any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    report = backbone_key_report(backbone, state)
    fits = not (report["missing"] or report["unexpected"] or report["shape_mismatch"])
    if not fits and strict and not allow_partial:
        raise DataError(path, f"the weights do not fit the {type(backbone).__name__} "
                              f"backbone:\n{report_text(report)}\n(a checkpoint of another "
                              "backbone or width? --allow-partial loads what fits)")
    if not fits:
        mismatched = {k for k, _, _ in report["shape_mismatch"]}
        state = {k: v for k, v in state.items() if k not in mismatched}
    backbone.load_state_dict(state, strict=False)
    return {**meta, "key_report": report}


def load_pretrained_backbone(model: torch.nn.Module) -> None:
    """Load ``model.backbone_checkpoint`` (when set) into ``model.backbone`` with
    :func:`load_backbone` (``model.allow_partial`` decides whether a partial fit is allowed)
    and log where it came from and, for a partial load, the key report. The downstream
    models (Segmentor, CenterPoint, BEVMapSegmentor) call it from ``init_weights``, which
    the Runner runs when training starts (before ``--resume`` restores a checkpoint)."""
    path = getattr(model, "backbone_checkpoint", None)
    if not path:
        return
    from mmengine.logging import MMLogger

    meta = load_backbone(model.backbone, path, allow_partial=getattr(model, "allow_partial",
                                                                     False))
    report = report_text(meta["key_report"])
    MMLogger.get_current_instance().info(
        f"backbone loaded from {path}"
        + (f" (partially, --allow-partial):\n{report}" if report else ""))
