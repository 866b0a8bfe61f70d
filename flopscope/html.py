"""``--html FILE``: one self-contained HTML page per result (inline CSS, JS and SVG; no network, no fonts, no
libraries; opens from disk; light and dark via ``prefers-color-scheme``).

Every page is built from the same few pieces: summary cards (the totals, ``id="total-..."``), a sortable table
(click a header), per-layer stacked bars (MACs by kind -- conv / linear / matmul -- on one axis, element-wise
FLOPs on their own axis: the units are never mixed), a treemap of cost by module path (the terms' names: a
layer's terms are named by module path inside the layer, e.g. ``m.0.cv2.conv``), and per command: the
difference per counter with its reasons (check), the curves with fitted exponents (sweep), latency and
roofline charts (bench), the two models side by side (diff).  Charts are SVG written here; the treemap is laid
out by ~60 lines of inline JS from a compact JSON tree (so yolov5x6's page stays well under 1 MB).
"""
from __future__ import annotations

import json
import math
from html import escape

from . import __version__ as _VERSION
from .units import LABELS

KIND_LABEL = {"conv": "conv MACs", "linear": "linear MACs", "matmul": "matmul MACs",
              "elementwise": "element-wise FLOPs"}
MAC_KINDS = ("conv", "linear", "matmul")


def e(v) -> str:
    return escape(str(v), quote=True)


def gv(v, digits: int = 3) -> str:
    return "-" if v is None else f"{v / 1e9:.{digits}f}"


def num(v, fmt: str = ",") -> str:
    return "-" if v is None else format(v, fmt)


# -- the page ----------------------------------------------------------------------------------------------------

CSS = """
:root{--bg:#fff;--fg:#1b1f24;--mut:#5c6670;--line:#d5dae0;--card:#f4f6f8;--hi:#fff7d6;
--conv:#3b6fb6;--linear:#d0604f;--matmul:#2e8b57;--ew:#c79a12;--a:#3b6fb6;--b:#d0604f;--bad:#c0392b;--ok:#2e8b57}
@media (prefers-color-scheme:dark){:root{--bg:#111418;--fg:#e6e9ed;--mut:#9aa4ae;--line:#39414a;--card:#1b2027;
--hi:#3a3413;--conv:#6fa0e8;--linear:#f08a7a;--matmul:#5cc38a;--ew:#e3bd45;--a:#6fa0e8;--b:#f08a7a;--bad:#ff7a6b;
--ok:#5cc38a}}
*{box-sizing:border-box}
body{margin:0;padding:20px 28px;background:var(--bg);color:var(--fg);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
h1{font-size:22px;margin:0 0 2px}h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid var(--line);
padding-bottom:4px}.sub{color:var(--mut);margin:0 0 12px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:8px 14px;min-width:140px}
.card .v{font-size:20px;font-weight:600;font-variant-numeric:tabular-nums}.card .l{color:var(--mut);font-size:12px}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:13px;margin:6px 0}
th,td{padding:3px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
td.n,th.n{text-align:right}th{position:sticky;top:0;background:var(--card);cursor:pointer;user-select:none;
white-space:nowrap}th[data-dir=asc]::after{content:" \\25B2"}th[data-dir=desc]::after{content:" \\25BC"}
tfoot td{font-weight:600;border-top:2px solid var(--line)}tr:hover td{background:var(--hi)}
.wrap{overflow-x:auto}.mut{color:var(--mut)}.bad{color:var(--bad)}.ok{color:var(--ok)}
svg{display:block;max-width:100%;height:auto}svg text{fill:var(--fg);font-size:11px}
svg .axis{stroke:var(--line)}svg .grid{stroke:var(--line);stroke-dasharray:2 3}
.k-conv{fill:var(--conv)}.k-linear{fill:var(--linear)}.k-matmul{fill:var(--matmul)}.k-elementwise{fill:var(--ew)}
.s-a{stroke:var(--a);fill:var(--a)}.s-b{stroke:var(--b);fill:var(--b)}
.legend{display:flex;gap:14px;flex-wrap:wrap;font-size:12px;color:var(--mut);margin:4px 0}
.legend i{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:4px;vertical-align:-1px}
.cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:18px}
.tm rect.leaf{stroke:var(--bg);stroke-width:.6}.tm rect.grp{fill:none;stroke:var(--fg);stroke-opacity:.45}
.tm text{font-size:10px;pointer-events:none}.btn{font:inherit;background:var(--card);color:var(--fg);
border:1px solid var(--line);border-radius:6px;padding:2px 10px;margin-right:6px;cursor:pointer}
.btn.on{border-color:var(--fg);font-weight:600}ul.notes{color:var(--mut);margin:6px 0;padding-left:20px}
footer{color:var(--mut);font-size:12px;margin-top:30px}
"""

