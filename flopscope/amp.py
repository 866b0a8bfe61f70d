"""``--amp``: what CUDA's fp16 autocast saves for backward, emulated on the meta device.

``torch.autocast`` does not apply to meta tensors, so :func:`flopscope.train.train_profile` runs the forward of
a half-precision copy of the meta model under :class:`AutocastEmulation`, a ``TorchFunctionMode`` that does
what autocast's op lists do for the ops YOLO models use:

* products (conv, linear, matmul, bmm, baddbmm, addmm, einsum, scaled-dot-product attention) take fp16
  inputs;
* softmax, log-softmax, LayerNorm and GroupNorm run in fp32 (autocast's fp32 list), so what they save is fp32;
* everything else runs in the dtype it gets (BatchNorm: fp16 in, fp16 out, as cuDNN runs it).

Autocast also saves the fp16 copy of every weight a product uses (its cast cache); ``train_profile`` adds
2 bytes per element of each such weight (a saved parameter of two or more dimensions), once.  Inside
composite functions that are not on these lists (``nn.MultiheadAttention``'s functional core) everything
runs in fp16, softmax included (autocast would keep that softmax in fp32): the note on the report says so.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

FP16 = {F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d, F.linear,
        torch.matmul, torch.mm, torch.bmm, torch.baddbmm, torch.addmm, torch.einsum, torch.Tensor.matmul,
        torch.Tensor.__matmul__, torch.Tensor.__rmatmul__, torch.Tensor.mm, torch.Tensor.bmm, F.prelu,
        F.scaled_dot_product_attention}
FP32 = {F.softmax, torch.softmax, torch.Tensor.softmax, F.log_softmax, torch.log_softmax, torch.Tensor.log_softmax,
        F.layer_norm, F.group_norm}


def _cast(v, dtype):
    if isinstance(v, torch.Tensor) and v.is_floating_point() and v.dtype != dtype:
        return v.to(dtype)
    if isinstance(v, (list, tuple)):
        return type(v)(_cast(x, dtype) for x in v)
    return v


class AutocastEmulation(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        dtype = torch.float16 if func in FP16 else torch.float32 if func in FP32 else None
        if dtype is not None:
            args, kwargs = _cast(args, dtype), {k: _cast(v, dtype) for k, v in kwargs.items()}
            if func in FP32:
                kwargs.pop("dtype", None)
        return func(*args, **kwargs)
