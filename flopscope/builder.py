"""The YAML builder: YOLOv5's ``parse_model`` format, with channel rules from the registry.

``build_model(cfg)`` returns a :class:`DetectionModel` whose ``model`` is an ``nn.Sequential``
of layers in YAML row order (so ``model.model.17`` is YOLOv5's layer 17) and whose ``layers``
list carries each row's from / n / module name / args as YOLOv5 logs them.  On the ``meta``
device no weight is allocated or initialised.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn as nn

from . import config as cfgmod
from .channels import Row
from .dialects import get_dialect
from .errors import ConfigError, FlopscopeError
from .registry import ModuleSpec, RegistryError, all_specs, load_zoo, lookup
from .rows import RowKey


@dataclass
class LayerInfo(RowKey):
    """The row as built: ``n`` after the depth gain (the 'n' column of YOLOv5's log), ``args`` the constructor
    args as YOLOv5's log prints them."""

    c2: int | list
    spec: ModuleSpec
    built_on_cpu: bool = False  # its constructor cannot run on the meta device


class DetectionModel(nn.Module):
    """A model built from a config; forward follows YOLOv5's ``_forward_once``."""

    def __init__(self, layers: nn.Sequential, save: list[int], info: list[LayerInfo], config: cfgmod.ModelConfig):
        super().__init__()
        self.model = layers
        self.save = save
        self.layers = info
        self.config = config
        self.ch = config.ch
        self.stride = torch.tensor([32.0], device="cpu")
        self.fuse_summary = None  # flopscope.fuse.FuseSummary once fuse_model() has folded it (see is_fused)

    @property
    def name(self) -> str:
        return self.config.name

    def forward(self, x):
        from .engine import layer_inputs

        y = []
        for m, info in zip(self.model, self.layers):
            x = m(layer_inputs(info.f, x, y))
            y.append(x if info.index in self.save else None)
        return x


_INIT_FUNCS = ("uniform_", "normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_", "xavier_uniform_",
               "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "trunc_normal_", "orthogonal_")


@contextlib.contextmanager
def skip_init():
    """Make torch.nn.init a no-op (weights on ``meta`` hold no values anyway)."""
    import torch.nn.init as init

    saved = {n: getattr(init, n) for n in _INIT_FUNCS if hasattr(init, n)}
    for n in saved:
        setattr(init, n, lambda tensor, *a, **k: tensor)
    try:
        yield
    finally:
        for n, fn in saved.items():
            setattr(init, n, fn)


@contextlib.contextmanager
def default_activation(act):
    """YOLOv5's ``activation:`` key sets ``Conv.default_act``; here only for this build."""
    if act is None:
        yield
        return
    classes = {spec.cls for _, _, spec in all_specs() if "default_act" in vars(spec.cls)}
    saved = {c: c.default_act for c in classes}
    for c in classes:
        c.default_act = act
    try:
        yield
    finally:
        for c, a in saved.items():
            c.default_act = a


def build_model(cfg, nc: int | None = None, device: str | torch.device = "meta", fuse: bool = False,
                dialect: str | None = None, scale: str | None = None) -> DetectionModel:
    """Build a model from a bundled config name, a YAML path, a dict or a :class:`ModelConfig`.

    ``fuse=True``: the model as the framework's own ``fuse()`` leaves it (:mod:`flopscope.fuse`).
    ``dialect`` ('yolov5' / 'ultralytics') overrides the detected one; ``scale`` picks an Ultralytics
    ``scales:`` row (default: from the model name, as ultralytics does).

    A YAML of a YOLOv5 fork (``--fork DIR``, or inside a checkout's ``models/``) is built by the
    fork's own code (:mod:`flopscope.fork`)."""
    load_zoo()
    from .fork import build_with_fork, fork_for

    root = fork_for(cfg)
    if root is not None:
        return build_with_fork(root, cfg, nc=nc, device=device)
    conf = cfg if isinstance(cfg, cfgmod.ModelConfig) else cfgmod.load(cfg, nc, dialect, scale)
    device = torch.device(device)
    def init_ctx():
        return skip_init() if device.type == "meta" else contextlib.nullcontext()

    with torch.device(device), init_ctx():  # the activation's parameters (PReLU) live on the device too
        act = cfgmod.parse_activation(conf.activation, conf.file) if conf.activation else None
    with torch.device(device), init_ctx(), default_activation(act):
        layers, save, info = _parse(conf)
        model = DetectionModel(nn.Sequential(*layers), save, info, conf)
    model.eval()
    set_strides(model)
    if fuse:
        from .fuse import fuse_model

        fuse_model(model)
    return model


def _parse(conf: cfgmod.ModelConfig):
    gd, gw, nc = conf.depth_multiple, conf.width_multiple, conf.nc
    dialect = get_dialect(conf.dialect)
    no = dialect.no(conf)
    symbols = dialect.symbols(conf)
    state = dialect.initial_state(conf)
    ch = [conf.ch]
    layers, save, info = [], [], []
    for r in conf.rows:
        i = r.index
        try:
            spec = lookup(r.module, conf.dialect)
        except RegistryError as e:
            raise ConfigError(str(e), file=conf.file, layer=i, field="module") from None
        args = cfgmod.resolve_args(r.args, nc, conf.anchors, conf.file, i, symbols)
        n = max(round(r.n * gd), 1) if r.n > 1 else r.n
        row = Row(i, r.f, n, args, ch, gw, nc, no, conf.file, gd=gd, max_channels=conf.max_channels,
                  dialect=conf.dialect, scale=conf.scale, state=state)
        try:
            args, c2, n_seq = spec.channels(row)
        except ConfigError:
            raise
        except FlopscopeError as e:
            raise ConfigError(f"{r.module}: {e}", file=conf.file, layer=i, field="args") from None
        except Exception as e:  # noqa: BLE001 - a channel rule (also a plugin's) failing on odd args
            raise ConfigError(f"{r.module}: cannot derive channels from args {cfgmod.show(r.args)}: "
                              f"{type(e).__name__}: {_msg(e)}", file=conf.file, layer=i, field="args") from e
        _check_channels(c2, conf.file, i, r.module)
        try:
            m, on_cpu = _construct(spec, args, n_seq)
        except ConfigError:
            raise
        except FlopscopeError as e:
            raise ConfigError(f"{r.module}: {e}", file=conf.file, layer=i, field="args") from None
        except Exception as e:  # noqa: BLE001 - any constructor failure becomes a config error
            raise ConfigError(f"{r.module}{_short(args)} failed to build: {type(e).__name__}: {_msg(e)}",
                              file=conf.file, layer=i, field="args") from e
        _check_hyper(m, conf.file, i, r.module)
        info.append(LayerInfo(i, r.f, n, r.module, args, c2, spec, on_cpu))
        save.extend(x % i for x in ([r.f] if isinstance(r.f, int) else r.f) if x != -1)
        layers.append(m)
        if i == 0:
            ch = []
        ch.append(c2)
    return layers, sorted(set(save)), info


def _construct(spec: ModuleSpec, args: list, n: int) -> tuple[nn.Module, bool]:
    """Instantiate (n times in a Sequential when n > 1); a constructor that cannot run on the
    meta device is retried on CPU with real initialisation.  Returns (module, built on CPU)."""
    def make():
        return nn.Sequential(*(spec.cls(*args) for _ in range(n))) if n > 1 else spec.cls(*args)

    try:
        return make(), False
    except (NotImplementedError, RuntimeError) as e:
        if torch.get_default_device().type != "meta" or "meta" not in str(e).lower():
            raise
    with torch.device("cpu"):
        return make(), True


def _check_channels(c2, file, i, module):
    for c in c2 if isinstance(c2, list) else [c2]:
        if isinstance(c, bool) or not isinstance(c, int) or c <= 0:
            raise ConfigError(f"{module} would have {cfgmod.show(c)} output channels (width_multiple too small, or a "
                              f"channel argument that is not a positive integer)", file=file, layer=i, field="args")
        if c > 1_000_000:
            raise ConfigError(f"{module} would have {c} output channels; not plausible", file=file, layer=i,
                              field="args")


_WINDOWED = (nn.modules.conv._ConvNd, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)


def _check_hyper(m: nn.Module, file, i, module):
    """Kernel / stride / dilation / groups / scale that torch accepts at construction but that
    cannot run (0, negative, fractional) are reported at the layer that sets them."""
    for name, sub in m.named_modules():
        checks = []
        if isinstance(sub, _WINDOWED):
            checks = [(a, getattr(sub, a, None)) for a in ("kernel_size", "stride", "dilation", "groups")]
        elif isinstance(sub, nn.Upsample):
            if sub.scale_factor is None and sub.size is None:
                raise ConfigError(f"{module} ({type(sub).__name__}): needs a size or a non-zero scale_factor",
                                  file=file, layer=i, field="args")
            checks = [("scale_factor", sub.scale_factor), ("size", sub.size)]
        for attr, v in checks:
            vals = v if isinstance(v, (tuple, list)) else (v,)
            for x in vals:
                if x is None:
                    continue
                ok = (isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 and x == x
                      and x != float("inf") and (attr == "scale_factor" or float(x).is_integer()))
                if not ok:
                    part = f" ({type(sub).__name__} {name})" if name else f" ({type(sub).__name__})"
                    raise ConfigError(f"{module}{part}: {attr} must be a positive "
                                      f"{'number' if attr == 'scale_factor' else 'integer'}, got {cfgmod.show(v)}",
                                      file=file, layer=i, field="args")


def _short(args) -> str:
    return cfgmod.show(args)


def _msg(e: BaseException, limit: int = 200) -> str:
    s = str(e).replace("\n", " ")
    return s if len(s) <= limit else s[: limit - 3] + "..."


def set_strides(model: DetectionModel, s: int = 256) -> None:
    """Strides by shape propagation (YOLOv5 runs a 256x256 forward); sets the head's stride too."""
    from .engine import propagate

    try:
        shapes, head_inputs = propagate(model, (1, model.ch, s, s))
    except FlopscopeError:
        return  # reported properly when the model is counted at the requested size
    try:
        stride = get_dialect(model.config.dialect).strides(model, shapes, head_inputs, s)
        if not bool(torch.isfinite(stride).all()) or not bool((stride > 0).all()):
            raise ValueError("stride")
    except (TypeError, ValueError, IndexError, ZeroDivisionError, RuntimeError):
        return  # odd output shapes: keep the default stride; counting reports real problems
    model.stride = stride