JS = r"""
(function(){
function key(r,i,num){var c=r.cells[i];if(!c)return num?-Infinity:'';var v=c.getAttribute('data-v');
 if(v===null)v=c.textContent;if(!num)return v.toLowerCase();var x=parseFloat(v);return isNaN(x)?-Infinity:x;}
document.querySelectorAll('table.sortable').forEach(function(t){
 t.querySelectorAll('thead th').forEach(function(th,i){th.addEventListener('click',function(){
  var num=th.getAttribute('data-type')==='num',dir=th.getAttribute('data-dir')==='asc'?'desc':'asc';
  t.querySelectorAll('thead th').forEach(function(h){h.removeAttribute('data-dir');});th.setAttribute('data-dir',dir);
  var tb=t.tBodies[0],rows=Array.prototype.slice.call(tb.rows);
  rows.sort(function(a,b){var x=key(a,i,num),y=key(b,i,num),c=num?(x-y):(x<y?-1:x>y?1:0);return dir==='asc'?c:-c;});
  rows.forEach(function(r){tb.appendChild(r);});});});});
var NS='http://www.w3.org/2000/svg',KIND=['conv','linear','matmul','elementwise'];
function el(n,a,p){var x=document.createElementNS(NS,n);for(var k in a)x.setAttribute(k,a[k]);if(p)p.appendChild(x);return x;}
function worst(row,side,s){var mx=0,mn=Infinity;row.forEach(function(r){mx=Math.max(mx,r.a);mn=Math.min(mn,r.a);});
 return Math.max(side*side*mx/(s*s),s*s/(side*side*mn));}
function squarify(items,x,y,w,h){var tot=0;items.forEach(function(it){tot+=it.v;});var out=[];if(tot<=0||w<=0||h<=0)return out;
 var sc=w*h/tot,rest=items.map(function(it){return {it:it,a:it.v*sc};}),row=[],rs=0;
 function lay(){var side;if(w>=h){side=rs/h;var yy=y;row.forEach(function(r){var hh=r.a/side;out.push([r.it,x,yy,side,hh]);yy+=hh;});x+=side;w-=side;}
  else{side=rs/w;var xx=x;row.forEach(function(r){var ww=r.a/side;out.push([r.it,xx,y,ww,side]);xx+=ww;});y+=side;h-=side;}row=[];rs=0;}
 while(rest.length){var c=rest[0],side=Math.min(w,h);
  if(!row.length||worst(row.concat([c]),side,rs+c.a)<=worst(row,side,rs)){row.push(c);rs+=c.a;rest.shift();}else lay();}
 if(row.length)lay();return out;}
function fmt(v){return v>=1e9?(v/1e9).toFixed(3)+' G':v>=1e6?(v/1e6).toFixed(2)+' M':v>=1e3?(v/1e3).toFixed(1)+' k':String(v);}
function draw(svg,node,x,y,w,h,m,path,depth,unit){
 var kids=(node[4]||[]).filter(function(c){return c[m+1]>0;});
 var name=path?path+(depth>2?'.':' \u203a ')+node[0]:node[0];
 if(!kids.length){var r=el('rect',{x:x,y:y,width:Math.max(w,0),height:Math.max(h,0),'class':'leaf k-'+KIND[node[3]<0?0:node[3]]},svg);
  el('title',{},r).textContent=name+': '+fmt(node[m+1])+' '+unit;
  if(w>40&&h>13){var t=el('text',{x:x+3,y:y+11},svg),rel=name.split(' \u203a ');t.textContent=(rel[1]||node[0]).slice(0,Math.floor(w/5.6));}return;}
 var hd=0;if(depth>0){var g=el('rect',{x:x,y:y,width:w,height:h,'class':'grp'},svg);el('title',{},g).textContent=name+': '+fmt(node[m+1])+' '+unit;
  if(depth===1&&w>36&&h>24){hd=13;var t2=el('text',{x:x+3,y:y+10,'font-weight':'600'},svg);t2.textContent=node[0].slice(0,Math.floor(w/6.2));}}
 var p=depth>0?1.5:0;if(w-2*p<2||h-2*p-hd<2)return;
 kids.sort(function(a,b){return b[m+1]-a[m+1];});
 squarify(kids.map(function(c){return {v:c[m+1],c:c};}),x+p,y+p+hd,w-2*p,h-2*p-hd).forEach(function(q){
  draw(svg,q[0].c,q[1],q[2],q[3],q[4],m,depth===0?'':name,depth+1,unit);});}
document.querySelectorAll('.tm').forEach(function(box){
 var data=JSON.parse(box.querySelector('script').textContent),svg=box.querySelector('svg'),
 W=+svg.getAttribute('data-w'),H=+svg.getAttribute('data-h');
 function show(m){while(svg.lastChild)svg.removeChild(svg.lastChild);
  draw(svg,data,0,0,W,H,m,'',0,m?'element-wise FLOPs':'MACs');
  box.querySelectorAll('.btn').forEach(function(b){b.classList.toggle('on',+b.getAttribute('data-m')===m);});}
 box.querySelectorAll('.btn').forEach(function(b){b.addEventListener('click',function(){show(+b.getAttribute('data-m'));});});
 show(data[1]>0?0:1);box.setAttribute('data-drawn','1');});
var m=/^#sort=([\w-]+):(\d+)(:desc)?$/.exec(location.hash);if(m){var th=document.querySelectorAll('#'+m[1]+' thead th')[+m[2]];
 if(th){th.click();if(m[3])th.click();}}
document.body.setAttribute('data-ready','1');
})();
"""


class Page:
    def __init__(self, title: str, subtitle: str = "", kind: str = ""):
        self.title, self.subtitle, self.kind = title, subtitle, kind
        self.parts: list[str] = []

    def add(self, html: str) -> "Page":
        self.parts.append(html)
        return self

    def h2(self, text: str, id: str = "") -> "Page":
        return self.add(f'<h2{f" id={chr(34)}{e(id)}{chr(34)}" if id else ""}>{e(text)}</h2>')

    def notes(self, notes) -> "Page":
        if notes:
            self.add('<ul class="notes">' + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
        return self

    def render(self) -> str:
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
                "<meta name=\"color-scheme\" content=\"light dark\">"
                f"<title>{e(self.title)} · flopscope</title><style>{CSS}</style></head>"
                f"<body data-page=\"{e(self.kind)}\"><h1>{e(self.title)}</h1>"
                f"<p class=\"sub\">{e(self.subtitle)}</p>" + "\n".join(self.parts) +
                f"<footer>flopscope {e(_VERSION)} · MACs = multiply-accumulates of conv / linear / matmul; "
                "FLOPs = 2 × MACs; element-wise FLOPs (norms, activations, pooling, adds …) are a separate figure."
                f"</footer><script>{JS}</script></body></html>\n")


def cards(items) -> str:
    """``items``: (id, label, value text)."""
    return '<div class="cards">' + "".join(
        f'<div class="card" id="{e(i)}"><div class="v">{e(v)}</div><div class="l">{e(l)}</div></div>'
        for i, l, v in items) + "</div>"


def legend(items) -> str:
    return '<div class="legend">' + "".join(f'<span><i class="{e(c)}" style="background:var(--{e(v)})"></i>'
                                            f'{e(t)}</span>' for c, v, t in items) + "</div>"


KIND_LEGEND = [("k-conv", "conv", "conv MACs"), ("k-linear", "linear", "linear MACs"),
               ("k-matmul", "matmul", "attention / matmul MACs"), ("k-elementwise", "ew", "element-wise FLOPs")]


