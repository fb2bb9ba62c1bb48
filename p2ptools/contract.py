"""The data contract: what the images of a dataset are and how they were made, in one record.

``tile``, ``make-inpaint`` and ``pair`` write it into ``dataset.json`` (key ``contract``); ``train``
copies it into every checkpoint; ``predict`` (folders and whole scenes) applies it and refuses an
input that does not fit it, naming both. It holds:

* ``a`` / ``b``: what each half is (``label``, ``photo``, ``photo with hole``, ``image``); with the
  run's ``--direction`` this says what the model reads and what it writes;
* ``size``: the tile size;
* ``palette``: the label classes (value, name, colour) when a half is a label map;
* ``photo``: how photos became 8-bit RGB: the bands asked for (None: RGB of RGB/RGBN, the first band
  of anything else), how many channels were read (1 is replicated to RGB), the source dtypes, and
  the stretch of non-8-bit data (``percentile`` low/high, computed per scene, or once for the whole
  dataset with ``tile --stretch-scope dataset``: ``dataset_stretch``, which ``predict`` applies
  to new scenes; the values of each training scene are kept in ``scenes``);
* ``normalisation``: 8-bit RGB to the network's range, ``x / 127.5 − 1`` (inverted on output);
* ``tif``: for GeoTIFF tiles (``tile --format tif``), per half (``A``, ``B``): a label's dtype, or
  a photo's dtype, bands, nodata and per-band ``low``/``high`` mapped to -1/1
  (:mod:`p2ptools.prep.bands`).

Old checkpoints and datasets without a contract (facades, maps: folders of A|B images) get
:func:`generic`, which enforces nothing beyond what the images show.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from p2ptools.errors import InputError

NORMALISATION = "8-bit RGB, x / 127.5 - 1 (inverted on output)"
ROLES = ("label", "photo", "photo with hole", "image")


@dataclass(frozen=True)
class PhotoSpec:
    """How the photos of a dataset were turned into 8-bit RGB.

    Args:
        bands: 1-based bands asked for (``--bands``); None for the default rule.
        channels: bands read per scene, 1 (replicated to RGB) or 3.
        dtypes: source data types seen in the training scenes.
        stretch: the low/high percentiles mapped to 0/255 for non-8-bit photos.
        stretch_scope: ``per scene`` (each scene by its own percentiles) or ``dataset`` (one stretch).
        dataset_stretch: with scope ``dataset``: per band ``[low, high]`` values of the photos
            (``photo``) and of target photos (``target``), pooled over all scenes.
    """

    bands: tuple[int, ...] | None
    channels: int
    dtypes: tuple[str, ...]
    stretch: tuple[float, float] = (2.0, 98.0)
    stretch_scope: str = "per scene"
    dataset_stretch: dict[str, Any] | None = None


@dataclass(frozen=True)
class DataContract:
    """What a dataset's A and B halves are and how they were made (see the module docstring)."""

    kind: str
    a: str
    b: str
    size: int | None = None
    palette: dict[str, Any] | None = None
    photo: PhotoSpec | None = None
    scenes: dict[str, dict[str, Any]] = field(default_factory=dict)
    normalisation: str = NORMALISATION
    tif: dict[str, Any] | None = None

    def roles(self, direction: str) -> tuple[str, str]:
        """``(what the model reads, what it writes)`` for a training ``direction`` (AtoB/BtoA)."""
        return (self.a, self.b) if direction == "AtoB" else (self.b, self.a)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (tuples as lists)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataContract:
        """Rebuild from :meth:`to_dict` output (as read back from JSON)."""
        photo = data.get("photo")
        spec = None
        if photo:
            spec = PhotoSpec(
                bands=tuple(photo["bands"]) if photo.get("bands") else None,
                channels=int(photo["channels"]),
                dtypes=tuple(photo.get("dtypes") or ()),
                stretch=tuple(photo.get("stretch") or (2.0, 98.0)),  # type: ignore[arg-type]
                stretch_scope=photo.get("stretch_scope", "per scene"),
                dataset_stretch=photo.get("dataset_stretch"),
            )
        return cls(kind=data["kind"], a=data["a"], b=data["b"], size=data.get("size"), palette=data.get("palette"),
                   photo=spec, scenes=dict(data.get("scenes") or {}),
                   normalisation=data.get("normalisation", NORMALISATION), tif=data.get("tif"))


