"""``eventodb profile add|list|show|use|remove``: named targets in the user's config file."""

from __future__ import annotations

import sys

import click

from ..errors import UsageError
from .common import SECONDS, examples, format_option, out_format


@click.group()
def profile():
    """Named targets: a server (url + token) or a local store, saved in
    $XDG_CONFIG_HOME/eventodb/config.json (mode 0600).

    The current profile is used when no --url/--store/--profile flag and no EVENTODB_URL /
    EVENTODB_STORE / EVENTODB_PROFILE variable names a target. Tokens are never printed.
    """


@profile.command("add")
@click.argument("name")
@click.option("--url", metavar="URL", help="Server URL.")
@click.option("--token", metavar="TOKEN", help="Server token; - reads it from stdin (keeps it "
              "out of shell history).")
@click.option("--token-file", metavar="PATH", help="Read the token from PATH at each use.")
@click.option("--store", metavar="PATH", help="A local store file instead of a server.")
@click.option("--timeout", type=SECONDS, metavar="SECONDS", help="Request timeout for this server.")
@click.option("--description", metavar="TEXT", help="A note shown by 'profile list'.")
@click.option("--use", "use_it", is_flag=True, help="Make it the current profile.")
@click.option("--replace", is_flag=True, help="Overwrite a profile of the same name.")
@format_option
@examples(
    "eventodb profile add prod --url https://evento.example:8080 --token-file ~/.evento-token",
    "printf '%s' \"$TOKEN\" | eventodb profile add staging --url http://10.0.0.5:8080 --token - --use",
    "eventodb profile add scratch --store /tmp/scratch.db",
)
def profile_add(name, url, token, token_file, store, timeout, description, use_it, replace, fmt):
    """Save a profile NAME (the first profile saved becomes the current one)."""
    from ..store import profiles as P

    from ..store.resolve import (check_server_url, check_store_path, is_postgres_url,
                                 split_postgres_password, split_url_credentials)

    for flag, value in (("--url", url), ("--token", token), ("--token-file", token_file),
                        ("--store", store)):
        if value is not None and not value.strip():
            raise UsageError(f"{flag}: empty value (give a value, or leave the option out)")
    if token == "-":
        token = sys.stdin.readline().strip()
        if not token:
            raise UsageError("--token -: no token on stdin")
    if url and is_postgres_url(url):
        # Message DB: the password becomes the profile's token (store/postgres.py reads it),
        # libpq checks the rest of the URL when the profile is used
        url, password = split_postgres_password(url)
        if password and not token and not token_file:
            token = password
    elif url:
        # a token in the URL (user:TOKEN@ or ?token=) is kept as the profile's token, never in
        # the URL that 'profile list' shows
        clean, url_token = split_url_credentials(url)
        check_server_url(clean, "--url")
        if url_token:
            url = clean
            if not token and not token_file:
                token = url_token
    if store:
        check_store_path(store, "--store")
    path = P.add_profile(name, {"url": url, "token": token, "token_file": token_file,
                                "store": store, "timeout": timeout,
                                "description": description}, use=use_it, replace=replace)
    current = P.current_name() == name
    fmt = out_format(fmt)
    if fmt == "table":
        click.echo(f"profile {name} saved to {path}" + (" (current)" if current else ""))
    else:
        from ..render import emit_object

        emit_object({"name": name, "path": path, "current": current}, fmt)


@profile.command("list")
@format_option
@examples("eventodb profile list", "eventodb profile list --format json | jq -r '.[].name'")
def profile_list(fmt):
    """List profiles (the current one is marked)."""
    from ..render import emit_rows
    from ..store import profiles as P

    cfg = P.load_config()
    cur = P.current_name(cfg)
    rows = [P.describe(n, p, cur) for n, p in sorted(cfg["profiles"].items())]
    fmt = out_format(fmt)
    if fmt == "table":
        if not rows:
            click.echo("(no profiles: add one with 'eventodb profile add')")
            return
        rows = [dict(r, current="*" if r["current"] else "") for r in rows]
        emit_rows(rows, fmt, ["current", "name", "kind", "target", "token", "description"])
    else:
        emit_rows(rows, fmt)


@profile.command("show")
@click.argument("name", required=False)
@format_option
@examples("eventodb profile show", "eventodb profile show prod --format json")
def profile_show(name, fmt):
    """Show profile NAME (default: the current one). The token is never shown."""
    from ..errors import NotFound
    from ..render import emit_object
    from ..store import profiles as P

    cfg = P.load_config()
    cur = P.current_name(cfg)
    name = name or cur
    if name is None:
        raise NotFound("no current profile (see 'eventodb profile use NAME')")
    row = P.describe(name, P.get_profile(name, cfg), cur)
    row["config"] = P.config_path()
    emit_object(row, out_format(fmt))


@profile.command("use")
@click.argument("name")
@examples("eventodb profile use prod",
          "eventodb profile use prod && eventodb stream get account-123  # read from prod")
def profile_use(name):
    """Make NAME the current profile."""
    from ..store import profiles as P

    P.use_profile(name)
    click.echo(f"current profile: {name}")


@profile.command("remove")
@click.argument("name")
@examples("eventodb profile remove scratch")
def profile_remove(name):
    """Remove profile NAME (if it was current, no profile is current afterwards)."""
    from ..store import profiles as P

    was_current = P.remove_profile(name)
    click.echo(f"removed profile {name}" + (" (it was current; none is now)" if was_current
                                           else ""))
