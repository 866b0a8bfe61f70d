"""RT-DETR as ultralytics 8.4.x builds it (``ultralytics/nn/modules/{block,conv,transformer,head}.py``).

RT-DETR (Zhao et al. 2024, "DETRs Beat YOLOs on Real-time Object Detection"), Ultralytics dialect:

* backbone: PP-HGNet ``HGStem`` / ``HGBlock`` (optionally of ``LightConv``), or ResNet ``ResNetLayer``
  (``ResNetBlock``: 1x1 -> 3x3 (stride) -> 1x1 x e, projection shortcut, ReLU);
* encoder: ``AIFI`` (a post-norm transformer encoder layer over the H*W positions of one map, with a 2-D sin-cos
  position embedding: two (H*W x 1) @ (1 x c/4) matmuls, which FlopCounterMode counts) and ``RepC3``;
* ``RTDETRDecoder``: per-level 1x1 conv + BN projections, encoder head (Linear + LayerNorm, class Linear, box MLP),
  query selection (top-k over the best class score, ``k = min(nq, anchors)``), then ``ndl`` deformable decoder
  layers -- self-attention (``nn.MultiheadAttention``), multi-scale deformable cross-attention (``MSDeformAttn``:
  value / offset / weight / output projections, bilinear sampling by ``F.grid_sample``), FFN, each + LayerNorm --
  with the query position MLP and the box MLP at every layer and the class Linear at the eval layer (the last).
  Eval path only (no denoising queries).

Hand rule: the bilinear sampling of ``MSDeformAttn`` is ``F.grid_sample``, which FlopCounterMode does not count; it
is recorded with the deformable-conv rule of modules/deformable.py (``rule="deformable bilinear sampling"``: 10
FLOPs per sampling point and head for the coordinates and weights, 7 per sampled value), for
``B x nq x nh x nl x np`` points and ``hd / nh`` channels each.  The rest of the element-wise work (norms,
activations, softmaxes, sigmoids, the weighted sum of the samples) is counted at the cost table's rates.

Channel rules (parse_model): ``HGStem`` / ``HGBlock`` take ``[c1, cm, c2, ...]`` unscaled (``HGBlock``: the repeats
inserted as its 5th argument); ``RepC3`` is a width-scaled repeat module; ``AIFI`` ``[c1, *args]`` keeps its
channels; ``ResNetLayer``'s args are used as written (``c2 = args[1]`` when ``is_first`` else ``4 * args[1]``);
``RTDETRDecoder`` gets the input channels as its 2nd argument.
"""
from __future__ import annotations

import math
from math import prod

import torch
import torch.nn as nn
import torch.nn.functional as F

from flopscope.channels import conv_like, conv_like_repeat, custom
from flopscope.cost import ELEMENTWISE_COST
from flopscope.registry import formula, register
from flopscope.shapes import ShapeError, cat_channels

from .deformable import deformable_sampling_cost
from .ul_v9 import RepConv
from .yolov5 import Conv, DWConv

UL = "ultralytics"


# -- PP-HGNet ---------------------------------------------------------------------------------------------------
@custom("hgstem", "c1 = ch[from]; args = [c1, cm, c2] (cm = args[0], c2 = args[1], not width-scaled)")
def _hgstem_rule(row):
    c1 = row.c_in()
    cm, c2 = row.require_int_arg(0, "mid channels"), row.require_int_arg(1, "output channels")
    return [c1, cm, c2, *row.args[2:]], c2, row.n


@register(channels=_hgstem_rule, dialect=UL,
          description="PP-HGNetV2 stem: 3x3 s2, pad + 2x2 -> pad + 2x2 beside a 2x2 max-pool, concat, 3x3 s2, 1x1 "
                      "(ReLU); args [cm, c2]")
