"""One pix2pix training step: the losses, the networks with their optimizers, and the losses kept on
the device between reads.

:func:`step_losses` is the step the fit loop (:mod:`p2ptools.training.train`) takes: G forward, D on
``(A, fake.detach())`` and ``(A, B)``, D step, D on ``(A, fake)``, G step, its losses left on the
device; :class:`LossMeter` adds them up there, so no step waits for the device (the loop reads them
every ``log_every`` steps). :func:`train_step` is the same step with its losses read at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from p2ptools.config import TrainConfig
from p2ptools.errors import ConfigError, P2PError
from p2ptools.model.config import ModelConfig
from p2ptools.model.nets import build_discriminator, build_generator
from p2ptools.runtime.device import autocast, resolve_amp
from p2ptools.training.accel import compile_module, tune_for_fixed_sizes, use_channels_last

#: the losses of a step, in the order :class:`LossMeter` packs them
LOSS_NAMES = ("loss_D", "loss_G_GAN", "loss_G_L1")

class TrainingDiverged(P2PError):
    """A loss became NaN or infinite."""


# --- losses --------------------------------------------------------------------------------------

def gan_loss(pred: torch.Tensor, real: bool, mode: str) -> torch.Tensor:
    """The adversarial loss of discriminator logits ``pred`` against the label real/fake.

    ``vanilla``: binary cross-entropy with logits (the paper); ``lsgan``: mean squared error to
    1/0; ``wgan``/``wgangp``: ``-mean(pred)`` for real, ``mean(pred)`` for fake (critic scores).
    """
    pred = pred.float()
    if mode == "vanilla":
        target = torch.ones_like(pred) if real else torch.zeros_like(pred)
        return F.binary_cross_entropy_with_logits(pred, target)
    if mode == "lsgan":
        return F.mse_loss(pred, torch.ones_like(pred) if real else torch.zeros_like(pred))
    if mode in ("wgan", "wgangp"):
        return -pred.mean() if real else pred.mean()
    raise ConfigError(f"unknown gan_loss {mode!r}")


def gradient_penalty(D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP penalty ``E[(‖∇D(x̂)‖₂ − 1)²]`` on random interpolates of real and fake pairs."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    out = D(mixed)
    (grad,) = torch.autograd.grad(out.sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def lr_factor(epoch: int, epochs: int, decay_epochs: int) -> float:
    """The pix2pix schedule for epoch index ``epoch`` (0-based) of a run of ``epochs`` in all.

    Constant for the first ``epochs − decay_epochs`` epochs, then linear decay towards 0 over the
    last ``decay_epochs`` — the official code's rule with ``n_epochs = epochs − decay_epochs`` and
    ``n_epochs_decay = decay_epochs``: ``1 − max(0, epoch + 1 − n_epochs) / (n_epochs_decay + 1)``.
    """
    return 1.0 - max(0, epoch + 1 - (epochs - decay_epochs)) / float(decay_epochs + 1)


# --- models and one step --------------------------------------------------------------------------

@dataclass
class Models:
    """The networks, optimizers, schedulers and AMP scalers of a run."""

    G: nn.Module
    D: nn.Module
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    sched_G: torch.optim.lr_scheduler.LRScheduler
    sched_D: torch.optim.lr_scheduler.LRScheduler
    scaler_G: torch.amp.GradScaler
    scaler_D: torch.amp.GradScaler
    amp: str = "none"  # the precision in use (``--amp auto`` resolved for the device)


def build_models(mcfg: ModelConfig, tcfg: TrainConfig, device: torch.device) -> Models:
    """Networks (initialised N(0, 0.02)), optimizers, learning-rate schedulers and the precision;
    channels-last and cuDNN autotuning on CUDA, the networks compiled with ``tcfg.compile``."""
    G = build_generator(mcfg.generator, mcfg.generator_kwargs()).to(device)
    D = build_discriminator(mcfg.discriminator, mcfg.discriminator_kwargs()).to(device)
    if use_channels_last(tcfg.channels_last, device):
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    tune_for_fixed_sizes(device)
    if tcfg.compile:  # the same parameters: the optimizers below are unaffected; unwrap() gives G and D back
        G, D = compile_module(G, device), compile_module(D, device)
    if tcfg.optimizer == "adam":
        # fused Adam (one kernel over all parameters) is about 2.5× faster than the default
        # multi-tensor loop on CPU and on CUDA: on a 54M-parameter U-Net that is ~10% of a CPU step
        fused = device.type in ("cpu", "cuda")
        opt_G = torch.optim.Adam(G.parameters(), lr=tcfg.lr, betas=(tcfg.beta1, tcfg.beta2), fused=fused)
        opt_D = torch.optim.Adam(D.parameters(), lr=tcfg.lr, betas=(tcfg.beta1, tcfg.beta2), fused=fused)
    else:
        opt_G = torch.optim.RMSprop(G.parameters(), lr=tcfg.lr)
        opt_D = torch.optim.RMSprop(D.parameters(), lr=tcfg.lr)

    def rule(epoch: int) -> float:
        return lr_factor(epoch, tcfg.epochs, tcfg.n_decay)

    amp = resolve_amp(tcfg.amp, device)
    fp16 = amp == "fp16" and device.type == "cuda"
    return Models(G, D, opt_G, opt_D,
                  torch.optim.lr_scheduler.LambdaLR(opt_G, rule), torch.optim.lr_scheduler.LambdaLR(opt_D, rule),
                  torch.amp.GradScaler(device.type, enabled=fp16), torch.amp.GradScaler(device.type, enabled=fp16),
                  amp)


def _set_requires_grad(net: nn.Module, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(flag)


def step_losses(m: Models, A: torch.Tensor, B: torch.Tensor, tcfg: TrainConfig, device: torch.device,
                update_G: bool = True) -> dict[str, torch.Tensor]:
    """One pix2pix step: G forward, D on (A, fake.detach()) and (A, B), D step, D on (A, fake), G step.

    Nothing is read back to the host (no synchronisation with the device): the losses come back as
    tensors, and a NaN or infinite loss is not checked here (the step is taken; the fit loop checks
    the losses every ``log_every`` steps, :class:`_LossMeter`).

    Args:
        m: the models.
        A: ``(B, C, H, W)`` inputs in [-1, 1].
        B: ``(B, C, H, W)`` targets in [-1, 1].
        update_G: take the generator step (False between WGAN critic steps).

    Returns:
        Detached 0-d tensors on the device: ``loss_D``, and with ``update_G`` ``loss_G_GAN`` and
        ``loss_G_L1`` (the L1 term before λ).
    """
    mode = tcfg.gan_loss
    with autocast(device, m.amp):
        fake = m.G(A)  # (B, C, H, W)
        real_ab = torch.cat([A, B], dim=1)  # (B, 2C, H, W)
        fake_ab = torch.cat([A, fake], dim=1)
        _set_requires_grad(m.D, True)
        pred_fake = m.D(fake_ab.detach())
        pred_real = m.D(real_ab)
        loss_D = (gan_loss(pred_fake, False, mode) + gan_loss(pred_real, True, mode)) * (
            1.0 if mode in ("wgan", "wgangp") else 0.5)
    if mode == "wgangp":
        loss_D = loss_D + tcfg.lambda_gp * gradient_penalty(m.D, real_ab.float(), fake_ab.detach().float())
    m.opt_D.zero_grad(set_to_none=True)
    m.scaler_D.scale(loss_D).backward()
    m.scaler_D.step(m.opt_D)
    m.scaler_D.update()
    if mode == "wgan":
        with torch.no_grad():
            for p in m.D.parameters():
                p.clamp_(-tcfg.clip_value, tcfg.clip_value)
    out = {"loss_D": loss_D.detach()}
    if not update_G:
        return out
    _set_requires_grad(m.D, False)
    with autocast(device, m.amp):
        loss_G_GAN = gan_loss(m.D(fake_ab), True, mode)
        loss_G_L1 = F.l1_loss(fake.float(), B.float())
        loss_G = loss_G_GAN + tcfg.lambda_l1 * loss_G_L1
    m.opt_G.zero_grad(set_to_none=True)
    m.scaler_G.scale(loss_G).backward()
    m.scaler_G.step(m.opt_G)
    m.scaler_G.update()
    _set_requires_grad(m.D, True)
    out.update(loss_G_GAN=loss_G_GAN.detach(), loss_G_L1=loss_G_L1.detach())
    return out


def train_step(m: Models, A: torch.Tensor, B: torch.Tensor, tcfg: TrainConfig, device: torch.device,
               update_G: bool = True, where: str = "") -> dict[str, float]:
    """:func:`step_losses` with its losses read back as numbers (one synchronisation with the device).

    Args:
        where: a description of the step, for the divergence error.

    Returns:
        ``loss_D``, ``loss_G_GAN`` and ``loss_G_L1`` (NaN for the generator's without ``update_G``).

    Raises:
        TrainingDiverged: if a loss is NaN or infinite (the step was taken: the networks may hold
            non-finite weights then).
    """
    losses = step_losses(m, A, B, tcfg, device, update_G)
    values = dict(zip(losses, torch.stack(list(losses.values())).tolist(), strict=True))
    for name, value in values.items():
        if not math.isfinite(value):
            raise TrainingDiverged(f"{name} became {value} at {where or 'a step'}")
    return {k: values.get(k, math.nan) for k in LOSS_NAMES}


class LossMeter:
    """The losses of the steps since the last read, kept on the device (no synchronisation per step).

    Holds, per loss of :data:`LOSS_NAMES`, the sum since the last read, the last step's value, and the
    first step (and value) where it was NaN or infinite (-1: none). :meth:`packed` gives them as one
    tensor, which the fit loop reads in one synchronisation (shared by the processes under torchrun).
    Steps are stored as float32: exact up to 2**24 (16.7 million) steps.
    """

    def __init__(self, device: torch.device) -> None:
        zeros = torch.zeros(len(LOSS_NAMES), device=device)
        self.sums, self.last, self.bad_value = zeros.clone(), zeros.clone(), zeros.clone()
        self.bad_step = torch.full_like(zeros, -1.0)
        self.zero = torch.zeros((), device=device)
        self.counts = dict.fromkeys(LOSS_NAMES, 0)  # steps added since the last read, per loss
        self.last_names: tuple[str, ...] = ()

    def add(self, losses: dict[str, torch.Tensor], step: int) -> None:
        """Add one step's losses (``step``: its 0-based global index)."""
        vec = torch.stack([losses[k].float() if k in losses else self.zero for k in LOSS_NAMES])  # (3,)
        new_bad = ~torch.isfinite(vec) & (self.bad_step < 0)
        self.bad_step = torch.where(new_bad, float(step), self.bad_step)
        self.bad_value = torch.where(new_bad, vec, self.bad_value)
        self.sums += vec
        self.last = vec
        for k in losses:
            self.counts[k] += 1
        self.last_names = tuple(losses)

    def packed(self) -> torch.Tensor:
        """``(12,)``: sums, last values, first non-finite steps, their values."""
        return torch.cat([self.sums, self.last, self.bad_step, self.bad_value])

    def reset(self) -> None:
        """Start new sums (after a read); a non-finite step stays recorded."""
        self.sums.zero_()
        self.counts = dict.fromkeys(LOSS_NAMES, 0)

    def diverged(self) -> bool:
        """Whether a loss of this process was NaN or infinite (one synchronisation)."""
        return bool((self.bad_step >= 0).any())
