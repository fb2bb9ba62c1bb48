"""Exceptions raised by p2ptools.

Every error a user can cause derives from :class:`P2PError`; the command line turns each into a
one-line message and a non-zero exit in one place (``p2ptools.cli.main``).
"""

from __future__ import annotations


class P2PError(Exception):
    """Base class of all p2ptools errors that a user can cause."""


class ConfigError(P2PError):
    """An option or configuration value is invalid."""


class InputError(P2PError):
    """An input file or folder is missing, unreadable or malformed."""


class RasterReadError(InputError):
    """A raster could not be opened or read (corrupt or unsupported file)."""


class GridMismatchError(InputError):
    """A photo and its mask do not share one pixel grid (size, transform or CRS)."""


class PaletteError(P2PError):
    """A palette is malformed, or label values/colours fall outside it."""


class OutputError(P2PError):
    """The output location cannot be used (e.g. it holds a different dataset)."""


class SceneFailures(P2PError):
    """Some scenes failed while others were processed; carries the per-scene reasons.

    Args:
        failures: (file, reason) pairs.
        summary: a human-readable summary of what was done.
    """

    def __init__(self, failures: list[tuple[str, str]], summary: str = "") -> None:
        self.failures = failures
        self.summary = summary
        lines = [f"{len(failures)} input(s) failed:"]
        lines += [f"  {r}" if f in r else f"  {f}: {r}" for f, r in failures]
        super().__init__("\n".join(lines))


class DiskFullError(OutputError):
    """The output's file system is full: the command stops at once (what it finished stays, and a
    rerun resumes), never blaming an input."""
