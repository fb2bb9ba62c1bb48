"""Folder prediction overlapped with the network: decoding threads ahead, a writer thread behind; the same
files, bytes and skipped list as the one-batch-at-a-time loop. And the bounded threads themselves."""

from __future__ import annotations

import shutil
import threading

import pytest

from p2ptools.inference.options import PredictOptions
from p2ptools.inference.pipeline import Consumer, ahead
from p2ptools.inference.predict import _FolderJob, predict_folder
from tests.inference.test_mosaic import run, tiles  # noqa: F401 (module fixtures: a tiny label → photo model)


def _serial(self, files, batch_size, rep, bar):
    """The loop before the threads: decode, run and write one batch at a time."""
    for i in range(0, len(files), batch_size):
        self.run_batch(files[i : i + batch_size], rep)


def test_folder_outputs_are_those_of_the_serial_loop_and_a_bad_file_is_listed(run, tiles, tmp_path,  # noqa: F811
                                                                               monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, p in enumerate(sorted(tiles.glob("*/*.png"))[:11]):
        shutil.copy(p, folder / f"{i:02d}.png")
    (folder / "05b.png").write_bytes(b"not a png at all")  # a bad file among good ones, mid-batch
    threads: dict[str, set[str]] = {"load": set(), "write": set()}
    load, write = _FolderJob.load, _FolderJob.write

    def spy_load(self, p):
        threads["load"].add(threading.current_thread().name)
        return load(self, p)

    def spy_write(self, *args):
        threads["write"].add(threading.current_thread().name)
        return write(self, *args)

    opts = PredictOptions(progress=False, batch_size=3, side_by_side=True, engine="torch", amp="none", device="cpu")
    with monkeypatch.context() as m:
        m.setattr(_FolderJob, "run_all", _serial)
        ref = predict_folder(run, folder, tmp_path / "serial", opts)
    monkeypatch.setattr(_FolderJob, "load", spy_load)
    monkeypatch.setattr(_FolderJob, "write", spy_write)
    got = predict_folder(run, folder, tmp_path / "threads", opts)
    assert (got.written, got.skipped) == (ref.written, ref.skipped) == (11, ref.skipped)
    assert [p for p, _ in got.skipped] == [str(folder / "05b.png")]
    names = sorted(p.relative_to(tmp_path / "serial") for p in (tmp_path / "serial").rglob("*.png"))
    assert names == sorted(p.relative_to(tmp_path / "threads") for p in (tmp_path / "threads").rglob("*.png"))
    assert len(names) == 22
    for name in names:
        assert (tmp_path / "serial" / name).read_bytes() == (tmp_path / "threads" / name).read_bytes(), name
    # decoded on the decoding threads, written on the writer thread: never on the network's thread
    assert threads["load"] and all(t.startswith("p2ptools-decode") for t in threads["load"])
    assert threads["write"] == {"p2ptools-predict-writer"}


def test_ahead_is_bounded_and_raises_the_producers_error():
    made: list[int] = []

    def produce():
        for i in range(100):
            made.append(i)
            if i == 50:
                raise ValueError("bad item 50")
            yield i

    stop = threading.Event()
    got = ahead(produce(), 3, stop, "t-reader")
    assert next(got) == 0
    threading.Event().wait(0.2)
    assert len(made) <= 1 + 3 + 1  # the one taken, the queue full, one waiting to go in
    with pytest.raises(ValueError, match="bad item 50"):
        list(got)
    assert not [t for t in threading.enumerate() if t.name == "t-reader"]


def test_consumer_error_stops_the_producer_and_reaches_the_caller():
    stop = threading.Event()

    def handle(item):
        if item == 5:
            raise OSError("disk full")

    items = ahead(iter(range(10**6)), 2, stop, "t-reader2")
    with pytest.raises(OSError, match="disk full"):
        with Consumer(handle, 2, stop, "t-writer") as out:
            for i in items:
                out.put(i)
    items.close()
    assert not [t for t in threading.enumerate() if t.name in ("t-reader2", "t-writer")]


def test_consumer_handles_every_item_after_the_producer_ends_normally():
    """The producer sets the shared ``stop`` when it is done; items still queued for a slow consumer
    are handled all the same, and a consumer leaving by an error handles no more."""
    import time

    handled: list[int] = []

    def slow(item: int) -> None:
        time.sleep(0.01)
        handled.append(item)

    stop = threading.Event()
    with Consumer(slow, 4, stop, "writer") as writer:
        for item in ahead(range(12), 2, stop, "reader"):
            writer.put(item)
        assert stop.is_set()  # the producer is done: the consumer still has items queued
    assert handled == list(range(12))
    handled.clear()
    with pytest.raises(KeyError), Consumer(slow, 8, threading.Event(), "writer") as writer:
        for item in range(8):
            writer.put(item)
        raise KeyError("the engine failed")
    time.sleep(0.05)
    assert len(handled) < 8  # the queued items were dropped
