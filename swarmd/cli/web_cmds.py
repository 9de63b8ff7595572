"""`swarm web`: the dashboard in a browser (board, feed, registry, panes, actions), behind a magic link."""

import json

import click

from swarmd.cli import main
from swarmd.cli.common import get_home, home_option, json_option


@main.command()
@home_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on (0: any free one).")
@click.option("--allow-remote", is_flag=True, help="Allow a --host beyond loopback (plain HTTP: use a tunnel).")
@click.option("--link", is_flag=True, help="Print a one-time sign-in link (if a dashboard already runs for this "
                                           "home, print one for it and exit).")
@click.option("--as", "actor", default=None, help="Who the link signs in as: the feed's agent on what the page "
                                                  "does (default: <login>.web).")
@json_option
def web(home: str | None, host: str, port: int, allow_remote: bool, link: bool, actor: str | None,
        as_json: bool) -> None:
    """Serve the dashboard of a swarm home until Ctrl-C. Nothing is shown without a session: open the link
    that --link prints (once; it sets an HttpOnly cookie)."""
    from protocol.names import validate_agent_name
    from swarmd.web.server import Address, bind, default_actor, is_loopback, new_link, running, serve

    h = get_home(home)
    who = validate_agent_name(actor) if actor else default_actor()
    already = running(h)
    if already is not None and link:
        _say({"url": already.url, "link": new_link(h, already, who), "running": True}, as_json)
        return
    sock = bind(host, port, allow_remote)

    def ready(address: Address) -> None:
        said = {"url": address.url, "link": new_link(h, address, who) if link else None, "running": False}
        if not is_loopback(address.host):
            click.echo(f"warning: serving beyond loopback on {address.url} (plain HTTP: prefer an SSH tunnel)",
                       err=True)
        _say(said, as_json)

    serve(h, sock, ready)


def _say(said: dict[str, object], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(said), nl=True)
    else:
        click.echo(f"dashboard at {said['url']}" + ("" if said["running"] else " (Ctrl-C stops it)"))
        click.echo(f"sign in once with: {said['link']}" if said["link"] else
                   "sign in with the link that `swarm web --link` prints")
    click.get_text_stream("stdout").flush()
