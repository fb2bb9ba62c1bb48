import pytest

from p2ptools.errors import ConfigError, InputError
from p2ptools.prep.splits import assign_splits, official_tile_split, parse_fractions, read_split_lists, split_counts


def test_parse_fractions():
    assert parse_fractions("0.8,0.1,0.1") == (0.8, 0.1, 0.1)
    for bad in ("0.8,0.1", "a,b,c", "0.5,0.5,0.5", "-0.1,0.6,0.5"):
        with pytest.raises(ConfigError):
            parse_fractions(bad)


@pytest.mark.parametrize(
    "n,fr,expected",
    [(10, (0.8, 0.1, 0.1), [8, 1, 1]), (1, (0.8, 0.1, 0.1), [1, 0, 0]), (3, (0.8, 0.1, 0.1), [3, 0, 0]),
     (7, (0.5, 0.25, 0.25), [3, 2, 2]), (0, (0.8, 0.1, 0.1), [0, 0, 0]), (2, (0.0, 0.5, 0.5), [0, 1, 1])],
)
def test_split_counts(n, fr, expected):
    assert split_counts(n, fr) == expected


def test_assignment_is_deterministic_and_disjoint():
    items = [f"scene{i}" for i in range(20)]
    a = assign_splits(items, (0.7, 0.15, 0.15), seed=3)
    assert a == assign_splits(list(reversed(items)), (0.7, 0.15, 0.15), seed=3)
    assert set(a) == set(items)
    assert sorted(a.values()).count("train") == 14
    assert a != assign_splits(items, (0.7, 0.15, 0.15), seed=4)


def test_split_lists(tmp_path):
    (tmp_path / "train.txt").write_text("A_0\nA_1\n\n")
    (tmp_path / "val.txt").write_text("A_2.jpg\n")
    lists = read_split_lists(tmp_path)
    assert lists == {"A_0": "train", "A_1": "train", "A_2": "val"}
    (tmp_path / "test.txt").write_text("A_1\n")
    with pytest.raises(InputError, match="A_1"):
        read_split_lists(tmp_path)
    assert read_split_lists(tmp_path / "missing") is None


def test_official_tile_split_follows_landcover_numbering():
    # a 1100x1100 scene has 2x2 complete 512 tiles, k = row * 2 + col
    lists = {"S_0": "train", "S_1": "val", "S_2": "test", "S_3": "train"}
    assert official_tile_split(lists, "S", 256, 256, 1100, 1100) == "train"
    assert official_tile_split(lists, "S", 256, 768, 1100, 1100) == "val"
    assert official_tile_split(lists, "S", 768, 256, 1100, 1100) == "test"
    # centre in the unused edge strip: clamped to the last official tile
    assert official_tile_split(lists, "S", 1090, 1090, 1100, 1100) == "train"
    assert official_tile_split({"S": "val"}, "S", 10, 10, 1100, 1100) == "val"
    assert official_tile_split(lists, "T", 10, 10, 1100, 1100) is None


def test_block_grid_has_no_edge_slivers():
    from p2ptools.prep.splits import BlockGrid

    g = BlockGrid(900, 900, 450)
    assert (g.rows, g.cols) == (2, 2) and g.index(449, 450) == (0, 1) and g.index(899, 0) == (1, 0)
    g = BlockGrid(904, 100, 448)  # 904 / 448 → 2 blocks, not a third of 8 px
    assert g.rows == 2 and g.cols == 1 and g.index(903, 99) == (1, 0)


def test_block_tile_split_drops_tiles_near_another_split():
    from p2ptools.prep.splits import BUFFER, BlockGrid, block_tile_split

    g = BlockGrid(200, 200, 100)
    blocks = {("s", 0, 0): "train", ("s", 0, 1): "val", ("s", 1, 0): "train", ("s", 1, 1): "train"}
    assert block_tile_split(blocks, "s", g, 0, 0, 50, 0) == "train"
    assert block_tile_split(blocks, "s", g, 0, 25, 50, 0) == "train"  # ends at 74, inside block (0, 0)
    assert block_tile_split(blocks, "s", g, 0, 25, 50, 30) == BUFFER  # 30 px more reaches the val block
    assert block_tile_split(blocks, "s", g, 0, 50, 50, 0) == "train"  # 50..99 touches, does not cross
    assert block_tile_split(blocks, "s", g, 0, 60, 50, 0) == BUFFER   # 60..109 straddles the border
    assert block_tile_split(blocks, "s", g, 0, 100, 50, 0) == "val"