def table(columns, rows, footer=None, id: str = "", cls: str = "sortable") -> str:
    """``columns``: (header, numeric?); ``rows``: lists of cells, a cell is text or (text, sort value) or
    (text, sort value, css class)."""
    def cell(c, numeric, tag="td"):
        if isinstance(c, tuple):
            text, v = c[0], c[1]
            klass = ("n " if numeric else "") + (c[2] if len(c) > 2 else "")
            return f'<{tag} class="{klass.strip()}" data-v="{e(v)}">{e(text)}</{tag}>'
        return f'<{tag}{" class=" + chr(34) + "n" + chr(34) if numeric else ""}>{e(c)}</{tag}>'

    head = "".join(f'<th{" class=" + chr(34) + "n" + chr(34) + " data-type=" + chr(34) + "num" + chr(34) if n else ""}'
                   f'>{e(h)}</th>' for h, n in columns)
    body = "".join("<tr>" + "".join(cell(c, n) for c, (_, n) in zip(r, columns)) + "</tr>" for r in rows)
    foot = ("<tfoot><tr>" + "".join(cell(c, n) for c, (_, n) in zip(footer, columns)) + "</tr></tfoot>"
            if footer else "")
    return (f'<div class="wrap"><table class="{cls}"{" id=" + chr(34) + e(id) + chr(34) if id else ""}>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody>{foot}</table></div>")


# -- charts ------------------------------------------------------------------------------------------------------

def _nice(v: float) -> float:
    if v <= 0:
        return 1.0
    p = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * p:
            return m * p
    return 10 * p


def _ticks(vmax: float, n: int = 4) -> list[float]:
    step = _nice(vmax / n)
    return [step * i for i in range(int(vmax / step + 1e-9) + 1)]


def _t(v: float) -> str:
    return f"{v:g}" if v < 1e4 else f"{v:.3g}"


def layer_bars(items, id: str = "bars", mac_unit: str = "GMACs", ew_unit: str = "element-wise GFLOPs",
               scale: float = 1e9, cls: str = "layer-bar") -> str:
    """One row per item: a bar of MACs stacked by kind (conv / linear / matmul) on the left axis and a bar of
    element-wise FLOPs on the right axis.  ``items``: (key, label, {conv, linear, matmul}, elementwise)."""
    row, top, lw, gap = 15, 28, 170, 24
    pw1, pw2 = 480, 250
    width = lw + pw1 + gap + pw2 + 10
    height = top + row * len(items) + 8
    mmax = max([sum(k.values()) for _, _, k, _ in items] + [1]) / scale
    emax = max([x for *_, x in items] + [1]) / scale
    t1, t2 = _ticks(mmax), _ticks(emax)
    m_hi, e_hi = max(t1[-1], mmax) or 1, max(t2[-1], emax) or 1
    x2 = lw + pw1 + gap
    out = [f'<svg id="{e(id)}" class="bars" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'role="img" aria-label="per-layer MACs by kind and element-wise FLOPs">',
           f'<text x="{lw}" y="11" font-weight="600">{e(mac_unit)} (conv + linear + matmul)</text>',
           f'<text x="{x2}" y="11" font-weight="600">{e(ew_unit)}</text>']
    for t in t1:
        x = lw + pw1 * t / m_hi
        out.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top - 6}" y2="{height - 6}"/>'
                   f'<text x="{x:.1f}" y="{top - 8}" text-anchor="middle">{_t(t)}</text>')
    for t in t2:
        x = x2 + pw2 * t / e_hi
        out.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top - 6}" y2="{height - 6}"/>'
                   f'<text x="{x:.1f}" y="{top - 8}" text-anchor="middle">{_t(t)}</text>')
    for i, (key, label, kinds, ew) in enumerate(items):
        y = top + i * row
        tip = (f"{label}: " + ", ".join(f"{k} {kinds.get(k, 0) / scale:.4f}" for k in MAC_KINDS) +
               f" {mac_unit}; {ew / scale:.4f} {ew_unit}")
        parts = [f'<g class="{cls}" data-key="{e(key)}"><title>{e(tip)}</title>',
                 f'<text x="{lw - 6}" y="{y + 11}" text-anchor="end">{e(label[:30])}</text>']
        x = lw
        for k in MAC_KINDS:
            w = pw1 * kinds.get(k, 0) / scale / m_hi
            if w > 0:
                parts.append(f'<rect class="k-{k}" x="{x:.2f}" y="{y + 2}" width="{max(w, 0.6):.2f}" '
                             f'height="{row - 4}"/>')
                x += w
        w = pw2 * ew / scale / e_hi
        if w > 0:
            parts.append(f'<rect class="k-elementwise" x="{x2}" y="{y + 2}" width="{max(w, 0.6):.2f}" '
                         f'height="{row - 4}"/>')
        parts.append("</g>")
        out.append("".join(parts))
    out.append(f'<line class="axis" x1="{lw}" x2="{lw}" y1="{top - 4}" y2="{height - 6}"/>'
               f'<line class="axis" x1="{x2}" x2="{x2}" y1="{top - 4}" y2="{height - 6}"/></svg>')
    return legend(KIND_LEGEND) + "".join(out)


def treemap(tree: list, id: str = "treemap", w: int = 1000, h: int = 520) -> str:
    """Treemap of cost by module path (laid out by the page's JS): MACs, or element-wise FLOPs (button)."""
    data = json.dumps(tree, separators=(",", ":"), ensure_ascii=False).replace("</", "<\\/")
    return (f'<div class="tm" id="{e(id)}"><div><button class="btn" data-m="0">MACs</button>'
            f'<button class="btn" data-m="1">element-wise FLOPs</button>'
            '<span class="mut">area = cost; boxes = layers, inside them the module path of each term '
            '(hover for the name and value)</span></div>'
            f'<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" data-w="{w}" data-h="{h}" role="img" '
            f'aria-label="treemap of cost by module path"></svg>'
            f'<script type="application/json">{data}</script></div>' + legend(KIND_LEGEND))


_KIND_INDEX = {"conv": 0, "linear": 1, "matmul": 2, "elementwise": 3}


def term_tree(name: str, groups) -> list:
    """``groups``: (group name, terms) -> nested ``[name, macs, ew, kind index, children]`` by dotted path."""
    root = [name, 0, 0, -1, []]
    for gname, terms in groups:
        g = [gname, 0, 0, -1, []]
        root[4].append(g)
        for t in terms:
            node = g
            parts = [p for p in (t.name or t.op or "?").split(".") if p] or ["?"]
            chain = [node]
            for p in parts:
                kids = node[4]
                nxt = next((c for c in kids if c[0] == p and c[3] == -1), None)
                if nxt is None:
                    nxt = [p, 0, 0, -1, []]
                    kids.append(nxt)
                node = nxt
                chain.append(node)
            leaf = [t.kind if t.kind != "elementwise" else t.op, 0, 0, _KIND_INDEX.get(t.kind, 0)]
            if t.kind == "elementwise":
                leaf[2] = t.value
            else:
                leaf[1] = t.value
            node[4].append(leaf)
            for n in chain:
                n[1] += leaf[1]
                n[2] += leaf[2]
        root[1] += g[1]
        root[2] += g[2]
    return _collapse(root)


def _collapse(node: list) -> list:
    """Drop empty children lists; a path node whose only child is a leaf becomes that leaf (named by path)."""
    if len(node) < 5:
        return node
    kids = [_collapse(c) for c in node[4]]
    if len(kids) == 1 and len(kids[0]) == 4 and node[3] == -1:
        leaf = kids[0]
        return [node[0], leaf[1], leaf[2], leaf[3]]
    return [node[0], node[1], node[2], -1, kids]


