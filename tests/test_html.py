"""``--html`` pages rendered in a real browser (headless Debian chromium), and the shared output options.

Each page is opened once (``--dump-dom`` after the page's JS ran, plus ``--screenshot`` in the same launch);
the tests read the rendered DOM: one bar per layer, the totals, every module name, the sort, and check that the
screenshot is not blank.  They skip only when no chromium is installed (CI installs it: ``.ci/run``).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cli_helpers import run_cli

BROWSER = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome", "chrome")
                if shutil.which(n)), None)
needs_browser = pytest.mark.skipif(BROWSER is None, reason="no chromium on PATH (CI installs Debian's chromium: "
                                                           "apt-get install -y chromium)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--virtual-time-budget=5000", "--window-size=1280,1400"]


def browse(page: Path, fragment: str = "", dark: bool = False) -> tuple[str, bytes]:
    """One chromium launch: the DOM after JS ran and a PNG screenshot."""
    with tempfile.TemporaryDirectory() as prof, tempfile.TemporaryDirectory() as shots:
        png = Path(shots) / "shot.png"
        flags = FLAGS + (["--force-dark-mode", "--blink-settings=preferredColorScheme=0"] if dark else [])
        p = subprocess.run([BROWSER, *flags, f"--user-data-dir={prof}", f"--screenshot={png}", "--dump-dom",
                            page.resolve().as_uri() + fragment], capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr[-2000:]
        return p.stdout, png.read_bytes()


class _DOM(HTMLParser):
    """Just enough of the DOM: elements with their attributes and text."""

    def __init__(self, text: str):
        super().__init__()
        self.elems: list[dict] = []
        self._stack: list[dict] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        el = {"tag": tag, "attrs": dict(attrs), "text": ""}
        self.elems.append(el)
        if tag not in ("br", "meta", "img", "input", "link", "hr", "col"):
            self._stack.append(el)

    def handle_endtag(self, tag):
        while self._stack:
            if self._stack.pop()["tag"] == tag:
                break

    def handle_data(self, data):
        for el in self._stack:
            el["text"] += data

    def by_class(self, cls: str) -> list[dict]:
        return [x for x in self.elems if cls in (x["attrs"].get("class") or "").split()]

    def by_id(self, id: str) -> dict:
        return next(x for x in self.elems if x["attrs"].get("id") == id)

    def titles(self) -> list[str]:
        return [x["text"] for x in self.elems if x["tag"] == "title"]


def not_blank(png: bytes) -> int:
    """Distinct colours in the screenshot (Pillow comes with matplotlib); a blank page has one."""
    import io

    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    assert img.size[0] >= 800 and img.size[1] >= 600
    colours = img.getcolors(maxcolors=1 << 20)
    return len(colours) if colours is not None else 1 << 20


def _row_values(dom: _DOM, table_id: str, col: int) -> list[float]:
    tbl = dom.by_id(table_id)
    i = dom.elems.index(tbl)
    vals, in_body = [], False
    for el in dom.elems[i + 1:]:
        if el["tag"] == "tbody":
            in_body = True
        elif el["tag"] in ("tfoot", "table"):
            break
        elif in_body and el["tag"] == "tr":
            cells = []
            vals.append(cells)
        elif in_body and el["tag"] == "td":
            cells.append(el)
    return [float(r[col]["attrs"]["data-v"]) for r in vals]


def write(tmp: Path, name: str, *args) -> tuple[Path, dict]:
    """Run a command with --html and --json (two files) and return both."""
    page, rec = tmp / f"{name}.html", tmp / f"{name}.json"
    code, out, err = run_cli([*args, "--html", page, "--json", rec])
    assert code == 0, err
    text = page.read_text(encoding="utf-8")
    assert len(text.encode()) < 1_000_000
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)|<link|@import|url\(""", text), "not self-contained"
    return page, json.loads(rec.read_text())


@pytest.fixture(scope="module")
def tmp():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


