"""Benchmark prompt delivery into an interactive agent: from task ready to the agent's first model request.

Prints one JSON object. Each run starts the real `claude` TUI (the one pinned under tests/, or `--claude`) in a
tmux pane on a private socket, pointed at a model server on 127.0.0.1 that records when each request arrives and
answers 400 (no network, no API key). Two ways are timed, interleaved, `--workers` times each:
- `delivered`: the TUI starts bare; once its composer shows, the prompt goes in with `deliver_prompt`
  (bracketed paste, then Enter, verified);
- `argument` (the baseline): the TUI starts with the prompt as its argument, as a person would type it.
The time is from the tmux spawn to the first request that carries the prompt's marker; p50 and p99 of each,
and the ratio delivered/argument.

    python scripts/bench_agents.py [--workers 20] [--claude PATH]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from swarmd.workers.delivery import composer, deliver_prompt
from swarmd.workers.tmux import TmuxServer

PINNED = Path(__file__).resolve().parent.parent / "tests" / "node_modules" / ".bin" / "claude"
PROMPT = "{marker} Read the task below and start.\n\nTask: add a --json flag to `swarm stats`;\nsee @README.md"


class ArrivalModel:
    """A model API on 127.0.0.1 that notes when each request body arrives (monotonic s) and answers 400."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, bytes]] = []
        self.lock = threading.Lock()
        model = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with model.lock:
                    model.arrivals.append((time.monotonic(), body))
                answer = b'{"type": "error", "error": {"type": "invalid_request_error", "message": "bench"}}'
                self.send_response(400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def first(self, marker: str) -> float | None:
        with self.lock:
            return next((at for at, body in self.arrivals if marker.encode() in body), None)


def environment(root: Path, url: str, project: Path) -> dict[str, str]:
    """The CLI's own config under `root` (onboarding done, `project` trusted, the key approved), the model at
    `url`, no calls home."""
    config = root / "claude-config"
    config.mkdir(parents=True, exist_ok=True)
    key = "sk-ant-bench-0000000000000000"
    (config / ".claude.json").write_text(json.dumps({
        "hasCompletedOnboarding": True, "customApiKeyResponses": {"approved": [key[-20:]], "rejected": []},
        "projects": {str(project): {"hasTrustDialogAccepted": True}}}))
    return {"CLAUDE_CONFIG_DIR": str(config), "ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": key,
            "CLAUDE_CODE_MAX_RETRIES": "0", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "HOME": str(root)}


def wait(predicate, timeout: float, what: str):  # noqa: ANN001, ANN201 - a small poll loop
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_agents: timed out waiting for {what}")
        time.sleep(0.01)
    return value


def one_run(tmux: TmuxServer, model: ArrivalModel, claude: Path, scratch: Path, n: int, way: str) -> float:
    """Seconds from spawn to the first request carrying this run's prompt."""
    root = scratch / f"{way}-{n}"
    project = root / "project"
    project.mkdir(parents=True)
    (project / "README.md").write_text("# bench\n")
    marker = f"BENCH-{way}-{n}"
    prompt = PROMPT.format(marker=marker)
    session = f"{way}-{n}"
    env = environment(root, model.url, project)
    argv = [str(claude)] + ([prompt] if way == "argument" else [])
    start = time.monotonic()
    tmux.spawn(session, argv, env=env, cwd=project, width=120, height=40)
    if way == "delivered":
        wait(lambda: composer(tmux.screen(session)) is not None, 120, f"the composer of {session}")
        deliver_prompt(tmux, session, prompt, lock_dir=scratch / "locks", timeout=60)
    arrived = wait(lambda: model.first(marker), 120, f"the first request of {session}")
    tmux.kill_session(session)
    return arrived - start


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50_s": round(statistics.median(ordered), 3), "p99_s": round(p99, 3),
            "min_s": round(ordered[0], 3), "max_s": round(ordered[-1], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=20, help="runs of each way (default 20)")
    parser.add_argument("--claude", type=Path, default=PINNED, help="the claude CLI (default: the pinned one)")
    args = parser.parse_args()
    if not os.access(args.claude, os.X_OK):
        sys.exit(f"bench_agents: no claude CLI at {args.claude}: run `npm ci --prefix tests` or pass --claude")
    model = ArrivalModel()
    times: dict[str, list[float]] = {"delivered": [], "argument": []}
    with tempfile.TemporaryDirectory(prefix="bench-agents-", ignore_cleanup_errors=True) as scratch:
        tmux = TmuxServer(Path(scratch) / "tmux.sock")
        try:
            for n in range(args.workers):
                for way in ("delivered", "argument") if n % 2 == 0 else ("argument", "delivered"):
                    times[way].append(one_run(tmux, model, args.claude, Path(scratch), n, way))
        finally:
            tmux.kill_server()
            model.server.shutdown()
    delivered, argument = summary(times["delivered"]), summary(times["argument"])
    print(json.dumps({
        "bench": "agents", "cli": "claude", "workers": args.workers, "cores": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "measure": "tmux spawn to the first model request carrying the prompt",
        "delivered": delivered, "argument": argument,
        "ratio_p50": round(delivered["p50_s"] / argument["p50_s"], 3),
        "ratio_p99": round(delivered["p99_s"] / argument["p99_s"], 3),
    }, indent=2))


if __name__ == "__main__":
    main()
