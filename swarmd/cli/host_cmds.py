"""Worker hosts: `swarm host join` runs this machine's host agent; `swarm hosts` lists a swarm's hosts."""

import logging
import os
import signal
from pathlib import Path

import click

from swarmd.cli import main
from swarmd.cli.common import dump_json, get_home, home_option, json_option


@main.group()
def host() -> None:
    """Run workers on this machine for a supervisor elsewhere (a worker host)."""


@host.command("join")
@click.argument("url")
@click.option("--name", required=True, help="This host's name: 1-32 of a-z, 0-9, '_', '-'.")
@click.option("--slots", type=click.IntRange(1, 256), default=None, help="Workers at once (default: the cores).")
@click.option("--labels", default=None, help="What this machine offers, comma-separated (gpu,linux).")
@click.option("--credentials", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A file (mode 0600) with this host's NATS login: .creds, an nkey seed, or one line "
                   "user:password (`swarm logins` writes one).")
@click.option("--ca", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PEM file of the authorities that sign the server's TLS certificate.")
@click.option("--swarm", "swarm_name", default="swarm", show_default=True, help="The swarm's name (its swarm.toml `name`).")
@click.option("--project", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where this host's workers run (default: the directory that holds the host's home).")
@click.option("--ssh", default="", help="How the supervisor's machine reaches this one by ssh ([user@]machine): "
              "`swarm attach` then runs `ssh -t` to this host's tmux (else it goes through this agent's relay).")
@home_option
def join(url: str, name: str, slots: int | None, labels: str | None, credentials: Path | None, ca: Path | None,
         swarm_name: str, project: Path | None, ssh: str, home: str | None) -> None:
    """Join the swarm whose NATS server is at URL (nats://HOST:PORT, or tls://) and run its workers here until
    stopped (Ctrl-C, SIGTERM); the workers go on running, and the next `join` on this home takes them up again."""
    from filelock import FileLock, Timeout

    from swarmd.errors import SwarmError
    from swarmd.home import SwarmHome, home_to_create
    from swarmd.hosts.agent import HostAgent
    from swarmd.hosts.names import parse_labels

    if project is not None and not project.is_dir():
        raise SwarmError(f"project directory {project} does not exist")
    h = SwarmHome(home_to_create(home))
    agent = HostAgent(h, name=name, url=url, swarm=swarm_name, slots=slots or os.cpu_count() or 1,
                      labels=parse_labels(labels), credentials=credentials, ca=ca, project=project, ssh=ssh)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    lock = h.run_dir / "host" / "agent.lock"
    lock.parent.mkdir(mode=0o700, exist_ok=True)
    try:
        with FileLock(str(lock), timeout=0):
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: agent.stop())
            click.echo(f"host {agent.name} serving swarm {swarm_name} from {url} with {agent.slots} slots "
                       f"(home {h.root})", err=True)
            agent.serve()
    except Timeout:
        raise SwarmError(f"a host agent already runs on {h.root}") from None


@main.command()
@home_option
@json_option
def hosts(home: str | None, as_json: bool) -> None:
    """The swarm's worker hosts: up or down, slots, labels, and the workers on each."""
    from swarmd.config import load_config
    from swarmd.hosts.directory import list_hosts

    h = get_home(home)
    views = list_hosts(h, load_config(h.config_file))
    if as_json:
        dump_json([v.as_dict() for v in views])
        return
    if not views:
        click.echo("no hosts have joined: run `swarm host join URL --name NAME` on a worker machine")
    for v in views:
        state = f"up (beat {v.beat_age:.1f}s ago)" if v.up else "DOWN"
        slots = f"{len(v.running)}/{v.slots} slots" if v.slots else "slots unknown"
        labels = ",".join(v.labels) or "-"
        ssh = f"  ssh {v.ssh}" if v.ssh else ""
        click.echo(f"{v.name}  {state}  {slots}  labels {labels}  workers {' '.join(v.assigned) or '-'}{ssh}")
