"""Allow ``python -m p2ptools``."""

from p2ptools.cli.main import cli

if __name__ == "__main__":  # pragma: no cover
    cli()
