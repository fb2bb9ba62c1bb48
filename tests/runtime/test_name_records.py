"""Records, CSV, digests and HTML of :mod:`p2ptools.runtime.output` and :mod:`p2ptools.runtime.html` keep
any name a file system allows: line breaks and other control characters, and bytes that are not UTF-8."""

from __future__ import annotations

import pytest

from p2ptools.errors import OutputError
from p2ptools.runtime.html import esc, url
from p2ptools.runtime.output import (
    PLANS_DIR,
    STATE_DIR,
    csv_text,
    foreign_files,
    inputs_digest,
    owned_files,
    read_csv_rows,
    record_plan,
    refuse_foreign,
)

#: every character str.splitlines() splits on, a tab and other controls, a byte that is not UTF-8
ODD = ["a\nb.png", "c\rd.png", "e\r\nf.png", "g\x0bh\x0ci\x1cj\x1dk\x1el\x85m\u2028n\u2029o.png",
       "t\tu\x01v.png", "caf\udce9.png", "w,\"x\".png", "train/sub\ndir/p.png"]


def test_records_keep_every_name(tmp_path):
    record_plan(tmp_path, ODD)
    assert owned_files(tmp_path) >= set(ODD)
    for rel in ODD:  # the files themselves are p2ptools' own, not foreign
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert foreign_files(tmp_path, owned_files(tmp_path)) == []


def test_records_of_earlier_versions_are_still_read(tmp_path):
    # one path a line, as p2ptools wrote them before; a name with "\r" or "\x0c" is one name, not two
    plans = tmp_path / STATE_DIR / PLANS_DIR
    plans.mkdir(parents=True)
    (plans / "0123456789abcdef.txt").write_bytes(b"train/x.png\nval/c\rd.png\nval/e\x0cf.png\n")
    assert {"train/x.png", "val/c\rd.png", "val/e\x0cf.png"} <= owned_files(tmp_path)


def test_inputs_digest_of_plain_names_is_unchanged_and_line_breaks_cannot_collide():
    assert inputs_digest(["b", "a", "é x"]) == "b6f26551dc21cef9"  # as 266ad2d computed it: existing outputs resume
    assert inputs_digest(["a\nb"]) != inputs_digest(["a", "b"])
    assert inputs_digest(["caf\udce9"]) != inputs_digest(["caf\udce8"])


def test_csv_keeps_every_name(tmp_path):
    rows = [{"file": rel, "n": str(i)} for i, rel in enumerate(ODD)]
    (tmp_path / "m.csv").write_bytes(csv_text(rows).encode("utf-8", "surrogateescape"))
    assert read_csv_rows(tmp_path / "m.csv") == (["file", "n"], rows)


def test_html_shows_and_links_any_name():
    assert esc("caf\udce9 <b>") == "caf\\xe9 &lt;b&gt;"  # a UTF-8 page cannot hold the byte: shown as an escape
    assert url("run 1/caf\udce9 #\n.jpg") == "run%201/caf%E9%20%23%0A.jpg"  # the file's own bytes, percent-encoded
    (esc("a\udce9") + url("a\udce9")).encode("utf-8")


def test_plan_files_hold_names_as_json_escapes(tmp_path):
    record_plan(tmp_path, ["caf\udce9.png", "a\nb.png"])
    (plan,) = (tmp_path / STATE_DIR / PLANS_DIR).iterdir()
    assert plan.suffix == ".jsonl"
    assert plan.read_bytes() == b'"a\\nb.png"\n"caf\\udce9.png"\n'


def test_a_refusal_names_odd_files_on_one_line(tmp_path):
    with pytest.raises(OutputError) as exc:
        refuse_foreign(tmp_path, ["a\nb.png", "caf\udce9.png"])
    assert "(a\\nb.png, caf\\xe9.png)" in str(exc.value) and "\n" not in str(exc.value)
