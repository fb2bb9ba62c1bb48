"""HTML pages of ``evaluate``: ``REP/report.html`` for one run, ``OUT/comparison.html`` for several.

The report page shows the summary (mean, 95% interval, n) of every metric, a histogram per metric,
the FCN-score tables and confusion matrix when asked, and a row per image with thumbnails — input |
real | generated | error map (inside the mask when ``--mask-dir`` is given) — and every per-image
metric, sortable by any column in the browser, worst first by default. Rows are shown a page at a
time and thumbnails load lazily, so a report of 10 000 images opens at once. Thumbnails are small
JPEGs in ``REP/thumbs/`` linked relatively: the folder can be moved or copied as a whole and opened
from ``file://``; nothing is fetched from the network.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from p2ptools.errors import InputError
from p2ptools.evaluation.metrics.registry import METRICS, higher_is_better, spec_of
from p2ptools.runtime.html import esc, fmt, histogram, json_script, page, table, url
from p2ptools.runtime.output import atomic_write_text, write_image

THUMB_DIR = "thumbs"
THUMB_SIZE = 96  # the page shows them 96 px high
PAGE_ROWS = 100


@dataclass
class ReportData:
    """What ``report.html`` shows of one run.

    Args:
        label: the run's name.
        per_image: a row per image (``name`` and a column per metric), in the order their
            thumbnails were written (row ``i`` → index ``i``).
        summary: ``summary.csv``'s table (metric, mean, std, interval, n, baseline, note, identity).
        with_input: whether the thumbnails include the input.
        info: ``real`` and ``fake`` folders, ``masked`` (bool), ``model`` (or None).
        fcn: the FCN-score table, when asked.
        confusion: the generated images' confusion matrix and the class names, with ``fcn``.
        baseline: what the baseline is, in words (None: none).
        provenance: what the numbers rest on (:func:`p2ptools.evaluation.evaluate.provenance`).
        unavailable: metric → why it was not computed.
        errors: ``(name, error)`` of the pairs left out.
        identity: what the identity baseline is, in words (None: none).
    """

    label: str
    per_image: pd.DataFrame
    summary: pd.DataFrame
    with_input: bool
    info: dict[str, Any]
    fcn: pd.DataFrame | None = None
    confusion: tuple[np.ndarray, list[str]] | None = None
    baseline: str | None = None
    provenance: dict[str, Any] | None = None
    unavailable: dict[str, str] | None = None
    errors: list[tuple[str, str]] | None = None
    identity: str | None = None


def _decimals(metric: str) -> int | None:
    """Decimal places the page shows ``metric`` with (None: significant digits, for columns of no metric)."""
    spec = spec_of(metric)
    return None if spec is None else spec.decimals


def _number(value: Any, metric: str) -> str:
    """``value`` of ``metric`` for the page: the metric's decimal places when finite, else :func:`fmt`."""
    decimals = _decimals(metric)
    try:
        x = float(value)
    except (TypeError, ValueError):
        return fmt(value)
    return f"{x:.{decimals}f}" if decimals is not None and np.isfinite(x) else fmt(value)


def thumb_names(index: int, with_input: bool) -> dict[str, str]:
    """Relative paths of the thumbnails of row ``index`` (by role)."""
    roles = (["input"] if with_input else []) + ["real", "fake", "error"]
    return {r: f"{THUMB_DIR}/{index:06d}_{r}.jpg" for r in roles}