class HGStem(nn.Module):
    def __init__(self, c1, cm, c2):
        super().__init__()
        self.stem1 = Conv(c1, cm, 3, 2, act=nn.ReLU())
        self.stem2a = Conv(cm, cm // 2, 2, 1, 0, act=nn.ReLU())
        self.stem2b = Conv(cm // 2, cm, 2, 1, 0, act=nn.ReLU())
        self.stem3 = Conv(cm * 2, cm, 3, 2, act=nn.ReLU())
        self.stem4 = Conv(cm, c2, 1, 1, act=nn.ReLU())
        self.pool = nn.MaxPool2d(kernel_size=2, stride=1, padding=0, ceil_mode=True)

    def forward(self, x):
        x = F.pad(self.stem1(x), [0, 1, 0, 1])
        x2 = self.stem2b(F.pad(self.stem2a(x), [0, 1, 0, 1]))
        return self.stem4(self.stem3(torch.cat([self.pool(x), x2], 1)))


@formula(HGStem)
def hgstem_cost(m, t, x):
    b, c, h, w = t(m.stem1, x, "stem1")
    padded = (b, c, h + 1, w + 1)  # F.pad right/bottom by 1: a copy
    b2, c2, h2, w2 = t(m.stem2a, padded, "stem2a")
    x2 = t(m.stem2b, (b2, c2, h2 + 1, w2 + 1), "stem2b")
    x1 = t(m.pool, padded, "pool")
    return t(m.stem4, t(m.stem3, cat_channels([x1, x2]), "stem3"), "stem4")


@register(channels=conv_like, dialect=UL,
          description="light conv: 1x1 Conv (no act) then k x k depth-wise Conv (ReLU); args [c2, k=1]")
class LightConv(nn.Module):
    def __init__(self, c1, c2, k=1, act=None):
        super().__init__()
        act = nn.ReLU() if act is None else act
        self.conv1 = Conv(c1, c2, 1, act=False)
        self.conv2 = DWConv(c2, c2, k, act=act)

    def forward(self, x):
        return self.conv2(self.conv1(x))


@formula(LightConv)
def lightconv_cost(m, t, x):
    return t(m.conv2, t(m.conv1, x, "conv1"), "conv2")


@custom("hgblock", "c1 = ch[from]; args = [c1, cm, c2, k, n, lightconv, shortcut] (cm, c2 unscaled; the row's "
                   "repeats become n)")
def _hgblock_rule(row):
    c1 = row.c_in()
    cm, c2 = row.require_int_arg(0, "mid channels"), row.require_int_arg(1, "output channels")
    args = [c1, cm, c2, *row.args[2:]]
    args.insert(4, row.n)
    return args, c2, 1


@register(channels=_hgblock_rule, dialect=UL,
          description="PP-HGNetV2 block: n chained k x k Convs (or LightConvs), concat with the input, squeeze 1x1 "
                      "-> c2/2, excite 1x1 -> c2 (+ residual); args [cm, c2, k=3, lightconv=False, shortcut=False]")
class HGBlock(nn.Module):
    def __init__(self, c1, cm, c2, k=3, n=6, lightconv=False, shortcut=False, act=None):
        super().__init__()
        act = nn.ReLU() if act is None else act
        block = LightConv if lightconv else Conv
        self.m = nn.ModuleList(block(c1 if i == 0 else cm, cm, k=k, act=act) for i in range(n))
        self.sc = Conv(c1 + n * cm, c2 // 2, 1, 1, act=act)
        self.ec = Conv(c2 // 2, c2, 1, 1, act=act)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        y = [x]
        y.extend(m(y[-1]) for m in self.m)
        y = self.ec(self.sc(torch.cat(y, 1)))
        return y + x if self.add else y


@formula(HGBlock)
def hgblock_cost(m, t, x):
    ys = [tuple(x)]
    for i, block in enumerate(m.m):
        ys.append(t(block, ys[-1], f"m.{i}"))
    y = t(m.ec, t(m.sc, cat_channels(ys), "sc"), "ec")
    if m.add:
        t.ew("residual", "add", prod(y))
    return y


# -- RepC3 ------------------------------------------------------------------------------------------------------
@register(channels=conv_like_repeat, dialect=UL,
          description="RT-DETR RepC3: cv1 1x1 -> n RepConvs, + cv2 1x1, then cv3 1x1 (identity when c_ == c2); "
                      "args [c2, e=1.0]")
class RepC3(nn.Module):
    def __init__(self, c1, c2, n=3, e=1.0):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.m = nn.Sequential(*(RepConv(c_, c_) for _ in range(n)))
        self.cv3 = Conv(c_, c2, 1, 1) if c_ != c2 else nn.Identity()

    def forward(self, x):
        return self.cv3(self.m(self.cv1(x)) + self.cv2(x))


@formula(RepC3)
def repc3_cost(m, t, x):
    a = t(m.m, t(m.cv1, x, "cv1"), "m")
    t(m.cv2, x, "cv2")
    t.ew("sum", "add", prod(a))
    return t(m.cv3, a, "cv3")


# -- ResNet -----------------------------------------------------------------------------------------------------
class ResNetBlock(nn.Module):
    """ResNet bottleneck: 1x1 -> 3x3 (stride s) -> 1x1 to e*c2 (no act), + shortcut (1x1 projection when the shape
    changes), ReLU."""

    def __init__(self, c1, c2, s=1, e=4):
        super().__init__()
        c3 = e * c2
        self.cv1 = Conv(c1, c2, k=1, s=1, act=True)
        self.cv2 = Conv(c2, c2, k=3, s=s, p=1, act=True)
        self.cv3 = Conv(c2, c3, k=1, act=False)
        self.shortcut = nn.Sequential(Conv(c1, c3, k=1, s=s, act=False)) if s != 1 or c1 != c3 else nn.Identity()

    def forward(self, x):
        return F.relu(self.cv3(self.cv2(self.cv1(x))) + self.shortcut(x))


@formula(ResNetBlock)
def resnet_block_cost(m, t, x):
    y = t(m.cv3, t(m.cv2, t(m.cv1, x, "cv1"), "cv2"), "cv3")
    s = t(m.shortcut, x, "shortcut")
    if tuple(s) != tuple(y):
        raise ShapeError(f"ResNetBlock: shortcut {tuple(s)} and residual branch {tuple(y)} differ")
    t.ew("residual", "add", prod(y))
    t.ew("relu", "ReLU", prod(y))
    return y


@custom("resnetlayer", "args used as written [c1, c2, s=1, is_first=False, n=1, e=4] (c1 in the YAML); "
                       "c2 = args[1] if is_first else 4 * args[1]")
def _resnetlayer_rule(row):
    args = list(row.args)
    if len(args) < 4:
        raise row.error("ResNetLayer needs [c1, c2, s, is_first, (n, e)]")
    c1 = row.c_in()
    if args[0] != c1:
        raise row.error(f"ResNetLayer's c1 argument is {args[0]} but its input has {c1} channels")
    c2 = args[1] if args[3] else args[1] * 4
    return args, c2, row.n


@register(channels=_resnetlayer_rule, dialect=UL,
          description="ResNet stage: is_first: 7x7 s2 Conv + 3x3 s2 max-pool; else n ResNet bottlenecks (first with "
                      "stride s); args [c1, c2, s=1, is_first=False, n=1, e=4]")
class ResNetLayer(nn.Module):
    def __init__(self, c1, c2, s=1, is_first=False, n=1, e=4):
        super().__init__()
        self.is_first = is_first
        if is_first:
            self.layer = nn.Sequential(Conv(c1, c2, k=7, s=2, p=3, act=True),
                                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        else:
            blocks = [ResNetBlock(c1, c2, s, e=e)]
            blocks.extend(ResNetBlock(e * c2, c2, 1, e=e) for _ in range(n - 1))
            self.layer = nn.Sequential(*blocks)

    def forward(self, x):
        return self.layer(x)


@formula(ResNetLayer)
def resnet_layer_cost(m, t, x):
    return t(m.layer, x, "layer")


# -- AIFI -------------------------------------------------------------------------------------------------------
@custom("aifi", "args = [ch[from], *args]; c2 = ch[from]")
def _aifi_rule(row):
    c1 = row.c_in()
    return [c1, *row.args], c1, row.n


@register(channels=_aifi_rule, dialect=UL,
          description="RT-DETR AIFI: post-norm transformer encoder layer over H*W positions with a 2-D sin-cos "
                      "position embedding; args [cm=2048, num_heads=8, dropout=0, act=GELU, normalize_before=False]")
class AIFI(nn.Module):
    def __init__(self, c1, cm=2048, num_heads=8, dropout=0.0, act=None, normalize_before=False):
        super().__init__()
        self.ma = nn.MultiheadAttention(c1, num_heads, dropout=dropout, batch_first=True)
        self.fc1 = nn.Linear(c1, cm)
        self.fc2 = nn.Linear(cm, c1)
        self.norm1 = nn.LayerNorm(c1)
        self.norm2 = nn.LayerNorm(c1)
        self.act = nn.GELU() if act is None else act
        self.normalize_before = normalize_before

    @staticmethod
    def pos_embed(w, h, dim, like, temperature=10000.0):
        if dim % 4:
            raise ValueError(f"AIFI: embedding dimension {dim} must be divisible by 4")
        gy, gx = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=like.device),
                                torch.arange(w, dtype=torch.float32, device=like.device), indexing="ij")
        pd = dim // 4
        omega = 1.0 / temperature ** (torch.arange(pd, dtype=torch.float32, device=like.device) / pd)
        out_w = gx.flatten()[..., None] @ omega[None]
        out_h = gy.flatten()[..., None] @ omega[None]
        return torch.cat([out_h.sin(), out_h.cos(), out_w.sin(), out_w.cos()], 1)[None]

    def forward(self, x):
        c, h, w = x.shape[1:]
        pos = self.pos_embed(w, h, c, x).to(x.dtype)
        src = x.flatten(2).permute(0, 2, 1)
        if self.normalize_before:
            s2 = self.norm1(src)
            q = s2 + pos
            src = src + self.ma(q, q, value=s2)[0]
            src = src + self.fc2(self.act(self.fc1(self.norm2(src))))
        else:
            q = src + pos
            src = self.norm1(src + self.ma(q, q, value=src)[0])
            src = self.norm2(src + self.fc2(self.act(self.fc1(src))))
        return src.permute(0, 2, 1).reshape(-1, c, h, w).contiguous()


@formula(AIFI)
def aifi_cost(m, t, x):
    b, c, h, w = x
    n = h * w
    if c % 4:
        raise ShapeError(f"AIFI: {c} channels are not divisible by 4 (2-D sin-cos embedding)")
    pd = c // 4
    t.mac("pos_embed.w", "matmul", "matmul", n * pd, n * pd)  # (HW x 1) @ (1 x c/4)
    t.mac("pos_embed.h", "matmul", "matmul", n * pd, n * pd)
    # omega = 1 / temperature ** (arange(pd) / pd): a divide, a power, and 1.0 / y (aten: reciprocal, x 1.0)
    t.ew("pos_embed.omega", "div", pd, 4)
    t.ew("pos_embed.sincos", "exp", 4 * n * pd)  # sin / cos: one transcendental per element (ELEMENTWISE_COST)
    seq = (b, n, c)
    t.ew("pos add", "add", b * n * c)
    t(m.ma, seq, seq, seq, "ma")
    t.ew("attn residual", "add", b * n * c)
    t(m.norm1, seq, "norm1")
    t(m.fc2, t(m.act, t(m.fc1, seq, "fc1"), "act"), "fc2")
    t.ew("ffn residual", "add", b * n * c)
    t(m.norm2, seq, "norm2")
    return tuple(x)


# -- RT-DETR decoder --------------------------------------------------------------------------------------------
class MLP(nn.Module):
    """num_layers Linears, ReLU between them."""

    def __init__(self, input_dim, hidden_dim, output_dim, num_layers):
        super().__init__()
        self.num_layers = num_layers
        h = [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip([input_dim, *h], [*h, output_dim]))
        self.act = nn.ReLU()

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = self.act(layer(x)) if i < self.num_layers - 1 else layer(x)
        return x


@formula(MLP)
def mlp_cost(m, t, x):
    for i, layer in enumerate(m.layers):
        x = t(layer, x, f"layers.{i}")
        if i < m.num_layers - 1:
            x = t(m.act, x, f"act.{i}")
    return x


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention (Deformable DETR), as RT-DETR's decoder uses it (4-d reference boxes)."""

    def __init__(self, d_model=256, n_levels=4, n_heads=8, n_points=4):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} must be divisible by n_heads {n_heads}")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)

    def forward(self, query, refer_bbox, value, shapes):
        bs, lq = query.shape[:2]
        lv = value.shape[1]
        nh, nl, npt, hd = self.n_heads, self.n_levels, self.n_points, self.d_model // self.n_heads
        value = self.value_proj(value).view(bs, lv, nh, hd)
        offsets = self.sampling_offsets(query).view(bs, lq, nh, nl * npt, 2)
        weights = F.softmax(self.attention_weights(query).view(bs, lq, nh, nl * npt), -1)
        loc = refer_bbox[:, :, None, :, :2] + offsets / npt * refer_bbox[:, :, None, :, 2:] * 0.5
        values = value.permute(0, 2, 3, 1).flatten(0, 1).split([h * w for h, w in shapes], dim=-1)
        grids = (2 * loc - 1).permute(0, 2, 1, 3, 4).flatten(0, 1).split(npt, dim=-2)
        sampled = [F.grid_sample(values[i].reshape(bs * nh, hd, h, w), grids[i], mode="bilinear",
                                 padding_mode="zeros", align_corners=False) for i, (h, w) in enumerate(shapes)]
        weights = weights.permute(0, 2, 1, 3).reshape(bs * nh, 1, lq, nl * npt)
        out = (torch.cat(sampled, -1) * weights).sum(-1).view(bs, nh * hd, lq).transpose(1, 2)
        return self.output_proj(out)


@formula(MSDeformAttn)
def msdeform_attn_cost(m, t, query, value):
    bs, lq, d = query
    _, lv, _ = value
    nh, nl, npt = m.n_heads, m.n_levels, m.n_points
    pts = bs * lq * nh * nl * npt
    t(m.value_proj, value, "value_proj")
    t(m.sampling_offsets, query, "sampling_offsets")
    t(m.attention_weights, query, "attention_weights")
    t.ew("attention softmax", "softmax", pts)
    t.ew("sampling locations", "mul", 4 * pts * 2)  # / np, * wh, * 0.5, + xy (x and y)
    t.ew("grid normalise", "mul", 2 * pts * 2)  # 2 * loc - 1
    # F.grid_sample: invisible to FlopCounterMode; the deformable-conv bilinear rule per point and head
    deformable_sampling_cost(t, bs, d, nh, nl * npt, lq)
    t.ew("weighted sum", "mul", bs * d * lq * nl * npt)
    t.ew("weighted sum.add", "add", bs * d * lq * (nl * npt - 1))
    return t(m.output_proj, (bs, lq, d), "output_proj")


class DecoderLayer(nn.Module):
    """Deformable transformer decoder layer: self-attention, deformable cross-attention, FFN (post-norm)."""

    def __init__(self, d_model=256, n_heads=8, d_ffn=1024, act=None, n_levels=4, n_points=4):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_heads)
        self.norm1 = nn.LayerNorm(d_model)
        self.cross_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.act = nn.ReLU() if act is None else act
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, embed, refer_bbox, feats, shapes, query_pos):
        q = embed + query_pos
        tgt = self.self_attn(q.transpose(0, 1), q.transpose(0, 1), embed.transpose(0, 1))[0].transpose(0, 1)
        embed = self.norm1(embed + tgt)
        embed = self.norm2(embed + self.cross_attn(embed + query_pos, refer_bbox.unsqueeze(2), feats, shapes))
        return self.norm3(embed + self.linear2(self.act(self.linear1(embed))))


