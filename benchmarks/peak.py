"""Benchmark: the CPU's measured peak, in the run that measures a network against it.

A peak reckoned from /proc/cpuinfo (cores × FLOP per cycle × the reported clock) is a guess: the
clock under load, the FMA ports of a virtual CPU, AMX tiles and what the kernels reach differ. This
measures what the libraries p2ptools runs on reach, all threads, best of ``repeats``:

* fp32: the faster of a 4096² sgemm (``torch.mm``) and a large 3×3 convolution (512 → 256 channels
  at 32², batch 8, channels-last: 19.3 GFLOP);
* bf16: the same two in bfloat16 (oneDNN: AMX tiles or AVX-512 BF16 where the CPU has them);
* int8: where the CPU has VNNI or AMX-INT8, the faster of ``torch._int_mm`` on 4096² int8 matrices
  and ONNX Runtime's int8 convolution (the same 3×3 convolution quantized, QLinearConv, u8 × s8).

Usage: ``python benchmarks/peak.py`` (or :func:`measure_peaks` from another benchmark).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

MM = 4096
CONV = dict(batch=8, c_in=512, c_out=256, size=32)


@dataclass
class Peak:
    """One precision's measured peak: GFLOP/s and which kernel reached it."""

    precision: str
    gflops: float
    kernel: str


def _best(fn: Callable[[], object], flop: float, repeats: int) -> float:
    """GFLOP/s of the fastest of ``repeats`` calls of ``fn`` (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return flop / min(times) / 1e9


def conv_flop() -> float:
    """2 × multiply-adds of the 3×3 convolution."""
    c = CONV
    return 2.0 * c["batch"] * c["c_out"] * c["size"] ** 2 * c["c_in"] * 9


def torch_peaks(dtype: torch.dtype, repeats: int = 3) -> list[tuple[float, str]]:
    """(GFLOP/s, kernel) of the sgemm and the convolution in ``dtype``."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(MM, MM, generator=g).to(dtype), torch.randn(MM, MM, generator=g).to(dtype)
    c = CONV
    x = torch.randn(c["batch"], c["c_in"], c["size"], c["size"], generator=g).to(dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(c["c_in"], c["c_out"], 3, padding=1).to(dtype).to(memory_format=torch.channels_last)
    name = {torch.float32: "fp32", torch.bfloat16: "bf16"}[dtype]
    with torch.inference_mode():
        mm = _best(lambda: torch.mm(a, b), 2.0 * MM**3, repeats)
        cv = _best(lambda: conv(x), conv_flop(), repeats)
    return [(mm, f"torch.mm {MM}² {name}"), (cv, f"torch conv3×3 512→256 32² b8 {name}")]


def int_mm_peak(repeats: int = 3) -> tuple[float, str] | None:
    """(GOP/s, kernel) of ``torch._int_mm`` on 4096² int8 matrices, or None where it does not run on the CPU."""
    a = torch.randint(-128, 128, (MM, MM), dtype=torch.int8)
    b = torch.randint(-128, 128, (MM, MM), dtype=torch.int8)
    try:
        with torch.inference_mode():
            return _best(lambda: torch._int_mm(a, b), 2.0 * MM**3, repeats), f"torch._int_mm {MM}² int8"
    except (RuntimeError, AttributeError):
        return None


def ort_int8_conv_peak(repeats: int = 3) -> tuple[float, str] | None:
    """(GOP/s, kernel) of ONNX Runtime's int8 3×3 convolution (static QDQ quantization, per-channel weights,
    fused into QLinearConv), or None without onnxruntime."""
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    except ImportError:
        return None
    c = CONV
    conv = torch.nn.Conv2d(c["c_in"], c["c_out"], 3, padding=1).eval()
    x = np.random.default_rng(0).standard_normal((c["batch"], c["c_in"], c["size"], c["size"])).astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = [{"input": x}]

        def get_next(self) -> dict[str, np.ndarray] | None:
            return self.left.pop() if self.left else None

    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / "conv.onnx", Path(tmp) / "conv.int8.onnx"
        torch.onnx.export(conv, (torch.from_numpy(x),), str(fp32), input_names=["input"], output_names=["output"],
                          dynamo=False, opset_version=17)
        quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        sess = ort.InferenceSession(str(int8), opts, providers=["CPUExecutionProvider"])
        return _best(lambda: sess.run(None, {"input": x}), conv_flop(), repeats), "ONNX Runtime QLinearConv 3×3 u8s8"


def has_int8_units() -> bool:
    """Whether the CPU has VNNI or AMX-INT8 (from /proc/cpuinfo's flags)."""
    try:
        flags = set(next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split())
    except (OSError, StopIteration):
        return False
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def measure_peaks(repeats: int = 3) -> dict[str, Peak]:
    """The measured fp32, bf16 and (where VNNI/AMX) int8 peaks: the best kernel of each."""
    peaks = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        best = max(torch_peaks(dtype, repeats))
        peaks[name] = Peak(name, best[0], best[1])
    if has_int8_units():
        found = [r for r in (int_mm_peak(repeats), ort_int8_conv_peak(repeats)) if r is not None]
        if found:
            best = max(found)
            peaks["int8"] = Peak("int8", best[0], best[1])
    return peaks


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import print_machine

    print_machine()
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        for gflops, kernel in torch_peaks(dtype):
            print(f"{name}: {gflops:7.0f} GFLOP/s  {kernel}")
    for r in (int_mm_peak(), ort_int8_conv_peak()):
        if r is not None:
            print(f"int8: {r[0]:7.0f} GOP/s    {r[1]}")


if __name__ == "__main__":
    main()
