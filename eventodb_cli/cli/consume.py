"""``eventodb consume``: run one member of a consumer group."""

from __future__ import annotations

import click

from .common import (NON_NEGATIVE, POSITIVE, check_group, complete_category, examples, get_store,
                     target_options)

MAX_BATCH = 100_000  # messages held in memory per read
PIPE_WINDOW = 1000  # --pipe: messages written ahead of the first unsettled one (or the batch)


@click.command()
@click.argument("category", metavar="CATEGORY", shell_complete=complete_category)
@click.option("--member", type=NON_NEGATIVE, required=True, metavar="M", help="This consumer's member.")
@click.option("--size", type=POSITIVE, required=True, metavar="N", help="Consumer-group size.")
@click.option("--checkpoint", "checkpoint", metavar="PATH",
              help="Checkpoint file: read at start, replaced atomically after each batch (what "
                   "`eventodb lag --checkpoints` reads). Its directory must exist.")
@click.option("--sync-interval", type=float, default=1.0, show_default=True, metavar="SECONDS",
              help="Make the --checkpoint durable (fsync) at most this often, and at the end "
                   "of the run (0: every save). A killed consumer loses nothing either way; a "
                   "power loss can hand over again the messages of the last SECONDS.")
@click.option("--group", "-g", "group", metavar="NAME",
              help="Keep the position in the store read, as the Eventide position stream "
                   "CATEGORY:position-NAME-M (what `eventodb group describe` and `lag --group` "
                   "read). Exclusive with --checkpoint.")
@click.option("--position-every", type=POSITIVE, default=None, metavar="K",
              help="Save the position only once K more messages are taken (default: after "
                   "each batch); the end of a run always saves.")
@click.option("--force-size", is_flag=True,
              help="With --group: start even though the member's position was recorded for "
                   "another group size (a warning; the hand-over is simulate-scale --execute).")
@click.option("--exec", "command", metavar="CMD",
              help="Run CMD (through the shell) per message, the message JSON on stdin and "
                   "EVENTODB_MESSAGE_ID, EVENTODB_STREAM, EVENTODB_GLOBAL_POSITION set. "
                   "Default: print each message as NDJSON.")
@click.option("--pipe", "pipe_command", metavar="CMD",
              help="Run CMD (through the shell) once and keep it running: one message per "
                   "line (NDJSON) on its stdin, one answer per message on its stdout, in order "
                   "(`ok` acknowledges, `error REASON` fails it: docs/consume.md). The position "
                   "moves only past acknowledged messages; a handler that dies is restarted "
                   "and gets the unanswered messages again. Exclusive with --exec.")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=100, show_default=True,
              help="Messages per checkpoint save (the store is read in pages of at least "
                   "1000).")
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
    "eventodb consume account --member 2 --size 3 --group billing --follow --exec ./bill.sh "
    "--url http://evento:8080 --health-port 9102",
)
def consume(category, member, size, checkpoint, sync_interval, group, position_every, force_size, command,
            pipe_command, batch_size, poll_interval, follow,
            from_position, ledger_path, consumer_id, on_error, retries, retry_delay, health_port,
            max_lag, max_messages):
    """Consume member M's share of CATEGORY in a group of size N.

    Reads from its position (a --checkpoint file: the next global position to read; or, with
    --group, the last Recorded position in the store), hands each message to the handler
    (NDJSON on stdout, --exec CMD, or a
    persistent --pipe CMD), saves the position after each batch, and with --follow
    keeps going. The position moves only past what the handler has taken: on a pipe, what the
    reader has read out of it. SIGINT/SIGTERM finish the current message, save and exit 0; a
    closed stdout ends quietly. Exit 1 when a handler keeps failing with --on-error stop; exit 2
    when a --group member's position was recorded for another size (hand over with
    simulate-scale --group NAME --execute, or --force-size).
    """
    import math
    import signal

    from ..errors import UsageError
    from ..services.consumer import Consumer, ConsumerOptions
    from ..services.handlers import ExecHandler, PrintHandler

    check_group(member, size)
    if not (math.isfinite(poll_interval) and 0 < poll_interval <= 86400):
        raise UsageError(f"--poll-interval must be > 0 and <= 86400 seconds (got {poll_interval})")
    if not (math.isfinite(retry_delay) and 0 <= retry_delay <= 3600):
        raise UsageError(f"--retry-delay must be 0..3600 seconds (got {retry_delay})")
    if not (math.isfinite(sync_interval) and 0 <= sync_interval <= 86400):
        raise UsageError(f"--sync-interval must be 0..86400 seconds (got {sync_interval})")
    if (checkpoint is None) == (group is None):
        raise UsageError("give exactly one of --checkpoint PATH or --group NAME")
    if force_size and group is None:
        raise UsageError("--force-size goes with --group")
    if checkpoint is not None:
        from ..services.checkpoints import check_writable

        check_writable(checkpoint)  # before any message is handled
    else:
        from ..services.positions import check_group as check_group_name

        check_group_name(group)

    if command is not None and pipe_command is not None:
        raise UsageError("--exec and --pipe are exclusive: give one handler")
    if pipe_command is not None and not pipe_command.strip():
        raise UsageError("--pipe needs a command")
    opts = ConsumerOptions(category, member, size, checkpoint, batch_size=batch_size,
                           poll_interval=poll_interval, follow=follow,
                           from_position=from_position, retries=retries, backoff=retry_delay,
                           on_error=on_error, max_messages=max_messages, max_lag=max_lag,
                           position_every=position_every, sync_interval=sync_interval)
    if pipe_command is not None:
        from ..services.pipehandler import PipeHandler

        handler = PipeHandler(pipe_command, window=max(batch_size, PIPE_WINDOW), retries=retries,
                              backoff=retry_delay, on_error=on_error)
    else:
        handler = ExecHandler(command) if command else PrintHandler()
    ledger = None
    if ledger_path:
        from ..services.ledger import Ledger

        ledger = Ledger(ledger_path, consumer_id or category)
    consumer_ledger = ledger
    if ledger is not None and pipe_command is not None:
        from ..services.pipehandler import SkipAwareLedger

        consumer_ledger = SkipAwareLedger(ledger, handler)  # failed and skipped: not recorded
    try:
        with get_store() as store:
            keeper = None
            if group is not None:
                from ..services.consumer_positions import StoreKeeper

                keeper = StoreKeeper(store, category, group, member, size,
                                     from_position=from_position, force_size=force_size,
                                     log=lambda text: click.echo(f"eventodb: consume: {text}",
                                                                 err=True))
            consumer = Consumer(store, opts, handler, ledger=consumer_ledger,
                                keeper=keeper)
            httpd = None
            if health_port is not None:
                from ..services.consumer_health import serve_health
                from ..store.resolve import open_store

                from .common import get_target

                target = get_target()
                httpd = serve_health(consumer, health_port,
                                     store_factory=lambda: open_store(target))

            def stop(signum, frame):
                consumer.request_stop()
                if pipe_command is not None:
                    handler.interrupt()  # wait at most the drain time for its answers

            previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
            try:
                code = consumer.run()
                if pipe_command is not None:
                    handler.check()  # a message failed for good (--on-error stop): exit 1
            finally:
                for sig, old in previous.items():
                    signal.signal(sig, old)
                if httpd is not None:
                    httpd.shutdown()
                    httpd.server_close()
                    httpd.close_store()
    finally:
        if pipe_command is not None:
            handler.close()
        if ledger is not None:
            ledger.close()
    click.get_current_context().exit(code)
