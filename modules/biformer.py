"""Bi-Level Routing Attention (BiFormer: Zhu et al., CVPR 2023, arXiv 2303.08810), the legacy layout
(rayleizhu/BiFormer ``ops/bra_legacy.py``) as YOLO code uses it: NCHW in and out, ``auto_pad=True``.

The map is zero-padded to multiples of ``n_win`` and cut into ``n_win x n_win`` regions.  One Linear gives q, k, v
per pixel; region-mean q and k give a region affinity matrix, from which every region keeps its ``topk`` regions;
each region's queries attend to the (optionally pooled) keys/values of those regions.  A depthwise conv on v (LePE)
is added, then the output Linear.  With the default ``kv_downsample_mode='identity'`` each query sees
``topk * Np / n_win^2`` keys, so the attention grows with the square of the (padded) map area.
"""
from __future__ import annotations

from math import prod

import torch
import torch.nn as nn
import torch.nn.functional as F

from flopscope.channels import same_channel
from flopscope.registry import formula, register
from flopscope.shapes import ShapeError

_KV_DOWN = {
    "identity": lambda m: nn.Identity(),
    "ada_avgpool": lambda m: nn.AdaptiveAvgPool2d(m.kv_per_win),
    "ada_maxpool": lambda m: nn.AdaptiveMaxPool2d(m.kv_per_win),
    "avgpool": lambda m: nn.AvgPool2d(m.kv_downsample_ratio) if m.kv_downsample_ratio > 1 else nn.Identity(),
    "maxpool": lambda m: nn.MaxPool2d(m.kv_downsample_ratio) if m.kv_downsample_ratio > 1 else nn.Identity(),
}


class TopkRouting(nn.Module):
    """Region affinity ``(q_r * scale) @ k_rᵀ``, its ``topk`` per region, and softmax weights over the kept ones."""

    def __init__(self, qk_dim, topk=4, qk_scale=None, param_routing=False):
        super().__init__()
        self.topk = topk
        self.scale = qk_scale or qk_dim ** -0.5
        self.emb = nn.Linear(qk_dim, qk_dim) if param_routing else nn.Identity()
        self.routing_act = nn.Softmax(dim=-1)

    def forward(self, q, k):
        logits = (self.emb(q) * self.scale) @ self.emb(k).transpose(-2, -1)  # (n, S², S²)
        top, index = torch.topk(logits, k=self.topk, dim=-1)
        return self.routing_act(top), index


@formula(TopkRouting)
def topk_routing_cost(m, t, q, k):
    n, regions, c = q
    if m.topk > regions:
        raise ShapeError(f"BiLevelRoutingAttention: topk={m.topk} exceeds the {regions} regions")
    q = t(m.emb, q, "emb q")
    t(m.emb, k, "emb k")
    t.ew("scale", "mul", prod(q))
    t.mac("region q·kᵀ", "matmul", "matmul", n * regions * regions * c, n * regions * regions)
    t.ew("topk", "max", n * regions * regions)
    return t(m.routing_act, (n, regions, m.topk), "softmax")


@register(channels=same_channel,
          description="BiFormer Bi-Level Routing Attention (CVPR 2023), legacy YOLO form (NCHW, auto-pad to n_win "
                      "regions, identity kv); args [c1, n_win=7, num_heads=8, ...]")
