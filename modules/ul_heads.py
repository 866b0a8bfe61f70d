"""Ultralytics 8.4.x heads (``ultralytics/nn/modules/head.py``), Ultralytics dialect: anchor-free ``Detect`` with DFL,
``Segment``, ``Pose``, ``OBB``, their YOLO26 forms (``Segment26``, ``Pose26``, ``OBB26``), ``v10Detect`` and
``Classify``.

Facts (8.4.190) the classes below reproduce:

* Detect: per level a box branch ``cv2`` (Conv 3x3 c2, Conv 3x3 c2, 1x1 -> 4*reg_max) and a class branch ``cv3``
  (legacy v3/v5u/v8/v9: Conv 3x3 c3, Conv 3x3 c3, 1x1 -> nc; otherwise dw 3x3 + 1x1 twice, then 1x1 -> nc), with
  ``c2 = max(16, ch[0] // 4, 4 * reg_max)``, ``c3 = max(ch[0], min(nc, 100))``; ``DFL`` when reg_max > 1.
* ``end2end`` (YOLOv10, YOLO26) adds a one-to-one copy of every branch (``one2one_cv2`` ...).  The eval forward
  runs *both* branch sets on every level, then decodes one of them (the one-to-many one on a freshly built model,
  as ultralytics does until ``end2end`` is switched on): so both are counted.  ``fuse()`` drops the one-to-one set.
* decode (eval): DFL softmax + fixed 1x1 conv over 4 x reg_max bins (a real conv, counted by FlopCounterMode),
  ``dist2bbox`` (element-wise), sigmoid of the class scores; Pose adds the keypoint decode, OBB the angle.
* Segment: ``cv4`` mask-coefficient branch (``c4 = max(ch[0] // 4, nm)``) and ``Proto`` on the first level
  (Segment26: ``Proto26`` on all levels; its ``semseg`` branch only runs in training but its parameters count).
* Pose26: ``cv4`` (two Convs, ``c4 = max(ch[0] // 4, kpts * (dims + 2))``), ``cv4_kpts`` 1x1; ``cv4_sigma`` and the
  RealNVP ``flow_model`` only run in training (their parameters count).
"""
from __future__ import annotations

import math
from math import prod

import torch
import torch.nn as nn

from flopscope.channels import custom
from flopscope.registry import formula, register
from flopscope.shapes import ShapeError, check_channels

from .ul_blocks import DFL, Proto
from .yolov5 import Conv, DWConv

UL = "ultralytics"


def _levels(row):
    f = row.inputs()
    return [row.ch[x] for x in f]


def _head_rule(width_arg: int | None = None):
    def rule(row):
        row.require_int_arg(0, "nc")
        args = list(row.args)
        if width_arg is not None and len(args) > width_arg:
            args[width_arg] = row.width(args[width_arg])
        args.extend([row.state.get("reg_max", 16), row.state.get("end2end"), _levels(row),
                     bool(row.state.get("legacy", True))])
        return args, _levels(row), row.n

    return rule


_detect_rule = custom("ul-detect", "args = [*args, reg_max, end2end, [ch[x] for x in from], legacy] (reg_max and "
                                   "end2end from the config; legacy until a C3k2/C2fCIB row)")(_head_rule())
_segment_rule = custom("ul-segment", "as ul-detect; npr (args[2]) = make_divisible(min(npr, max_channels) * width, 8)"
                       )(_head_rule(2))


def _anchors_count(xs):
    return sum(x[-2] * x[-1] for x in xs)


@register("Detect", channels=_detect_rule, dialect=UL,
          description="Ultralytics anchor-free detection head: per level box (4*reg_max, DFL) and class branches; "
                      "end2end adds one-to-one copies; args [nc]")
