"""The ONNX Runtime engine's cache: keyed by the generator's tensors, verified, atomic, pruned, and never
a traceback nor a stranger's graph."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from p2ptools.cli.main import cli
from tests.conftest import small_pairs

pytest.importorskip("onnxruntime", reason="the onnx extra (pip install 'p2ptools[onnx]')")
onnx = pytest.importorskip("onnx", reason="the onnx extra (pip install 'p2ptools[onnx]')")
CPU = torch.device("cpu")
X = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32))


@pytest.fixture
def cache(tmp_path, monkeypatch) -> SimpleNamespace:
    """A fresh ``$P2PTOOLS_CACHE`` (``root``), the process's warnings and in-memory graph forgotten, and the
    exports counted (``exports``)."""
    import p2ptools.model.export as export

    monkeypatch.setenv("P2PTOOLS_CACHE", str(tmp_path / "cache"))
    try:
        from p2ptools.inference import onnx_cache
    except ImportError:  # the code before the content-addressed cache
        pass
    else:
        monkeypatch.setattr(onnx_cache, "_said", set())
        monkeypatch.setattr(onnx_cache, "_memory", {})
    real, exports = export.onnx_graph, []
    monkeypatch.setattr(export, "onnx_graph", lambda *a, **k: exports.append(1) or real(*a, **k))
    return SimpleNamespace(root=tmp_path / "cache", exports=exports)


def _generator(tiny_run, bias_shift: float = 0.0):
    from p2ptools.model.checkpoints import load_generator

    G, _, meta = load_generator(tiny_run)
    if bias_shift:
        with torch.no_grad():
            G.up[-1][1].bias += bias_shift  # the last transposed convolution: every output pixel moves
    return G, meta


def _onnx_vs_torch(G, meta) -> tuple[np.ndarray, np.ndarray]:
    from p2ptools.inference.engine import EngineRequest, make_engine

    y = make_engine(G, meta, EngineRequest(3, 32, CPU, "none"), "onnxruntime")(X).numpy()
    with torch.inference_mode():
        return y, G(X).numpy()


def _constant_graph() -> bytes:
    """A valid graph with the engine's input and output names whose output is 1.0 everywhere."""
    h = onnx.helper
    nodes = [h.make_node("Mul", ["input", "zero"], ["z"]), h.make_node("Add", ["z", "one"], ["output"])]
    inits = [h.make_tensor("zero", onnx.TensorProto.FLOAT, [], [0.0]), h.make_tensor("one", onnx.TensorProto.FLOAT,
                                                                                      [], [1.0])]
    io = [h.make_tensor_value_info(n, onnx.TensorProto.FLOAT, ["N", 3, "H", "W"]) for n in ("input", "output")]
    graph = h.make_graph(nodes, "planted", [io[0]], [io[1]], inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8).SerializeToString()


def test_a_planted_graph_is_never_run(tiny_run, cache, caplog):
    G, meta = _generator(tiny_run)
    src = Path(meta["path"])  # the key the path-keyed cache used: checkpoint path, size and mtime
    st = src.stat()
    old = hashlib.sha256(f"{src.resolve()}|{st.st_size}|{st.st_mtime_ns}|3|32|{torch.__version__}".encode())
    (cache.root / "onnx").mkdir(parents=True, mode=0o700)
    (cache.root / "onnx" / f"{old.hexdigest()[:24]}.onnx").write_bytes(_constant_graph())
    y, ref = _onnx_vs_torch(G, meta)
    np.testing.assert_allclose(y, ref, atol=1e-4)
    assert not list((cache.root / "onnx").glob(f"{old.hexdigest()[:24]}.*"))  # the old scheme's entry is pruned

    from p2ptools.inference.onnx_cache import generator_key
    from p2ptools.model.export import exporter_version

    key = generator_key(G, 3, 32, exporter_version())
    graph = cache.root / "onnx" / f"{key}.onnx"
    real = graph.read_bytes()
    graph.write_bytes(_constant_graph())  # under the new key, its digest now wrong
    with caplog.at_level(logging.WARNING):
        y, ref = _onnx_vs_torch(_generator(tiny_run)[0], meta)
    np.testing.assert_allclose(y, ref, atol=1e-4)
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 1 and "does not match its SHA-256 digest" in said[0]
    assert graph.read_bytes() == real and len(cache.exports) == 2  # exported again, and right


