"""The options of ``p2ptools predict``: one object that the command builds once and every prediction
path reads (folders, GeoTIFF tile splits, a whole scene, many scenes)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: the options that change a whole scene's output (what a rerun compares to keep an output: the
#: device and the batch size do not change it)
SCENE_RESULT_FIELDS: tuple[str, ...] = ("which", "overlap", "blend", "amp", "input_kind", "palette", "bands",
                                        "overviews", "rgb", "engine")


@dataclass(frozen=True)
class PredictOptions:
    """How to predict.

    Args:
        which: checkpoint of a run folder: ``latest``, ``best`` or ``epoch_K``.
        input_kind: ``auto``; a folder: ``a`` (images) or ``ab`` (an aligned split); a raster:
            ``labels`` or ``rgb``.
        batch_size: images or windows per forward pass.
        device: ``auto`` or a torch device string.
        amp: a precision of :data:`p2ptools.runtime.precisions.PRECISIONS`.
        engine: ``auto`` or an engine of :data:`p2ptools.inference.engine.ENGINES`.
        progress: show a progress bar (a line per unit when stderr is not a terminal).
        dropout: folders: keep dropout on (the paper's test-time noise).
        batch_stats: folders: normalise with batch statistics (the paper's test mode).
        side_by_side: folders: also write ``side_by_side/<stem>.png`` = input | output [| target].
        overlap: rasters: pixels shared by neighbouring windows (default: a quarter of the tile).
        blend: rasters: ``hann`` or ``none`` (each output pixel from one window).
        palette: rasters of labels: the palette when the checkpoint carries none.
        bands: rasters: the photo's bands (1-based) to read.
        overviews: rasters: build overviews into the output.
        rgb: rasters, a model that writes labels: write its RGB colours instead of classes.
        band_width: rasters: the widest vertical band translated at once (bounds memory).
        pad: rasters: pixels mirrored around the scene (default: a quarter of the tile).
        window_lines: rasters: a line at every tenth of the windows (off when many scenes share a log).
    """

    which: str = "latest"
    input_kind: str = "auto"
    batch_size: int = 8
    device: str = "auto"
    amp: str = "auto"
    engine: str = "auto"
    progress: bool = True
    dropout: bool = False
    batch_stats: bool = False
    side_by_side: bool = False
    overlap: int | None = None
    blend: str = "hann"
    palette: str | None = None
    bands: tuple[int, ...] | None = None
    overviews: bool = False
    rgb: bool = False
    band_width: int = 4096
    pad: int | None = None
    window_lines: bool = True

    @property
    def training_layers(self) -> bool:
        """Whether dropout or batch statistics stay in training mode."""
        return self.dropout or self.batch_stats

    def scene_result(self) -> dict[str, Any]:
        """The options that change a whole scene's output (:data:`SCENE_RESULT_FIELDS`; ``pad`` when set)."""
        fields = asdict(self)
        out = {k: fields[k] for k in SCENE_RESULT_FIELDS}
        if self.pad is not None:
            out["pad"] = self.pad
        return out