class DetectUL(nn.Module):
    export = False
    shape = None
    task_heads: tuple[str, ...] = ()  # extra per-level branches besides cv2 (box) / cv3 (cls)

    def __init__(self, nc=80, reg_max=16, end2end=False, ch=(), legacy=False):
        super().__init__()
        self.nc = nc
        self.nl = len(ch)
        self.reg_max = reg_max
        self.no = nc + reg_max * 4
        self.legacy = legacy
        self.stride = torch.zeros(self.nl, device="cpu")
        c2, c3 = max((16, ch[0] // 4, reg_max * 4)), max(ch[0], min(nc, 100))
        self.cv2 = nn.ModuleList(nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * reg_max, 1))
                                 for x in ch)
        if legacy:
            self.cv3 = nn.ModuleList(nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, nc, 1)) for x in ch)
        else:
            self.cv3 = nn.ModuleList(nn.Sequential(nn.Sequential(DWConv(x, x, 3), Conv(x, c3, 1)),
                                                   nn.Sequential(DWConv(c3, c3, 3), Conv(c3, c3, 1)),
                                                   nn.Conv2d(c3, nc, 1)) for x in ch)
        self.dfl = DFL(reg_max) if reg_max > 1 else nn.Identity()
        self.has_one2one = bool(end2end)
        self.end2end = False  # the decoded branch of a fresh build is the one-to-many one (as ultralytics)
        if end2end:
            self._copy_one2one(("cv2", "cv3"))

    def _copy_one2one(self, names):
        import copy

        for n in names:
            setattr(self, f"one2one_{n}", copy.deepcopy(getattr(self, n)))

    # the per-level branches the eval forward runs: (prefix, {role: ModuleList})
    def branches(self):
        sets = [("", self._branch_set(""))]
        if self.has_one2one:
            sets.append(("one2one_", self._branch_set("one2one_")))
        return sets

    def _branch_set(self, prefix):
        return {n: getattr(self, prefix + n) for n in ("cv2", "cv3", *self.task_heads)}

    def extra_channels(self) -> int:
        return 0

    def run_task_heads(self, x, heads):  # -> per-level extra outputs (b, k, a) concatenated, or None
        return None

    def forward(self, x):
        if self.training:
            return self.forward_train(x)
        bs = x[0].shape[0]
        outs = []
        for _, heads in self.branches():
            boxes = torch.cat([heads["cv2"][i](x[i]).view(bs, 4 * self.reg_max, -1) for i in range(self.nl)], -1)
            scores = torch.cat([heads["cv3"][i](x[i]).view(bs, self.nc, -1) for i in range(self.nl)], -1)
            outs.append((boxes, scores, self.run_task_heads(x, heads)))
        boxes, scores, extra = outs[-1] if self.end2end else outs[0]
        anchors, strides = _make_anchors(x, self.stride)
        box = self.decode_boxes(self.dfl(boxes), anchors, extra)
        y = [box * strides, scores.sigmoid()]
        if extra is not None:
            y.append(self.decode_extra(extra, anchors, strides))
        return torch.cat(y, 1)

    def decode_boxes(self, dist, anchors, extra):
        """ultralytics ``dist2bbox`` (utils/tal.py): xywh, or xyxy when end2end."""
        lt, rb = dist.chunk(2, 1)
        x1y1, x2y2 = anchors - lt, anchors + rb
        return torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) if not self.end2end else torch.cat((x1y1, x2y2), 1)

    def decode_boxes_cost(self, t, b, a):
        """dist2bbox per anchor: x1y1 = anchor - lt (2), x2y2 = anchor + rb (2); xywh adds (x1y1 + x2y2) / 2 (4)
        and x2y2 - x1y1 (2): 10 per anchor, xyxy 4."""
        t.ew("decode.dist2bbox", "add", b * a * (4 if self.end2end else 10))

    def decode_extra(self, extra, anchors, strides):
        return extra

    def forward_train(self, x):
        """ultralytics' training forward: the raw predictions of every branch set, no decode (no DFL), for the loss;
        the one-to-one set runs on detached inputs ("detach keeps one2one out of the backbone"), so its first convs
        compute no grad-input and send no gradient to the neck.  The ``feats`` ultralytics returns beside them are
        the head's inputs (the loss reads their shapes), not returned here."""
        bs = x[0].shape[0]
        preds = {}
        for prefix, heads in self.branches():
            xs = [xi.detach() for xi in x] if prefix else list(x)
            p = {"boxes": torch.cat([heads["cv2"][i](xs[i]).view(bs, 4 * self.reg_max, -1) for i in range(self.nl)], -1),
                 "scores": torch.cat([heads["cv3"][i](xs[i]).view(bs, self.nc, -1) for i in range(self.nl)], -1)}
            extra = self.train_task_heads(xs, heads, prefix)
            if extra is not None:
                p["extra"] = extra
            preds["one2one" if prefix else "one2many"] = p
        return preds if len(preds) > 1 else preds["one2many"]

    def train_task_heads(self, x, heads, prefix=""):  # the task branches' raw training outputs
        return self.run_task_heads(x, heads)