def line_chart(series, xs, xlabels, ylabel: str, id: str = "curves", w: int = 760, h: int = 380) -> str:
    """Log-log line chart.  ``series``: (label, values, css var name, dashed?)."""
    ml, mr, mt, mb = 70, 270, 14, 40
    pw, ph = w - ml - mr, h - mt - mb
    vals = [v for _, ys, _, _ in series for v in ys if v and v > 0]
    if not vals or len(xs) < 1:
        return '<p class="mut">nothing to plot</p>'
    lo, hi = math.log10(min(vals)), math.log10(max(vals))
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    lx0, lx1 = math.log10(min(xs)), math.log10(max(xs))
    if lx1 - lx0 < 1e-9:
        lx0, lx1 = lx0 - 0.1, lx1 + 0.1

    def px(x):
        return ml + pw * (math.log10(x) - lx0) / (lx1 - lx0)

    def py(v):
        return mt + ph * (1 - (math.log10(v) - lo) / (hi - lo))

    out = [f'<svg id="{e(id)}" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{e(ylabel)}">',
           f'<rect class="axis" x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none"/>']
    for d in range(math.floor(lo), math.ceil(hi) + 1):
        if lo - 1e-9 <= d <= hi + 1e-9:
            y = py(10 ** d)
            out.append(f'<line class="grid" x1="{ml}" x2="{ml + pw}" y1="{y:.1f}" y2="{y:.1f}"/>'
                       f'<text x="{ml - 6}" y="{y + 4:.1f}" text-anchor="end">{10 ** d / 1e9:g}</text>')
    for x, lab in zip(xs, xlabels):
        out.append(f'<line class="grid" x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{mt}" y2="{mt + ph}"/>'
                   f'<text x="{px(x):.1f}" y="{mt + ph + 15}" text-anchor="middle">{e(lab)}</text>')
    out.append(f'<text x="{ml + pw / 2}" y="{h - 6}" text-anchor="middle">image size (log scale, by √(H·W))</text>'
               f'<text x="14" y="{mt + ph / 2}" transform="rotate(-90 14 {mt + ph / 2})" text-anchor="middle">'
               f'{e(ylabel)}</text>')
    for k, (label, ys, color, dashed) in enumerate(series):
        pts = [(px(x), py(v)) for x, v in zip(xs, ys) if v and v > 0]
        if not pts:
            continue
        d = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        out.append(f'<g class="curve"><title>{e(label)}</title><polyline points="{d}" fill="none" '
                   f'style="stroke:var(--{color})" stroke-width="{2.4 if k == 0 else 1.6}"{dash}/>' +
                   "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.6" style="fill:var(--{color})"/>' for x, y in pts)
                   + "</g>")
        ly = mt + 12 + 16 * k
        out.append(f'<line x1="{ml + pw + 12}" x2="{ml + pw + 32}" y1="{ly - 4}" y2="{ly - 4}" '
                   f'style="stroke:var(--{color})" stroke-width="2"{dash}/>'
                   f'<text x="{ml + pw + 38}" y="{ly}">{e(label[:42])}</text>')
    out.append("</svg>")
    return "".join(out)


def scatter(points, xlabel: str, ylabel: str, lines=(), id: str = "scatter", w: int = 760, h: int = 380) -> str:
    """Log-log scatter.  ``points``: (x, y, label, css var); ``lines``: (label, [(x, y), ...], css var)."""
    ml, mr, mt, mb = 70, 20, 14, 42
    pw, ph = w - ml - mr, h - mt - mb
    xs = [p[0] for p in points if p[0] > 0 and p[1] > 0] + [x for _, pts, _ in lines for x, _ in pts]
    ys = [p[1] for p in points if p[0] > 0 and p[1] > 0] + [y for _, pts, _ in lines for _, y in pts]
    if not xs:
        return '<p class="mut">nothing to plot</p>'
    x0, x1 = math.floor(math.log10(min(xs))), math.ceil(math.log10(max(xs)))
    y0, y1 = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)

    def px(x):
        return ml + pw * (math.log10(x) - x0) / (x1 - x0)

    def py(y):
        return mt + ph * (1 - (math.log10(y) - y0) / (y1 - y0))

    out = [f'<svg id="{e(id)}" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{e(ylabel)}">',
           f'<rect class="axis" x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none"/>']
    for d in range(x0, x1 + 1):
        out.append(f'<line class="grid" x1="{px(10 ** d):.1f}" x2="{px(10 ** d):.1f}" y1="{mt}" y2="{mt + ph}"/>'
                   f'<text x="{px(10 ** d):.1f}" y="{mt + ph + 14}" text-anchor="middle">{10 ** d:g}</text>')
    for d in range(y0, y1 + 1):
        out.append(f'<line class="grid" x1="{ml}" x2="{ml + pw}" y1="{py(10 ** d):.1f}" y2="{py(10 ** d):.1f}"/>'
                   f'<text x="{ml - 6}" y="{py(10 ** d) + 4:.1f}" text-anchor="end">{10 ** d:g}</text>')
    out.append(f'<text x="{ml + pw / 2}" y="{h - 6}" text-anchor="middle">{e(xlabel)}</text>'
               f'<text x="14" y="{mt + ph / 2}" transform="rotate(-90 14 {mt + ph / 2})" text-anchor="middle">'
               f'{e(ylabel)}</text>')
    for label, pts, color in lines:
        d = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts if x > 0 and y > 0)
        out.append(f'<polyline points="{d}" fill="none" style="stroke:var(--{color})" stroke-width="2">'
                   f'<title>{e(label)}</title></polyline>')
    for x, y, label, color in points:
        if x > 0 and y > 0:
            out.append(f'<circle class="pt" cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" style="fill:var(--{color})" '
                       f'fill-opacity=".75"><title>{e(label)}</title></circle>')
    out.append("</svg>")
    return "".join(out)


def hbars(items, unit: str, id: str = "hbars", w: int = 760, signed: bool = False) -> str:
    """Simple horizontal bars: (label, value, css var, tooltip)."""
    row, lw = 18, 230
    pw = w - lw - 90
    h = row * len(items) + 10
    vmax = max([abs(v) for _, v, _, _ in items if v is not None] + [1e-30])
    zero = lw + (pw / 2 if signed else 0)
    span = pw / 2 if signed else pw
    out = [f'<svg id="{e(id)}" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{e(unit)}">']
    for i, (label, v, color, tip) in enumerate(items):
        y = 4 + i * row
        out.append(f'<g class="hbar"><title>{e(tip)}</title><text x="{lw - 6}" y="{y + 12}" text-anchor="end">'
                   f'{e(label[:38])}</text>')
        if v is not None:
            bw = span * abs(v) / vmax
            x = zero - bw if (signed and v < 0) else zero
            out.append(f'<rect x="{x:.1f}" y="{y + 2}" width="{max(bw, 0.6):.1f}" height="{row - 5}" '
                       f'style="fill:var(--{color})"/><text x="{(x + bw + 4) if v >= 0 or not signed else x - 4:.1f}" '
                       f'y="{y + 12}" text-anchor="{"start" if v >= 0 or not signed else "end"}">{_t(v)} {e(unit)}'
                       f'</text>')
        out.append("</g>")
    out.append(f'<line class="axis" x1="{zero}" x2="{zero}" y1="0" y2="{h}"/></svg>')
    return "".join(out)


# -- pages -------------------------------------------------------------------------------------------------------

def _shape(s) -> str:
    from .render import shape_str

    return shape_str(s)


