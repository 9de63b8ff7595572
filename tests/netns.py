"""Hosts for tests: network namespaces joined to the supervisor's side by veth pairs.

The supervisor's side is the root namespace: a bridge there holds the gateway address (`.1` of a private /24
chosen for the test), and each host is a namespace of its own (`ip netns add`) whose end of a veth pair has
the next address. A server bound to the gateway address is reachable from every host and from the test
itself, and from nowhere else. `Host.cut()` takes the host's link down (both ways, as a pulled cable does) and
`Host.restore()` brings it back.

Subnets are picked under a file lock from those no interface of the machine uses, so parallel tests (xdist
workers, other test sessions) never share one. Names carry the creating process's id: a run killed before its
teardown leaves namespaces and bridges that the next one removes. Teardown kills every process left in each
namespace (a tmux server started there daemonizes), then deletes the namespaces and the bridge.

Needs root and iproute2's `ip`; the `network` fixture skips with the reason where namespaces cannot be made.
"""

import fcntl
import functools
import ipaddress
import os
import re
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

LOCK = Path("/tmp/swarmd-test-netns.lock")
POOL = ipaddress.ip_network("10.192.0.0/11")  # private (RFC 1918), /24 subnets handed out from it
PREFIX = "swarmd-"  # namespace names: swarmd-<pid>-<hex>
ALIAS = re.compile(r"swarmd-test-(\d+)")  # a bridge's alias: who made it


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip ARGS`; raise RuntimeError with ip's own message when it fails and `check` is set."""
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


@functools.cache
def unavailable() -> str | None:
    """Why network namespaces cannot be made here, or None if they can (asked once per process)."""
    if os.geteuid() != 0:
        return "network namespaces need root (tests run as uid %d)" % os.geteuid()
    if shutil.which("ip") is None:
        return "network namespaces need iproute2's `ip`, which is not installed"
    probe = f"{PREFIX}{os.getpid()}-probe{secrets.token_hex(3)}"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot make a network namespace: {made.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


@dataclass
class Host:
    """One host: a network namespace with one link (`outer` on the supervisor's bridge) and its address."""

    name: str
    netns: str
    address: str
    gateway: str
    outer: str
    processes: list[subprocess.Popen] = field(default_factory=list)

    def argv(self, command: list[str]) -> list[str]:
        """`command` run inside the host's namespace."""
        return ["ip", "netns", "exec", self.netns, *command]

    def popen(self, command: list[str], **kwargs) -> subprocess.Popen:
        """Start `command` in the host's namespace; it is killed at teardown if still running."""
        proc = subprocess.Popen(self.argv(command), **kwargs)
        self.processes.append(proc)
        return proc

    def run(self, command: list[str], **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("timeout", 60)
        return subprocess.run(self.argv(command), check=False, **kwargs)

    def cut(self) -> None:
        """Take the host's link down: nothing passes either way until `restore`."""
        ip("link", "set", self.outer, "down")

    def restore(self) -> None:
        ip("link", "set", self.outer, "up")

    def pids(self) -> list[int]:
        """Every process in the host's namespace."""
        out = ip("netns", "pids", self.netns, check=False).stdout
        return [int(p) for p in out.split()]

    def close(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
        for pid in self.pids():
            _kill(pid)
        ip("netns", "del", self.netns, check=False)


class Network:
    """The supervisor's side: a bridge in the root namespace holding `gateway`, and the hosts joined to it."""

    def __init__(self) -> None:
        sweep()
        self.token = secrets.token_hex(3)
        self.bridge = f"swb{self.token}"
        self.hosts: dict[str, Host] = {}
        with open(LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released on close: the subnet is on the bridge by then
            self.subnet = _free_subnet()
            hosts = self.subnet.hosts()
            self.gateway = str(next(hosts))
            self._addresses = hosts
            ip("link", "add", self.bridge, "type", "bridge")
            ip("link", "set", "dev", self.bridge, "alias", f"swarmd-test-{os.getpid()}")
            ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
            ip("link", "set", self.bridge, "up")

    def host(self, name: str) -> Host:
        """A new host called `name` (the test's own word for it), reachable at its `address`."""
        n = len(self.hosts)
        netns, outer, inner = f"{PREFIX}{os.getpid()}-{self.token}-{n}", f"swv{self.token}{n}o", f"swv{self.token}{n}i"
        address = str(next(self._addresses))
        ip("netns", "add", netns)
        host = self.hosts[name] = Host(name, netns, address, self.gateway, outer)
        ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        ip("link", "set", inner, "netns", netns)
        ip("link", "set", outer, "master", self.bridge, "up")
        ip("-n", netns, "link", "set", inner, "name", "eth0")
        ip("-n", netns, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
        ip("-n", netns, "link", "set", "eth0", "up")
        ip("-n", netns, "link", "set", "lo", "up")
        return host

    def close(self) -> None:
        for host in self.hosts.values():
            host.close()
        ip("link", "del", self.bridge, check=False)


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 of POOL that no address on this machine's interfaces falls in (call under LOCK)."""
    out = ip("-4", "-o", "addr", "show").stdout
    used = {ipaddress.ip_interface(m).network for m in re.findall(r"inet (\S+)", out)}
    start = secrets.randbelow(2 ** (24 - POOL.prefixlen))  # spread the picks: fewer retries under load
    subnets = list(POOL.subnets(new_prefix=24))
    for i in range(len(subnets)):
        subnet = subnets[(start + i) % len(subnets)]
        if not any(subnet.overlaps(u) for u in used):
            return subnet
    raise RuntimeError(f"no free /24 left in {POOL}")


def sweep() -> None:
    """Remove the namespaces and bridges of test processes that have died without their teardown."""
    for line in ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = re.fullmatch(re.escape(PREFIX) + r"(\d+)-.*", name)
        if match and not _alive(int(match[1])):
            for pid in ip("netns", "pids", name, check=False).stdout.split():
                _kill(int(pid))
            ip("netns", "del", name, check=False)
    out = ip("-o", "link", "show", "type", "bridge").stdout
    for name, alias in re.findall(r"^\d+: (swb[0-9a-f]+):.*?alias (\S+)", out, re.M):
        match = ALIAS.fullmatch(alias)
        if match and not _alive(int(match[1])):
            ip("link", "del", name, check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def network() -> Iterator[Network]:
    """A private network for one test: `network.host(name)` makes a host, `network.gateway` is the supervisor's
    address on it. Skips where namespaces cannot be made; everything is removed after the test."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    net = Network()
    try:
        yield net
    finally:
        net.close()
