"""The phase form of transposed convolutions: the same outputs as ConvTranspose2d, in torch and in ONNX."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from p2ptools.model.nets import UNetGenerator
from p2ptools.model.nets.blocks import init_weights
from p2ptools.model.nets.phase import PhaseConvTranspose2d, is_phase_convertible, to_phase_form


def _rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


@pytest.mark.parametrize("c_in,c_out,h,w,bias", [(1, 1, 1, 1, True), (3, 5, 4, 6, True), (16, 8, 7, 5, False),
                                                  (64, 32, 16, 16, True), (8, 3, 13, 2, False)])
def test_phase_form_equals_conv_transpose(c_in, c_out, h, w, bias):
    torch.manual_seed(c_in * 100 + h)
    ct = nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=bias)
    if bias:
        nn.init.normal_(ct.bias)
    x = torch.randn(2, c_in, h, w)
    with torch.no_grad():
        ref, got = ct(x), PhaseConvTranspose2d(ct)(x)
    assert got.shape == ref.shape == (2, c_out, 2 * h, 2 * w)
    assert _rel_diff(got, ref) <= 1e-5


def test_only_k4_s2_p1_transposed_convolutions_are_converted():
    assert is_phase_convertible(nn.ConvTranspose2d(4, 4, 4, 2, 1))
    for m in (nn.ConvTranspose2d(4, 4, 3, 2, 1), nn.ConvTranspose2d(4, 4, 4, 2, 1, output_padding=1),
              nn.ConvTranspose2d(4, 4, 4, 2, 1, groups=2), nn.ConvTranspose2d(4, 4, 4, 1, 1), nn.Conv2d(4, 4, 4, 2, 1)):
        assert not is_phase_convertible(m)


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_tiny_unet_in_the_phase_form_gives_the_same_outputs(norm):
    torch.manual_seed(0)
    G = UNetGenerator(3, 3, num_downs=5, ngf=8, norm=norm)
    init_weights(G)
    G.eval()
    if norm == "batch":  # running statistics that are not the identity
        for m in G.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    P = copy.deepcopy(G)
    assert to_phase_form(P) == 5 and not any(isinstance(m, nn.ConvTranspose2d) for m in P.modules())
    x = torch.rand(2, 3, 64, 32) * 2 - 1
    with torch.no_grad():
        assert _rel_diff(P(x), G(x)) <= 1e-5
        G.fold_batchnorm()
        F = copy.deepcopy(G)
        to_phase_form(F)
        assert _rel_diff(F(x), G(x)) <= 1e-5


def test_the_onnx_graph_of_the_phase_form_has_no_conv_transpose_and_the_same_outputs():
    ort = pytest.importorskip("onnxruntime", reason="the onnx extra (pip install 'p2ptools[onnx]')")
    onnx = pytest.importorskip("onnx", reason="the onnx extra (pip install 'p2ptools[onnx]')")
    from p2ptools.model.export import onnx_graph

    torch.manual_seed(1)
    G = UNetGenerator(3, 3, num_downs=5, ngf=8).eval()
    init_weights(G)
    G.fold_batchnorm().eval()
    to_phase_form(G)
    graph = onnx_graph(G, 3, 32)
    ops = {n.op_type for n in onnx.load_from_string(graph).graph.node}
    assert "ConvTranspose" not in ops and "DepthToSpace" in ops
    x = torch.rand(3, 3, 64, 96) * 2 - 1  # dynamic batch and size through the crop
    y = ort.InferenceSession(graph, providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        assert _rel_diff(torch.from_numpy(y), G(x)) <= 1e-5


def test_the_torch_engine_runs_the_phase_form_on_the_cpu_with_the_same_outputs():
    from p2ptools.inference.engine import EngineRequest, make_engine

    torch.manual_seed(2)
    G = UNetGenerator(3, 3, num_downs=5, ngf=8).eval()
    init_weights(G)
    ref = copy.deepcopy(G)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    run = make_engine(G, {}, EngineRequest(3, 32, torch.device("cpu"), "none", channels_last=True), "torch")
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in run.G.modules())
    with torch.no_grad():
        assert _rel_diff(run(x), ref(x)) <= 1e-5