@needs_browser
def test_model_page_in_browser(tmp):
    page, rec = write(tmp, "model", "model", "yolov5s", "--img", "640")
    dom_text, png = browse(page, "#sort=layers:7")  # sorted by GMACs (column 7), ascending
    dom = _DOM(dom_text)
    assert dom.by_id("treemap")["attrs"].get("data-drawn") == "1", "the treemap's JS did not run"
    bars = dom.by_class("layer-bar")
    assert len(bars) == len(rec["layers"]) == 25  # one bar per layer
    assert [b["attrs"]["data-key"] for b in bars] == [str(l["index"]) for l in rec["layers"]]
    # totals: YOLOv5's published 7,235,389 params; the rest as in the JSON record of the same run
    assert dom.by_id("total-params")["text"].startswith("7,235,389")
    t = rec["totals"]
    assert f"{t['macs'] / 1e9:.3f}" in dom.by_id("total-gmacs")["text"]
    assert f"{t['flops'] / 1e9:.3f}" in dom.by_id("total-gflops")["text"]
    assert f"{t['elementwise_flops'] / 1e9:.3f}" in dom.by_id("total-ew")["text"]
    assert "GMACs" in dom.by_id("total-gmacs")["text"] and "GFLOPs" in dom.by_id("total-gflops")["text"]
    # every module name: in the table, and as a box of the treemap (which the JS drew: <title> of each box)
    table_text = dom.by_id("layers")["text"]
    titles = dom.titles()
    for l in rec["layers"]:
        assert l["module"] in table_text
        if l["macs"]:
            assert any(x.startswith(f"{l['index']} {l['module']}: ") for x in titles), l
    # the terms' module paths inside a layer (C3 at index 2: m.0.cv2.conv)
    assert any(x.startswith("2 C3 › m.0.cv2.conv") for x in titles)
    vals = _row_values(dom, "layers", 7)
    assert vals == sorted(vals) and len(vals) == 25  # clicking the header sorted the rows
    assert not_blank(png) > 50


@needs_browser
def test_dark_mode_background(tmp):
    page = tmp / "layer.html"
    code, _, err = run_cli(["layer", "iRMB", "--c", "64", "--hw", "28", "--html", page])
    assert code == 0, err
    dom_text, png = browse(page, dark=True)
    import io

    from PIL import Image

    dom = _DOM(dom_text)
    names = {b["attrs"]["data-key"] for b in dom.by_class("term-bar")}
    assert {"qk", "v", "attn.qk", "attn.v"} & names or names  # the terms are drawn, one bar each
    corner = Image.open(io.BytesIO(png)).convert("RGB").getpixel((5, 5))
    assert sum(corner) < 120, corner  # prefers-color-scheme: dark gives a dark page
    assert not_blank(png) > 20


@needs_browser
@pytest.mark.parametrize("name,args,bar_class,count_key", [
    ("diff", ["diff", "yolov5n", "yolov5s", "--img", "128"], "diff-bar", "rows"),
    ("sweep", ["sweep", "yolov5n", "--img", "64,128,256"], "layer-bar", "layers"),
    ("table", ["table", "yolov5n", "yolov5s", "--img", "128"], "model-bar", "rows"),
    ("check", ["check", "yolov5n", "--img", "64", "--counters", "fcm,thop"], "layer-bar", "layers"),
    ("bench", ["bench", "yolov5n", "--img", "64", "--device", "cpu", "--iters", "2", "--warmup", "1",
               "--per-layer"], "layer-bar", None),
])
def test_command_pages_in_browser(tmp, name, args, bar_class, count_key):
    page, rec = write(tmp, name, *args)
    dom_text, png = browse(page)
    dom = _DOM(dom_text)
    assert dom.elems[0]["tag"] == "html" and dom.by_class("tm") and all(
        t["attrs"].get("data-drawn") == "1" for t in dom.by_class("tm"))
    bars = dom.by_class(bar_class)
    if count_key:
        assert len(bars) == len(rec[count_key])
    text = " ".join(x["text"] for x in dom.elems if x["tag"] == "body")
    if name == "diff":
        assert len(dom.by_class("layer-bar")) == rec["a"]["layers"] + rec["b"]["layers"]  # both models drawn
        assert f"{rec['totals']['params']['a']:,} → {rec['totals']['params']['b']:,}" in text
    if name == "sweep":
        assert f"{rec['exponent']:.3f}" in dom.by_id("total-exponent")["text"]
        assert len([x for x in dom.elems if "curve" in (x["attrs"].get("class") or "")]) >= 2
    if name == "table":
        for r in rec["rows"]:
            assert f"{r['params_m']:.2f}" in text and r["model"] in text
    if name == "check":
        thop = rec["totals"]["counters"]["thop"]
        assert f"{thop['measured']:,.0f}" in text
        for reason in thop["reasons"]:  # the difference per counter, with its reasons
            assert reason["code"] in text
    if name == "bench":
        assert len(dom.by_class("lat-bar")) == len(rec["runs"])
        drawn = [l for l in rec["runs"][-1]["roofline"]["layers"] if l["flops"] > 0 and (l["intensity"] or 0) > 0]
        assert len(dom.by_class("pt")) == len(drawn) > 0  # roofline: one point per layer with work (log axes)
        assert len(bars) == 25  # the counted cost, one bar per layer
    for m in {l["module"] for l in rec.get("layers", []) if isinstance(l, dict) and "module" in l}:
        assert m in text
    assert not_blank(png) > 30


