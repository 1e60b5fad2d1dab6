"""What every backbone returns, and spconv's algorithm chosen by the input's device."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lidarcl.ops.voxelize import VoxelizedBatch


@dataclass
class BackboneOutput:
    """Per-point features of a batch (``N`` input points) and the voxels they came from."""

    point_features: torch.Tensor  # (N, C); zeros for points outside the voxel grid
    voxel_features: torch.Tensor  # (V, C) at the input voxels
    voxels: VoxelizedBatch        # coords, point_to_voxel, spatial shape of the input grid
    bev: torch.Tensor | None = None  # (B, C*D, H, W) dense BEV map (BEV encoders only)
    multi_scale: dict | None = None  # name -> spconv SparseConvTensor (BEV encoders only)


def set_conv_algorithm(module: torch.nn.Module, device: torch.device) -> None:
    """Every spconv convolution of ``module`` uses ``ConvAlgo.Native`` on the CPU (spconv's
    implicit-GEMM algorithms exist on CUDA only: "implicit gemm only support cuda") and
    ``MaskImplicitGemm``, spconv's default, on a GPU; so one model runs on both."""
    from spconv.core import ConvAlgo
    from spconv.pytorch.conv import SparseConvolution

    algo = ConvAlgo.Native if device.type == "cpu" else ConvAlgo.MaskImplicitGemm
    for m in module.modules():
        if isinstance(m, SparseConvolution):
            m.algo = algo
