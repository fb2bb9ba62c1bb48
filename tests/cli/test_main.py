import subprocess
import sys

from click.testing import CliRunner

from p2ptools import __version__
from p2ptools.cli.main import cli
from tests.conftest import ROOT


def test_version_and_help():
    res = CliRunner().invoke(cli, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output
    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0 and "tile" in res.output


def test_python_dash_m_entry_point():
    res = subprocess.run([sys.executable, "-m", "p2ptools", "--version"], capture_output=True, text=True, check=True)
    assert __version__ in res.stdout


def test_readme_commands_are_what_ci_runs():
    readme = (ROOT / "README.md").read_text().splitlines()
    start = readme.index("```bash")
    main_cmd, test_cmd = readme[start + 1], readme[start + 2]
    assert readme[start + 3] == "```"
    assert "p2ptools run sample" in main_cmd
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_cmd in ci, "the README's test command must be the one .ci/run runs"


def test_every_package_is_listed_for_the_wheel():
    tomllib = __import__("pytest").importorskip("tomllib")
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "p2ptools").rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages"
    assert {"p2ptools._models", "p2ptools._recipes"} <= listed


def test_run_help_lists_every_bundled_recipe():
    from p2ptools.recipe import recipes_dir

    res = CliRunner().invoke(cli, ["run", "--help"])
    helped = " ".join(res.output.split())
    names = sorted(p.stem for p in recipes_dir().glob("*.yaml"))
    assert res.exit_code == 0 and "atlanta" in names
    assert f"a bundled recipe ({', '.join(names)})" in helped


def test_out_of_memory_is_one_line(tmp_path, monkeypatch):
    """A network under the configuration's bounds can still be too large for the machine: the allocator's
    refusal is one line saying what to make smaller, not a traceback."""
    import p2ptools.training.train as train_mod
    from tests.conftest import SMALL_TRAIN, small_pairs

    def fit(*_a, **_k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 68719476736 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(train_mod, "fit", fit)
    res = CliRunner().invoke(cli, ["train", str(small_pairs(tmp_path / "ds")), "--out", str(tmp_path / "run"),
                                   "--epochs", "1", *SMALL_TRAIN])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.exception
    assert res.output.startswith("Error: out of memory: ") and res.output.count("\n") == 1, res.output
    assert "--set model.ngf" in res.output
