"""Generators trained by the official pix2pix/CycleGAN code (``*_net_G.pth``), used as p2ptools' own.

The official code saves a generator as a bare ``state_dict`` (``latest_net_G.pth``,
``200_net_G.pth``) and its options in ``train_opt.txt`` beside it. This module reads both — the
file as data only (:mod:`p2ptools.runtime.safeload`) — and rebuilds the network:

* the architecture comes from ``train_opt.txt`` (``netG``, ``ngf``, ``norm``, ``no_dropout``,
  ``input_nc``/``output_nc``, ``direction``, ``crop_size``) or, without it, from the tensor shapes
  (``unet_128``/``unet_256``/any depth, ``resnet_6blocks``/``resnet_9blocks``; batch or instance
  norm), and options given explicitly override both;
* ResNet generators load unchanged into :class:`~p2ptools.pix2pix.nets.resnet.ResnetGenerator`;
* U-Nets are mapped onto :class:`~p2ptools.pix2pix.nets.unet.UNetGenerator` — the same layers, but
  the official code concatenates ``[skip, decoder]`` where ours concatenates ``[decoder, skip]`` (the
  halves of each transposed convolution's input channels are swapped), and the first and innermost
  encoder convolutions, which have no bias there under BatchNorm, get a zero bias.

Prediction then follows the official ``test.py --eval``: images resized to ``crop_size`` (bicubic),
normalised to [-1, 1], eval mode.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from p2ptools.config import PAIR_DIRECTIONS, ModelConfig
from p2ptools.errors import ConfigError, InputError, OutputError
from p2ptools.runtime.safeload import load_torch_file

log = logging.getLogger(__name__)

#: what the official code names generator files: ``latest_net_G.pth``, ``200_net_G.pth``
OFFICIAL_FILE = re.compile(r"^(?:latest|\d+)_net_G(?:_[AB])?\.pth$")


@dataclass(frozen=True)
class OfficialArch:
    """The generator an official file holds.

    Args:
        kind: ``unet`` or ``resnet``.
        depth: U-Net downsamplings, or ResNet blocks.
        ngf: filters of the first layer.
        norm: ``batch`` or ``instance``.
        dropout: whether the network was built with dropout (matters only for training).
        in_channels: input channels.
        out_channels: output channels.
        direction: ``AtoB`` or ``BtoA`` (from ``train_opt.txt``; AtoB without it).
        size: the crop size it was trained at (the prediction size).
        source: ``train_opt.txt`` or ``tensor shapes`` (for messages).
    """

    kind: str
    depth: int
    ngf: int
    norm: str
    dropout: bool
    in_channels: int
    out_channels: int
    direction: str
    size: int
    source: str

    def model_config(self) -> ModelConfig:
        """The p2ptools model configuration of this generator."""
        common = {"name": f"official-{self.kind}", "in_channels": self.in_channels, "out_channels": self.out_channels,
                  "ngf": self.ngf, "g_norm": self.norm, "dropout": 0.5 if self.dropout else 0.0,
                  "image_size": self.size, "load_size": self.size}
        if self.kind == "resnet":
            return ModelConfig(generator="resnet", n_blocks=self.depth, **common)
        return ModelConfig(generator="unet", num_downs=self.depth, **common)


def is_official_checkpoint(path: Path) -> bool:
    """Whether ``path`` looks like an official generator file (by name; the content is checked on load)."""
    return Path(path).is_file() and bool(OFFICIAL_FILE.match(Path(path).name))


def read_train_opt(path: Path) -> dict[str, str]:
    """The options in an official ``train_opt.txt`` (``name: value [default: …]`` lines)."""
    opts = {}
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        m = re.match(r"^\s*([A-Za-z_][\w]*):\s*(\S+)", line)
        if m:
            opts[m.group(1)] = m.group(2)
    return opts


def _opt_file(checkpoint: Path) -> Path | None:
    for name in ("train_opt.txt", "opt.txt"):
        if (checkpoint.parent / name).is_file():
            return checkpoint.parent / name
    return None


def arch_from_shapes(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """What the tensor shapes say: kind, depth, ngf, norm, dropout, channels.

    Raises:
        InputError: for a state dict that is neither an official U-Net nor a ResNet generator.
    """
    norm = "batch" if any(k.endswith("running_mean") for k in state) else "instance"
    if "model.model.0.weight" in state:  # U-Net: one nested block per level
        depth = 1 + max((k.count("model.") - 2 for k in state if k.endswith(".weight")), default=0)
        first = state["model.model.0.weight"]
        last = state["model.model.3.weight"]  # outermost transposed convolution (in, out, 4, 4)
        return {"kind": "unet", "depth": depth, "ngf": first.shape[0], "norm": norm, "dropout": None,
                "in_channels": first.shape[1], "out_channels": last.shape[1]}
    if "model.1.weight" in state:  # ResNet: model.<i> in one sequence
        blocks = {int(m.group(1)) for k in state if (m := re.match(r"^model\.(\d+)\.conv_block\.", k))}
        heads = [int(m.group(1)) for k in state if (m := re.match(r"^model\.(\d+)\.weight$", k))]
        return {"kind": "resnet", "depth": len(blocks), "ngf": state["model.1.weight"].shape[0], "norm": norm,
                "dropout": any(".conv_block.6." in k for k in state), "in_channels": state["model.1.weight"].shape[1],
                "out_channels": state[f"model.{max(heads)}.weight"].shape[0]}
    raise InputError("not a pix2pix/CycleGAN generator of the official code (neither its U-Net nor its ResNet "
                     "parameter names)")


def official_arch(checkpoint: Path, state: dict[str, torch.Tensor], overrides: dict[str, Any] | None = None
                  ) -> OfficialArch:
    """The architecture of an official generator: ``train_opt.txt``, else the shapes; ``overrides`` win.

    Raises:
        InputError: naming the file: not an official generator, or a ``direction`` in ``train_opt.txt``
            other than exactly AtoB or BtoA (unless ``overrides`` gives one).
        ConfigError: an override's direction is not AtoB or BtoA.
    """
    try:
        shapes = arch_from_shapes(state)
    except InputError as exc:
        raise InputError(f"{checkpoint}: {exc}") from None
    opt_path = _opt_file(checkpoint)
    fields = dict(shapes, direction="AtoB", size=None, source="tensor shapes")
    if opt_path is not None:
        opt = read_train_opt(opt_path)
        net = opt.get("netG", "")
        m = re.match(r"^(unet|resnet)_(\d+)(?:blocks)?$", net)
        if m and m.group(1) == shapes["kind"]:
            fields["depth"] = {"128": 7, "256": 8}.get(m.group(2), shapes["depth"]) if m.group(1) == "unet" \
                else int(m.group(2))
        direction = opt.get("direction", "AtoB")
        if direction not in PAIR_DIRECTIONS and not (overrides or {}).get("direction"):
            raise InputError(f"{opt_path}: direction {direction!r} is neither {' nor '.join(PAIR_DIRECTIONS)} (the "
                             "official code ran it as BtoA, as any value but 'AtoB'); correct the file, or give "
                             "import --direction")
        fields.update(norm=opt.get("norm", fields["norm"]), direction=direction,
                      dropout=opt.get("no_dropout", "False") != "True", source=opt_path.name)
        if opt.get("crop_size", "").isdigit():
            fields["size"] = int(opt["crop_size"])
    if fields["dropout"] is None:
        fields["dropout"] = True  # pix2pix's default; only training uses it
    if fields["size"] is None:
        fields["size"] = 2 ** fields["depth"] if fields["kind"] == "unet" and fields["depth"] <= 8 else 256
    fields.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if fields["direction"] not in PAIR_DIRECTIONS:
        raise ConfigError(f"direction must be one of {', '.join(PAIR_DIRECTIONS)}, got {fields['direction']!r}")
    return OfficialArch(**fields)


def unet_state_from_official(state: dict[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    """An official U-Net ``state_dict`` under :class:`UNetGenerator`'s names.

    Level ``L`` (0 outermost) of the official nesting is encoder ``down[L]`` and decoder ``up[depth-1-L]``;
    every transposed convolution but the innermost receives ``[skip, decoder]`` there and
    ``[decoder, skip]`` here, so the halves of its input channels (dim 0) are swapped.
    """
    out: dict[str, torch.Tensor] = {}

    def take(src: str, dst: str, swap: bool = False) -> None:
        for suffix in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            key = f"{src}.{suffix}"
            if key in state:
                t = state[key]
                if swap and suffix == "weight":
                    half = t.shape[0] // 2
                    t = torch.cat([t[half:], t[:half]], dim=0)
                out[f"{dst}.{suffix}"] = t

    take("model.model.0", "down.0.0")
    take("model.model.3", f"up.{depth - 1}.1", swap=True)
    for level in range(1, depth):
        p = "model.model.1." + "model.3." * (level - 1) + "model"
        k = depth - 1 - level
        take(f"{p}.1", f"down.{level}.1")
        if level < depth - 1:
            take(f"{p}.2", f"down.{level}.2")
            take(f"{p}.5", f"up.{k}.1", swap=True)
            take(f"{p}.6", f"up.{k}.2")
        else:  # innermost: no norm after its down convolution, a single input to its up convolution
            take(f"{p}.3", f"up.{k}.1")
            take(f"{p}.4", f"up.{k}.2")
    return out


def load_official_generator(path: Path, device: torch.device | str = "cpu", overrides: dict[str, Any] | None = None
                            ) -> tuple[torch.nn.Module, ModelConfig, dict[str, Any]]:
    """Rebuild an official generator as a p2ptools one (eval mode, on ``device``).

    Returns:
        The generator, its model configuration and metadata shaped like :func:`load_generator`'s
        (``train_config`` has the direction; ``dataset`` is None: no data contract).

    Raises:
        InputError: unreadable, unsafe, or not an official generator; or its tensors do not fit the
            architecture (naming what was read and from where).
    """
    from p2ptools.pix2pix.nets import build_generator

    path = Path(path)
    state = load_torch_file(path, "cpu", what="official generator file")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: not a generator state_dict of the official pix2pix code")
    arch = official_arch(path, state, overrides)
    try:  # the bounds and vocabularies of every model configuration, before the network is built
        mcfg = arch.model_config()
    except ConfigError as exc:
        raise InputError(f"{path}: {exc} (read from {arch.source})") from None
    G = build_generator(mcfg.generator, mcfg.generator_kwargs())
    weights = unet_state_from_official(state, arch.depth) if arch.kind == "unet" else dict(state)
    own = G.state_dict()
    for key in own:  # official U-Nets under BatchNorm have no bias on two convolutions: zero here
        if key not in weights and key.endswith(".bias"):
            weights[key] = torch.zeros_like(own[key])
    try:
        G.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise InputError(f"{path}: its tensors do not fit a {arch.kind} generator of depth {arch.depth}, ngf "
                         f"{arch.ngf}, {arch.norm} norm (read from {arch.source}): {' '.join(first[:2])[:300]}; "
                         "keep the train_opt.txt the official code wrote beside the file") from None
    G.to(device).eval()
    log.info("%s: official %s generator (depth %d, ngf %d, %s norm, %s, %d px) from %s", path, arch.kind,
             arch.depth, arch.ngf, arch.norm, arch.direction, arch.size, arch.source)
    meta = {"path": str(path), "train_config": {"direction": arch.direction, "dataset": None}, "state": {},
            "dataset": None, "official": {"kind": arch.kind, "depth": arch.depth, "ngf": arch.ngf, "norm": arch.norm,
                                          "size": arch.size, "source": arch.source}}
    return G, mcfg, meta


def _check_import_target(run_dir: Path, overwrite: bool) -> None:
    """``run_dir`` may be written by an import: new, empty, or (``overwrite``) an earlier import.

    An earlier import is a folder whose only run file is a ``latest.pt`` that says it was imported
    (``train_config.imported_from``); a training run, or files of anyone else, are never replaced.

    Raises:
        OutputError: naming what the folder holds and what to do.
    """
    from p2ptools.pix2pix.checkpoints import foreign_run_files, load_checkpoint, run_files
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
    from p2ptools.pix2pix.checkpoints import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, RunState
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
