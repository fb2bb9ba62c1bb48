"""``RUN/index.html``: a training run as a page, rewritten after every epoch.

It shows the state (epoch, best epoch and its val L1, early stopping), the loss curves (G_GAN, D,
L1 per epoch) and the validation L1 with the best epoch marked, time per epoch, the sample grids
(input | target | output) newest first, and the model and training configuration. Everything is
read from the run folder (``losses.csv``, ``val.csv``, ``samples/``) and drawn as inline SVG, so the
page opens from ``file://`` on a cluster's shared disk while the run goes on; a refresh shows the
newest epoch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd

from p2ptools.runtime.html import esc, fmt, line_chart, page, table, url
from p2ptools.runtime.output import atomic_write_text

PAGE = "index.html"
EAGER_SAMPLES = 6  # newest grids shown at once; older ones load when scrolled to


def _read(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path) if path.is_file() and path.stat().st_size else pd.DataFrame()
    except (OSError, ValueError, pd.errors.ParserError):
        return pd.DataFrame()


def epoch_table(run_dir: Path) -> pd.DataFrame:
    """Per epoch: mean losses (L1 on the 0–255 scale), seconds (≈ mean s/step × steps), val L1."""
    losses, val = _read(run_dir / "losses.csv"), _read(run_dir / "val.csv")
    if losses.empty:  # fewer steps than --log-every so far
        return val[["epoch", "val_l1_255"]].copy() if not val.empty else pd.DataFrame()
    g = losses.groupby("epoch")
    out = g[["loss_G_GAN", "loss_D", "loss_G_L1"]].mean()
    out["loss_G_L1"] *= 127.5
    steps = g["step"].max() - g["step"].max().shift(1, fill_value=0)
    out["seconds"] = g["sec_per_step"].mean() * steps
    if not val.empty:
        out = out.join(val.set_index("epoch")[["val_l1_255"]], how="left")
    return out.reset_index()


def write_run_page(run_dir: Path, model_cfg: Any, train_cfg: Any, state: Any) -> Path:
    """Write ``run_dir/index.html`` from the run folder and the run's state (atomic)."""
    run_dir = Path(run_dir)
    ep = epoch_table(run_dir)
    best = getattr(state, "best_epoch", 0) or 0
    best_l1 = getattr(state, "best_val_l1", float("inf"))
    epochs = getattr(train_cfg, "epochs", "?")
    status = "finished" if getattr(state, "finished", False) else "running"
    if getattr(state, "early_stopped", False):
        status = "stopped early (patience)"
    cards = [("epoch", f"{state.epoch} / {epochs}"), ("steps", f"{state.global_step}"), ("status", status)]
    validated = (run_dir / "val.csv").is_file() and (run_dir / "val.csv").stat().st_size > 0
    if best > 0:
        cards.append(("best val L1 (0–255)", f"{fmt(best_l1)} at epoch {best}"))
    elif not validated and state.epoch > 0:
        cards.append(("validation", "none: the dataset has no val/ images, so nothing is validated and no "
                                    "best.pt is written"))
    if "seconds" in ep and ep["seconds"].notna().any():
        cards.append(("time per epoch", f"{fmt(ep['seconds'].tail(5).mean(), 3)} s (last 5)"))
    body = ["<div class=\"cards\">" + "".join(f"<div class=\"card\"><span>{esc(k)}</span><b>{esc(v)}</b></div>"
                                               for k, v in cards) + "</div>"]
    if "loss_G_GAN" in ep:
        x = ep["epoch"].tolist()

        def series(col: str) -> list[tuple[float, float]]:
            return list(zip(x, ep[col], strict=True))

        l1 = {"train L1 (0–255)": series("loss_G_L1")}
        if "val_l1_255" in ep:
            l1["val L1 (0–255)"] = series("val_l1_255")
        charts = [
            line_chart({"G_GAN": series("loss_G_GAN"), "D": series("loss_D")}, "epoch", "GAN losses"),
            line_chart(l1, "epoch", "L1", marker=(best, f"best {best}") if best > 0 else None),
            line_chart({"seconds": series("seconds")}, "epoch", "seconds per epoch"),
        ]
        body.append("<h2>Curves</h2><div class=\"charts\">" + "".join(f"<figure>{c}</figure>" for c in charts)
                    + "</div>")
    grids = sorted((run_dir / "samples").glob("epoch_*.jpg"), reverse=True)
    if grids:
        figs = []
        for i, g in enumerate(grids):
            lazy = " loading=\"lazy\"" if i >= EAGER_SAMPLES else ""
            figs.append(f"<figure><figcaption>epoch {int(g.stem.split('_')[1])}</figcaption>"
                        f"<img{lazy} src=\"{url('samples/' + g.name)}\" alt=\"{esc(g.stem)}\"></figure>")
        body.append("<h2>Samples (input | target | output), newest first</h2><div class=\"grid\">"
                    + "".join(figs) + "</div>")
    if not ep.empty:
        body.append("<h2>Epochs</h2>" + table(list(ep.columns), ep.iloc[::-1].values.tolist()))
    cfg_rows = [(f"model.{k}", str(v)) for k, v in dataclasses.asdict(model_cfg).items()]
    cfg_rows += [(f"train.{k}", str(v)) for k, v in dataclasses.asdict(train_cfg).items()]
    body.append("<h2>Configuration</h2>" + table(["setting", "value"], cfg_rows, left=2))
    sub = (f"<span class=\"mono\">{esc(run_dir)}</span> · dataset <span class=\"mono\">"
           f"{esc(getattr(train_cfg, 'dataset', ''))}</span> · refreshed after every epoch (reload to update)")
    path = run_dir / PAGE
    atomic_write_text(path, page(f"p2ptools train · {getattr(model_cfg, 'name', 'pix2pix')}", sub, "".join(body)))
    return path
