"""Dataset archives fetched on first use by a recipe: a local server, archives made here, the checks."""

from __future__ import annotations

import gzip
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


#: the bounds the mini archive's headers are held to (64×32 images, 6 of them in 3 splits, about 10 KB):
MINI_MEMBER = 2 * 64 * 32 * 3 + 64 * 1024  # a member: twice the raw pixels, plus 64 KiB of headers
MINI_MEMBERS = 6 + 1 + 3 + 16  # entries: the images, the top folder, the split folders, 16 spare
MINI_TOTAL = 4 * 10_000 + (1 << 20)  # all bytes: 4× the archive's size plus 1 MiB (< MINI_MEMBERS × MINI_MEMBER)


def test_the_stated_bounds():
    assert A.MemberLimits.of(A.known_archive("facades")) == A.MemberLimits(851_968, 626, 121_048_576)


def _no_extraction(monkeypatch):
    """Record every call that would write a member (none may happen for an archive refused by its headers)."""
    calls = []
    real = tarfile.TarFile.extractall
    monkeypatch.setattr(tarfile.TarFile, "extractall", lambda self, *a, **k: calls.append(a) or real(self, *a, **k))
    return calls


@pytest.mark.parametrize("claim", ["huge", "claimed"])
def test_a_member_bigger_than_an_image_is_refused_from_its_header(mini, tmp_path, monkeypatch, claim):
    """A 1 MB member of zeros (a few KB gzipped; no 64×32 image is that big), or a header that claims
    300 MB with nothing behind it: refused before anything is written."""
    served, requests, files, recipe = mini
    info = tarfile.TarInfo("mini/train/notes.bin")
    if claim == "huge":
        info.size = 1 << 20
        _tar(served / "mini.tar.gz", files, extra=[info])
    else:
        info.size = 300_000_000  # the header alone: the archive ends where its data would start
        (served / "mini.tar.gz").write_bytes(gzip.compress(info.tobuf()))
    calls = _no_extraction(monkeypatch)
    res = _run(recipe)
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert f"member 'mini/train/notes.bin' declares {info.size} bytes; no image of this dataset has more than " \
           f"{MINI_MEMBER}" in res.output and "nothing was unpacked" in res.output
    assert calls == [] and not (tmp_path / "data").exists()


def test_every_member_that_is_not_a_file_or_folder_is_refused(mini, tmp_path, monkeypatch):
    """Links, devices, pipes and 'contiguous' files (tar type 7, which tarfile unpacks as a file) alike."""
    served, requests, files, recipe = mini
    calls = _no_extraction(monkeypatch)
    for kind, says in [(tarfile.LNKTYPE, "is a link"), (tarfile.SYMTYPE, "is a link"),
                       (tarfile.CHRTYPE, "is a special file"), (tarfile.BLKTYPE, "is a special file"),
                       (tarfile.FIFOTYPE, "is a special file"), (tarfile.CONTTYPE, "is a special file")]:
        info = tarfile.TarInfo("mini/train/odd.jpg")
        info.type = kind
        if kind in (tarfile.LNKTYPE, tarfile.SYMTYPE):
            info.linkname = "mini/train/1.jpg"
        elif kind == tarfile.CONTTYPE:
            info.size = 3
        _tar(served / "mini.tar.gz", files, extra=[info])
        with pytest.raises(A.ArchiveError, match=f"member 'mini/train/odd.jpg' {says}"):
            A.fetch_dataset(A.known_archive("mini"), tmp_path / "data" / "mini", offline=False, progress=False)
        assert calls == [] and not (tmp_path / "data").exists(), kind


@pytest.mark.parametrize("too_many", ["members", "bytes"])
def test_more_members_or_bytes_than_the_dataset_has_are_refused(mini, tmp_path, monkeypatch, too_many):
    served, requests, files, recipe = mini
    extra = []
    count = MINI_MEMBERS if too_many == "members" else MINI_TOTAL // (MINI_MEMBER - 1) + 1
    for i in range(count):  # stray files (not images), each within the member bound
        info = tarfile.TarInfo(f"mini/extra/{i}.txt")
        info.size = 1 if too_many == "members" else MINI_MEMBER - 1
        extra.append(info)
    _tar(served / "mini.tar.gz", files, extra=extra)
    calls = _no_extraction(monkeypatch)
    res = _run(recipe)
    assert res.exit_code == 1, res.output
    what = f"more than {MINI_MEMBERS} members" if too_many == "members" else f"more than {MINI_TOTAL} bytes"
    assert f"declares {what}; the mini archive has 6 images" in res.output and "nothing was unpacked" in res.output
    assert calls == [] and not (tmp_path / "data").exists()


def test_a_link_planted_at_the_old_work_folder_name_is_never_used(mini, tmp_path):
    """The work folder used to be data/.mini.PID.unpacking, made with exist_ok: a link planted there
    sent the unpacked files elsewhere (and a failed check left them there)."""
    import os

    served, requests, files, recipe = mini
    del files["mini/val/1.jpg"]  # a check that fails after unpacking
    _tar(served / "mini.tar.gz", files)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "data").mkdir()
    planted = tmp_path / "data" / f".mini.{os.getpid()}.unpacking"
    planted.symlink_to(elsewhere)
    res = _run(recipe)
    assert res.exit_code == 1 and "mini/val has 1 images" in res.output, res.output
    assert list(elsewhere.iterdir()) == []  # nothing was written through the link
    assert planted.is_symlink() and sorted(p.name for p in (tmp_path / "data").iterdir()) == [planted.name]


@pytest.mark.parametrize("copy", ["mini/val/1.jpg", "mini/test/1.jpg"])
def test_a_val_or_test_image_that_is_a_copy_of_a_train_image_is_refused(mini, tmp_path, copy):
    served, requests, files, recipe = mini
    files[copy] = files["mini/train/2.jpg"]  # mini/train/2.jpg is not in the manifest
    if copy == "mini/test/1.jpg":  # the manifest pins test/1: pin the copy, so only the cross-split check can refuse it
        manifest = A.known_archive("mini").manifest
        manifest.write_text(manifest.read_text().replace(hashlib.sha256(_files()[copy]).hexdigest(),
                                                          hashlib.sha256(files[copy]).hexdigest()))
    _tar(served / "mini.tar.gz", files)
    res = _run(recipe)
    assert res.exit_code == 1, res.output
    assert f"{copy} is a copy of mini/train/2.jpg" in res.output and not (tmp_path / "data").exists()


def test_without_https_one_line_says_which_splits_are_checked_by_content(mini, tmp_path):
    served, requests, files, recipe = mini
    _tar(served / "mini.tar.gz", files)
    res = _run(recipe)
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if "not fetched over https" in ln]
    assert len(lines) == 1 and lines[0].endswith(
        "checked by content (SHA-256 of the distributed files): train (1 of 3), test (1 of 1); only by count, size "
        "and decode: the other 2 of train, val"), res.output


def test_the_bundled_archives_are_fetched_over_https():
    from p2ptools.recipe import DATA_SOURCES

    for spec in A.KNOWN_ARCHIVES.values():
        assert spec.url.startswith("https://efrosgans.eecs.berkeley.edu/pix2pix/datasets/")
        assert spec.url in DATA_SOURCES[spec.name]
