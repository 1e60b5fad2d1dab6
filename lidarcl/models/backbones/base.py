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


def check_point_columns(points: torch.Tensor, in_channels: int) -> None:
    """A clear error when ``points`` has fewer columns than the backbone reads."""
    if points.shape[1] < in_channels:
        raise ValueError(f"points have {points.shape[1]} columns but the backbone reads "
                         f"{in_channels}")


_BIASED_SUBM = None


def biased_subm_conv3d(in_channels: int, out_channels: int, kernel_size, **kwargs):
    """spconv ``SubMConv3d`` with a bias that also runs in eval mode on the CPU.

    In eval mode spconv fuses the bias into its GEMM, which its CPU path refuses ("bias and
    act don't support cpu"); in training it adds the bias after the GEMM. This subclass adds
    it after the GEMM on the CPU in eval mode too (the same sum), and is spconv's own module
    everywhere else; parameters keep spconv's names (``weight``, ``bias``)."""
    global _BIASED_SUBM
    if _BIASED_SUBM is None:
        from spconv.pytorch import SubMConv3d

        class BiasedSubMConv3d(SubMConv3d):
            def forward(self, input, add_input=None):
                if self.training or self.bias is None or not input.features.is_cpu:
                    return super().forward(input, add_input)
                out = self._conv_forward(False, input, self.weight, None, add_input,
                                         name=self.name,
                                         sparse_unique_name=self._sparse_unique_name,
                                         act_type=self.act_type, act_alpha=self.act_alpha,
                                         act_beta=self.act_beta)
                return out.replace_feature(out.features + self.bias)

        _BIASED_SUBM = BiasedSubMConv3d
    return _BIASED_SUBM(in_channels, out_channels, kernel_size, bias=True, **kwargs)


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