def _small(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    s = THUMB_SIZE / max(h, w)
    return img if s >= 1 else cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def error_map(real: np.ndarray, fake: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``(H, W, 3)`` RGB picture of the per-pixel mean absolute error (inferno; 0 black, ≥ 85 bright
    yellow); outside ``mask`` (when given) dimmed to grey."""
    err = np.abs(real.astype(np.int16) - fake.astype(np.int16)).mean(axis=2)
    scaled = np.clip(err * 3, 0, 255).astype(np.uint8)
    rgb = cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
    if mask is not None:
        rgb[~mask] = (rgb[~mask] * 0.25 + 96).astype(np.uint8)
    return rgb


def write_thumbs(out: Path, index: int, item: dict[str, Any]) -> None:
    """Write the thumbnails of one evaluated pair (``real``, ``fake``, optional ``label`` and ``mask``)."""
    names = thumb_names(index, "label" in item)
    pictures = {"real": item["real"], "fake": item["fake"],
                "error": error_map(item["real"], item["fake"], item.get("mask"))}
    if "label" in item:
        pictures["input"] = item["label"]
    for role, rel in names.items():
        write_image(out / rel, _small(pictures[role]), "jpg", jpeg_quality=85)


def _baselines(summary: pd.DataFrame, metric: str) -> str:
    """The baselines' values of ``metric`` on its card (mean colour, input itself), where the summary has them."""
    row = summary[summary["metric"] == metric]
    shown = [(what, row[col].iloc[0]) for col, what in (("baseline", "mean colour"), ("identity", "input itself"))
             if col in summary.columns and len(row) and np.isfinite(row[col].iloc[0])]
    return "".join(f"<span class=\"base\">{what} {_number(v, metric)}</span>" for what, v in shown)


def _summary_cards(summary: pd.DataFrame) -> str:
    cards = []
    for r in summary.itertuples():
        ci = (f"95% CI {_number(r.ci95_low, r.metric)}–{_number(r.ci95_high, r.metric)}" if np.isfinite(r.ci95_low)
              else (f"± {_number(r.std, r.metric)}" if np.isfinite(r.std) else ""))
        arrow = "↑ better" if higher_is_better(r.metric) else "↓ better"
        against = _baselines(summary, r.metric)
        cards.append(f"<div class=\"card\" title=\"{esc(r.note)}\"><span>{esc(r.metric)} · {arrow}</span>"
                     f"<b>{_number(r.mean, r.metric)}</b><span>{ci} · n {int(r.n)}</span>{against}</div>")
    return f"<div class=\"cards\">{''.join(cards)}</div>"


_SUMMARY_SHOWN = ["metric", "mean", "std", "ci95_low", "ci95_high", "n", "baseline", "identity", "note"]


def _provenance(prov: dict[str, Any] | None, baseline: str | None, unavailable: dict[str, str] | None,
                errors: list[tuple[str, str]] | None, identity: str | None = None) -> str:
    """What the numbers rest on, and what is missing, as a section of the page."""
    parts = []
    if unavailable:
        parts.append("<h3>Not computed</h3><ul>" + "".join(f"<li><b>{esc(m)}</b>: {esc(why)}</li>"
                                                            for m, why in unavailable.items()) + "</ul>")
    if errors:
        parts.append(f"<h3>Pairs left out ({len(errors)})</h3><ul>" + "".join(
            f"<li>{esc(s)}: {esc(e)}</li>" for s, e in errors[:50]) + ("<li>…</li>" if len(errors) > 50 else "")
            + "</ul>")
    if baseline:
        parts.append(f"<p class=\"note\">Baseline <i>mean colour</i>: every pixel the {esc(baseline)}, scored on the same images (what "
                     "a model that learned nothing scores); a model should beat it clearly.</p>")
    if identity:
        parts.append(f"<p class=\"note\">Baseline <i>input itself</i>: {esc(identity)}, scored as the output on the same images "
                     "(what a model that changes nothing scores).</p>")
    if prov:
        rows = [("p2ptools", prov.get("p2ptools")), ("torch", prov.get("torch")), ("numpy", prov.get("numpy")),
                ("scikit-image", prov.get("scikit-image")), ("device, precision",
                                                             f"{prov.get('device')}, {prov.get('precision')}"),
                ("images", ", ".join(f"{k} {v}" for k, v in (prov.get("images") or {}).items()))]
        rows += [(f"weights {w['file']}", f"SHA-256 {w['sha256']}") for w in prov.get("weights", [])]
        rows += [(f"resize ({k})", v) for k, v in (prov.get("resize") or {}).items() if v]
        if prov.get("model"):
            rows += [(f"model {k}", v) for k, v in prov["model"].items() if v]
        notes = "".join(f"<p class=\"note\">{esc(n)}</p>" for n in prov.get("notes", []))
        parts.append("<details><summary>provenance</summary>" + table(["what", "value"], rows, left=2) + notes
                     + "</details>")
    return "".join(parts)


def _confusion(conf: np.ndarray, names: list[str]) -> str:
    """Row-normalised confusion matrix as a heat-map table (rows: true class, columns: predicted)."""
    norm = conf / np.maximum(conf.sum(axis=1, keepdims=True), 1)
    head = "".join(f"<th>{esc(n)}</th>" for n in names)
    rows = []
    for i, name in enumerate(names):
        cells = "".join(f"<td style=\"background:rgba(31,119,180,{v:.2f});color:{'#fff' if v > .55 else '#000'}\" "
                        f"title=\"{int(conf[i, j])} px\">{v:.2f}</td>" for j, v in enumerate(norm[i]))
        rows.append(f"<tr><th class=\"l\">{esc(name)}</th>{cells}</tr>")
    return (f"<table><thead><tr><th class=\"l\">true \\ predicted</th>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


TABLE_SCRIPT = """
const state = {key: DEFAULT_SORT.key, desc: DEFAULT_SORT.desc, page: 0};
function h(s) { return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
  .replace(/"/g, '&quot;').replace(/'/g, '&#39;'); }
function u(p) { return h(String(p).split('/').map(encodeURIComponent).join('/')); }
function cell(v, m) { if (v === null || v === undefined) return '–';
  if (typeof v !== 'number') return v; if (Number.isInteger(v)) return String(v);
  return m in DECIMALS && Math.abs(v) < 1e21 ? v.toFixed(DECIMALS[m]) : v.toPrecision(4); }
function sortRows() {
  const k = state.key, s = state.desc ? -1 : 1;
  ROWS.sort((a, b) => { const x = a[k], y = b[k];
    if (x === y) return 0; if (x === null) return 1; if (y === null) return -1;
    return (x < y ? -1 : 1) * s; });
}
function render() {
  const body = document.querySelector('#rows tbody'); const start = state.page * PAGE_ROWS;
  const rows = ROWS.slice(start, start + PAGE_ROWS);
  body.innerHTML = rows.map(r => '<tr data-name="' + h(r.name) + '"><td class="l">'
    + h(r.name) + '</td>'
    + ROLES.map(role => '<td><img class="t" loading="lazy" alt="' + h(role) + '" src="' + u(r.thumbs[role]) + '"></td>').join('')
    + METRICS.map(m => '<td>' + h(cell(r[m], m)) + '</td>').join('') + '</tr>').join('');
  const pages = Math.max(1, Math.ceil(ROWS.length / PAGE_ROWS));
  document.getElementById('pageinfo').textContent = 'rows ' + (ROWS.length ? start + 1 : 0) + '–'
    + Math.min(start + PAGE_ROWS, ROWS.length) + ' of ' + ROWS.length + ' (page ' + (state.page + 1) + '/' + pages + ')';
  document.querySelectorAll('th.sort').forEach(th => {
    th.textContent = th.dataset.key + (th.dataset.key === state.key ? (state.desc ? ' ▼' : ' ▲') : ''); });
}
document.querySelectorAll('th.sort').forEach(th => th.addEventListener('click', () => {
  state.desc = th.dataset.key === state.key ? !state.desc : (th.dataset.key === 'name' ? false : !HIGHER.includes(th.dataset.key));
  state.key = th.dataset.key; state.page = 0; sortRows(); render(); }));
document.getElementById('prev').onclick = () => { if (state.page > 0) { state.page--; render(); } };
document.getElementById('next').onclick = () => { if ((state.page + 1) * PAGE_ROWS < ROWS.length) { state.page++; render(); } };
sortRows(); render();
"""


def _json_rows(per_image: pd.DataFrame, metrics: list[str], with_input: bool) -> list[dict[str, Any]]:
    """The rows of the page and of report.json: name, thumbnails, and each metric (None for NaN;
    ±1e308 for ±inf, which JSON cannot hold and which sorts like it)."""
    rows = []
    for i, rec in enumerate(per_image.to_dict("records")):
        row = {"name": str(rec["name"]), "thumbs": thumb_names(i, with_input)}
        for m in metrics:
            v = rec[m]
            row[m] = None if v is None or not np.isfinite(v) else float(v)
            if v is not None and np.isinf(v):
                row[m] = 1e308 if v > 0 else -1e308  # JSON has no infinity; sorts like it
        rows.append(row)
    return rows


def _primary(metrics: list[str]) -> str:
    """The column the page sorts by at first: the first metric of the registry that is shown."""
    return next((s.main_column for s in METRICS.values() if s.per == "image" and s.main_column in metrics),
                metrics[0] if metrics else "name")


def _images_section(primary: str, roles: list[str], metrics: list[str], masked: bool) -> str:
    """The image table's heading, pager and header row (rows are drawn by the page's script)."""
    heads = "".join(f"<th>{esc(r)}</th>" for r in roles)
    sortable = "".join(f"<th class=\"sort\" data-key=\"{esc(m)}\">{esc(m)}</th>" for m in metrics)
    return (f"<h2>Images</h2><p class=\"note\">Worst first by {esc(primary)}; click a column to sort. "
            f"Error map: mean absolute error per pixel (black 0, yellow ≥ 85 of 255)"
            f"{', outside the mask dimmed' if masked else ''}.</p>"
            f"<div class=\"pager\"><button id=\"prev\">◀ previous</button><button id=\"next\">next ▶</button>"
            f"<span id=\"pageinfo\"></span></div>"
            f"<table id=\"rows\"><thead><tr><th class=\"l sort\" data-key=\"name\">name</th>{heads}{sortable}</tr>"
            f"</thead><tbody></tbody></table>")


def write_report_page(out: Path, data: ReportData) -> Path:
    """Write ``out/report.html`` and ``out/report.json`` (rows with their thumbnails, for comparisons)."""
    per_image, summary, info = data.per_image, data.summary, data.info
    metrics = [c for c in per_image.columns if c != "name"]
    rows = _json_rows(per_image, metrics, data.with_input)
    roles = list(thumb_names(0, data.with_input))
    primary = _primary(metrics)
    default_sort = {"key": primary, "desc": not higher_is_better(primary)}
    hists = "".join(f"<figure>{histogram(per_image[m].tolist(), m)}</figure>" for m in metrics)
    body = [f"<h2>Summary</h2>{_summary_cards(summary)}",
            _provenance(data.provenance, data.baseline, data.unavailable, data.errors, data.identity),
            f"<details><summary>summary table</summary>"
            f"{table(_SUMMARY_SHOWN, summary.reindex(columns=_SUMMARY_SHOWN).values.tolist())}"
            f"</details>"]
    if metrics:
        body.append(f"<h2>Distributions</h2><div class=\"charts\">{hists}</div>")
    if data.fcn is not None:
        body.append("<h2>FCN-score</h2>" + table(list(data.fcn.columns), data.fcn.values.tolist(), left=3))
        if data.confusion is not None:
            body.append("<h3>Confusion matrix of the generated images (row-normalised)</h3>"
                        + _confusion(*data.confusion))
    body.append(_images_section(primary, roles, metrics, bool(info.get("masked"))))
    sub = (f"real <span class=\"mono\">{esc(info.get('real', ''))}</span> · fake "
           f"<span class=\"mono\">{esc(info.get('fake', ''))}</span> · {len(rows)} images"
           + (f" · model <span class=\"mono\">{esc(info['model'])}</span>" if info.get("model") else ""))
    decimals = {m: d for m in metrics if (d := _decimals(m)) is not None}
    script = (json_script("ROWS", rows) + json_script("METRICS", metrics) + json_script("ROLES", roles)
              + json_script("HIGHER", [m for m in metrics if higher_is_better(m)])
              + json_script("DECIMALS", decimals)
              + json_script("DEFAULT_SORT", default_sort) + f"const PAGE_ROWS = {PAGE_ROWS};\n" + TABLE_SCRIPT)
    atomic_write_text(out / "report.json", json.dumps({"label": data.label, "roles": roles, "rows": rows}) + "\n")
    path = out / "report.html"
    atomic_write_text(path, page(f"p2ptools evaluate · {data.label}", sub, "".join(body), script))
    return path


def read_report_doc(report_dir: Path) -> dict[str, Any] | None:
    """``report_dir/report.json`` (what a comparison shows of a report), or None when there is none.

    Raises:
        InputError: when it is there but not a readable JSON object (a damaged or truncated file).
    """
    path = Path(report_dir) / "report.json"
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: not a readable evaluate report ({exc}); run p2ptools evaluate --out "
                         f"{report_dir} again, or compare without it") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: not an evaluate report (a JSON object); run p2ptools evaluate --out {report_dir} "
                         "again, or compare without it")
    return doc


def write_comparison_page(out: Path, table_df: pd.DataFrame, reports: list[Path], max_images: int = 60) -> Path:
    """``out/comparison.html``: the runs' metrics side by side, a chart per metric, and the same images
    of every run next to each other (thumbnails linked from each report folder)."""
    metrics = [c for c in table_df.columns if c not in ("run", "n", "kid_std")]
    charts = []
    for m in metrics:
        vals = [(i, float(v)) for i, v in enumerate(table_df[m].tolist()) if pd.notna(v)]
        charts.append(f"<figure>{_bars([str(table_df['run'].iloc[i]) for i, _ in vals], [v for _, v in vals], m)}"
                      "</figure>")
    docs = [read_report_doc(Path(rep)) for rep in reports]
    strip = ""
    usable = [(Path(rep), d) for rep, d in zip(reports, docs, strict=True)
              if isinstance(d, dict) and isinstance(d.get("rows"), list)
              and all(isinstance(r, dict) and isinstance(r.get("name"), str) for r in d["rows"])]
    if usable:
        first_dir, first = usable[0]
        common = [r["name"] for r in first["rows"] if all(any(x["name"] == r["name"] for x in d["rows"])
                                                           for _, d in usable[1:])][:max_images]
        first_roles = first.get("roles") if isinstance(first.get("roles"), list) else []
        by_name = [{r["name"]: r for r in d["rows"]} for _, d in usable]
        rel = [os.path.relpath(rep, out) for rep, _ in usable]
        head = "<th class=\"l\">name</th>" + ("<th>input</th>" if "input" in first_roles else "") + "<th>real</th>" \
            + "".join(f"<th>{esc(d.get('label', ''))}</th>" for _, d in usable)

        def img(k: int, row: dict[str, Any], role: str) -> str:
            thumb = _thumb_of(row, role)  # a crafted report.json names no other file
            return (f"<td><img class=\"t\" loading=\"lazy\" src=\"{url(rel[k] + '/' + thumb)}\"></td>" if thumb
                    else "<td>–</td>")

        lines = []
        for name in common:
            r0 = by_name[0][name]
            cells = [f"<td class=\"l\">{esc(name)}</td>"]
            if "input" in first_roles:
                cells.append(img(0, r0, "input"))
            cells.append(img(0, r0, "real"))
            for k, b in enumerate(by_name):
                cells.append(img(k, b[name], "fake"))
            lines.append("<tr>" + "".join(cells) + "</tr>")
        strip = (f"<h2>The same images from each run</h2><p class=\"note\">{len(common)} images in every report "
                 f"(first {max_images} by the first run's order)</p>"
                 f"<table id=\"strip\"><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>")
    body = (f"<h2>Metrics</h2>{table(list(table_df.columns), table_df.values.tolist())}"
            f"<h2>Per metric</h2><div class=\"charts\">{''.join(charts)}</div>{strip}")
    path = out / "comparison.html"
    atomic_write_text(path, page("p2ptools evaluate · comparison", f"{len(reports)} runs", body))
    return path


_THUMB = re.compile(r"^thumbs/\d+_(?:input|real|fake|error)\.jpg$")


def _thumb_of(row: Any, role: str) -> str:
    """The thumbnail path of ``role`` in a report.json row, if it is one that evaluate writes."""
    thumbs = row.get("thumbs") if isinstance(row, dict) else None
    value = thumbs.get(role) if isinstance(thumbs, dict) else None
    return value if isinstance(value, str) and _THUMB.match(value) else ""


def _bars(labels: list[str], values: list[float], metric: str, width: int = 320) -> str:
    """Inline SVG horizontal bars, one per run."""
    h = 26 * len(labels) + 30
    top = max((abs(v) for v in values), default=1) or 1
    out = [f"<svg width=\"{width}\" height=\"{h}\" role=\"img\" aria-label=\"{esc(metric)}\" style=\"font:11px sans-serif\">"]
    for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
        w = abs(v) / top * (width - 150) if np.isfinite(v) else 0
        out.append(f"<text x=\"0\" y=\"{22 + 26 * i}\">{esc(lab[:18])}</text><rect x=\"110\" y=\"{10 + 26 * i}\" "
                   f"width=\"{w:.1f}\" height=\"16\" fill=\"#4c78a8\"/><text x=\"{114 + w:.1f}\" y=\"{22 + 26 * i}\">"
                   f"{fmt(v)}</text>")
    arrow = "higher is better" if higher_is_better(metric) else "lower is better"
    out.append(f"<text x=\"0\" y=\"{h - 4}\">{esc(metric)} ({arrow})</text></svg>")
    return "".join(out)