def _make_anchors(feats, strides, offset=0.5):
    points, st = [], []
    for i, f in enumerate(feats):
        h, w = f.shape[2:]
        sx = torch.arange(w, device=f.device, dtype=f.dtype) + offset
        sy = torch.arange(h, device=f.device, dtype=f.dtype) + offset
        yy, xx = torch.meshgrid(sy, sx, indexing="ij")
        points.append(torch.stack((xx, yy), -1).view(-1, 2))
        s = float(strides[i]) if len(strides) > i else 1.0
        st.append(torch.full((h * w, 1), s, dtype=f.dtype, device=f.device))
    return torch.cat(points).transpose(0, 1), torch.cat(st).transpose(0, 1)


def _decode_terms(m, t, b, a):
    """Element-wise work of the eval decode (boxes, stride, sigmoid) -- FlopCounterMode counts none of it.  The
    anchor grid (``make_anchors``: arange + 0.5, h + w adds per level, built once per input shape) is not counted,
    as YOLOv5's ``_make_grid``; the op-level counter sees it (tests/test_opcount.py states it)."""
    m.decode_boxes_cost(t, b, a)
    t.ew("decode.stride", "mul", b * a * 4)
    t.ew("decode.scores", "Sigmoid", b * a * m.nc)


@formula(DetectUL)
def detect_ul_cost(m, t, xs):
    if len(xs) != m.nl:
        raise ShapeError(f"{type(m).__name__} has {m.nl} levels but receives {len(xs)} inputs")
    b = xs[0][0]
    for prefix, heads in m.branches():
        for role, mlist in heads.items():
            if hasattr(m, "trace_task_branch"):
                m.trace_task_branch(t, prefix, role, mlist, xs)
            else:
                for i, x in enumerate(xs):
                    t(mlist[i], x, f"{prefix}{role}.{i}")
    a = _anchors_count(xs)
    if m.reg_max > 1:
        t(m.dfl, (b, 4 * m.reg_max, a), "dfl")
    _decode_terms(m, t, b, a)
    if hasattr(m, "decode_extra_cost"):
        m.decode_extra_cost(t, b, a)
    return (b, 4 + m.nc + m.extra_channels(), a)


# --------------------------------------------------------------------------------------------
@register("Segment", channels=_segment_rule, dialect=UL,
          description="Ultralytics segmentation head: Detect + per-level mask coefficients (cv4) + Proto on P3; "
                      "args [nc, nm=32, npr=256]")
