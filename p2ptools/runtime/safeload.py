"""Reading ``torch.save`` files from elsewhere as data, never as code.

Every ``.pt``/``.pth`` file p2ptools reads (its own checkpoints and snapshots, FCN segmenters,
pretrained weights, official pix2pix generators) goes through :func:`load_torch_file`, which uses
``torch.load(weights_only=True)``: tensors, numbers, strings, lists, tuples and dicts are rebuilt,
and a pickle that names any other Python object is refused before that object is touched, so a
file crafted to call ``os.system`` runs nothing.

The one allowance beyond that is the numpy array types that checkpoints written before p2ptools
0.1 (December 2026) used for numpy's random state: ``numpy.ndarray``, ``numpy.dtype`` and the
unsigned 32-bit dtype class, plus numpy's array reconstructor. They rebuild arrays of numbers and
nothing else. New checkpoints hold those states as plain lists.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from p2ptools.errors import InputError
from p2ptools.runtime.names import is_utf8


def _numpy_allowlist() -> list[Any]:
    """The numpy globals an array of numbers needs when unpickled (under both numpy 1 and 2 names)."""
    allowed: list[Any] = [np.ndarray, np.dtype]
    with_names: list[Any] = []
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    allowed.append(_reconstruct)
    # files pickled by numpy 1.x name the function numpy.core.multiarray._reconstruct
    with_names.append((_reconstruct, "numpy.core.multiarray._reconstruct"))
    with_names.append((_reconstruct, "numpy._core.multiarray._reconstruct"))
    dtypes = getattr(np, "dtypes", None)
    for name in ("UInt32DType", "Int64DType", "Float64DType"):
        cls = getattr(dtypes, name, None) if dtypes is not None else None
        if cls is not None:
            allowed.append(cls)
    return allowed + with_names


class UnsafeFileError(InputError):
    """A ``torch.save`` file that needs more than tensors and plain data to load (refused, nothing run)."""


def _what_it_needs(path: Path) -> str:
    """The Python objects a file's pickle names beyond the allowed ones (for the message)."""
    from torch.serialization import get_unsafe_globals_in_checkpoint

    try:
        names = get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # the file may be damaged as well
        return ""
    allowed = {f"{getattr(o, '__module__', '')}.{getattr(o, '__name__', '')}" if not isinstance(o, tuple) else o[1]
               for o in _numpy_allowlist()}
    names = [n for n in names if n not in allowed]
    if not names:
        return ""
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def load_torch_file(path: Path, map_location: str | torch.device = "cpu", what: str = "file",
                    mmap: bool = False) -> Any:
    """``torch.load`` a file as data only (``weights_only=True``, numpy number arrays allowed).

    Args:
        path: the file.
        map_location: where tensors go.
        what: what the file should be, for messages (``checkpoint``, ``segmenter``, ``weights file``).
        mmap: map the file instead of reading it: only the tensors used are read from disk (the
            generator of a full checkpoint, a third of its bytes); files in torch's legacy format are
            read whole.

    Returns:
        The loaded object (dicts, lists, tensors, numbers, strings).

    Raises:
        UnsafeFileError: the file names Python objects beyond tensors and plain data (named in the
            message); nothing in it was run.
        InputError: the file is missing or not a readable ``torch.save`` file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such {what}")
    try:
        with torch.serialization.safe_globals(_numpy_allowlist()):
            if not is_utf8(str(path)):  # torch's C++ reader takes UTF-8 names only: read it through an open file
                with path.open("rb") as fh:
                    return torch.load(fh, map_location=map_location, weights_only=True)
            if mmap and zipfile.is_zipfile(path):  # the zip format torch has written since 1.6
                return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged or refused file
        needs = _what_it_needs(path)
        if needs:
            raise UnsafeFileError(
                f"{path}: refused: this {what} holds Python objects beyond tensors and plain data ({needs}); "
                "p2ptools loads such files as data only, so nothing in it was run. If you trust its source, "
                "re-save its tensors (torch.save(obj.state_dict(), …)) and use that file") from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights only" in first.lower() or "weights_only" in first:  # torch's advice to run the file: not ours
            first = "its contents are not tensors and plain data"
        raise InputError(f"{path}: cannot read this {what} (damaged, truncated or not a PyTorch file: "
                         f"{first[:200]})") from None