def model_sections(page: Page, report, prefix: str = "", show_table: bool = True) -> None:
    """Totals, per-layer bars, treemap and the sortable per-layer table of a :class:`~flopscope.report.Report`."""
    from .render import NONLINEAR_MARK, count_mark

    kinds = report.macs_by_kind
    h, w = report.img
    page.add(cards([
        (f"{prefix}total-params", "params", f"{report.params:,}"),
        (f"{prefix}total-gmacs", "GMACs (conv + linear + matmul)", f"{report.macs / 1e9:.3f}"),
        (f"{prefix}total-gflops", "GFLOPs = 2 × GMACs", f"{report.gflops:.3f}"),
        (f"{prefix}total-ew", "element-wise GFLOPs (separate)", f"{report.elementwise_flops / 1e9:.3f}"),
        (f"{prefix}total-modelinfo", ("Ultralytics model.info() would print (GFLOPs)"
                                      if getattr(report, "model_info_stride_aware", False)
                                      else "YOLOv5 model_info would print (GFLOPs)"),
         "-" if report.model_info_gflops is None else f"{report.model_info_gflops:.1f}"),
        *([(f"{prefix}total-modelinfo-current", f"{LABELS['model_info_current']} (GFLOPs, "
                                                f"{LABELS['model_info_current_how']})",
            f"{report.model_info_current_gflops:.1f}")]
          if getattr(report, "model_info_current_differs", False) else []),
    ]))
    page.add(f'<p class="mut">{h}×{w}, batch {report.batch}, {len(report.layers)} layers · MACs by kind: conv '
             f'{kinds["conv"] / 1e9:.3f} G, linear {kinds["linear"] / 1e9:.3f} G, matmul {kinds["matmul"] / 1e9:.3f} G'
             f'</p>')
    page.h2("Cost per layer")
    page.add(layer_bars([(str(r.index), f"{r.index} {r.module}", r.macs_by_kind, r.elementwise_flops)
                         for r in report.layers], id=f"{prefix}bars"))
    page.h2("Cost by module path")
    page.add(treemap(term_tree(report.model, [(f"{r.index} {r.module}", r.terms) for r in report.layers]),
                     id=f"{prefix}treemap"))
    if not show_table:
        return
    page.h2("Layers")
    total = report.flops or 1
    cols = [("idx", True), ("from", False), ("n", True), ("module", False), ("args", False), ("output", False),
            ("params", True), ("GMACs", True), ("conv GMACs", True), ("linear GMACs", True), ("matmul GMACs", True),
            ("GFLOPs", True), ("elem. GFLOPs", True), ("% GFLOPs", True), ("≁ / counted by", False)]
    rows = []
    for r in report.layers:
        k = r.macs_by_kind
        mark = (NONLINEAR_MARK + " " if r.linear_in_hw is False else "") + (
            r.counted_by if count_mark(r.counted_by) else "")
        rows.append([(str(r.index), r.index), str(r.f), (str(r.n), r.n), r.module + count_mark(r.counted_by),
                     str(r.args)[:80], _shape(r.out_shape), (f"{r.params:,}", r.params), (gv(r.macs), r.macs),
                     (gv(k["conv"]), k["conv"]), (gv(k["linear"]), k["linear"]), (gv(k["matmul"]), k["matmul"]),
                     (gv(r.flops), r.flops), (gv(r.elementwise_flops), r.elementwise_flops),
                     (f"{100 * r.flops / total:.1f}", r.flops), mark])
    foot = ["", "", "", "total", "", "", f"{report.params:,}", gv(report.macs), gv(kinds["conv"]),
            gv(kinds["linear"]), gv(kinds["matmul"]), gv(report.flops), gv(report.elementwise_flops), "100.0", ""]
    page.add(table(cols, rows, foot, id=f"{prefix}layers"))


def model_page(report, extras: dict | None = None) -> Page:
    from .render import summary_lines

    h, w = report.img
    page = Page(f"{report.model}", f"per-layer Params / MACs / FLOPs @ {h}×{w}, batch {report.batch}", "model")
    model_sections(page, report)
    page.notes(summary_lines(report)[2:])
    extras = extras or {}
    if extras.get("latency") is not None:
        page.h2("Latency (flopscope bench)")
        bench_sections(page, extras["latency"], with_model=False)
    if extras.get("check") is not None:
        page.h2("Cross-check (flopscope check)")
        check_sections(page, extras["check"])
    return page


def layer_page(r) -> Page:
    h, w = r.hw
    ctor = ", ".join(map(repr, r.constructor_args))
    page = Page(f"{r.module}({ctor[:120]})", f"one module on input {_shape(r.in_shape)} → {_shape(r.out_shape)}, "
                                             f"channel rule {r.channel_rule}", "layer")
    page.add(cards([("total-params", "params", f"{r.params:,}"), ("total-macs", "MACs", f"{r.macs:,}"),
                    ("total-gflops", "GFLOPs = 2 × MACs", f"{r.flops / 1e9:.4f}"),
                    ("total-ew", "element-wise FLOPs (separate)", f"{r.elementwise_flops:,}")]))
    page.add(f"<p>Scaling with H·W: {e(r.summary())}</p>")
    page.h2("Cost per term")
    items = []
    for t in r.terms:
        kinds = {t.kind: t.value} if t.kind != "elementwise" else {}
        items.append((t.name, t.name, kinds, t.value if t.kind == "elementwise" else 0))
    page.add(layer_bars(items, id="bars", mac_unit="MACs", ew_unit="element-wise FLOPs", scale=1, cls="term-bar"))
    page.h2("Cost by module path")

    class _T:  # LayerTerm as a cost Term for the tree
        def __init__(self, t):
            self.name, self.kind, self.op, self.value = t.name, t.kind, t.op, t.value

    page.add(treemap(term_tree(r.module, [(r.module, [_T(t) for t in r.terms])]), id="treemap"))
    page.h2("Terms")
    sizes = [f"{a}×{b}" for a, b in r.sizes]
    cols = [("term", False), ("kind", False), ("op", False), ("MACs", True), ("elem. FLOPs", True), ("share %", True),
            ("scaling", False), ("fit", False)] + [(f"@{s}", True) for s in sizes]
    rows = []
    for t in r.terms:
        ew = t.kind == "elementwise"
        rows.append([t.name, t.kind, t.op, ("" if ew else f"{t.value:,}", 0 if ew else t.value),
                     (f"{t.value:,}" if ew else "", t.value if ew else 0),
                     ("-" if t.share is None else f"{100 * t.share:.1f}", t.share or 0), t.scaling.cls,
                     t.scaling.detail] + [(f"{v:,}", v) for v in t.values])
    foot = ["total", "", "", f"{r.macs:,}", f"{r.elementwise_flops:,}", "100.0", r.scaling["macs"].cls, ""] + \
        [""] * len(sizes)
    page.add(table(cols, rows, foot, id="terms"))
    page.notes(r.notes)
    return page