class SegmentUL(DetectUL):
    task_heads = ("cv4",)

    def __init__(self, nc=80, nm=32, npr=256, reg_max=16, end2end=False, ch=(), legacy=False):
        super().__init__(nc, reg_max, False, ch, legacy)
        self.nm, self.npr = nm, npr
        self.proto = self.make_proto(ch, npr, nm, nc)
        c4 = max(ch[0] // 4, nm)
        self.cv4 = nn.ModuleList(nn.Sequential(Conv(x, c4, 3), Conv(c4, c4, 3), nn.Conv2d(c4, nm, 1)) for x in ch)
        self.has_one2one = bool(end2end)
        if end2end:
            self._copy_one2one(("cv2", "cv3", "cv4"))

    def make_proto(self, ch, npr, nm, nc):
        return Proto(ch[0], npr, nm)

    def extra_channels(self):
        return self.nm

    def run_task_heads(self, x, heads):
        bs = x[0].shape[0]
        return torch.cat([heads["cv4"][i](x[i]).view(bs, self.nm, -1) for i in range(self.nl)], 2)

    def run_proto(self, x):
        return self.proto(x[0])

    def forward(self, x):
        y = super().forward(x)
        return y, self.run_proto(x)


@formula(SegmentUL)
def segment_ul_cost(m, t, xs):
    y = detect_ul_cost(m, t, xs)
    p = t(m.proto, xs[0] if type(m.proto) is Proto else list(xs), "proto")
    return (y, p)


class Proto26(Proto):
    """YOLO26 prototypes: the finer levels refined to P3 channels (1x1), upsampled (nearest) and added to P3, a 3x3
    fuse conv, then Proto; ``semseg`` (3x3, 3x3, 1x1 -> nc) runs in training only."""

    def __init__(self, ch=(), c_=256, c2=32, nc=80):
        super().__init__(c_, c_, c2)
        self.feat_refine = nn.ModuleList(Conv(x, ch[0], k=1) for x in ch[1:])
        self.feat_fuse = Conv(ch[0], c_, k=3)
        self.semseg = nn.Sequential(Conv(ch[0], c_, k=3), Conv(c_, c_, k=3), nn.Conv2d(c_, nc, 1))

    def forward(self, x):
        feat = x[0]
        for i, f in enumerate(self.feat_refine):
            feat = feat + nn.functional.interpolate(f(x[i + 1]), scale_factor=2 ** (i + 1), mode="nearest")
        p = super().forward(self.feat_fuse(feat))
        if self.training and self.semseg is not None:  # ultralytics: the semantic logits for the training loss
            return p, self.semseg(feat)
        return p


@formula(Proto26)
def proto26_cost(m, t, xs):
    feat = xs[0]
    for i, f in enumerate(m.feat_refine):
        b, c, h, w = t(f, xs[i + 1], f"feat_refine.{i}")
        s = 2 ** (i + 1)
        if (h * s, w * s) != tuple(feat[2:]):
            raise ShapeError(f"Proto26: level {i + 1} ({h}x{w}) x{s} does not match P3 ({feat[2]}x{feat[3]})")
        t.ew(f"upsample.{i}", "Upsample.nearest", b * c * h * s * w * s)
        t.ew(f"add.{i}", "add", prod(feat))
    y = t(m.feat_fuse, feat, "feat_fuse")
    return t(m.cv3, t(m.cv2, t(m.upsample, t(m.cv1, y, "cv1"), "upsample"), "cv2"), "cv3")


@register("Segment26", channels=_segment_rule, dialect=UL,
          description="YOLO26 segmentation head: Segment with Proto26 over all levels; args [nc, nm=32, npr=256]")
class Segment26(SegmentUL):
    def make_proto(self, ch, npr, nm, nc):
        return Proto26(ch, npr, nm, nc)

    def run_proto(self, x):
        return self.proto(list(x))


formula(Segment26)(segment_ul_cost)


# --------------------------------------------------------------------------------------------
@register("OBB", channels=_detect_rule, dialect=UL,
          description="Ultralytics oriented-box head: Detect + per-level angle branch (cv4, ne outputs); args [nc, ne=1]")
class OBBUL(DetectUL):
    task_heads = ("cv4",)
    angle_sigmoid = True

    def __init__(self, nc=80, ne=1, reg_max=16, end2end=False, ch=(), legacy=False):
        super().__init__(nc, reg_max, False, ch, legacy)
        self.ne = ne
        c4 = max(ch[0] // 4, ne)
        self.cv4 = nn.ModuleList(nn.Sequential(Conv(x, c4, 3), Conv(c4, c4, 3), nn.Conv2d(c4, ne, 1)) for x in ch)
        self.has_one2one = bool(end2end)
        if end2end:
            self._copy_one2one(("cv2", "cv3", "cv4"))

    def extra_channels(self):
        return self.ne

    def run_task_heads(self, x, heads):
        bs = x[0].shape[0]
        angle = torch.cat([heads["cv4"][i](x[i]).view(bs, self.ne, -1) for i in range(self.nl)], 2)
        return (angle.sigmoid() - 0.25) * math.pi if self.angle_sigmoid else angle

    def decode_boxes(self, dist, anchors, angle):
        """ultralytics ``dist2rbox`` (utils/tal.py)."""
        lt, rb = dist.split(2, dim=1)
        cos, sin = torch.cos(angle), torch.sin(angle)
        xf, yf = ((rb - lt) / 2).split(1, dim=1)
        x, y = xf * cos - yf * sin, xf * sin + yf * cos
        xy = torch.cat([x, y], dim=1) + anchors
        return torch.cat([xy, lt + rb], dim=1)

    def decode_boxes_cost(self, t, b, a):
        """dist2rbox per anchor (ne angles): rb - lt and / 2 (4), cos and sin (2 ne), x = xf cos - yf sin and
        y = xf sin + yf cos (6 ne), + anchor (2 ne), lt + rb (2)."""
        ne = self.ne
        t.ew("decode.dist2rbox", "add", b * a * (6 + 8 * ne))
        t.ew("decode.dist2rbox cos, sin", "exp", b * a * 2 * ne)

    def decode_extra_cost(self, t, b, a):
        if self.angle_sigmoid:
            t.ew("angle", "Sigmoid", b * a * self.ne * len(self.branches()))
            t.ew("angle (-0.25)*pi", "add", b * a * self.ne * len(self.branches()), 2)


@register("OBB26", channels=_detect_rule, dialect=UL,
          description="YOLO26 oriented-box head: OBB with raw angle logits; args [nc, ne=1]")
class OBB26(OBBUL):
    angle_sigmoid = False


formula(OBBUL, OBB26)(detect_ul_cost)


# --------------------------------------------------------------------------------------------
@register("Pose", channels=_detect_rule, dialect=UL,
          description="Ultralytics pose head: Detect + per-level keypoint branch (cv4, kpts x dims); "
                      "args [nc, kpt_shape]")
class PoseUL(DetectUL):
    task_heads = ("cv4",)

    def __init__(self, nc=80, kpt_shape=(17, 3), reg_max=16, end2end=False, ch=(), legacy=False):
        super().__init__(nc, reg_max, False, ch, legacy)
        self.kpt_shape = tuple(kpt_shape)
        self.nk = kpt_shape[0] * kpt_shape[1]
        self.build_pose(ch)
        self.has_one2one = bool(end2end)
        if end2end:
            self._copy_one2one(("cv2", "cv3", *self.pose_modules))

    pose_modules = ("cv4",)

    def build_pose(self, ch):
        c4 = max(ch[0] // 4, self.nk)
        self.cv4 = nn.ModuleList(nn.Sequential(Conv(x, c4, 3), Conv(c4, c4, 3), nn.Conv2d(c4, self.nk, 1)) for x in ch)

    def extra_channels(self):
        return self.nk

    def run_task_heads(self, x, heads):
        bs = x[0].shape[0]
        return torch.cat([heads["cv4"][i](x[i]).view(bs, self.nk, -1) for i in range(self.nl)], 2)

    def decode_extra(self, kpts, anchors, strides):
        """ultralytics ``Pose.kpts_decode`` (not exported)."""
        d = self.kpt_shape[1]
        y = kpts.clone()
        if d == 3:
            y[:, 2::d] = y[:, 2::d].sigmoid()
        y[:, 0::d] = self.kpt_xy(y[:, 0::d], anchors[0], strides)
        y[:, 1::d] = self.kpt_xy(y[:, 1::d], anchors[1], strides)
        return y

    def kpt_xy(self, v, anchor, strides):
        return (v * 2.0 + (anchor - 0.5)) * strides

    def decode_extra_cost(self, t, b, a):
        k, d = self.kpt_shape
        if d == 3:
            t.ew("kpts.visibility", "Sigmoid", b * a * k)
        t.ew("kpts.xy", "mul", b * a * k * 2, 3)  # (v * 2 + (anchor - 0.5)) * stride
        t.ew("kpts.anchor - 0.5", "add", a * 2)  # once per anchor (x, y), not per image or keypoint


@register("Pose26", channels=_detect_rule, dialect=UL,
          description="YOLO26 pose head: cv4 (2 Convs) -> cv4_kpts 1x1; cv4_sigma and the RealNVP flow model are "
                      "training-only; args [nc, kpt_shape]")
class Pose26(PoseUL):
    task_heads = ("cv4", "cv4_kpts")
    pose_modules = ("cv4", "cv4_kpts", "cv4_sigma")

    def build_pose(self, ch):
        k, d = self.kpt_shape
        self.flow_model = RealNVP()
        c4 = max(ch[0] // 4, k * (d + 2))
        self.cv4 = nn.ModuleList(nn.Sequential(Conv(x, c4, 3), Conv(c4, c4, 3)) for x in ch)
        self.cv4_kpts = nn.ModuleList(nn.Conv2d(c4, self.nk, 1) for _ in ch)
        self.nk_sigma = k * 2
        self.cv4_sigma = nn.ModuleList(nn.Conv2d(c4, self.nk_sigma, 1) for _ in ch)

    def run_task_heads(self, x, heads):
        bs = x[0].shape[0]
        feats = [heads["cv4"][i](x[i]) for i in range(self.nl)]
        return torch.cat([heads["cv4_kpts"][i](feats[i]).view(bs, self.nk, -1) for i in range(self.nl)], 2)

    def train_task_heads(self, x, heads, prefix=""):
        """Training adds the keypoint sigmas (``cv4_sigma`` on the cv4 features), as ultralytics' forward_head."""
        bs = x[0].shape[0]
        feats = [heads["cv4"][i](x[i]) for i in range(self.nl)]
        kpts = torch.cat([heads["cv4_kpts"][i](feats[i]).view(bs, self.nk, -1) for i in range(self.nl)], 2)
        sigma_heads = getattr(self, prefix + "cv4_sigma", None)
        if sigma_heads is None:
            return kpts
        sigma = torch.cat([sigma_heads[i](feats[i]).view(bs, self.nk_sigma, -1) for i in range(self.nl)], 2)
        return kpts, sigma

    def trace_task_branch(self, t, prefix, role, mlist, xs):
        if role == "cv4_kpts":
            return  # traced with cv4 (it runs on cv4's output)
        for i, x in enumerate(xs):
            y = t(mlist[i], x, f"{prefix}{role}.{i}")
            if role == "cv4":
                t(getattr(self, prefix + "cv4_kpts")[i], y, f"{prefix}cv4_kpts.{i}")

    def kpt_xy(self, v, anchor, strides):  # Pose26.kpts_decode
        return (v + anchor) * strides

    def decode_extra_cost(self, t, b, a):
        k, d = self.kpt_shape
        if d == 3:
            t.ew("kpts.visibility", "Sigmoid", b * a * k)
        t.ew("kpts.xy", "add", b * a * k * 2, 2)  # (v + anchor) * stride


class RealNVP(nn.Module):
    """The RealNVP flow of YOLO26's pose loss (6 coupling layers of 2->64->64->2 MLPs for scale and shift); it only runs
    in training, but its parameters are part of the head."""

    def __init__(self):
        super().__init__()
        def nets():
            return nn.Sequential(nn.Linear(2, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 2), nn.Tanh())

        def nett():
            return nn.Sequential(nn.Linear(2, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 2))

        self.register_buffer("loc", torch.zeros(2))
        self.register_buffer("cov", torch.eye(2))
        self.register_buffer("mask", torch.tensor([[0, 1], [1, 0]] * 3, dtype=torch.float32))
        self.s = nn.ModuleList([nets() for _ in range(6)])
        self.t = nn.ModuleList([nett() for _ in range(6)])

    def forward(self, x):  # only used by the training loss
        raise NotImplementedError("RealNVP runs in the pose loss only")


formula(PoseUL, Pose26)(detect_ul_cost)


# --------------------------------------------------------------------------------------------
@custom("v10detect", "args = [nc, [ch[x] for x in from]] (always end-to-end, reg_max 16)")
def _v10_rule(row):
    row.require_int_arg(0, "nc")
    return [*row.args, _levels(row)], _levels(row), row.n


@register("v10Detect", channels=_v10_rule, dialect=UL,
          description="YOLOv10 NMS-free head: Detect (reg_max 16) whose class branch is dw 3x3 + 1x1 twice, with "
                      "one-to-one copies of both branches; args [nc]")
class v10Detect(DetectUL):  # noqa: N801 - YAML name
    def __init__(self, nc=80, ch=()):
        super().__init__(nc, 16, False, ch, legacy=False)
        c3 = max(ch[0], min(nc, 100))
        self.cv3 = nn.ModuleList(nn.Sequential(nn.Sequential(Conv(x, x, 3, g=x), Conv(x, c3, 1)),
                                               nn.Sequential(Conv(c3, c3, 3, g=c3), Conv(c3, c3, 1)),
                                               nn.Conv2d(c3, nc, 1)) for x in ch)
        self.has_one2one = True
        self._copy_one2one(("cv2", "cv3"))


formula(v10Detect)(detect_ul_cost)


# --------------------------------------------------------------------------------------------
@custom("classify", "c1 = ch[from] (summed over a list); c2 = args[0] (the classes, never width-scaled); "
                    "args = [c1, c2, *args[1:]]")
def _classify_rule(row):
    f = row.inputs()
    c1 = sum(row.ch[x] for x in f) if isinstance(row.f, list) else row.c_in()
    c2 = row.require_int_arg(0, "classes")
    return [c1, c2, *row.args[1:]], c2, row.n


@register("Classify", channels=_classify_rule, dialect=UL,
          description="Ultralytics classification head: Conv k x k -> 1280, global average pool, Linear -> nc, "
                      "softmax; args [nc, k=1, s=1, p, g]")
class Classify(nn.Module):
    def __init__(self, c1, c2, k=1, s=1, p=None, g=1):
        super().__init__()
        c_ = 1280
        self.conv = Conv(c1, c_, k, s, p, g)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(p=0.0, inplace=True)
        self.linear = nn.Linear(c_, c2)

    def forward(self, x):
        if isinstance(x, list):
            x = torch.cat(x, 1)
        x = self.linear(self.drop(self.pool(self.conv(x)).flatten(1)))
        return x if self.training else x.softmax(1)  # ultralytics: logits in training


@formula(Classify)
def classify_cost(m, t, x):
    if isinstance(x, list):
        from flopscope.shapes import cat_channels

        x = cat_channels(x)
    check_channels(m, x[1], m.conv.conv.in_channels)
    y = t(m.conv, x, "conv")
    b, c = y[:2]
    t(m.pool, y, "pool")
    y = t(m.linear, (b, c), "linear")
    t.ew("softmax", "softmax", prod(y))
    return y


from flopscope.fuse import fuser  # noqa: E402


def _drop(m, names):
    dropped = [n for n in names if getattr(m, n, None) is not None]
    for n in dropped:
        setattr(m, n, None)
    return dropped


@fuser(DetectUL, what="the one-to-one branch copies of the end-to-end head dropped, as on a fresh build, whose "
                       "end2end is off")
def fuse_detect_ul(m):
    """ultralytics' Detect.fuse(): ``setattr(self, name[8:] if end2end else name, None)`` for every ``one2one_*``
    module.  A freshly built model has ``end2end`` off (it decodes the one-to-many branches), so the one-to-one
    copies go; both sets have the same shapes, so params and FLOPs are the same either way."""
    dropped = _drop(m, [n for n in m._modules if n.startswith("one2one_")])
    m.has_one2one = False
    return bool(dropped)


@fuser(Segment26, what="the one-to-one branch copies of the end-to-end head and the training-only semseg "
                       "branch of Proto26 dropped")
def fuse_segment26(m):
    """Segment26.fuse(): Detect.fuse(), then Proto26.fuse() (``semseg = None``)."""
    dropped = fuse_detect_ul(m)
    return bool(_drop(m.proto, ["semseg"])) or dropped


@fuser(Pose26, what="the one-to-one branch copies of the end-to-end head, the training-only RealNVP flow and "
                    "the sigma convs dropped")
def fuse_pose26(m):
    """Pose26.fuse(): Detect.fuse(), then ``flow_model = None`` and the kept set's ``cv4_sigma = None``."""
    dropped = fuse_detect_ul(m)
    return bool(_drop(m, ["flow_model", "cv4_sigma"])) or dropped