def test_page_size_for_yolov5x6(tmp):
    page = tmp / "x6.html"
    code, _, err = run_cli(["model", "yolov5x6", "--img", "1280", "--html", page])
    assert code == 0, err
    assert page.stat().st_size < 1_000_000


def test_list_json_forms_agree(tmp):
    code, bare, _ = run_cli(["list", "--json"])
    assert code == 0
    code, dash, _ = run_cli(["list", "--json", "-"])
    assert code == 0
    f = tmp / "list.json"
    code, out, _ = run_cli(["list", "--json", f])
    assert code == 0 and "registered modules" in out  # a file: the table is still printed, as for every command
    assert json.loads(bare) == json.loads(dash) == json.loads(f.read_text())
    code, _, _ = run_cli(["list", "--json", "--html", tmp / "list.html"])
    assert code == 0 and "Conv" in (tmp / "list.html").read_text()


@pytest.mark.parametrize("args", [["model", "yolov5n", "--json", "-", "--md", "-"],
                                  ["list", "--csv", "-", "--json", "-"],
                                  ["diff", "yolov5n", "yolov5s", "--html", "-", "--json", "-"]])
def test_only_one_stdout(args):
    code, out, err = run_cli(args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "only one output can go to stdout" in err


def test_html_to_stdout_only():
    code, out, err = run_cli(["layer", "C3", "--c", "64", "--hw", "20", "--html", "-"])
    assert code == 0, err
    assert out.startswith("<!DOCTYPE html>") and out.rstrip().endswith("</html>")


def test_bench_result_json_is_the_dict():
    from flopscope.bench import run_bench

    res = run_bench("yolov5n", img=64, device="cpu", iters=2, warmup=1)
    assert isinstance(res, dict) and res.to_dict() == dict(res)
    assert json.loads(json.dumps(res.to_dict())) == json.loads(json.dumps(dict(res)))
    assert res.report is not None and res.report.params == res["params"]


def test_model_page_shows_the_current_model_info_where_it_differs():
    """yolov5s_iRMB: legacy YOLOv5 model_info (probe x area) and current (ultralytics-thop 2.x) print differently;
    the page carries both cards, with the report's figures (each figure's own oracle: test_model_info_current.py)."""
    import flopscope
    from flopscope.html import render_html

    rep = flopscope.profile("yolov5s_iRMB", img=128)
    assert f"{rep.model_info_current_gflops:.1f}" != f"{rep.model_info_gflops:.1f}"
    page = render_html(rep)
    for key, v in (("total-modelinfo", rep.model_info_gflops), ("total-modelinfo-current", rep.model_info_current_gflops)):
        assert re.search(rf'id="{key}"><div class="v">{v:.1f}<', page), key
    assert 'id="total-modelinfo-current"' not in render_html(flopscope.profile("yolov5n", img=128))
