"""Self-contained HTML pages: one stylesheet, inline SVG charts, no network, open from ``file://``.

The report pages of ``evaluate`` and the run page of ``train`` are built from these pieces: a page
shell, tables, line charts and histograms drawn as inline SVG (no JavaScript library, no CDN), and
JSON data embedded for the scripts that sort and page tables in the browser.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Sequence
from typing import Any

from p2ptools import __version__

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d232a;background:#fff}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde2e8;padding-bottom:4px}
.sub{color:#5b6773;margin-bottom:16px} table{border-collapse:collapse;margin:6px 0}
th,td{padding:4px 8px;border-bottom:1px solid #e6eaef;text-align:right;vertical-align:middle}
th{background:#f4f6f8;position:sticky;top:0} th.sort{cursor:pointer;user-select:none} th.sort:hover{background:#e3e9f0}
td.l,th.l{text-align:left} .cards{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid #dde2e8;border-radius:6px;padding:8px 12px;min-width:150px}
.card b{font-size:20px;display:block} .card span{color:#5b6773;font-size:12px} .card span.base{display:block;color:#8a5a00}
.charts{display:flex;flex-wrap:wrap;gap:16px} figure{margin:0} figcaption{font-size:12px;color:#5b6773}
img.t{height:96px;image-rendering:auto;border:1px solid #eee;background:#fafafa}
.pager{margin:8px 0} .pager button{margin-right:6px} .mono{font-family:ui-monospace,monospace;font-size:12px}
figure{border:1px solid #e6eaef;border-radius:6px;padding:6px} details{margin:6px 0} .grid{display:flex;flex-wrap:wrap;gap:10px} .grid img{max-height:360px;max-width:100%;border:1px solid #ddd} .note{color:#5b6773;font-size:12px}
"""


def esc(value: Any) -> str:
    """HTML-escaped text of ``value``; a file name's byte that is not UTF-8 (a lone surrogate, as
    :func:`os.fsdecode` gives it) shown as ``\\xe9`` (a UTF-8 page cannot hold the byte itself)."""
    return html.escape(readable(str(value)), quote=True)


def readable(text: str) -> str:
    """``text`` with each lone surrogate written as a Python escape: the bytes that are not UTF-8 of a
    file name as ``\\xe9``, any other as ``\\ud800``; other text unchanged."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no byte of a file name gives
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a table cell (``inf``, ``nan`` and integers kept readable)."""
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return str(value)
    try:
        x = float(value)
    except (TypeError, ValueError):
        return esc(value)
    if math.isnan(x):
        return "–"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    return f"{x:.{digits}g}"