def check_sections(page: Page, c) -> None:
    d = c.to_dict()
    counters = [n for n, v in d["counters"].items() if v["status"] == "ok"]
    page.add(cards([("total-ours", "ours (MACs)", f"{d['totals']['ours']:,}")] +
                   [(f"total-{n}", f"{d['counters'][n]['label']} (MACs)", num(d["totals"]["counters"][n]["measured"],
                                                                             ",.0f")) for n in counters]))
    page.h2("Difference per counter, by reason (MACs; + = the counter counts more than we do)")
    items = []
    for n in counters:
        tc = d["totals"]["counters"][n]
        label = d["counters"][n]["label"]
        items.append((f"{label}: total Δ", tc["delta"], "fg", f"{label}: measured {tc['measured']:,.0f} MACs, "
                      f"ours {d['totals']['ours']:,}, Δ {tc['delta']:+,.0f} ({num(tc['delta_pct'], '+.2f')} %)"))
        for r in tc["reasons"]:
            items.append((f"  {r['code']}", r["macs"], "ok", f"{label}: {r['code']}: {r['macs']:+,.0f} MACs"))
        if tc.get("unexplained"):
            items.append(("  unexplained", tc["unexplained"], "bad", f"{label}: unexplained {tc['unexplained']}"))
    page.add(hbars(items, "MACs", id="check-reasons", signed=True))
    crow = []
    for n, v in d["counters"].items():
        row = [v["label"], v["status"] + (f": {v['reason']}" if v.get("reason") else ""), v.get("version") or ""]
        tc = d["totals"]["counters"].get(n) if n in counters else None
        if tc:
            row += [(num(tc["measured"], ",.0f"), tc["measured"]), (num(tc["delta"], "+,.0f"), tc["delta"]),
                    (num(tc["delta_pct"], "+.2f"), tc["delta_pct"] or 0), "yes" if tc["explained"] else "NO",
                    "; ".join(f"{r['code']} ({r['macs']:+,.0f})" for r in tc["reasons"])]
        else:
            row += ["", "", "", "", ""]
        crow.append(row)
    page.add(table([("counter", False), ("status", False), ("version", False), ("measured MACs", True),
                    ("Δ vs ours", True), ("Δ %", True), ("explained", False), ("reasons", False)], crow,
                   id="counters"))
    page.h2("Per layer: Δ of each counter (MACs) and its reason")
    cols = [("idx", True), ("module", False), ("ours MACs", True)]
    for n in counters:
        cols += [(f"{d['counters'][n]['label']} Δ", True), (f"{d['counters'][n]['label']} reason", False)]
    rows = []
    for lr in d["layers"]:
        row = [(str(lr["index"]), lr["index"]), lr["module"], (f"{lr['ours']:,}", lr["ours"])]
        for n in counters:
            cell = lr["counters"].get(n) or {}
            delta = cell.get("delta")
            bad = cell.get("significant") and not cell.get("explained")
            row.append((num(delta, "+,.0f"), delta or 0, "bad" if bad else ""))
            why = "; ".join(r["code"] for r in cell.get("reasons", []))
            if bad:
                why = ("UNEXPLAINED " + str(cell.get("unexplained") or "")).strip() + ("; " + why if why else "")
            row.append(why)
        rows.append(row)
    page.add(table(cols, rows, id="check-layers"))
    page.notes(d.get("notes"))


def check_page(c) -> Page:
    h, w = c.img
    page = Page(f"{c.model}: cross-check", f"fvcore / thop / ptflops / FlopCounterMode against flopscope @ {h}×{w}, "
                                          f"batch 1, {c.device}; all columns in MACs", "check")
    check_sections(page, c)
    if getattr(c, "report", None) is not None:
        page.h2("Our count")
        model_sections(page, c.report, prefix="m-")
    return page


def diff_page(dr) -> Page:
    d = dr.to_dict()
    a, b = dr.a.report, dr.b.report
    page = Page(f"{a.model} → {b.model}", f"diff @ {d['img'][0]}×{d['img'][1]}, batch {d['batch']}, alignment "
                                        f"{d['alignment']}; Δ = B − A", "diff")
    t = d["totals"]
    page.add(cards([("total-params", "params A → B", f"{t['params']['a']:,} → {t['params']['b']:,}"),
                    ("total-gflops", "GFLOPs A → B", f"{t['flops']['a'] / 1e9:.3f} → {t['flops']['b'] / 1e9:.3f}"),
                    ("total-ew", "element-wise GFLOPs A → B",
                     f"{t['elementwise_flops']['a'] / 1e9:.3f} → {t['elementwise_flops']['b'] / 1e9:.3f}"),
                    ("total-counts", "rows", ", ".join(f"{v} {k}" for k, v in d["counts"].items()))]))
    page.h2("Rows side by side (GFLOPs)")
    items = []
    for r in d["rows"]:
        fa = r["a"]["flops"] if r["a"] else 0
        fb = r["b"]["flops"] if r["b"] else 0
        lab = (f"{r['a']['index']} {r['a']['module']}" if r["a"] else "—") + " | " + (
            f"{r['b']['index']} {r['b']['module']}" if r["b"] else "—")
        items.append((lab, fa, fb, r["status"]))
    page.add(_mirror(items, a.model, b.model))
    page.h2("Aligned rows")
    cols = [("status", False), ("A idx", True), ("A module", False), ("A params", True), ("A GFLOPs", True),
            ("B idx", True), ("B module", False), ("B params", True), ("B GFLOPs", True), ("Δ params", True),
            ("Δ GFLOPs", True), ("reasons", False), ("detail", False)]
    rows = []
    for r in d["rows"]:
        ra, rb = r["a"] or {}, r["b"] or {}
        rows.append([(r["status"], r["status"], "" if r["status"] == "same" else "bad"),
                     (num(ra.get("index"), ""), ra.get("index", -1)), ra.get("module", ""),
                     (num(ra.get("params")), ra.get("params", 0)), (gv(ra.get("flops")), ra.get("flops", 0)),
                     (num(rb.get("index"), ""), rb.get("index", -1)), rb.get("module", ""),
                     (num(rb.get("params")), rb.get("params", 0)), (gv(rb.get("flops")), rb.get("flops", 0)),
                     (f"{r['delta']['params']:+,}", r["delta"]["params"]),
                     (f"{r['delta']['flops'] / 1e9:+.3f}", r["delta"]["flops"]), ", ".join(r["reasons"]),
                     r["detail"]])
    page.add(table(cols, rows, id="diff-rows"))
    page.h2("The two models")
    left, right = Page(""), Page("")
    left.add(f"<h3>A: {e(a.model)}</h3>")
    model_sections(left, a, prefix="a-", show_table=False)
    right.add(f"<h3>B: {e(b.model)}</h3>")
    model_sections(right, b, prefix="b-", show_table=False)
    page.add('<div class="cols"><div>' + "".join(left.parts) + '</div><div>' + "".join(right.parts) + "</div></div>")
    page.notes(d["notes"])
    return page


def _mirror(items, name_a: str, name_b: str, w: int = 900) -> str:
    """A's GFLOPs to the left, B's to the right of a centre line, one row per aligned row."""
    row, top, mid = 15, 24, w / 2
    h = top + row * len(items) + 6
    vmax = max([max(x[1], x[2]) for x in items] + [1])
    half = mid - 130
    out = [f'<svg id="mirror" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="diff">',
           f'<text x="{mid - 120}" y="12" text-anchor="end" font-weight="600">A: {e(name_a)} GFLOPs</text>'
           f'<text x="{mid + 120}" y="12" font-weight="600">B: {e(name_b)} GFLOPs</text>']
    for i, (lab, fa, fb, status) in enumerate(items):
        y = top + i * row
        wa, wb = half * fa / vmax, half * fb / vmax
        out.append(f'<g class="diff-bar" data-status="{e(status)}"><title>{e(lab)}: {fa / 1e9:.3f} → {fb / 1e9:.3f} '
                   f'GFLOPs ({e(status)})</title>'
                   f'<rect class="s-a" x="{mid - 110 - wa:.1f}" y="{y + 2}" width="{wa:.1f}" height="{row - 4}"/>'
                   f'<rect class="s-b" x="{mid + 110:.1f}" y="{y + 2}" width="{wb:.1f}" height="{row - 4}"/>'
                   f'<text x="{mid}" y="{y + 11}" text-anchor="middle"'
                   f'{" font-weight=" + chr(34) + "600" + chr(34) if status != "same" else ""}>{e(lab[:36])}</text></g>')
    out.append("</svg>")
    return "".join(out)


