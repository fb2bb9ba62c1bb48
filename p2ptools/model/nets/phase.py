"""Transposed convolutions in the phase form: a ``ConvTranspose2d(k=4, s=2, p=1)`` as one 2×2 convolution.

A 4×4 stride-2 transposed convolution writes each output pixel from 2×2 of its 16 taps: output row
``2m + r`` reads input rows ``m`` and ``m − 1`` (taps 1 and 3) for ``r = 0`` and rows ``m + 1`` and
``m`` (taps 0 and 2) for ``r = 1``, and the same for columns. So the four output phases ``(r_h, r_w)``
are four 2×2 convolutions of the input. Over the input padded by 1 they are one 2×2 convolution with
``4·C_out`` outputs, ``(H + 1) × (W + 1)``; ordering the phases ``s = 1 − r`` puts phase ``s`` of
convolution pixel ``t`` at output row ``2t − 1 + s``, so depth-to-space (``pixel_shuffle``, ONNX
``DepthToSpace`` CRD) followed by a crop of one pixel on every side gives the transposed convolution:

    y = pixel_shuffle(conv2x2(pad1(x)), 2)[..., 1:-1, 1:-1]
    W2[4·co + 2·s_h + s_w, ci, a, b] = W[ci, co, 2 − 2a + s_h, 2 − 2b + s_w],  b2[4·co + …] = b[co]

The same multiply-adds as the transposed convolution within ``(1 + 1/H)·(1 + 1/W)`` (the one extra
row and column of the padded convolution), exact up to float rounding. Runtimes run a plain
convolution through their best kernels (im2col GEMM, oneDNN, int8 QLinearConv), a transposed one
often through a slower path. Checkpoints keep the standard layout: :func:`to_phase_form` converts a
network in place at inference or export time, never for training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: ``_TAPS[s][a]``: the transposed kernel's tap that phase ``s`` reads at 2×2 tap ``a``
_TAPS = ((2, 0), (3, 1))
#: the 4×4 kernel's flat taps in ``(s_h, s_w, a, b)`` order: the 2×2 convolution's weights per phase
_PHASE_TAPS = torch.tensor([4 * _TAPS[sh][a] + _TAPS[sw][b] for sh in (0, 1) for sw in (0, 1) for a in (0, 1)
                            for b in (0, 1)])


def is_phase_convertible(m: nn.Module) -> bool:
    """Whether ``m`` is a ``ConvTranspose2d(k=4, s=2, p=1)`` without output padding, dilation or groups."""
    return (isinstance(m, nn.ConvTranspose2d) and tuple(m.kernel_size) == (4, 4) and tuple(m.stride) == (2, 2)
            and tuple(m.padding) == (1, 1) and tuple(m.output_padding) == (0, 0) and tuple(m.dilation) == (1, 1)
            and m.groups == 1 and m.padding_mode == "zeros")


class PhaseConvTranspose2d(nn.Module):
    """A ``ConvTranspose2d(k=4, s=2, p=1)`` as a 2×2 convolution (padding 1, ``4·C_out`` outputs),
    depth-to-space and a one-pixel crop: the same output up to float rounding.

    Args:
        conv: the transposed convolution (see :func:`is_phase_convertible`); its weights are copied.
    """

    def __init__(self, conv: nn.ConvTranspose2d) -> None:
        super().__init__()
        c_in, c_out = conv.in_channels, conv.out_channels
        self.out_channels = c_out
        # built on the meta device (no random initialisation to overwrite), then given its weights
        self.conv = nn.Conv2d(c_in, 4 * c_out, 2, padding=1, bias=conv.bias is not None, device="meta")
        with torch.no_grad():
            # taps gathered along the contiguous last axis in (s_h, s_w, a, b) order, then one copy puts
            # the phases beside C_out: 3× faster than gathering on strided axes (start-up of predict)
            w = conv.weight.detach().contiguous().reshape(c_in, c_out, 16)[:, :, _PHASE_TAPS.to(conv.weight.device)]
            w = w.reshape(c_in, c_out, 4, 4).permute(1, 2, 0, 3).reshape(4 * c_out, c_in, 2, 2).contiguous()
            self.conv.weight = nn.Parameter(w, requires_grad=conv.weight.requires_grad)
            if conv.bias is not None:
                self.conv.bias = nn.Parameter(conv.bias.detach().repeat_interleave(4),
                                              requires_grad=conv.bias.requires_grad)
        self.train(conv.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.pixel_shuffle(self.conv(x), 2)  # (B, C_out, 2H + 2, 2W + 2)
        return y[:, :, 1:-1, 1:-1]  # (B, C_out, 2H, 2W)


def to_phase_form(net: nn.Module) -> int:
    """Replace every convertible ``ConvTranspose2d`` of ``net`` (in place) by its
    :class:`PhaseConvTranspose2d`; returns how many. For inference and export only: the state dict
    changes layout, so a converted network is never saved as a checkpoint nor trained."""
    count = 0
    for name, child in list(net.named_children()):
        if is_phase_convertible(child):
            setattr(net, name, PhaseConvTranspose2d(child))  # type: ignore[arg-type]
            count += 1
        else:
            count += to_phase_form(child)
    return count
