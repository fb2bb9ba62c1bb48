"""Label palettes: class values ↔ names ↔ colours, colorize and decolorize.

A :class:`Palette` maps each integer class value of a label mask to a name and an RGB colour.
``colorize`` turns a grayscale label map into a readable RGB image; ``decolorize`` turns such an
image back into class values, exactly (lossless PNG) or to the nearest palette colour (JPEG).
The palette of a tiled dataset is written to ``dataset.json`` so later commands decode exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from p2ptools.errors import PaletteError


@dataclass(frozen=True)
class LabelClass:
    """One class of a palette.

    Args:
        value: the integer stored in the label mask.
        name: a human-readable class name.
        color: the (R, G, B) colour, each 0–255.
    """

    value: int
    name: str
    color: tuple[int, int, int]


@dataclass(frozen=True)
class Palette:
    """An ordered set of label classes.

    Args:
        name: the palette's name (e.g. ``"landcover"``).
        classes: the classes; values, names and colours must each be unique.
        background: the class value that counts as "no foreground" for empty-mask filtering.
    """

    name: str
    classes: tuple[LabelClass, ...]
    background: int = 0

    def __post_init__(self) -> None:
        if not self.classes:
            raise PaletteError(f"palette {self.name!r} has no classes")
        values = [c.value for c in self.classes]
        colors = [c.color for c in self.classes]
        names = [c.name for c in self.classes]
        for what, items in (("values", values), ("colours", colors), ("names", names)):
            dup = sorted({str(x) for x in items if items.count(x) > 1})
            if dup:
                raise PaletteError(f"palette {self.name!r} repeats class {what}: {', '.join(dup)}")
        for c in self.classes:
            if not 0 <= c.value <= 65535:
                raise PaletteError(f"palette {self.name!r}: class value {c.value} is not in 0..65535")
            if len(c.color) != 3 or any(not 0 <= int(v) <= 255 for v in c.color):
                raise PaletteError(f"palette {self.name!r}: colour {c.color} of class {c.name!r} is not RGB 0..255")
        if self.background not in values:
            raise PaletteError(f"palette {self.name!r}: background value {self.background} is not one of its classes")

    @property
    def values(self) -> list[int]:
        """Class values in palette order."""
        return [c.value for c in self.classes]

    @property
    def names(self) -> list[str]:
        """Class names in palette order."""
        return [c.name for c in self.classes]

    @property
    def colors(self) -> np.ndarray:
        """Colours as a ``(K, 3)`` uint8 array in palette order."""
        return np.array([c.color for c in self.classes], dtype=np.uint8)

    def lut(self) -> np.ndarray:
        """Return a ``(65536, 3)`` uint8 lookup table from class value to colour (others black)."""
        table = np.zeros((65536, 3), dtype=np.uint8)
        for c in self.classes:
            table[c.value] = c.color
        return table

    def to_dict(self) -> dict[str, Any]:
        """Serialise to the JSON/YAML palette format read by :func:`palette_from_dict`."""
        return {
            "name": self.name,
            "background": self.background,
            "classes": [{"value": c.value, "name": c.name, "color": list(c.color)} for c in self.classes],
        }


def _parse_color(raw: Any, where: str) -> tuple[int, int, int]:
    """Parse ``[r, g, b]`` or ``"#rrggbb"`` into an RGB tuple.

    Raises:
        PaletteError: if the colour cannot be parsed.
    """
    if isinstance(raw, str):
        s = raw.strip().lstrip("#")
        if len(s) == 6:
            try:
                return (int(s[0:2], 16), int(s[2:4], 16), int(s[4:6], 16))
            except ValueError:
                pass
        raise PaletteError(f"{where}: colour {raw!r} is not '#rrggbb' or [r, g, b]")
    if isinstance(raw, (list, tuple)) and len(raw) == 3 and all(isinstance(v, int) for v in raw):
        return (int(raw[0]), int(raw[1]), int(raw[2]))
    raise PaletteError(f"{where}: colour {raw!r} is not '#rrggbb' or [r, g, b]")


def palette_from_dict(data: Any, source: str = "palette") -> Palette:
    """Build a palette from its dictionary form.

    The form is ``{"name": str, "background": int, "classes": [{"value", "name", "color"}]}``;
    ``background`` defaults to 0, or to the first class when 0 is not a class.

    Args:
        data: the parsed YAML/JSON document.
        source: where it came from, for error messages.

    Returns:
        The validated palette.

    Raises:
        PaletteError: if the document is malformed.
    """
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
        raise PaletteError(f"{source}: expected a mapping with a 'classes' list")
    classes = []
    for i, item in enumerate(data["classes"]):
        where = f"{source}: classes[{i}]"
        if not isinstance(item, dict) or not {"value", "color"} <= set(item):
            raise PaletteError(f"{where}: each class needs 'value' and 'color' (and a 'name')")
        if not isinstance(item["value"], int):
            raise PaletteError(f"{where}: value {item['value']!r} is not an integer")
        classes.append(LabelClass(item["value"], str(item.get("name", f"class_{item['value']}")),
                                  _parse_color(item["color"], where)))
    values = [c.value for c in classes]
    background = data.get("background", 0 if 0 in values else (values[0] if values else 0))
    if not isinstance(background, int):
        raise PaletteError(f"{source}: background {background!r} is not an integer")
    return Palette(str(data.get("name", Path(source).stem)), tuple(classes), background)


BUILTIN_PALETTES: dict[str, dict[str, Any]] = {
    # Inria Aerial Image Labeling (and SpaceNet footprint masks): 0 = not building, 255 = building.
    "inria": {
        "name": "inria",
        "background": 0,
        "classes": [
            {"value": 0, "name": "background", "color": [0, 0, 0]},
            {"value": 255, "name": "building", "color": [255, 255, 255]},
        ],
    },
    # Binary masks stored as 0/1.
    "binary01": {
        "name": "binary01",
        "background": 0,
        "classes": [
            {"value": 0, "name": "background", "color": [0, 0, 0]},
            {"value": 1, "name": "foreground", "color": [255, 255, 255]},
        ],
    },
    # LandCover.ai v1: 0 background, 1 building, 2 woodland, 3 water, 4 road.
    "landcover": {
        "name": "landcover",
        "background": 0,
        "classes": [
            {"value": 0, "name": "background", "color": [0, 0, 0]},
            {"value": 1, "name": "building", "color": [230, 25, 75]},
            {"value": 2, "name": "woodland", "color": [60, 180, 75]},
            {"value": 3, "name": "water", "color": [0, 130, 200]},
            {"value": 4, "name": "road", "color": [255, 225, 25]},
        ],
    },
}


def load_palette(spec: str | Path) -> Palette:
    """Load a built-in palette by name or a palette file (YAML or JSON).

    Args:
        spec: a built-in name (``inria``, ``binary01``, ``landcover``) or a path to a file.

    Returns:
        The palette.

    Raises:
        PaletteError: if the name is unknown or the file is missing or malformed.
    """
    key = str(spec)
    if key in BUILTIN_PALETTES:
        return palette_from_dict(BUILTIN_PALETTES[key], key)
    path = Path(key)
    if not path.is_file():
        raise PaletteError(
            f"palette {key!r} is neither a built-in palette ({', '.join(sorted(BUILTIN_PALETTES))}) nor a file"
        )
    import yaml  # here: built-in palettes need no YAML parser at start-up

    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise PaletteError(f"{path}: cannot parse palette: {exc}") from exc
    return palette_from_dict(data, str(path))


def colorize(labels: np.ndarray, palette: Palette) -> np.ndarray:
    """Map a label map to its palette colours.

    Args:
        labels: ``(H, W)`` integer class values, all of them in the palette.

    Returns:
        ``(H, W, 3)`` uint8 RGB image.

    Raises:
        PaletteError: if some values are not palette classes (they are listed).
    """
    check_values(labels, palette)
    return palette.lut()[labels.astype(np.int64, copy=False)]


def check_values(labels: np.ndarray, palette: Palette, source: str = "mask") -> None:
    """Raise if ``labels`` holds values that are not classes of ``palette``.

    Raises:
        PaletteError: naming the unknown values.
    """
    unknown = unknown_values(np.unique(labels), palette)
    if unknown:
        shown = ", ".join(map(str, unknown[:10])) + (f", … ({len(unknown)} values)" if len(unknown) > 10 else "")
        raise PaletteError(f"{source} has values outside palette {palette.name!r} "
                           f"({', '.join(map(str, palette.values))}): {shown}")


def unknown_values(values: np.ndarray | list[int], palette: Palette) -> list[int]:
    """Return the sorted values in ``values`` that are not classes of ``palette``."""
    known = set(palette.values)
    return sorted(int(v) for v in np.asarray(values).ravel() if int(v) not in known)


def decolorize(rgb: np.ndarray, palette: Palette, nearest: bool = False) -> np.ndarray:
    """Map an RGB label image back to class values.

    Args:
        rgb: ``(H, W, 3)`` uint8 RGB image.
        palette: the palette it was colorized with.
        nearest: map each pixel to the palette colour nearest in RGB (for JPEG-blurred labels);
            when False every colour must be a palette colour exactly.

    Returns:
        ``(H, W)`` class values (uint8 when they fit, else uint16).

    Raises:
        PaletteError: with ``nearest=False``, if some colours are not palette colours.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise PaletteError(f"expected an (H, W, 3) RGB label image, got shape {rgb.shape}")
    dtype = np.uint8 if max(palette.values) <= 255 else np.uint16
    colors = palette.colors.astype(np.int32)
    values = np.array(palette.values, dtype=dtype)
    flat = rgb.reshape(-1, 3).astype(np.int32)
    if nearest:
        # squared RGB distance to each palette colour: (N, K)
        d = ((flat[:, None, :] - colors[None, :, :]) ** 2).sum(axis=2)
        return values[d.argmin(axis=1)].reshape(rgb.shape[:2])
    keys = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
    ckeys = (colors[:, 0] << 16) | (colors[:, 1] << 8) | colors[:, 2]
    order = np.argsort(ckeys)
    pos = np.searchsorted(ckeys[order], keys)
    pos = np.clip(pos, 0, len(ckeys) - 1)
    hit = ckeys[order][pos] == keys
    if not hit.all():
        bad = np.unique(flat[~hit], axis=0)[:10]
        raise PaletteError(
            f"label image has colours outside palette {palette.name!r}: "
            + ", ".join(f"({r}, {g}, {b})" for r, g, b in bad)
            + ("" if len(bad) < 10 else ", …")
            + "; use nearest=True for JPEG-compressed labels"
        )
    return values[order][pos].reshape(rgb.shape[:2])


def nearest_class(rgb: np.ndarray, palette: Palette) -> np.ndarray:
    """``(3, H, W)`` float colours → ``(H, W)`` class values: the palette colour nearest to each pixel."""
    colors = np.array([c.color for c in palette.classes], np.float32)  # (K, 3)
    values = np.array([c.value for c in palette.classes], np.uint16 if max(palette.values) > 255 else np.uint8)
    best = np.zeros(rgb.shape[1:], np.int64)
    best_d = np.full(rgb.shape[1:], np.inf, np.float32)
    for k, c in enumerate(colors):
        d = ((rgb - c[:, None, None]) ** 2).sum(axis=0)
        closer = d < best_d
        best[closer], best_d[closer] = k, d[closer]
    return values[best]