@formula(DecoderLayer)
def decoder_layer_cost(m, t, embed, feats):
    bs, k, d = embed
    n = bs * k * d
    t.ew("query pos add", "add", n)
    seq = (k, bs, d)
    t(m.self_attn, seq, seq, seq, "self_attn")
    t.ew("self_attn residual", "add", n)
    t(m.norm1, embed, "norm1")
    t.ew("cross query pos add", "add", n)
    t(m.cross_attn, embed, feats, "cross_attn")
    t.ew("cross_attn residual", "add", n)
    t(m.norm2, embed, "norm2")
    t(m.linear2, t(m.act, t(m.linear1, embed, "linear1"), "act"), "linear2")
    t.ew("ffn residual", "add", n)
    t(m.norm3, embed, "norm3")
    return embed


@custom("rtdetrdecoder", "args = [nc, [ch[x] for x in from], *args[1:]]")
def _rtdetr_rule(row):
    f = row.inputs()
    args = list(row.args)
    if not args:
        raise row.error("RTDETRDecoder needs [nc, ...]")
    args.insert(1, [row.ch[x] for x in f])
    return args, row.ch[f[-1]], row.n


@register(channels=_rtdetr_rule, dialect=UL,
          description="RT-DETR decoder: level projections, query selection (top-k), deformable transformer decoder "
                      "(eval path); args [nc, hd=256, nq=300, ndp=4, nh=8, ndl=6, d_ffn=1024, dropout, act, eval_idx]")
