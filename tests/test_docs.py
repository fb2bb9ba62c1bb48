"""The documentation: the README stays a front page, its links into docs/ resolve, and the site builds
strictly (broken links and anchors fail) with every option of every command in its reference."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from p2ptools.cli.main import cli
from tests.conftest import ROOT


def _commands(group: click.Command, ctx: click.Context) -> list[tuple[str, click.Command, click.Context]]:
    """Every command below ``group`` (walked recursively with click), as (path, command, context)."""
    found = []
    if isinstance(group, click.Group):
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            sub = click.Context(command, info_name=name, parent=ctx)
            found += [(sub.command_path, command, sub), *_commands(command, sub)]
    return found


def _long_options(command: click.Command) -> set[str]:
    return {o for p in command.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)
            if o.startswith("--")}


def test_readme_is_a_front_page_and_its_docs_links_resolve():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move the detail into docs/"
    links = re.findall(r"\]\((docs/[^)#\s]+)(?:#[^)]*)?\)", "\n".join(lines))
    assert len(links) >= 10, links
    missing = sorted({link for link in links if not (ROOT / link).is_file()})
    assert not missing, f"README links to files that do not exist: {missing}"
    assert any(link.endswith(".png") for link in links), "the README shows one picture from docs/"


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
                    reason="mkdocs and mkdocs-material are not installed (pip install -e '.[docs]')")
def test_site_builds_strictly_with_every_option_in_the_reference(tmp_path: Path):
    site = tmp_path / "site"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "NO_MKDOCS_2_WARNING": "1"}
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    page = (site / "reference" / "cli" / "index.html").read_text()
    commands = _commands(cli, click.Context(cli, info_name="p2ptools"))
    assert len(commands) >= 12
    missing = []
    for path, command, _ctx in commands:
        name = path.split(" ", 1)[1]
        start = page.find(f'id="{name.replace(" ", "-")}"')
        assert start >= 0, f"no section for {path} in the reference"
        section = page[start:page.find("<h2", start + 1)]
        missing += [f"{path} {opt}" for opt in sorted(_long_options(command)) if opt not in section]
    assert not missing, f"options missing from the reference: {missing}"
    site_text = "".join(p.read_text() for p in site.rglob("*.html"))
    for picture in ("report.png", "run.png", "comparison.png"):
        assert (site / picture).is_file() and picture in site_text