def test_the_key_is_the_tensors_not_the_checkpoint_file(tiny_run, cache, tmp_path):
    from p2ptools.model.checkpoints import resolve_checkpoint

    copy = tmp_path / "elsewhere" / "copy.pt"
    copy.parent.mkdir()
    shutil.copyfile(resolve_checkpoint(tiny_run, "latest"), copy)
    os.utime(copy, ns=(1_000_000_000, 1_000_000_000))
    for source in (tiny_run, copy):  # the same tensors in another file, path and mtime: one export
        y, ref = _onnx_vs_torch(*_generator(source))
        np.testing.assert_allclose(y, ref, atol=1e-4)
    assert len(cache.exports) == 1
    G, meta = _generator(tiny_run, bias_shift=0.5)  # one weight changed, the same checkpoint file
    y, ref = _onnx_vs_torch(G, meta)
    np.testing.assert_allclose(y, ref, atol=1e-4)
    assert len(cache.exports) == 2 and len(list((cache.root / "onnx").glob("*.onnx"))) == 2


def test_a_file_where_the_cache_should_be_means_no_cache_and_one_line(tiny_run, cache, tmp_path):
    cache.root.write_text("a file where the cache folder should be")
    images = small_pairs(tmp_path / "ds") / "val"
    res = CliRunner().invoke(cli, ["predict", str(tiny_run), str(images), str(tmp_path / "p"), "--engine",
                                   "onnxruntime"])
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    assert res.output.count("ONNX Runtime cache") == 1 and "cannot be used" in res.output, res.output
    assert list((tmp_path / "p").glob("*.png"))


def test_a_full_disk_means_no_cache_and_one_line(tiny_run, cache, caplog, monkeypatch):
    from p2ptools.inference import onnx_cache

    def full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx_cache, "_write_at", full)
    with caplog.at_level(logging.WARNING):
        for _ in range(2):  # the second engine: the graph kept in memory, no second line
            y, ref = _onnx_vs_torch(*_generator(tiny_run))
            np.testing.assert_allclose(y, ref, atol=1e-4)
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 1 and "cannot be written (No space left on device)" in said[0], said
    assert not os.listdir(cache.root / "onnx") and len(cache.exports) == 1


def test_a_cache_folder_that_is_not_the_users_own_is_not_used(tiny_run, cache, tmp_path, caplog, monkeypatch):
    target = tmp_path / "theirs"
    target.mkdir(mode=0o700)
    cache.root.mkdir()
    (cache.root / "onnx").symlink_to(target)
    with caplog.at_level(logging.WARNING):
        y, ref = _onnx_vs_torch(*_generator(tiny_run))
    np.testing.assert_allclose(y, ref, atol=1e-4)
    assert not os.listdir(target)
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 1 and "is a symbolic link: not used" in said[0], said
    (cache.root / "onnx").unlink()
    monkeypatch.setattr("p2ptools.inference.onnx_cache._memory", {})
    (cache.root / "onnx").mkdir()
    os.chmod(cache.root / "onnx", 0o777)
    with caplog.at_level(logging.WARNING):
        y, ref = _onnx_vs_torch(*_generator(tiny_run))
    np.testing.assert_allclose(y, ref, atol=1e-4)
    assert not os.listdir(cache.root / "onnx")
    assert "is writable by others (mode 777" in caplog.records[-1].getMessage()


def test_pruning_keeps_the_most_recently_used_within_the_cap(tiny_run, cache, monkeypatch):
    from p2ptools.inference import onnx_cache

    monkeypatch.setattr(onnx_cache, "MAX_ENTRIES", 2)
    folder = cache.root / "onnx"
    keys = []
    for shift in (0.1, 0.2):  # A, B
        _onnx_vs_torch(*_generator(tiny_run, shift))
        keys.append(next(p.stem for p in folder.glob("*.sha256") if p.stem not in keys))
    for age, key in zip((2000, 1000), keys, strict=True):  # A used before B, beyond the clock's resolution
        t = int(1e9 * (os.stat(folder / f"{key}.sha256").st_mtime - age))
        os.utime(folder / f"{key}.sha256", ns=(t, t))
    (folder / ("0" * 24 + ".onnx")).write_bytes(b"the earlier scheme")
    _onnx_vs_torch(*_generator(tiny_run, 0.1))  # A used again: now the most recent
    _onnx_vs_torch(*_generator(tiny_run, 0.3))  # C: over the cap, B (least recently used) goes
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 4 and f"{keys[0]}.onnx" in names and f"{keys[1]}.onnx" not in names, names
    assert len(cache.exports) == 3
    c = next(n.split(".")[0] for n in names if n.split(".")[0] not in keys)
    fd = os.open(folder, os.O_RDONLY)
    try:  # the size cap: 1 byte keeps only the entry just used
        assert onnx_cache.prune(fd, c, max_bytes=1) == [keys[0]]
    finally:
        os.close(fd)
    assert sorted(p.name for p in folder.iterdir()) == [f"{c}.onnx", f"{c}.sha256"]