def page(title: str, subtitle: str, body: str, script: str = "") -> str:
    """A complete HTML document with the shared stylesheet."""
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<meta name=\"generator\" content=\"p2ptools {__version__}\"><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1><div class=\"sub\">{subtitle}</div>{body}"
            + (f"<script>{script}</script>" if script else "") + "</body></html>\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> str:
    """An HTML table; the first ``left`` columns are left-aligned text, the others numbers."""
    head = "".join(f"<th class=\"{'l' if i < left else ''}\">{esc(h)}</th>" for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td class=\"{'l' if i < left else ''}\">{esc(c) if i < left else fmt(c)}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def url(rel: str) -> str:
    """A relative path as a URL for ``src``/``href``: each segment's bytes percent-encoded (``#``, ``%``,
    ``?``, spaces, quotes, accents, control characters, bytes that are not UTF-8), ``/`` kept, then
    HTML-escaped for the attribute."""
    from urllib.parse import quote

    return esc("/".join(quote(os.fsencode(seg), safe="") for seg in str(rel).replace("\\", "/").split("/")))


#: characters that could end or confuse a ``<script>`` element, or a JavaScript string, as JSON escapes
_SCRIPT_UNSAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def json_script(name: str, data: Any) -> str:
    """``const NAME = <data>;`` safe to embed in a ``<script>`` element: ``<``, ``>``, ``&`` and the
    line separators U+2028/U+2029 are written as ``\\uXXXX`` escapes (so ``</script>`` and ``<!--``
    in a value cannot end or change the element)."""
    text = json.dumps(data, allow_nan=False, default=str)
    for ch, rep in _SCRIPT_UNSAFE.items():
        text = text.replace(ch, rep)
    return f"const {name} = {text};\n"


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    """About ``n`` round tick values (1, 2, 2.5 or 5 × 10^k apart) within ``[lo, hi]``."""
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    t = first
    while t <= hi + 1e-9 * step:
        ticks.append(round(t, 12))
        t += step
    return ticks or [lo]


def line_chart(series: dict[str, Sequence[tuple[float, float]]], xlabel: str, ylabel: str, width: int = 460,
               height: int = 240, marker: tuple[float, str] | None = None) -> str:
    """Inline SVG of one or more ``(x, y)`` series on shared axes (non-finite points skipped).

    ``marker``: a vertical line at ``x`` with a label (e.g. the best epoch).
    """
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"]
    pts = {k: [(float(x), float(y)) for x, y in v if math.isfinite(float(y))] for k, v in series.items()}
    allp = [p for v in pts.values() for p in v]
    if not allp:
        return f"<svg width=\"{width}\" height=\"{height}\" role=\"img\"><text x=\"10\" y=\"20\">no data yet</text></svg>"
    x0, x1 = min(p[0] for p in allp), max(p[0] for p in allp)
    y0, y1 = min(p[1] for p in allp), max(p[1] for p in allp)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y1 = y0 + 1
    yticks = _ticks(y0, y1)
    if len(yticks) > 1:  # the axis from one round value to another
        step = yticks[1] - yticks[0]
        y0, y1 = min(y0, yticks[0] - step * (yticks[0] > y0)), max(y1, yticks[-1] + step * (yticks[-1] < y1))
        yticks = _ticks(y0, y1)
    L, R, T, B = 52, 10, 10, 34
    sx = lambda x: L + (x - x0) / (x1 - x0) * (width - L - R)  # noqa: E731
    sy = lambda y: height - B - (y - y0) / (y1 - y0) * (height - T - B)  # noqa: E731
    out = [f"<svg width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"{esc(ylabel)}\" "
           f"style=\"font:11px sans-serif\">"]
    for t in yticks:
        out.append(f"<line x1=\"{L}\" x2=\"{width - R}\" y1=\"{sy(t):.1f}\" y2=\"{sy(t):.1f}\" stroke=\"#eee\"/>"
                   f"<text x=\"{L - 4}\" y=\"{sy(t) + 4:.1f}\" text-anchor=\"end\">{fmt(t, 3)}</text>")
    xt = _ticks(x0, x1)
    if all(float(x).is_integer() for x, _ in allp):
        xt = sorted({round(t) for t in xt})
    for t in xt:
        out.append(f"<text x=\"{sx(t):.1f}\" y=\"{height - B + 14}\" text-anchor=\"middle\">{fmt(t, 4)}</text>")
    out.append(f"<text x=\"{(L + width - R) / 2}\" y=\"{height - 4}\" text-anchor=\"middle\">{esc(xlabel)}</text>")
    if marker is not None and x0 <= marker[0] <= x1:
        mx = sx(marker[0])
        out.append(f"<line x1=\"{mx:.1f}\" x2=\"{mx:.1f}\" y1=\"{T}\" y2=\"{height - B}\" stroke=\"#999\" "
                   f"stroke-dasharray=\"4 3\"/><text x=\"{mx + (-3 if mx > width * 0.7 else 3):.1f}\" y=\"{T + 10}\" "
                   f"text-anchor=\"{'end' if mx > width * 0.7 else 'start'}\">{esc(marker[1])}</text>")
    for i, (name, v) in enumerate(pts.items()):
        c = colors[i % len(colors)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in v)
        out.append(f"<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"1.6\" points=\"{path}\"/>")
        if len(v) == 1:
            out.append(f"<circle cx=\"{sx(v[0][0]):.1f}\" cy=\"{sy(v[0][1]):.1f}\" r=\"3\" fill=\"{c}\"/>")
        out.append(f"<text x=\"{L + 8}\" y=\"{T + 14 + 13 * i}\" fill=\"{c}\">{esc(name)}</text>")
    out.append("</svg>")
    return "".join(out)


def histogram(values: Sequence[float], label: str, bins: int = 20, width: int = 300, height: int = 150) -> str:
    """Inline SVG histogram of the finite ``values``."""
    import numpy as np

    v = np.asarray([x for x in values if x is not None and math.isfinite(float(x))], dtype=float)
    if v.size == 0:
        return f"<svg width=\"{width}\" height=\"{height}\"><text x=\"10\" y=\"20\">{esc(label)}: no finite values</text></svg>"
    counts, edges = np.histogram(v, bins=bins if np.ptp(v) > 0 else 1)
    L, B, T = 8, 30, 8
    bw = (width - 2 * L) / len(counts)
    top = counts.max() or 1
    bars = "".join(
        f"<rect x=\"{L + i * bw:.1f}\" y=\"{height - B - c / top * (height - B - T):.1f}\" width=\"{max(bw - 1, 1):.1f}\" "
        f"height=\"{c / top * (height - B - T):.1f}\" fill=\"#4c78a8\"><title>{fmt(edges[i])}–{fmt(edges[i + 1])}: "
        f"{int(c)}</title></rect>" for i, c in enumerate(counts))
    return (f"<svg width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"{esc(label)}\" "
            f"style=\"font:11px sans-serif\">{bars}<text x=\"{L}\" y=\"{height - B + 13}\">{fmt(edges[0])}</text>"
            f"<text x=\"{width - L}\" y=\"{height - B + 13}\" text-anchor=\"end\">{fmt(edges[-1])}</text>"
            f"<text x=\"{width / 2}\" y=\"{height - 3}\" text-anchor=\"middle\">{esc(label)} (n {v.size})</text></svg>")
