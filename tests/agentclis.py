"""The real agent CLIs (Claude Code, Codex) pinned in tests/package.json, and a model server that refuses.

`npm ci --prefix tests` installs them into tests/node_modules (`.ci/run` does). Each test gives the CLIs
their own configuration directories under its tmp dir (`CLAUDE_CONFIG_DIR`, `CODEX_HOME`), never the
user's `~/.claude*` or `~/.codex`, and points them at a server on 127.0.0.1, never at the network.
"""

import functools
import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TESTS = Path(__file__).resolve().parent
NODE_BIN = TESTS / "node_modules" / ".bin"
CLIS = ("claude", "codex")
# Codex's model is the test's server; no update check, analytics, plugin or app sync goes out to the network.
CODEX_CONFIG = """\
model_provider = "test"
check_for_update_on_startup = false

[analytics]
enabled = false

[features]
plugins = false
remote_plugin = false
apps = false
in_app_updates = false

[model_providers.test]
name = "test"
base_url = {base_url}
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
supports_websockets = false
"""
MISSING = "the pinned agent CLIs are not installed (needs node and npm): run `npm ci --prefix tests`"


@functools.cache
def find_clis() -> dict[str, Path] | None:
    """The pinned CLIs by name (claude, codex), or None when node or the install is missing or broken."""
    found = {name: NODE_BIN / name for name in CLIS}
    if shutil.which("node") is None or not all(os.access(path, os.X_OK) for path in found.values()):
        return None
    with tempfile.TemporaryDirectory(prefix="swarmd-clis-") as scratch:
        env = {**os.environ, "HOME": scratch, "CLAUDE_CONFIG_DIR": scratch, "CODEX_HOME": scratch}
        for path in found.values():  # a package whose native binary did not install fails here, not in a test
            try:
                probe = subprocess.run([str(path), "--version"], capture_output=True, timeout=60, check=False,
                                       env=env)
            except (OSError, subprocess.TimeoutExpired):
                return None
            if probe.returncode != 0:
                return None
    return found


def agent_env(root: Path, base_url: str) -> dict[str, str]:
    """Environment for the CLIs: private config directories under `root`, the model at `base_url`, no retries,
    no calls home, and tests/node_modules/.bin first on PATH so a profile's `claude`/`codex` are the pinned ones.
    """
    claude_dir, codex_dir = root / "claude-config", root / "codex-home"
    claude_dir.mkdir(parents=True, exist_ok=True)
    codex_dir.mkdir(parents=True, exist_ok=True)
    (codex_dir / "config.toml").write_text(CODEX_CONFIG.format(base_url=json.dumps(base_url + "/v1")))
    return {
        "CLAUDE_CONFIG_DIR": str(claude_dir), "CODEX_HOME": str(codex_dir),
        "ANTHROPIC_BASE_URL": base_url, "ANTHROPIC_API_KEY": "sk-ant-test-0000",
        "CLAUDE_CODE_MAX_RETRIES": "0", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "PATH": f"{NODE_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


class RefusingModel:
    """A model API on 127.0.0.1 that records each request's body and answers 400, so a CLI pointed at it
    starts, sends its prompt and fails at once, without the network. Until `release` is set, it holds each
    answer (at most `hold_timeout` s): the agent stays alive while a test looks at it.
    """

    def __init__(self, hold_timeout: float = 60.0) -> None:
        self.bodies: list[bytes] = []
        self.release = threading.Event()
        self.lock = threading.Lock()
        model = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with model.lock:
                    model.bodies.append(body)
                model.release.wait(hold_timeout)
                answer = json.dumps({"type": "error", "error": {"type": "invalid_request_error",
                                                                "message": "refused by the test model"}}).encode()
                self.send_response(400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def received(self, text: str) -> bool:
        """Whether a request so far carried `text` (as sent: JSON-escaped for anything but plain ASCII)."""
        with self.lock:
            return any(text.encode() in body for body in self.bodies)

    @contextmanager
    def running(self) -> Iterator["RefusingModel"]:
        thread = threading.Thread(target=self.server.serve_forever, name="refusing-model", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.release.set()
            self.server.shutdown()
            self.server.server_close()
