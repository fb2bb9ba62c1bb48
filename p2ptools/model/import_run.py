"""``p2ptools import``: an official pix2pix generator written as a p2ptools run folder, with a data
contract, so every command treats it as its own."""

from __future__ import annotations

from pathlib import Path

import torch

from p2ptools.errors import InputError, OutputError
from p2ptools.model.official import load_official_generator


def _check_import_target(run_dir: Path, overwrite: bool) -> None:
    """``run_dir`` may be written by an import: new, empty, or (``overwrite``) an earlier import.

    An earlier import is a folder whose only run file is a ``latest.pt`` that says it was imported
    (``train_config.imported_from``); a training run, or files of anyone else, are never replaced.

    Raises:
        OutputError: naming what the folder holds and what to do.
    """
    from p2ptools.model.checkpoints import foreign_run_files, load_checkpoint, run_files
    from p2ptools.runtime.output import refuse_foreign

    refuse_foreign(run_dir, foreign_run_files(run_dir))
    files = sorted(p.relative_to(run_dir).as_posix() for p in run_files(run_dir))
    if not files:
        return
    imported = None
    if files == ["latest.pt"]:
        try:
            imported = (load_checkpoint(run_dir / "latest.pt", mmap=True).get("train_config") or {}).get(
                "imported_from")
        except InputError:
            imported = None
    if not imported:
        shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        raise OutputError(f"{run_dir}: holds a run p2ptools import did not write ({shown}); import never replaces "
                          "it: write the import to another folder")
    if not overwrite:
        raise OutputError(f"{run_dir}: holds an earlier import (of {imported}); use --overwrite to replace it, or "
                          "another folder")


def import_official(path: Path, run_dir: Path, direction: str | None = None, palette: str | None = None,
                    size: int | None = None, overwrite: bool = False) -> Path:
    """Write an official generator as a p2ptools run folder (``RUN/latest.pt``, generator only), with
    a data contract, so ``predict``, whole scenes, many scenes and ``evaluate`` treat it as their own.

    Args:
        path: the official ``*_net_G.pth``.
        run_dir: the run folder to write (new, or one this command wrote).
        direction: ``AtoB``/``BtoA`` (default: ``train_opt.txt``'s, else AtoB).
        palette: a palette name or file when the model reads label maps (label → photo).
        size: the prediction size (default: the crop size it was trained at).
        overwrite: replace an earlier import in ``run_dir`` (a training run or others' files never are).

    Returns:
        The checkpoint written.

    Raises:
        InputError: an unreadable or unsafe file, or not an official generator.
        OutputError: ``run_dir`` holds other files or another run, or an earlier import without ``overwrite``.
    """
    import dataclasses
    import io

    from p2ptools.contract import DataContract
    from p2ptools.model.checkpoints import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, RunState
    from p2ptools.prep.labels import load_palette
    from p2ptools.runtime.lock import hold
    from p2ptools.runtime.output import atomic_write_bytes

    overrides = {"direction": direction, "size": size}
    G, mcfg, meta = load_official_generator(path, "cpu", overrides)
    run_dir = Path(run_dir)
    _check_import_target(run_dir, overwrite)
    hold(run_dir)
    _check_import_target(run_dir, overwrite)  # again, holding it: another command may have written it meanwhile
    d = meta["train_config"]["direction"]
    pal = load_palette(palette).to_dict() if palette else None
    reads, writes = ("label", "photo") if pal else ("image", "image")
    a, b = (reads, writes) if d == "AtoB" else (writes, reads)
    contract = DataContract(kind="official", a=a, b=b, size=mcfg.image_size, palette=pal)
    payload = {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "full": False,
        "dataset": {"kind": "official", "A": a, "B": b, "palette": pal, "contract": contract.to_dict()},
        "model_config": dataclasses.asdict(mcfg),
        "train_config": {"direction": d, "dataset": None, "imported_from": str(Path(path).resolve())},
        "state": dataclasses.asdict(RunState()), "G": G.state_dict(), "official": meta["official"],
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    target = run_dir / "latest.pt"
    atomic_write_bytes(target, buf.getvalue())
    return target
