"""``eventodb serve``: the EventoDB HTTP API over local stores (docs/serve.md)."""

from __future__ import annotations

import click

from .common import examples


@click.command()
@click.option("--data-dir", metavar="DIR", envvar="EVENTODB_DATA_DIR",
              help="Keep every namespace here, one SQLite file each [env: EVENTODB_DATA_DIR].")
@click.option("--store", metavar="FILE",
              help="Serve this one store file as namespace 'default' (the namespace registry "
                   "and other namespaces are kept beside it).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback by default).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              envvar="EVENTODB_PORT", help="Port (0: any free port) [env: EVENTODB_PORT].")
@click.option("--test-mode", is_flag=True, envvar="EVENTODB_TEST_MODE",
              help="Do not check tokens: no token runs as 'default', a token runs as its "
                   "namespace [env: EVENTODB_TEST_MODE].")
@click.option("--token", metavar="TOKEN", envvar="EVENTODB_TOKEN",
              help="The token of namespace 'default' (generated and shown once when "
                   "'default' is created without one) [env: EVENTODB_TOKEN].")
@click.option("--admin-token", metavar="TOKEN", envvar="EVENTODB_ADMIN_TOKEN",
              help="Another token (EventoDB format) that may manage namespaces, besides "
                   "the default namespace's [env: EVENTODB_ADMIN_TOKEN].")
@click.option("--max-body-mib", type=click.IntRange(1, 4096), default=100, show_default=True,
              help="Largest request body, in MiB (larger: 413).")
@click.option("--keepalive", type=click.FloatRange(0.05, 3600), default=15.0,
              show_default=True, metavar="SECONDS",
              help="Send an SSE keep-alive comment after this long without a poke.")
@click.option("--workers", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Threads for SQLite work.")
@click.option("--read-timeout", type=click.FloatRange(0.1, 3600), default=30.0,
              show_default=True, metavar="SECONDS",
              help="Close a connection that has not sent a whole request (headers and body) "
                   "this long after it began.")
@click.option("--idle-timeout", type=click.FloatRange(0.1, 86400), default=120.0,
              show_default=True, metavar="SECONDS",
              help="Close a keep-alive connection after this long without a request.")
@click.option("--memory-budget-mib", type=click.IntRange(16, 1 << 20), default=512,
              show_default=True,
              help="Memory for large request bodies in progress (each costs about 5x its "
                   "size); others wait, then get 503 with Retry-After.")
@click.option("--max-connections", type=click.IntRange(0, 1 << 20), default=0,
              show_default=True,
              help="Most open connections (0: derived from the file limit); over it, idle and "
                   "half-sent connections are closed first.")
@examples(
    "eventodb serve --data-dir ./eventodb-data",
    "eventodb serve --store orders.db --port 9090 --token \"$EVENTODB_TOKEN\"",
    "eventodb serve --test-mode --port 0",
)
@click.pass_context
def serve(ctx, data_dir, store, host, port, test_mode, token, admin_token, max_body_mib,
          keepalive, workers, read_timeout, idle_timeout, memory_budget_mib, max_connections):
    """Run the EventoDB HTTP API (/rpc, /subscribe, /import, /health, /version) over local
    SQLite stores, one file per namespace.

    Any EventoDB SDK can use it in place of the EventoDB server. Without --data-dir or --store
    it serves your local default store (with --test-mode: a temporary directory).
    """
    from click.core import ParameterSource

    from ..errors import UsageError

    if store and data_dir:
        if ctx.get_parameter_source("data_dir") == ParameterSource.ENVIRONMENT:
            data_dir = None  # the flag beats the environment
        else:
            raise UsageError("--data-dir and --store name two places; give one")
    from ..server.run import serve as run

    run(data_dir=data_dir, store=store, host=host, port=port, test_mode=test_mode,
        token=token or None, max_body=max_body_mib * 1024 * 1024, keepalive=keepalive,
        workers=workers, read_timeout=read_timeout, idle_timeout=idle_timeout,
        max_connections=max_connections, memory_budget=memory_budget_mib * 1024 * 1024,
        admin_token=admin_token or None)
