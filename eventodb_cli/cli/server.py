"""``eventodb server version|health``."""

from __future__ import annotations

import click

from ..errors import CheckFailed
from .common import examples, format_option, get_target, out_format, target_options


def _server(what: str):
    from ..store.resolve import require_remote

    return require_remote(get_target(), what)


@click.group()
def server():
    """A server's version and health (GET /version, /health; no token needed)."""


@server.command("version")
@format_option
@target_options
@examples("eventodb server version --url http://127.0.0.1:8080",
          "eventodb server version --format json | jq -r .version")
def server_version(fmt):
    """Print the server's version."""
    fmt = out_format(fmt)
    with _server("server version") as store:
        v = store.server_version()
    from ..render import emit_object

    if fmt == "table":
        from ..render import safe_text

        click.echo(safe_text(str(v.get("version"))))
    else:
        emit_object(v, fmt)


@server.command("health")
@format_option
@target_options
@examples("eventodb server health --url http://127.0.0.1:8080",
          "until eventodb server health >/dev/null 2>&1; do sleep 1; done")
def server_health(fmt):
    """Print the server's health; exit 1 unless it says ok, 5 when it cannot be reached."""
    fmt = out_format(fmt)
    with _server("server health") as store:
        h = store.server_health()
    from ..render import emit_object

    if fmt == "table":
        from ..render import safe_text

        click.echo(safe_text(str(h.get("status"))))
    else:
        emit_object(h, fmt)
    if h.get("status") != "ok":
        raise CheckFailed(f"server health: {h.get('status')!r}")
