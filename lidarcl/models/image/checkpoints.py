"""Image encoder weights from local files, in the layouts users already hold (nothing is
downloaded):

``torchvision``  ``torchvision.models.resnet*`` state dicts (``resnet50-0676ba61.pth``...):
                 ``conv1.weight``, ``layer1.0.conv1.weight``, ..., ``fc.*``; ``fc`` is dropped.
``moco_v2``      MoCo v2 training checkpoints (SLidR's teacher, ``moco_v2_800ep_pretrain.pth.tar``):
                 ``{"state_dict": {"module.encoder_q.<torchvision name>": ...}, ...}``; the
                 query encoder is kept, its MLP head (``module.encoder_q.fc.*``), the key
                 encoder, the queue and the optimiser state are dropped.
``dinov2``       ``dinov2_vit{s,b,l}14_pretrain.pth``: a plain state dict in the layout of
                 :class:`~lidarcl.models.image.vit.VisionTransformer` (timm's
                 ``vit_*_patch14_dinov2`` files are the same without ``mask_token``).
``lidarcl``      what ``tools/pretrain_image.py`` writes: ``{"state_dict": encoder weights,
                 "meta": {"encoder": <config>, "weights_sha256": ...}}``.

Every layout is loaded strictly: a file that is not one, or whose tensors do not fit, raises
:class:`~lidarcl.errors.DataError` naming the file, the missing keys and the unexpected keys
(and shape mismatches), so a wrong or partial file is never half-loaded.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from lidarcl.engine.checkpoint import weights_digest
from lidarcl.errors import DataError, DataFileNotFound

__all__ = ["IMAGE_LAYOUTS", "load_image_encoder", "encoder_state_from_file"]

IMAGE_LAYOUTS = ("torchvision", "moco_v2", "dinov2", "lidarcl")
_MOCO_PREFIX = "module.encoder_q."
_OPTIONAL = ("num_batches_tracked",)  # BatchNorm counters: absent from some old files
_OPTIONAL_KEYS = {"mask_token"}  # DINOv2's iBOT token: not in timm's files, never used
_LIST_LIMIT = 8


def _read(path) -> object:
    if not os.path.isfile(path):
        raise DataFileNotFound(path, "image encoder checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch's zip and unpickling errors vary by corruption
        raise DataError(path, f"cannot read an image encoder checkpoint "
                              f"({type(exc).__name__}: {str(exc)[:200]})") from exc


def _tensor_dict(path, state, where: str) -> dict[str, torch.Tensor]:
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise DataError(path, f"{where} is not a dict of named tensors")
    return state


def encoder_state_from_file(path, layout: str) -> tuple[dict[str, torch.Tensor], dict]:
    """``(state dict in the encoder's own names, meta)`` read from ``path`` in ``layout``."""
    if layout not in IMAGE_LAYOUTS:
        raise ValueError(f"unknown image checkpoint layout {layout!r}; one of {IMAGE_LAYOUTS}")
    data = _read(path)
    meta: dict = {}
    if layout == "moco_v2":
        state = _tensor_dict(path, data.get("state_dict") if isinstance(data, dict) else None,
                             "its 'state_dict' (MoCo v2 layout)")
        query = {k[len(_MOCO_PREFIX):]: v for k, v in state.items()
                 if k.startswith(_MOCO_PREFIX)}
        if not query:
            raise DataError(path, f"no '{_MOCO_PREFIX}*' keys: not a MoCo v2 checkpoint "
                                  f"(first keys: {sorted(state)[:3]})")
        state = {k: v for k, v in query.items() if not k.startswith("fc.")}
    elif layout == "lidarcl":
        if not isinstance(data, dict) or "state_dict" not in data:
            raise DataError(path, "no 'state_dict': not written by tools/pretrain_image.py")
        state = _tensor_dict(path, data["state_dict"], "its 'state_dict'")
        meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
        expected = meta.get("weights_sha256")
        if expected is not None and expected != weights_digest(state):
            raise DataError(path, "the weights do not match their weights_sha256: the file "
                                  "is corrupt")
    else:  # torchvision and dinov2 files are plain state dicts
        state = _tensor_dict(path, data, "the file (a plain state dict expected)")
        if layout == "torchvision":
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    return state, meta


def _names(keys) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_LIST_LIMIT])
    return shown + (f" ... ({len(keys)} in all)" if len(keys) > _LIST_LIMIT else "")


def load_image_encoder(encoder: nn.Module, path, layout: str) -> dict:
    """Load ``path`` (``layout``, see the module doc) into ``encoder`` strictly; returns the
    file's meta. Raises :class:`DataError` naming missing / unexpected keys and shapes."""
    state, meta = encoder_state_from_file(path, layout)
    own = encoder.state_dict()
    missing = [k for k in own if k not in state and not k.endswith(_OPTIONAL)
               and k not in _OPTIONAL_KEYS]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
             for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys: {_names(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_names(unexpected)}")
        if wrong:
            parts.append(f"shapes (file vs model): {'; '.join(wrong[:_LIST_LIMIT])}")
        raise DataError(path, f"does not fit the {type(encoder).__name__} as a '{layout}' "
                              f"checkpoint: " + "; ".join(parts))
    encoder.load_state_dict({**own, **state}, strict=True)
    return meta