class RTDETRDecoder(nn.Module):
    #: --train runs this eval-path decoder in train mode; ultralytics' training forward differs (a note says so)
    train_caveat = ("RTDETRDecoder's training cost is a lower bound: ultralytics' training forward adds denoising "
                    "queries (their number depends on the batch's ground-truth boxes) and a class head at every decoder "
                    "layer, which flopscope does not run; its train-mode backward is FlopCounterMode-exact for the "
                    "eval-path decoder it counts")

    def __init__(self, nc=80, ch=(512, 1024, 2048), hd=256, nq=300, ndp=4, nh=8, ndl=6, d_ffn=1024, dropout=0.0,
                 act=None, eval_idx=-1, nd=100, label_noise_ratio=0.5, box_noise_scale=1.0,
                 learnt_init_query=False):
        super().__init__()
        act = nn.ReLU() if act is None else act
        self.hidden_dim, self.nhead, self.nl, self.nc, self.num_queries = hd, nh, len(ch), nc, nq
        self.num_decoder_layers = ndl
        self.eval_idx = eval_idx if eval_idx >= 0 else ndl + eval_idx
        self.input_proj = nn.ModuleList(nn.Sequential(nn.Conv2d(x, hd, 1, bias=False), nn.BatchNorm2d(hd)) for x in ch)
        self.layers = nn.ModuleList(DecoderLayer(hd, nh, d_ffn, act, self.nl, ndp) for _ in range(ndl))
        self.denoising_class_embed = nn.Embedding(nc, hd)  # training only (denoising queries): params, no work
        self.learnt_init_query = learnt_init_query
        if learnt_init_query:
            self.tgt_embed = nn.Embedding(nq, hd)
        self.query_pos_head = MLP(4, 2 * hd, hd, 2)
        self.enc_output = nn.Sequential(nn.Linear(hd, hd), nn.LayerNorm(hd))
        self.enc_score_head = nn.Linear(hd, nc)
        self.enc_bbox_head = MLP(hd, hd, 4, 3)
        self.dec_score_head = nn.ModuleList(nn.Linear(hd, nc) for _ in range(ndl))
        self.dec_bbox_head = nn.ModuleList(MLP(hd, hd, 4, 3) for _ in range(ndl))

    @staticmethod
    def anchors(shapes, like, grid_size=0.05, eps=1e-2):
        out = []
        for i, (h, w) in enumerate(shapes):
            gy, gx = torch.meshgrid(torch.arange(h, dtype=like.dtype, device=like.device),
                                    torch.arange(w, dtype=like.dtype, device=like.device), indexing="ij")
            xy = torch.stack([(gx + 0.5) / w, (gy + 0.5) / h], -1)[None]
            out.append(torch.cat([xy, torch.full_like(xy, grid_size * 2.0 ** i)], -1).view(-1, h * w, 4))
        a = torch.cat(out, 1)
        valid = ((a > eps) & (a < 1 - eps)).all(-1, keepdim=True)
        return torch.log(a / (1 - a)).masked_fill(~valid, float("inf")), valid

    def forward(self, x):
        shapes = [list(f.shape[2:]) for f in x]
        feats = torch.cat([p(f).flatten(2).permute(0, 2, 1) for p, f in zip(self.input_proj, x)], 1)
        bs = feats.shape[0]
        anchors, valid = self.anchors(shapes, feats)
        features = self.enc_output(valid * feats)
        scores = self.enc_score_head(features)
        k = min(self.num_queries, scores.shape[1])
        topk = scores.max(-1).values.topk(k, dim=1).indices.view(-1)
        bi = torch.arange(bs, dtype=topk.dtype, device=topk.device).unsqueeze(-1).repeat(1, k).view(-1)
        top_feats = features[bi, topk].view(bs, k, -1)
        refer = self.enc_bbox_head(top_feats) + anchors[:, topk].view(bs, k, -1)
        enc_bboxes = refer.sigmoid()  # noqa: F841 - ultralytics returns it with the raw outputs, then sigmoids again
        refer = refer.sigmoid()
        embed = self.tgt_embed.weight[:k].unsqueeze(0).repeat(bs, 1, 1) if self.learnt_init_query else top_feats
        for i, layer in enumerate(self.layers):
            embed = layer(embed, refer, feats, shapes, self.query_pos_head(refer))
            r = refer.clamp(0, 1)
            box = torch.sigmoid(self.dec_bbox_head[i](embed) + torch.log(r.clamp(min=1e-5) / (1 - r).clamp(min=1e-5)))
            if i == self.eval_idx:
                cls = self.dec_score_head[i](embed).sigmoid()
                break
            refer = box
        kk = min(self.num_queries, cls.shape[1] * self.nc)
        s, index = cls.flatten(1).topk(kk, dim=1)
        q = torch.div(index, self.nc, rounding_mode="floor")
        boxes = box.gather(1, q.unsqueeze(-1).expand(-1, -1, 4))
        return torch.cat([boxes, s[..., None], (index - q * self.nc)[..., None].float()], -1)


