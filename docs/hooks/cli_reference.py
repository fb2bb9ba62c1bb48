"""MkDocs hook: the command reference, generated from the CLI itself when the site is built.

A page that holds the line ``<!-- p2ptools-cli-reference -->`` gets, in its place, a section per
command of ``p2ptools.cli.main.cli`` (walked with click, subgroups included): its usage line, its
help text and a table of its options with the help click prints for them (defaults and ranges
included). Nothing is typed by hand, so the reference says what ``p2ptools COMMAND --help`` says.
"""

from __future__ import annotations

import html
import inspect
import textwrap
from collections.abc import Iterator

import click

MARKER = "<!-- p2ptools-cli-reference -->"


def on_page_markdown(markdown: str, page: object, config: object, files: object) -> str:
    """Replace the marker line with the generated reference (MkDocs ``on_page_markdown`` event)."""
    if MARKER not in markdown:
        return markdown
    from p2ptools.cli.main import cli

    return markdown.replace(MARKER, reference(cli, "p2ptools"))


def reference(group: click.Command, prog: str) -> str:
    """Markdown (with HTML tables) for ``group`` and every command below it.

    Args:
        group: The click command or group to document.
        prog: The program name shown in usage lines.

    Returns:
        The reference as Markdown.
    """
    root = group.make_context(prog, [], resilient_parsing=True)
    return "\n".join(_section(ctx, level=2) for ctx in _walk(root))


def _walk(ctx: click.Context) -> Iterator[click.Context]:
    """The context of ``ctx``'s command, then those of its subcommands, depth first, by name."""
    yield ctx
    command = ctx.command
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _walk(sub.make_context(name, [], parent=ctx, resilient_parsing=True))


def _section(ctx: click.Context, level: int) -> str:
    """One command: heading, usage, help text, subcommands and options."""
    command, path = ctx.command, ctx.command_path
    anchor = path.split(" ", 1)[1].replace(" ", "-") if " " in path else "cli"
    usage = " ".join([path, *command.collect_usage_pieces(ctx)])
    out = [f"{'#' * level} {path} {{ #{anchor} }}", "", "```text", f"Usage: {usage}", "```", ""]
    out += _help_blocks(command.help or "")
    if isinstance(command, click.Group):
        rows = [(f'<a href="#{name}"><code>{html.escape(name)}</code></a>',
                 html.escape(command.get_command(ctx, name).get_short_help_str(limit=120)))
                for name in command.list_commands(ctx)]
        out += ["**Commands**", "", _table(("command", "what it does"), rows), ""]
    rows = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx) if isinstance(param, click.Option) and not param.hidden else None
        if record:
            rows.append((f"<code>{html.escape(record[0])}</code>", html.escape(record[1])))
    if rows:
        out += ["**Options**", "", _table(("option", "what it does  [default; range]"), rows), ""]
    return "\n".join(out)


def _help_blocks(text: str) -> list[str]:
    """Paragraphs of a click help text as HTML; ``\\b`` paragraphs (examples) kept as they are."""
    out = []
    for para in inspect.cleandoc(text).split("\n\n"):
        lines = para.splitlines()
        if lines and lines[0].strip() == "\b":
            block = textwrap.dedent("\n".join(lines[1:])).strip("\n")
            out += ["<pre><code>" + html.escape(block) + "</code></pre>", ""]
        elif para.strip():
            out += ["<p>" + html.escape(" ".join(line.strip() for line in lines)) + "</p>", ""]
    return out


def _table(head: tuple[str, str], rows: list[tuple[str, str]]) -> str:
    """An HTML table (cells already escaped): raw HTML so that ``|``, ``<scene>`` and ``*`` stay text."""
    cells = "".join(f"<th>{h}</th>" for h in head)
    body = "".join(f"<tr><td>{a}</td><td>{b}</td></tr>" for a, b in rows)
    return f"<table>\n<thead><tr>{cells}</tr></thead>\n<tbody>{body}</tbody>\n</table>"