class BiLevelRoutingAttention(nn.Module):
    def __init__(self, dim, n_win=7, num_heads=8, qk_dim=None, qk_scale=None, kv_per_win=4, kv_downsample_ratio=4,
                 kv_downsample_kernel=None, kv_downsample_mode="identity", topk=4, param_attention="qkvo",
                 param_routing=False, diff_routing=False, soft_routing=False, side_dwconv=3, auto_pad=True):
        super().__init__()
        self.dim, self.n_win, self.num_heads = dim, n_win, num_heads
        self.qk_dim = qk_dim or dim
        if self.qk_dim % num_heads or dim % num_heads:
            raise ValueError(f"qk_dim ({self.qk_dim}) and dim ({dim}) must be divisible by num_heads ({num_heads})")
        if param_routing and not diff_routing:
            raise ValueError("param_routing=True needs diff_routing=True")
        if param_attention not in ("qkvo", "qkv"):
            raise ValueError(f"param_attention must be 'qkvo' or 'qkv', got {param_attention!r}")
        if kv_downsample_mode not in _KV_DOWN:
            raise ValueError(f"kv_downsample_mode must be one of {sorted(_KV_DOWN)}, got {kv_downsample_mode!r}")
        self.scale = qk_scale or self.qk_dim ** -0.5
        self.lepe = nn.Conv2d(dim, dim, side_dwconv, 1, side_dwconv // 2, groups=dim) if side_dwconv > 0 else None
        self.topk = topk
        self.soft_routing = soft_routing
        self.router = TopkRouting(self.qk_dim, topk, self.scale, param_routing)
        self.qkv = nn.Linear(dim, 2 * self.qk_dim + dim)  # QKVLinear: q | k | v
        self.wo = nn.Linear(dim, dim) if param_attention == "qkvo" else nn.Identity()
        self.kv_per_win, self.kv_downsample_ratio = kv_per_win, kv_downsample_ratio
        self.kv_down = _KV_DOWN[kv_downsample_mode](self)
        self.attn_act = nn.Softmax(dim=-1)
        self.auto_pad = auto_pad

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)  # NHWC
        n, h_in, w_in, c = x.shape
        s, heads, cqk = self.n_win, self.num_heads, self.qk_dim
        if self.auto_pad:
            x = F.pad(x, (0, 0, 0, (-w_in) % s, 0, (-h_in) % s))
        h, w = x.shape[1:3]
        rh, rw = h // s, w // s  # region size
        # 'n (j h) (i w) c -> n (j i) h w c'
        x = x.reshape(n, s, rh, s, rw, c).permute(0, 1, 3, 2, 4, 5).reshape(n, s * s, rh, rw, c)
        q, kv = self.qkv(x).split([cqk, cqk + c], dim=-1)
        kv_pix = self.kv_down(kv.permute(0, 1, 4, 2, 3).reshape(n * s * s, cqk + c, rh, rw))
        kv_pix = kv_pix.reshape(n, s * s, cqk + c, -1).transpose(-2, -1)  # (n, S², m, cqk + c)
        r_weight, r_idx = self.router(q.mean([2, 3]), kv[..., :cqk].mean([2, 3]))
        if self.lepe is None:
            lepe = 0
        else:  # 'n (j i) h w c -> n c (j h) (i w)' and back to NHWC
            v_map = kv[..., cqk:].reshape(n, s, s, rh, rw, c).permute(0, 5, 1, 3, 2, 4).reshape(n, c, h, w)
            lepe = self.lepe(v_map).permute(0, 2, 3, 1)
        p2, m, ckv = kv_pix.shape[1:]
        sel = torch.gather(kv_pix.view(n, 1, p2, m, ckv).expand(-1, p2, -1, -1, -1), 2,
                           r_idx.view(n, p2, self.topk, 1, 1).expand(-1, -1, -1, m, ckv))  # (n, S², topk, m, ckv)
        if self.soft_routing:
            sel = r_weight.view(n, p2, self.topk, 1, 1) * sel
        k_sel, v_sel = sel.split([cqk, c], dim=-1)
        k_sel = k_sel.reshape(n, p2, self.topk, m, heads, cqk // heads).permute(0, 1, 4, 5, 2, 3)
        k_sel = k_sel.reshape(n * p2, heads, cqk // heads, self.topk * m)
        v_sel = v_sel.reshape(n, p2, self.topk, m, heads, c // heads).permute(0, 1, 4, 2, 3, 5)
        v_sel = v_sel.reshape(n * p2, heads, self.topk * m, c // heads)
        q_pix = q.reshape(n, p2, rh * rw, heads, cqk // heads).transpose(2, 3).reshape(n * p2, heads, rh * rw, -1)
        attn = self.attn_act((q_pix * self.scale) @ k_sel)
        out = attn @ v_sel  # (n S², heads, rh rw, c / heads)
        # '(n j i) m (h w) c -> n (j h) (i w) (m c)'
        out = out.reshape(n, s, s, heads, rh, rw, c // heads).permute(0, 1, 4, 2, 5, 3, 6).reshape(n, h, w, c)
        out = self.wo(out + lepe)
        return out[:, :h_in, :w_in, :].permute(0, 3, 1, 2).contiguous()


@formula(BiLevelRoutingAttention)
def bra_cost(m, t, x):
    b, c, h_in, w_in = x
    s, heads, cqk = m.n_win, m.num_heads, m.qk_dim
    if m.auto_pad:
        h, w = -(-h_in // s) * s, -(-w_in // s) * s
    elif h_in % s or w_in % s:
        raise ShapeError(f"BiLevelRoutingAttention(auto_pad=False) needs H, W divisible by n_win={s}, "
                         f"gets {h_in}x{w_in}")
    else:
        h, w = h_in, w_in
    rh, rw, p2 = h // s, w // s, s * s
    tokens = b * h * w  # on the padded map
    t(m.qkv, (b, p2, rh, rw, c), "qkv projection")
    pooled = t(m.kv_down, (b * p2, cqk + c, rh, rw), "kv downsample")
    kv_per_region = pooled[2] * pooled[3]
    t.ew("region means", "mean", 2 * tokens * cqk)
    if m.lepe is not None:
        t(m.lepe, (b, c, h, w), "lepe")
    t(m.router, (b, p2, cqk), (b, p2, cqk), "routing")
    keys = m.topk * kv_per_region  # keys seen by each query
    if m.soft_routing:
        t.ew("soft routing weights", "mul", b * p2 * keys * (cqk + c))
    t.ew("q scale", "mul", tokens * cqk)
    t.mac("q·kᵀ", "matmul", "matmul", tokens * keys * cqk, tokens * heads * keys)
    t(m.attn_act, (b * p2, heads, rh * rw, keys), "attention softmax")
    t.mac("attn·v", "matmul", "matmul", tokens * keys * c, tokens * c)
    if m.lepe is not None:
        t.ew("lepe add", "add", tokens * c)
    t(m.wo, (b, h, w, c), "output projection")
    return x
