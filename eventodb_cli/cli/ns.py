"""``eventodb ns create|delete|list|info|streams|categories``: namespaces on a server."""

from __future__ import annotations

import sys

import click

from ..errors import UsageError
from .common import (IntRange, examples, format_option, get_store, get_target, out_format,
                     target_options)


def _server(what: str):
    from ..store.resolve import require_remote

    return require_remote(get_target(), what)


@click.group()
def ns():
    """Namespaces on a server: each has its own messages and its own token.

    'ns streams' and 'ns categories' also work on a local store.
    """


@ns.command("create")
@click.argument("namespace")
@click.option("--description", metavar="TEXT", help="Description of the namespace.")
@click.option("--new-token", metavar="TOKEN",
              help="Token for the new namespace (default: a new random one).")
@format_option
@target_options
@examples(
    "eventodb ns create tenant-a --description 'Tenant A' --url http://127.0.0.1:8080 --token $ADMIN",
    "TOKEN=$(eventodb ns create tenant-b --format json | jq -r .token)",
)
def ns_create(namespace, description, new_token, fmt):
    """Create NAMESPACE and print its token: the only time the token is shown, save it."""
    fmt = out_format(fmt)
    with _server("ns create") as store:
        info = store.ns_create(namespace, description=description, token=new_token)
    from ..render import emit_object

    emit_object(info, fmt)
    if fmt == "table":
        click.echo("(the token is shown only once: save it now)", err=True)


@ns.command("delete")
@click.argument("namespace")
@click.option("--yes", "-y", is_flag=True, help="Do not ask: delete the namespace and its "
              "messages.")
@format_option
@target_options
@examples("eventodb ns delete tenant-a --yes", "eventodb ns delete tenant-a  # asks first")
def ns_delete(namespace, yes, fmt):
    """Delete NAMESPACE and every message in it (exit 4 when it does not exist)."""
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(f"refusing to delete namespace {namespace!r} without --yes")
        click.confirm(f"Delete namespace {namespace!r} and all its messages?", abort=True,
                      err=True)
    fmt = out_format(fmt)
    with _server("ns delete") as store:
        info = store.ns_delete(namespace)
    from ..render import emit_object

    emit_object(info, fmt)


@ns.command("list")
@format_option
@target_options
@examples("eventodb ns list", "eventodb ns list --format ndjson | jq -r .namespace")
def ns_list(fmt):
    """List the server's namespaces."""
    fmt = out_format(fmt)
    with _server("ns list") as store:
        rows = store.ns_list()
    from ..render import emit_rows

    emit_rows(rows, fmt, ["namespace", "description", "createdAt", "messageCount"])


@ns.command("info")
@click.argument("namespace", required=False)
@format_option
@target_options
@examples("eventodb ns info", "eventodb ns info tenant-a --format json | jq .messageCount")
def ns_info(namespace, fmt):
    """Show NAMESPACE (default: the token's namespace): description, message count."""
    fmt = out_format(fmt)
    with _server("ns info") as store:
        info = store.ns_info(namespace)
    from ..render import emit_object

    emit_object(info, fmt)


@ns.command("streams")
@click.option("--prefix", default="", metavar="TEXT", help="Only streams whose name starts "
              "with TEXT.")
@click.option("--cursor", default="", metavar="STREAM", help="Start after this stream name.")
@click.option("--limit", type=IntRange(1, 1000), default=100, show_default=True,
              help="Streams per page (1-1000).")
@click.option("--all", "read_all", is_flag=True, help="Page until the last stream.")
@format_option
@target_options
@examples(
    "eventodb ns streams --prefix account- --limit 20",
    "eventodb ns streams --all --format ndjson | jq -r .stream",
    "eventodb ns streams --cursor account-500 --limit 100",
)
def ns_streams(prefix, cursor, limit, read_all, fmt):
    """List streams sorted by name (stream, version, lastActivity), one page or --all."""
    if not 1 <= limit <= 1000:
        raise UsageError(f"--limit must be between 1 and 1000 (got {limit})")
    fmt = out_format(fmt)
    from ..render import emit_rows

    with get_store() as store:
        def pages():
            cur = cursor
            while True:
                rows = store.list_streams(prefix, cur, limit)
                yield from rows
                if not read_all or len(rows) < limit:
                    return
                cur = rows[-1]["stream"]

        emit_rows(pages(), fmt, ["stream", "version", "lastActivity"])


@ns.command("categories")
@format_option
@target_options
@examples("eventodb ns categories", "eventodb ns categories --format json | jq '.[].category'")
def ns_categories(fmt):
    """List categories with their message and stream counts."""
    fmt = out_format(fmt)
    from ..render import emit_rows

    with get_store() as store:
        rows = store.list_categories()
    emit_rows(rows, fmt, ["category", "messageCount", "streamCount"])