def generic(meta: dict[str, Any] | None) -> DataContract:
    """The contract of a dataset without one: from its ``dataset.json`` halves and palette, if any."""
    meta = meta or {}
    a, b = meta.get("A"), meta.get("B")  # older ``pair`` outputs stored folder paths there
    return DataContract(kind=meta.get("kind", "folder"), a=a if a in ROLES else "image", b=b if b in ROLES else "image",
                        palette=meta.get("palette"))


def from_checkpoint(dataset: dict[str, Any] | None) -> DataContract:
    """The contract a checkpoint carries (its ``dataset`` entry), or :func:`generic` for older ones."""
    if dataset and dataset.get("contract"):
        return DataContract.from_dict(dataset["contract"])
    return generic(dataset)


def check_scene_input(contract: DataContract, direction: str, scene: str, count: int, dtype: str, model: str) -> str:
    """The kind of raster a model needs (``labels`` or ``rgb``), after checking that ``scene`` fits.

    Args:
        contract: the run's data contract.
        direction: the run's training direction.
        scene: the raster's path (for messages).
        count: its number of non-alpha bands.
        dtype: its data type.
        model: the checkpoint's path (for messages).

    Raises:
        InputError: naming the scene, what it holds, and what the model was trained on.
    """
    reads, _ = contract.roles(direction)
    if reads == "label":
        if count != 1 or not np.issubdtype(np.dtype(dtype), np.integer):
            raise InputError(f"{scene}: {count} band(s) of {dtype}, not a label raster; the model {model} translates "
                             f"label → {contract.roles(direction)[1]} and reads one integer band of class values")
        return "labels"
    if reads in ("photo", "image") and contract.photo is not None:
        want = contract.photo.channels  # explicit --bands are checked against the scene by choose_bands
        # want 0: the dataset mixed band counts (RGB and gray scenes), so either kind is accepted
        if contract.photo.bands is None and want in (1, 3) and (count >= 3) != (want == 3):
            raise InputError(f"{scene}: {count} band(s); the model {model} was trained on "
                             f"{'3-band (RGB)' if want == 3 else 'single-band'} photos")
        if contract.photo.dtypes and dtype not in contract.photo.dtypes:
            raise InputError(f"{scene}: {dtype} photo; the model {model} was trained on "
                             f"{'/'.join(contract.photo.dtypes)} photos (retile, or convert the scene)")
    return "rgb"


def check_label_image(img: np.ndarray, palette: dict[str, Any], path: str, model: str, min_share: float = 0.9,
                      tolerance: float = 30.0) -> None:
    """Refuse an RGB image that is not a colorized label map of ``palette`` (input of a label model).

    A pixel counts as a label colour when it lies within ``tolerance`` (Euclidean, 0–255) of a
    palette colour, which forgives JPEG artefacts and resampled edges; at least ``min_share`` of
    the pixels must.

    Raises:
        InputError: naming the file, the share of label colours and what the model reads.
    """
    colors = np.array([c["color"] for c in palette["classes"]], np.float32)  # (K, 3)
    px = img.reshape(-1, 3)[:: max(1, img.shape[0] * img.shape[1] // 65536)].astype(np.float32)
    d = np.min(((px[:, None, :] - colors[None]) ** 2).sum(-1), axis=1)
    share = float(np.mean(d <= tolerance**2))
    if share < min_share:
        raise InputError(f"{path}: not a label map of palette {palette.get('name', '?')!r} (only {share:.0%} of its "
                         f"pixels are palette colours); the model {model} reads label maps")
