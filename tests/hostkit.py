"""A swarm with worker hosts across network namespaces: a NATS server (TLS with a CA made for the test,
JetStream on files) on the
supervisor's side of a test network, a supervisor home that names it in `[hosts]`, and host agents started in
the hosts' namespaces (`swarm host join`), each with its own home and tmux server.

    swarm = HostedSwarm(network, tmp_path, swarm_home)   # or the `hosted` fixture
    swarm.join("h1", slots=2)
    swarm.config(max_workers=1, local_workers=False)
"""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from natskit import NatsServer
from netns import Host, Network, network  # noqa: F401 - the fixture
from swarmd.home import SwarmHome
from swarmd.config import load_config
from swarmd.hosts.directory import read_beats
from swarmkit import init_home, wait_until

BIN = Path(sys.executable).parent


class HostedSwarm:
    """A supervisor home (`home`) and its hosts. With a `network`, the `[hosts]` server (TLS) runs on its gateway
    and each host in a namespace of its own; without, on 127.0.0.1 (plain) with the hosts' agents beside it.
    With `logins` (a directory `swarm logins` wrote), the server takes its `authorization` block, the supervisor
    logs in with its `supervisor.login` and each host with its `host-NAME.login`."""

    def __init__(self, network: "Network | None", root: Path, home: SwarmHome, logins: Path | None = None) -> None:
        self.network, self.root, self.home, self.logins = network, root, home, logins
        self.hosts: dict[str, Host] = {}
        self.agents: dict[str, subprocess.Popen] = {}
        # nats-server reads an include relative to the config file's directory (root / "nats")
        include = f'include "{os.path.relpath(logins / "authorization.conf", root / "nats")}"' if logins else ""
        if network is None:
            self.ca = None
            self.nats = NatsServer(root / "nats", extra_config=include).start()
            self.url = self.nats.url
            return
        self.nats = NatsServer(root / "nats", host=network.gateway, tls=True, extra_config=include).start()
        self.ca = self.nats.ca_file
        self.url = f"tls://{network.gateway}:{self.nats.port}"

    def config(self, *, max_workers: int = 1, local_workers: bool = False, ttl: float = 3.0,
               stale: float = 60.0, extra: str = "") -> None:
        """Write the home's swarm.toml: fast ticks, and `[hosts]` on this test's server."""
        init_home(self.home, max_workers=max_workers, stale=stale)
        with self.home.config_file.open("a") as f:
            f.write(f'{extra}\n[hosts]\nurl = "{self.url}"\nttl = {ttl}\nlocal_workers = {str(local_workers).lower()}\n'
                    + (f'ca = "{self.ca}"\n' if self.ca else "")
                    + (f'credentials = "{self.logins / "supervisor.login"}"\n' if self.logins else ""))

    def host_home(self, name: str) -> Path:
        return self.root / name / ".swarm"

    def join(self, name: str, slots: int = 2, labels: str = "", ssh: str = "",
             env: dict[str, str] | None = None) -> Host | None:
        """Start the host's agent (with `env` added to this process's environment, on loopback): in its namespace
        (made once) on a network, else beside the test."""
        (self.root / name).mkdir(exist_ok=True)
        argv = [str(BIN / "swarm"), "host", "join", self.url, "--name", name, "--slots", str(slots), "--swarm", "t",
                "--home", str(self.host_home(name))] + (["--labels", labels] if labels else []) + (
                ["--ssh", ssh] if ssh else []) + (["--ca", str(self.ca)] if self.ca else []) + (
                ["--credentials", str(self.logins / f"host-{name}.login")] if self.logins else [])
        log = open(self.root / f"{name}.log", "ab")
        if self.network is None:
            self.agents[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                 env={**os.environ, **(env or {})})
            return None
        host = self.hosts.get(name) or self.network.host(name)
        self.hosts[name] = host
        self.agents[name] = host.popen(argv, stdout=log, stderr=subprocess.STDOUT)
        return host

    def wait_up(self, *names: str, timeout: float = 60) -> None:
        """Wait until every host named has a live heartbeat key (read as `swarm hosts` reads it)."""
        config = load_config(self.home.config_file)
        wait_until(lambda: set(names) <= set(read_beats(config, self.home)), timeout, f"hosts {names} to be up")

    def tmux(self, name: str) -> Path:
        """The socket of host `name`'s tmux server."""
        return SwarmHome(self.host_home(name)).tmux_socket

    def close(self) -> None:
        for agent in self.agents.values():
            if agent.poll() is None:
                agent.kill()
            agent.wait(30)
        for name in self.agents:
            subprocess.run(["tmux", "-S", str(self.tmux(name)), "kill-server"], capture_output=True, check=False)
        self.nats.stop()


@pytest.fixture
def loopback(tmp_path: Path, swarm_home: SwarmHome) -> Iterator[HostedSwarm]:
    """Hosts on this machine's loopback, no namespaces: for what does not need a network between them."""
    swarm = HostedSwarm(None, tmp_path, swarm_home)
    try:
        yield swarm
    finally:
        swarm.close()


@pytest.fixture
def hosted(network: Network, tmp_path: Path, swarm_home: SwarmHome) -> Iterator[HostedSwarm]:
    swarm = HostedSwarm(network, tmp_path, swarm_home)
    try:
        yield swarm
    finally:
        swarm.close()


def running(socket: Path, session: str) -> bool:
    """Whether `session`'s pane runs on the tmux server at `socket`."""
    out = subprocess.run(["tmux", "-S", str(socket), "list-panes", "-a", "-F", "#{session_name} #{pane_dead}"],
                         capture_output=True, text=True).stdout
    return f"{session} 0" in out.splitlines()