COLORS = ["fg", "conv", "linear", "matmul", "ew", "a", "b", "bad", "ok", "mut"]


def sweep_page(s) -> Page:
    d = s.to_dict()
    page = Page(f"{s.model}: cost against image size", f"batch {s.batch}; sizes {', '.join(f'{h}×{w}' for h, w in s.sizes)}",
                "sweep")
    page.add(cards([("total-exponent", "fitted exponent of total FLOPs (1 = ∝ H·W)", num(d["exponent"], ".3f")),
                    ("total-ew-exponent", "exponent of element-wise FLOPs", num(d["elementwise_exponent"], ".3f")),
                    ("total-nonlinear", "layers not ∝ H·W", ", ".join(map(str, d["nonlinear_layers"])) or "none")]))
    xs = [math.sqrt(h * w) for h, w in s.sizes]
    labels = [f"{h}" if h == w else f"{h}×{w}" for h, w in s.sizes]
    top = sorted(s.layers, key=lambda l: -(l.flops[-1] if l.flops else 0))[:5]
    chosen = top + [l for l in s.layers if l.nonlinear and l not in top][:4]
    series = [(f"total (exponent {num(s.exponent, '.3f')})", [r.flops for r in s.reports], "fg", False)]
    for k, l in enumerate(chosen):
        series.append((f"{l.index} {l.module} (exp. {num(l.exponent, '.3f')}){' ≁' if l.nonlinear else ''}",
                       l.flops, COLORS[1 + k % (len(COLORS) - 1)], not l.nonlinear))
    page.h2("GFLOPs (2 × MACs) against image size, log-log; fitted exponents in the legend")
    page.add(line_chart(series, xs, labels, "GFLOPs (2 × MACs)", id="curves"))
    page.h2("Per-layer cost at the largest size")
    page.add(layer_bars([(str(r.index), f"{r.index} {r.module}", r.macs_by_kind, r.elementwise_flops)
                         for r in s.reports[-1].layers], id="bars"))
    page.h2("Cost by module path (largest size)")
    last = s.reports[-1]
    page.add(treemap(term_tree(last.model, [(f"{r.index} {r.module}", r.terms) for r in last.layers])))
    page.h2("Layers")
    cols = [("idx", True), ("module", False), ("params", True)] + [(f"GFLOPs @{x}", True) for x in labels] + \
        [("exponent", True), ("elem. exponent", True), ("≁", False)]
    rows = [[(str(l.index), l.index), l.module, (f"{l.params:,}", l.params)] +
            [(gv(v), v) for v in l.flops] +
            [(num(l.exponent, ".3f"), l.exponent if l.exponent is not None else -1),
             (num(l.elementwise_exponent, ".3f"), l.elementwise_exponent if l.elementwise_exponent is not None else -1),
             "≁" if l.nonlinear else ""] for l in s.layers]
    foot = ["", "total", f"{s.reports[-1].params:,}"] + [gv(r.flops) for r in s.reports] + \
        [num(s.exponent, ".3f"), num(s.elementwise_exponent, ".3f"), ""]
    page.add(table(cols, rows, foot, id="layers"))
    page.notes(d["notes"])
    return page


