"""Dataset archives fetched on first use by a recipe: a local server, archives made here, the checks."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from p2ptools.cli.main import cli
from p2ptools.prep import archives as A
from p2ptools.recipe import load_recipe
from tests.conftest import shared_path

SPLITS = {"train": 3, "val": 2, "test": 1}


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    ok, buf = cv2.imencode(".jpg", rng.integers(0, 255, (32, 64, 3), dtype=np.uint8))
    assert ok
    return buf.tobytes()


def _files() -> dict[str, bytes]:
    files, k = {}, 0
    for split, n in SPLITS.items():
        for i in range(1, n + 1):
            files[f"mini/{split}/{i}.jpg"] = _jpeg(k)
            k += 1
    return files


def _tar(path, files: dict[str, bytes], extra=()) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)


@pytest.fixture
def mini(tmp_path, monkeypatch, server):
    """A 'mini' archive in the registry (manifest of two members), served on 127.0.0.1, and a recipe."""
    base, served, requests = server
    files = _files()
    manifest = tmp_path / "mini.sha256"
    manifest.write_text("".join(f"{hashlib.sha256(files[n]).hexdigest()}  {n}\n"
                                for n in ("mini/train/1.jpg", "mini/test/1.jpg")))
    spec = A.DatasetArchive("mini", "a test archive", "http://127.0.0.1:9/never-used/mini.tar.gz", "mini.tar.gz",
                            10_000, SPLITS, (64, 32), manifest=manifest)
    monkeypatch.setitem(A.KNOWN_ARCHIVES, "mini", spec)
    monkeypatch.setenv("P2PTOOLS_DATA_URL", base)
    monkeypatch.setenv("P2PTOOLS_OFFLINE", "0")
    recipe = tmp_path / "mini.yaml"
    recipe.write_text("name: mini\nworkdir: work\ndata:\n  dataset: data/mini\n  download: mini\n"
                      "train:\n  model: tiny\n")
    monkeypatch.chdir(tmp_path)
    return served, requests, files, recipe


def _run(recipe, *extra):
    return CliRunner().invoke(cli, ["run", str(recipe), "--until", "data", *extra])


def _left_over(tmp_path):
    data = tmp_path / "data"
    return sorted(p.name for p in data.iterdir()) if data.is_dir() else []


def test_first_use_downloads_checks_and_unpacks_then_reruns_offline(mini, tmp_path):
    served, requests, files, recipe = mini
    _tar(served / "mini.tar.gz", files)
    res = _run(recipe)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "data" / "mini" / "train").iterdir()) == ["1.jpg", "2.jpg", "3.jpg"]
    assert (tmp_path / "data" / "mini" / "val" / "2.jpg").read_bytes() == files["mini/val/2.jpg"]
    source = json.loads((tmp_path / "data" / "mini" / ".p2ptools" / "source.json").read_text())
    digest = hashlib.sha256((served / "mini.tar.gz").read_bytes()).hexdigest()
    assert source["sha256"] == digest and source["images"] == 6 and source["checked_against_manifest"] == 2
    assert _left_over(tmp_path) == ["mini"]  # no part file, no staging folder, archive deleted
    assert requests == ["/mini.tar.gz"]
    res = _run(recipe, "--offline")  # the dataset is there: nothing to fetch
    assert res.exit_code == 0, res.output
    assert requests == ["/mini.tar.gz"]


def test_offline_names_the_url_and_touches_nothing(mini, tmp_path):
    served, requests, files, recipe = mini
    _tar(served / "mini.tar.gz", files)
    res = _run(recipe, "--offline")
    assert res.exit_code == 1
    assert "offline" in res.output and "/mini.tar.gz" in res.output and "--set data.dataset=PATH" in res.output
    assert requests == [] and not (tmp_path / "data").exists()


@pytest.mark.parametrize("damage, says", [
    ("content", "mini/train/1.jpg is not the distributed file"),
    ("count", "mini/val has 1 images; the mini archive has 2"),
    ("size", "mini/val/1.jpg: is 32×32, every image of this dataset is 64×32"),
    ("undecodable", "mini/val/2.jpg: cannot be decoded"),
    ("not a tar", "not a readable tar archive"),
    ("pinned", "is not the expected archive (SHA-256"),
])
def test_an_archive_that_is_not_the_expected_one_leaves_nothing(mini, tmp_path, monkeypatch, damage, says):
    served, requests, files, recipe = mini
    if damage == "content":
        files["mini/train/1.jpg"] = _jpeg(99)
    elif damage == "count":
        del files["mini/val/1.jpg"]
    elif damage == "size":
        files["mini/val/1.jpg"] = cv2.imencode(".jpg", np.zeros((32, 32, 3), np.uint8))[1].tobytes()
    elif damage == "undecodable":
        files["mini/val/2.jpg"] = b"not a jpeg"
    elif damage == "pinned":
        spec = A.KNOWN_ARCHIVES["mini"]
        monkeypatch.setitem(A.KNOWN_ARCHIVES, "mini", A.DatasetArchive(**{**spec.__dict__, "sha256": "0" * 64}))
    if damage == "not a tar":
        (served / "mini.tar.gz").write_bytes(b"<html>moved</html>")
    else:
        _tar(served / "mini.tar.gz", files)
    res = _run(recipe)
    assert res.exit_code == 1
    assert says in res.output, res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "data").exists()  # no part file, no staging folder, not even the folder made for them


@pytest.mark.parametrize("member", ["../evil.txt", "/tmp/evil.txt", "mini/../../evil.txt", "other/evil.txt",
                                    "link"])
def test_members_outside_the_dataset_or_links_are_refused(mini, tmp_path, member):
    served, requests, files, recipe = mini
    if member == "link":
        info = tarfile.TarInfo("mini/train/evil.jpg")
        info.type, info.linkname = tarfile.SYMTYPE, "../../../evil.txt"
    else:
        info = tarfile.TarInfo(member)
        info.size = 3
    _tar(served / "mini.tar.gz", files, extra=[info])
    res = _run(recipe)
    assert res.exit_code == 1 and "nothing was unpacked" in res.output, res.output
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()
    assert not (tmp_path / "data").exists()


def test_a_folder_in_the_way_is_never_overwritten(mini, tmp_path):
    served, requests, files, recipe = mini
    _tar(served / "mini.tar.gz", files)
    mine = tmp_path / "data" / "mini" / "notes.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("mine")
    res = _run(recipe)
    assert res.exit_code == 1 and "is not empty, so the archive is not unpacked there" in res.output
    assert mine.read_text() == "mine" and requests == []


def test_bundled_recipes_name_their_archives():
    assert load_recipe("facades").data == {"dataset": "data/facades", "download": "facades"}
    assert load_recipe("maps").data["download"] == "maps"
    for spec in A.KNOWN_ARCHIVES.values():
        assert spec.url.endswith("/" + spec.file) and spec.manifest.is_file()


@pytest.mark.parametrize("name, folders", [("facades", ["train"]), ("maps", ["train", "val"])])
def test_bundled_manifests_are_the_distributed_files(name, folders):
    """The digests p2ptools checks a download against are those of the copies in ../shared/data."""
    manifest = A.read_manifest(A.KNOWN_ARCHIVES[name].manifest)
    root = shared_path(name)
    found = {f"{name}/{p.relative_to(root).as_posix()}" for f in folders for p in (root / f).glob("*.jpg")}
    assert set(manifest) == found
    for member, digest in manifest.items():
        assert hashlib.sha256((root.parent / member).read_bytes()).hexdigest() == digest
    width, height = A.KNOWN_ARCHIVES[name].image_size
    first = cv2.imread(str(root.parent / next(iter(manifest))))
    assert first.shape[:2] == (height, width)


def test_the_facades_entry_takes_the_distributed_files(tmp_path, monkeypatch, server):
    """The real ``facades`` entry end to end: an archive of the 400 distributed train images (from
    ../shared/data) plus stand-ins for val/test, served on 127.0.0.1; one train image changed is refused."""
    base, served, requests = server
    root = shared_path("facades", "train")
    files = {f"facades/train/{p.name}": p.read_bytes() for p in root.glob("*.jpg")}
    k = 0
    for split, n in (("val", 100), ("test", 106)):
        for i in range(1, n + 1):
            k += 1
            img = np.full((256, 512, 3), k % 255, np.uint8)
            files[f"facades/{split}/{i}.jpg"] = cv2.imencode(".jpg", img)[1].tobytes()
    _tar(served / "facades.tar.gz", files)
    monkeypatch.setenv("P2PTOOLS_DATA_URL", base)
    dest = A.fetch_dataset(A.known_archive("facades"), tmp_path / "data" / "facades", offline=False, progress=False)
    assert sorted(p.name for p in dest.iterdir()) == [".p2ptools", "test", "train", "val"]
    assert json.loads((dest / ".p2ptools" / "source.json").read_text())["checked_against_manifest"] == 400
    files["facades/train/17.jpg"] = files["facades/val/1.jpg"]
    _tar(served / "facades.tar.gz", files)
    with pytest.raises(A.ArchiveError, match="facades/train/17.jpg is not the distributed file"):
        A.fetch_dataset(A.known_archive("facades"), tmp_path / "other" / "facades", offline=False, progress=False)
    assert not (tmp_path / "other").exists()


def test_unpacked_files_follow_the_umask_not_the_archive(mini, tmp_path):
    import os

    served, requests, files, recipe = mini
    with tarfile.open(served / "mini.tar.gz", "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o777  # the publisher's modes: everyone may write
            tar.addfile(info, io.BytesIO(data))
    from p2ptools.runtime.output import current_umask

    old = os.umask(0o027)
    current_umask.cache_clear()  # read once per process: this test changes it
    try:
        res = _run(recipe)
    finally:
        os.umask(old)
        current_umask.cache_clear()
    assert res.exit_code == 0, res.output
    root = tmp_path / "data" / "mini"
    assert (root / "train" / "1.jpg").stat().st_mode & 0o777 == 0o640
    assert (root / "train").stat().st_mode & 0o777 == 0o750 and root.stat().st_mode & 0o777 == 0o750


@pytest.mark.parametrize("theirs", ["dataset", "other"])
def test_another_command_unpacking_first(mini, tmp_path, monkeypatch, theirs):
    """Two recipes in two work folders fetch the same data/mini: the one that finishes second keeps
    the first one's folder; a folder of something else that appears meanwhile is never written into."""
    served, requests, files, recipe = mini
    _tar(served / "mini.tar.gz", files)
    real = A.check_content

    def meanwhile(spec, root, source):
        checked = real(spec, root, source)
        (tmp_path / "data" / "mini" / ("train" if theirs == "dataset" else "x")).mkdir(parents=True)
        (tmp_path / "data" / "mini" / "theirs.txt").write_text("theirs")
        return checked

    monkeypatch.setattr(A, "check_content", meanwhile)
    res = _run(recipe)
    assert (tmp_path / "data" / "mini" / "theirs.txt").read_text() == "theirs"
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["mini"]  # no staging folder left
    if theirs == "dataset":
        assert "another command unpacked mini.tar.gz first" in res.output
    else:
        assert res.exit_code == 1 and "appeared while mini.tar.gz was unpacked" in res.output
