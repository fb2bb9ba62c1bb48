"""``p2ptools weights``."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(short_help="List the pretrained weight files (present, missing, checksum) or download them.")
@click.option("--download", is_flag=True, help="Download the missing files now (NAMES, or all).")
@click.option("--weights-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Also look in this folder (as evaluate --weights-dir).")
@click.argument("names", nargs=-1)
def weights(download: bool, weights_dir: Path | None, names: tuple[str, ...]) -> None:
    """List every weight file p2ptools knows: present or missing, where, size, checksum OK.

    Missing files are downloaded on first use into torch hub's cache ($TORCH_HOME/hub/checkpoints)
    and verified; --download fetches them ahead of time (for a cluster image or an offline node).
    $P2PTOOLS_WEIGHTS_URL replaces the download location with a mirror: files are fetched from
    $P2PTOOLS_WEIGHTS_URL/<file name>.

    \b
    Examples:
      p2ptools weights
      p2ptools weights --download
      P2PTOOLS_WEIGHTS_URL=https://mirror.example.org/weights p2ptools weights --download lpips-v0.1-alex.pth
    """
    from p2ptools.evaluation.weights import cached_sha256, download_url, known, mismatch_message, search_dirs, status
    from p2ptools.evaluation.weights import download as fetch

    chosen = [known(n).name for n in names] or None
    if download:
        for row in status(weights_dir, chosen):
            if row.path is None:
                path = fetch(row.spec)
                click.echo(f"downloaded {row.spec.name} → {path}")
    rows = status(weights_dir, chosen)
    click.echo("looking in: " + ", ".join(str(d) for d in search_dirs(weights_dir)) + " (in this order)")
    for row in rows:
        if row.path is None:
            state = f"missing (from {download_url(row.spec)})"
        else:
            check = "checksum OK" if row.checksum_ok else "CHECKSUM MISMATCH"
            state = f"{row.path} ({row.size / 1e6:.1f} MB, {check})"
        click.echo(f"{row.spec.name:40s} {row.spec.used_by:8s} {state}")
    for row in rows:
        if row.path is not None and not row.checksum_ok:
            click.echo(mismatch_message(row.spec, row.path, cached_sha256(row.path)), err=True)
