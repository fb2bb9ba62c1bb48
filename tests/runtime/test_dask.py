"""Tiling and pair building on a Dask LocalCluster: the same bytes as a local run; dead workers lose nothing."""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from p2ptools.cli.main import cli
from p2ptools.errors import ConfigError
from p2ptools.runtime.parallel import imap_unordered
from tests.conftest import blocks_mask, photo, write_tif
from tests.runtime.dask_helpers import always_fail, square_or_die_once

pytest.importorskip("distributed", reason="dask.distributed is the optional p2ptools[dask] dependency")


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".p2ptools" not in p.parts and p.name != "dataset.json"}


def test_tile_on_a_local_cluster_writes_the_same_bytes(tmp_path):
    for i, (h, w) in enumerate([(300, 420), (260, 260), (200, 330)]):
        write_tif(tmp_path / "src" / "images" / f"s{i}.tif", photo(h, w, seed=i))
        write_tif(tmp_path / "src" / "gt" / f"s{i}.tif", blocks_mask(h, w, [0, 0, 255], block=32, seed=i))
    args = ["--size", "64", "--split-by", "block", "--block-size", "128"]
    local = CliRunner().invoke(cli, ["tile", str(tmp_path / "src"), str(tmp_path / "local"), *args])
    assert local.exit_code == 0, local.output
    dask = CliRunner().invoke(cli, ["tile", str(tmp_path / "src"), str(tmp_path / "dask"), *args, "--dask", "local:2"])
    assert dask.exit_code == 0, dask.output
    a, b = _files(tmp_path / "local"), _files(tmp_path / "dask")
    assert a.keys() == b.keys() and len(a) > 20 and all(a[k] == b[k] for k in a)  # pairs and manifest.csv


def test_make_inpaint_on_a_local_cluster(tmp_path):
    import cv2
    import numpy as np

    (tmp_path / "photos").mkdir()
    for i in range(6):
        cv2.imwrite(str(tmp_path / "photos" / f"p{i}.png"), np.moveaxis(photo(80, 90, seed=i), 0, -1))
    outs = {}
    for name, extra in (("local", []), ("dask", ["--dask", "local:2"])):
        res = CliRunner().invoke(cli, ["make-inpaint", str(tmp_path / "photos"), str(tmp_path / name), "--size", "64",
                                       *extra])
        assert res.exit_code == 0, res.output
        outs[name] = _files(tmp_path / name)
    local, dask = outs["local"], outs["dask"]
    assert local.keys() == dask.keys() and all(local[k] == dask[k] for k in local)


def test_a_worker_killed_mid_run_loses_no_item(tmp_path):
    marker = tmp_path / "died"
    items = [(n, str(marker)) for n in range(8)]
    got = sorted(imap_unordered(square_or_die_once, items, 1, dask="local:2"))
    assert marker.exists()  # a worker did die, running item 3
    assert got == [n * n for n in range(8)]  # its task ran again on another worker


def test_failed_tasks_go_to_on_error_and_bad_addresses(monkeypatch):
    got = list(imap_unordered(always_fail, [1, 2], 1, dask="local:1", on_error=lambda n, exc: f"{n}: {exc}"))
    assert sorted(got) == ["1: bad item 1", "2: bad item 2"]
    with pytest.raises(ConfigError, match="local:N with N ≥ 1"):
        list(imap_unordered(always_fail, [1], 1, dask="local:x"))
    monkeypatch.setattr("p2ptools.runtime.parallel.CONNECT_TIMEOUT", "2s")
    with pytest.raises(ConfigError, match="cannot reach the Dask scheduler"):
        list(imap_unordered(always_fail, [1], 1, dask="tcp://127.0.0.1:9"))
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ConfigError, match=r"pip install 'p2ptools\[dask\]'"):
        list(imap_unordered(always_fail, [1], 1, dask="local:1"))
