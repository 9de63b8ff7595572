"""The hosts fixture itself: namespaces that reach the supervisor's side, links cut and restored, nothing left."""

import socket
import sys
import threading
from pathlib import Path

from netns import Network, ip, network  # noqa: F401 - the fixture
from swarmkit import wait_until

CONNECT = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))"


def reaches(host, address: str, port: int, timeout: float = 5.0) -> bool:
    return host.run([sys.executable, "-c", CONNECT, address, str(port), str(timeout)],
                    capture_output=True).returncode == 0


def test_hosts_reach_the_gateway_until_cut_and_again_once_restored(network: Network) -> None:
    server = socket.create_server((network.gateway, 0))
    port = server.getsockname()[1]
    accepting = threading.Thread(target=lambda: [server.accept() for _ in range(3)], daemon=True)
    accepting.start()
    one, two = network.host("one"), network.host("two")
    assert len({one.address, two.address, network.gateway}) == 3
    assert reaches(one, network.gateway, port) and reaches(two, network.gateway, port)
    one.cut()
    assert not reaches(one, network.gateway, port, timeout=0.5)  # a cut link never connects
    one.restore()
    wait_until(lambda: reaches(one, network.gateway, port), 30, "the restored host to reach the gateway")
    server.close()


def test_everything_made_is_gone_after_close() -> None:
    net = Network()
    host = net.host("h")
    sleeper = host.popen(["sleep", "600"])
    daemon = host.run(["sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True)
    assert sleeper.poll() is None and int(daemon.stdout) in host.pids()
    net.close()
    assert sleeper.poll() is not None
    assert host.netns not in ip("netns", "list").stdout
    assert net.bridge not in ip("link", "show").stdout
    wait_until(lambda: gone(int(daemon.stdout)), 30, "the daemon left in the namespace to be killed")


def gone(pid: int) -> bool:
    """No such process, or only its zombie (killed, waiting for init to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True
