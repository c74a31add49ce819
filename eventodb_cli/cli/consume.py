"""``eventodb consume``: run one member of a consumer group."""

from __future__ import annotations

import click

from .common import (NON_NEGATIVE, POSITIVE, check_group, complete_category, examples, get_store,
                     target_options)

MAX_BATCH = 100_000  # messages held in memory per read


@click.command()
@click.argument("category", metavar="CATEGORY", shell_complete=complete_category)
@click.option("--member", type=NON_NEGATIVE, required=True, metavar="M", help="This consumer's member.")
@click.option("--size", type=POSITIVE, required=True, metavar="N", help="Consumer-group size.")
@click.option("--checkpoint", "checkpoint", required=True, metavar="PATH",
              help="Checkpoint file: read at start, saved atomically after each batch (what "
                   "`eventodb lag --checkpoints` reads).")
@click.option("--exec", "command", metavar="CMD",
              help="Run CMD (through the shell) per message, the message JSON on stdin and "
                   "EVENTODB_MESSAGE_ID, EVENTODB_STREAM, EVENTODB_GLOBAL_POSITION set. "
                   "Default: print each message as NDJSON.")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=100, show_default=True,
              help="Messages per read (and per checkpoint save).")
@click.option("--poll-interval", type=float, default=1.0, show_default=True, metavar="SECONDS",
              help="With --follow: polling interval on a local store; on a server, SSE pokes "
                   "wake the consumer and it re-reads every 10 x SECONDS at the latest.")
@click.option("--follow", "-f", is_flag=True, help="Keep consuming new messages until stopped.")
@click.option("--from-position", type=POSITIVE, default=None, metavar="GPOS",
              help="Where to start when there is no checkpoint yet (default 1).")
@click.option("--idempotency", "ledger_path", metavar="PATH",
              help="SQLite ledger of handled message ids: ids in it are skipped, each id is "
                   "recorded right after its handler succeeds.")
@click.option("--consumer-id", metavar="NAME", default=None,
              help="Identity in the idempotency ledger [default: the category, shared by "
                   "every member and group size].")
@click.option("--on-error", type=click.Choice(["stop", "skip"]), default="stop",
              show_default=True,
              help="After the retries: stop (exit 1, the failed message is the next to read) "
                   "or skip it.")
@click.option("--retries", type=click.IntRange(0, 1000), default=3, show_default=True,
              help="Retries of a failing handler, with exponential backoff.")
@click.option("--retry-delay", type=float, default=0.5, show_default=True, metavar="SECONDS",
              help="First backoff delay (doubled on each retry).")
@click.option("--health-port", type=click.IntRange(0, 65535), default=None, metavar="PORT",
              help="Serve GET /health (status, member, size, position, lag, throughput) on "
                   "127.0.0.1:PORT.")
@click.option("--max-lag", type=NON_NEGATIVE, default=1000, show_default=True, metavar="K",
              help="Health status is lagging beyond K unprocessed messages.")
@click.option("--max-messages", type=POSITIVE, default=None, metavar="K",
              help="Stop after K messages.")
@target_options
@examples(
    "eventodb consume account --member 0 --size 4 --checkpoint ckpt/account.member-0-of-4.json",
    "eventodb consume account --member 1 --size 4 --checkpoint ckpt/account.member-1-of-4.json "
    "--follow --exec './handle.sh' --idempotency processed.db --health-port 9101",
    "eventodb consume account --member 0 --size 2 --checkpoint c0.json --follow | jq .type",
)
def consume(category, member, size, checkpoint, command, batch_size, poll_interval, follow,
            from_position, ledger_path, consumer_id, on_error, retries, retry_delay, health_port,
            max_lag, max_messages):
    """Consume member M's share of CATEGORY in a group of size N.

    Reads from the checkpoint (the next global position to read), hands each message to the
    handler (NDJSON on stdout, or --exec CMD), saves the checkpoint after each batch, and with
    --follow keeps going. SIGINT/SIGTERM finish the current message, save the checkpoint and
    exit 0. Exit 1 when a handler keeps failing with --on-error stop.
    """
    import signal

    from ..errors import UsageError
    from ..services.consumer import (Consumer, ConsumerOptions, ExecHandler, PrintHandler,
                                     serve_health)

    import math

    check_group(member, size)
    if not (math.isfinite(poll_interval) and 0 < poll_interval <= 86400):
        raise UsageError(f"--poll-interval must be > 0 and <= 86400 seconds (got {poll_interval})")
    if not (math.isfinite(retry_delay) and 0 <= retry_delay <= 3600):
        raise UsageError(f"--retry-delay must be 0..3600 seconds (got {retry_delay})")
    from ..services.checkpoints import check_writable

    check_writable(checkpoint)  # before any message is handled

    opts = ConsumerOptions(category, member, size, checkpoint, batch_size=batch_size,
                           poll_interval=poll_interval, follow=follow,
                           from_position=from_position, retries=retries, backoff=retry_delay,
                           on_error=on_error, max_messages=max_messages, max_lag=max_lag)
    handler = ExecHandler(command) if command else PrintHandler()
    ledger = None
    if ledger_path:
        from ..services.ledger import Ledger

        ledger = Ledger(ledger_path, consumer_id or category)
    try:
        with get_store() as store:
            consumer = Consumer(store, opts, handler, ledger=ledger)
            httpd = serve_health(consumer, health_port) if health_port is not None else None

            def stop(signum, frame):
                consumer.request_stop()

            previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
            try:
                code = consumer.run()
            finally:
                for sig, old in previous.items():
                    signal.signal(sig, old)
                if httpd is not None:
                    httpd.shutdown()
                    httpd.server_close()
    finally:
        if ledger is not None:
            ledger.close()
    click.get_current_context().exit(code)