def table_page(t) -> Page:
    d = t.to_dict()
    page = Page("model comparison", f"{len(t.rows)} configs @ {d['img'][0]}×{d['img'][1]}; GFLOPs per image", "table")
    page.add(cards([(f"total-{i}", f"{r.model}: params · GFLOPs", f"{r.params / 1e6:.2f} M · {r.flops / 1e9:.1f}")
                    for i, r in enumerate(t.rows)]))
    page.h2("Cost per model")
    items = []
    for r in t.rows:
        rep = getattr(r, "report", None)
        kinds = rep.macs_by_kind if rep is not None else {"conv": r.flops // 2}
        items.append((r.model, r.model, kinds, r.elementwise_flops))
    page.add(layer_bars(items, id="bars", cls="model-bar"))
    page.add(hbars([(r.model, r.params / 1e6, "conv", f"{r.params:,} params") for r in t.rows], "M params",
                   id="params"))
    if t.measured:
        page.h2("Latency")
        page.add(hbars([(r.model, r.latency_ms, "linear", f"{r.latency_ms} ms") for r in t.rows], "ms",
                       id="latency"))
    page.h2("Table")
    cols = [("model", False), ("file", False), ("img", False), ("params", True), ("Params (M)", True),
            ("GFLOPs", True), ("elem. GFLOPs", True), ("GFLOPs (YOLOv5 model_info)", True), ("latency ms", True),
            ("FPS", True)]
    rows = [[r.model, r.file, f"{r.img[0]}×{r.img[1]}", (f"{r.params:,}", r.params), (f"{r.params / 1e6:.2f}", r.params),
             (f"{r.flops / 1e9:.1f}", r.flops), (f"{r.elementwise_flops / 1e9:.2f}", r.elementwise_flops),
             (num(r.yolov5_gflops, ".1f"), r.yolov5_gflops or 0), (num(r.latency_ms, ".2f"), r.latency_ms or 0),
             (num(r.fps, ".1f"), r.fps or 0)] for r in t.rows]
    page.add(table(cols, rows, id="models"))
    for r in t.rows:
        rep = getattr(r, "report", None)
        if rep is not None:
            page.h2(f"{r.model}: cost by module path")
            page.add(treemap(term_tree(rep.model, [(f"{x.index} {x.module}", x.terms) for x in rep.layers]),
                             id=f"treemap-{r.model}", h=340))
    page.notes(d["notes"])
    return page


def bench_sections(page: Page, res, with_model: bool = True) -> None:
    env = res["environment"]
    runs = res["runs"]
    page.add(cards([(f"total-median-{r['batch']}", f"median ms, batch {r['batch']}",
                     f"{r['latency_ms']['median']:.3f}") for r in runs] +
                   [(f"total-fps-{r['batch']}", f"img/s, batch {r['batch']}", num(r["throughput_img_s"], ",.1f"))
                    for r in runs]))
    page.add(f'<p class="mut">{e(env["label"])}; torch {e(env["torch"])}, dtype {e(res["dtype"])}, warm-up '
             f'{res["warmup"]}, {res["iters"]} timed iterations, timer {e(env["timer"])}</p>')
    page.h2("Latency per batch (median; whiskers p10–p90, ms)")
    page.add(_latency_chart(runs))
    page.add(table([("batch", True), ("median ms", True), ("p10 ms", True), ("p90 ms", True), ("CV %", True),
                    ("img/s", True), ("peak mem MiB", True), ("bound ms", True), ("% of bound", True)],
                   [[(str(r["batch"]), r["batch"]), *[(f"{r['latency_ms'][k]:.3f}", r["latency_ms"][k])
                                                      for k in ("median", "p10", "p90")],
                     (f"{100 * r['latency_ms']['cv']:.1f}", r["latency_ms"]["cv"]),
                     (num(r["throughput_img_s"], ".1f"), r["throughput_img_s"] or 0),
                     (num(r["peak_memory_bytes"] / 2 ** 20 if r["peak_memory_bytes"] else None, ".1f"),
                      r["peak_memory_bytes"] or 0),
                     (num(r["roofline"]["bound_ms"], ".3f"), r["roofline"]["bound_ms"] or 0),
                     (num(r["roofline"]["achieved_pct"], ".1f"), r["roofline"]["achieved_pct"] or 0)] for r in runs],
                   id="runs"))
    run = runs[-1]
    layers = run["roofline"]["layers"]
    pk = res.get("peak")
    page.h2(f"Roofline per layer, batch {run['batch']}")
    measured = any(l.get("measured_ms") for l in layers)
    if measured:
        pts = [(l["intensity"] or 0, l["flops"] / (l["measured_ms"] * 1e-3) / 1e9 if l.get("measured_ms") else 0,
                f"{l['index']} {l['module']}: {num(l['intensity'], '.1f')} FLOP/B, "
                f"{l['flops'] / 1e9:.4f} GFLOPs in {l['measured_ms'] * 1e3:.1f} µs", "conv") for l in layers]
        ylabel = "achieved GFLOP/s (2×MACs + element-wise, per layer)"
    else:
        pts = [(l["intensity"] or 0, l["flops"] / 1e9, f"{l['index']} {l['module']}: {num(l['intensity'], '.1f')} "
                f"FLOP/B, {l['flops'] / 1e9:.4f} GFLOPs", "conv") for l in layers]
        ylabel = "GFLOPs of the layer (no per-layer times: --per-layer)"
    lines = []
    if pk and measured:
        ridge = pk["ridge_flop_per_byte"]
        xs = [p[0] for p in pts if p[0] > 0] or [1]
        lo, hi = min(min(xs), ridge) / 2, max(max(xs), ridge) * 2
        lines.append((f"roof: {pk['name']} {pk['tflops']:g} TFLOP/s, {pk['gbps']:g} GB/s",
                      [(lo, lo * pk["gbps"]), (ridge, pk["tflops"] * 1e3), (hi, pk["tflops"] * 1e3)], "linear"))
    page.add(scatter(pts, "arithmetic intensity (FLOP/B, log scale)", ylabel, lines, id="roofline"))
    page.add('<p class="mut">one point per layer (hover for its figures); layers without FLOPs (Concat ...) '
             'have no place on log axes</p>')
    if lines:
        page.add(f'<p class="mut">red line: the roofline of {e(lines[0][0])} (ridge {pk["ridge_flop_per_byte"]:.1f} '
                 'FLOP/B)</p>')
    elif pk:
        page.add('<p class="mut">no per-layer times (--per-layer): no roof drawn</p>')
    if not pk:
        page.add('<p class="mut">no device peak known (CPU, or pass --gpu / --peak-tflops --peak-gbps): no roof '
                 'drawn</p>')
    cols = [("idx", True), ("module", False), ("GFLOPs", True), ("% FLOPs", True), ("MB moved", True),
            ("FLOP/B", True), ("bound", False), ("bound µs", True), ("time µs", True), ("% time", True),
            ("% of bound", True)]
    rows = [[(str(l["index"]), l["index"]), l["module"], (f"{l['flops'] / 1e9:.4f}", l["flops"]),
             (f"{l['flops_pct']:.1f}", l["flops_pct"]), (f"{l['bytes'] / 1e6:.2f}", l["bytes"]),
             (num(l["intensity"], ".1f"), l["intensity"] or 0), l["bound"] or "-",
             (num(l["bound_ms"] * 1e3 if l["bound_ms"] is not None else None, ".1f"), l["bound_ms"] or 0),
             (num(l["measured_ms"] * 1e3 if l.get("measured_ms") is not None else None, ".1f"),
              l.get("measured_ms") or 0),
             (num(l.get("latency_pct"), ".1f"), l.get("latency_pct") or 0),
             (num(l.get("achieved_pct"), ".1f"), l.get("achieved_pct") or 0)] for l in layers]
    page.add(table(cols, rows, id="roofline-layers"))
    rep = getattr(res, "report", None)
    if with_model and rep is not None:
        page.h2("Counted cost")
        model_sections(page, rep, prefix="m-")
    page.notes(res.get("notes"))


def _latency_chart(runs, w: int = 760) -> str:
    row, lw = 26, 90
    pw = w - lw - 150
    h = row * len(runs) + 30
    vmax = max([r["latency_ms"]["p90"] for r in runs] + [1e-9])
    ticks = _ticks(vmax)
    hi = max(ticks[-1], vmax)
    out = [f'<svg id="latency" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="latency">']
    for t in ticks:
        x = lw + pw * t / hi
        out.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="4" y2="{h - 22}"/>'
                   f'<text x="{x:.1f}" y="{h - 8}" text-anchor="middle">{_t(t)} ms</text>')
    for i, r in enumerate(runs):
        y = 6 + i * row
        lat = r["latency_ms"]
        x = lw + pw * lat["median"] / hi
        x10, x90 = lw + pw * lat["p10"] / hi, lw + pw * lat["p90"] / hi
        out.append(f'<g class="lat-bar"><title>batch {r["batch"]}: median {lat["median"]:.3f} ms, p10 '
                   f'{lat["p10"]:.3f}, p90 {lat["p90"]:.3f}</title>'
                   f'<text x="{lw - 8}" y="{y + 14}" text-anchor="end">batch {r["batch"]}</text>'
                   f'<rect class="k-conv" x="{lw}" y="{y + 3}" width="{max(x - lw, 0.6):.1f}" height="{row - 8}"/>'
                   f'<line x1="{x10:.1f}" x2="{x90:.1f}" y1="{y + row / 2 - 1}" y2="{y + row / 2 - 1}" '
                   f'style="stroke:var(--fg)" stroke-width="1.5"/>'
                   f'<text x="{max(x, x90) + 6:.1f}" y="{y + 14}">{lat["median"]:.3f} ms</text></g>')
    out.append("</svg>")
    return "".join(out)


def bench_page(res) -> Page:
    h, w = res["img"]
    page = Page(f"{res['model']}: latency", f"@ {h}×{w} on {res['environment']['label']}", "bench")
    bench_sections(page, res)
    return page


def list_page(ml) -> Page:
    page = Page("registered modules", f"{len(ml.records)} modules", "list")
    page.add(table([("family", False), ("module", False), ("description", False), ("YAML signature", False),
                    ("channel rule", False)],
                   [[r["family"], r["name"], r["description"], r["signature_short"],
                     r["channel_rule"]["name"] + (" (inferred)" if r["inferred_rule"] else "")] for r in ml.records],
                   id="modules"))
    return page


PAGES = {"Report": model_page, "LayerReport": layer_page, "CheckResult": check_page, "DiffReport": diff_page,
         "SweepReport": sweep_page, "CompareTable": table_page, "BenchResult": bench_page, "ModuleList": list_page}


def render_html(result, extras: dict | None = None) -> str:
    """The self-contained page of any command's result."""
    kind = type(result).__name__
    if kind == "Report":
        return model_page(result, extras).render()
    if kind not in PAGES:
        from .errors import FlopscopeError

        raise FlopscopeError(f"no HTML page for {kind}")
    return PAGES[kind](result).render()
