"""The precisions a network can run in (``--amp``): one registry that the config's validation, the
device code and the CLI's choices read."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Precision:
    """One ``--amp`` value.

    Args:
        name: the option's value.
        help: what it means, for the CLI's help.
        training: whether training runs in it (``train --amp``); inference-only precisions are ``predict``'s.
    """

    name: str
    help: str
    training: bool = True


PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in (
        Precision("auto", "bf16 where the device runs it natively (GPUs of compute capability 8.0 or more, CPUs "
                  "with AMX or AVX-512 BF16), fp16 on GPUs of 7.x and 6.0, else fp32"),
        Precision("none", "fp32 throughout"),
        Precision("bf16", "bfloat16 autocast"),
        Precision("fp16", "float16 autocast (CUDA; training scales the loss)"),
        Precision("int8", "int8 on the CPU (predict only): ONNX Runtime static quantization of the network, "
                  "calibrated on 32 of the run's own tiles (--engine onnxruntime-int8)", training=False),
    )
}

#: accepted values of ``predict --amp``
AMPS: tuple[str, ...] = tuple(PRECISIONS)
#: accepted values of ``train --amp`` (a training run's precision)
TRAIN_AMPS: tuple[str, ...] = tuple(p.name for p in PRECISIONS.values() if p.training)
