"""`swarm logins`: NATS logins for a swarm's supervisor and worker hosts, and the server's permissions for them."""

from pathlib import Path

import click

from swarmd.cli import main
from swarmd.cli.common import dump_json, json_option


@main.command()
@click.option("--host", "hosts", multiple=True, required=True, help="A worker host's name (again for each host).")
@click.option("--swarm", "swarm_name", default="swarm", show_default=True,
              help="The swarm's name (its swarm.toml `name`, the hosts' `join --swarm`).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("nats-logins"),
              show_default=True, help="The directory to write into (made 0700 if missing).")
@click.option("--force", is_flag=True, help="Write new logins over ones written before.")
@json_option
def logins(hosts: tuple[str, ...], swarm_name: str, out: Path, force: bool, as_json: bool) -> None:
    """Write a NATS login (user:password, mode 0600) for the supervisor and each --host, and the nats-server
    `authorization` block that lets a host publish only for its own workers (include it in the server's config)."""
    from swarmd.hosts.logins import write_logins

    written = write_logins(out, swarm=swarm_name, hosts=list(hosts), force=force)
    if as_json:
        dump_json(written.as_dict())
        return
    click.echo(f"nats-server: copy {written.config} beside its config file, add the line `include "
               f"{written.config.name}` to it (an include is read relative to that file) and reload it")
    click.echo(f"supervisor:  copy {written.supervisor.file} beside swarm.toml; set [hosts] credentials = "
               f'"{written.supervisor.file.name}"')
    for name, login in written.hosts.items():
        click.echo(f"host {name}: copy {login.file} there; swarm host join URL --name {name} --swarm {swarm_name} "
                   f"--credentials {login.file.name}")