@formula(RTDETRDecoder)
def rtdetr_decoder_cost(m, t, xs):
    if not isinstance(xs, list) or len(xs) != m.nl:
        raise ShapeError(f"RTDETRDecoder expects {m.nl} feature maps")
    bs = xs[0][0]
    d = m.hidden_dim
    lv = 0
    for i, (p, x) in enumerate(zip(m.input_proj, xs)):
        y = t(p, tuple(x), f"input_proj.{i}")
        lv += y[2] * y[3]
    feats = (bs, lv, d)
    t.ew("valid mask", "mul", bs * lv * d)
    t(m.enc_output, feats, "enc_output")
    t(m.enc_score_head, feats, "enc_score_head")
    t.ew("best class score", "max", bs * lv * m.nc)
    k = min(m.num_queries, lv)
    t.ew("query selection top-k", "max", bs * lv)  # 1 compare per candidate (as the op-level topk rule)
    q4 = (bs, k, 4)
    t(m.enc_bbox_head, (bs, k, d), "enc_bbox_head")
    t.ew("anchor add", "add", bs * k * 4)
    # ultralytics sigmoids the reference boxes twice: enc_bboxes (returned) and the decoder's own refer_bbox
    t.ew("refer sigmoid", "Sigmoid", 2 * bs * k * 4)
    embed = (bs, k, d)
    for i, layer in enumerate(m.layers):
        t(m.query_pos_head, q4, f"query_pos_head.{i}")
        t(layer, embed, feats, f"layers.{i}")
        t(m.dec_bbox_head[i], embed, f"dec_bbox_head.{i}")
        # inverse_sigmoid: clamp(0, 1), clamp(eps), 1 - x, clamp(eps), divide, log (6); + bbox (1); sigmoid (4)
        t.ew(f"refine.{i}", "add", bs * k * 4, 6 + 1 + ELEMENTWISE_COST["Sigmoid"])
        if i == m.eval_idx:
            t(m.dec_score_head[i], embed, f"dec_score_head.{i}")
            t.ew("score sigmoid", "Sigmoid", bs * k * m.nc)
            kk = min(m.num_queries, k * m.nc)
            t.ew("postprocess top-k", "max", bs * k * m.nc)
            t.ew("postprocess class index", "div", bs * kk, 3)  # index // nc, index - q * nc
            break
    return (bs, min(m.num_queries, k * m.nc), 6)
