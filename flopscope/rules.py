"""Counter rules, by their old names.  The rules now live with each counter, one file per counter, in
:mod:`flopscope.counters` (``counters/thop.py`` holds thop 0.1.x's and 2.x's tables, ...); the machinery
(``Rule``, ``Table``, applying a table) is :mod:`flopscope.counters.rules`.

``COUNTER_RULES``: rule table key -> ``{op label: Rule}`` (named apart from ``flopscope.plugins.RULES``, the
channel rules).  :func:`thop_macs`: the legacy YOLOv5 model_info figure's thop-0.1.x rules.
"""
from __future__ import annotations

from .counters import COUNTERS as _COUNTERS
from .counters.fvcore import FVCORE_RULES  # noqa: F401
from .counters.fcm import FCM_RULES  # noqa: F401
from .counters.ptflops import PTFLOPS_RULES  # noqa: F401
from .counters.ptflops_aten import PTFLOPS_ATEN_RULES  # noqa: F401
from .counters.rules import TABLES, Context, Rule, Table, evaluate, ours, owner_chain, predict, rule_for  # noqa: F401
from .counters.thop import THOP2_RULES, THOP_RULES, thop_macs  # noqa: F401

COUNTERS = tuple(_COUNTERS)  #: counter names in column order
COUNTER_RULES: dict[str, dict[str, Rule]] = {key: t.rules for key, t in TABLES.items()}
