"""A scripted model on 127.0.0.1 for the real agent CLIs: Anthropic's Messages API (Claude Code) and OpenAI's
Responses API (Codex), both streamed as server-sent events, no network and no key.

A test writes a script: turn by turn, what the "model" answers to the agent's main conversation (text, a file
Write, a shell command such as `agentmail send ... DONE`, an MCP tool call, a rate-limit refusal). Each answer
is a list of blocks; a block may be a callable given the conversation's text so far, so a turn can copy a
command out of the agent's prompt (`from_prompt`). Requests without tools (Claude Code's side calls: titles,
quota probes) get a one-word answer and leave the script alone. Every request is recorded, with the usage the
server answered it with, so a test can add up what an agent's cost records should say.

Wire formats follow the public API references (Messages streaming: message_start, content_block_start/delta/
stop, message_delta with usage, message_stop; Responses streaming: response.created, response.output_item.done,
response.completed with usage), as the CLIs' own test suites mock them.
"""

import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

Conversation = str  # all text the agent sent in the request (prompts, tool results), joined by newlines


@dataclass(frozen=True)
class Text:
    """The model says `text`."""
    text: str


@dataclass(frozen=True)
class Tool:
    """The model calls tool `name` with `input` (Claude Code: `Write`, `Bash`, `mcp__server__tool`, ...)."""
    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class Shell:
    """The model runs `command` with the agent's shell tool (Claude Code's `Bash`, Codex's `exec_command`)."""
    command: str


@dataclass(frozen=True)
class WriteFile:
    """The model writes `content` to `path` (Claude Code's `Write`; Codex: a shell here-document)."""
    path: str
    content: str


@dataclass(frozen=True)
class RateLimit:
    """The request is refused with 429 and the reset time `resets_in` seconds ahead (epoch in the headers, the
    delay in the message, as a subscription's limit notice gives it)."""
    resets_in: float = 60.0


Block = Text | Tool | Shell | WriteFile
Turn = list[Block | Callable[[Conversation], Block]] | RateLimit


@dataclass
class _Scripted:
    """One scripted turn and the gate that holds it."""
    blocks: Turn
    gate: threading.Event | None = None


@dataclass
class Request:
    """One request as received: its path, JSON body, whether it consumed a script turn, the usage answered."""
    path: str
    body: dict[str, Any]
    scripted: bool
    usage: dict[str, int] = field(default_factory=dict)
    status: int = 200

    def text(self) -> str:
        return conversation(self.body)


def from_prompt(pattern: str, make: Callable[[str], Block] = Shell) -> Callable[[Conversation], Block]:
    """A block built from the last match of `pattern` (a regex, MULTILINE) in the conversation: e.g. the
    prompt's `agentmail send ... --type DONE ...` line, run as a shell command. Fails loudly when absent."""
    def build(text: Conversation) -> Block:
        matches = list(re.finditer(pattern, text, re.MULTILINE))
        found = matches[-1] if matches else None
        if found is None:
            raise LookupError(f"the scripted model found no {pattern!r} in the conversation")
        return make(found.group(0).strip())
    return build


def conversation(body: dict[str, Any]) -> str:
    """Every string an agent sent in a request body (Messages or Responses form), in order, one per line."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for key, value in node.items():
                if key in ("text", "content", "output", "input") or isinstance(value, (list, dict)):
                    walk(value)
    walk(body.get("messages") or body.get("input") or [])
    return "\n".join(out)


class ModelServer:
    """The scripted model. `script(...)` appends turns; the agent's requests take them in order. A turn given
    `gate=` is held until the test sets that event (the agent stays "working" meanwhile). When the script runs
    out the model says "(end of script)" and ends its turn."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.turns: list[_Scripted] = []
        self.lock = threading.Lock()
        self.errors: list[str] = []
        self._ids = itertools.count(1)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    # -- the script ---------------------------------------------------------------------------------------------
    def script(self, *turns: Turn, gate: threading.Event | None = None) -> "ModelServer":
        """Append turns; `gate` holds the first of them until set."""
        with self.lock:
            for i, turn in enumerate(turns):
                self.turns.append(_Scripted(turn, gate if i == 0 else None))
        return self

    def scripted(self) -> list[Request]:
        """The requests that took a script turn, in order."""
        with self.lock:
            return [r for r in self.requests if r.scripted]

    def received(self, text: str) -> bool:
        """Whether any request's conversation carried `text`."""
        with self.lock:
            return any(text in r.text() for r in self.requests)

    def usage_total(self) -> dict[str, int]:
        """The usage the server answered, summed over every request (input, output, cache tokens)."""
        total: dict[str, int] = {}
        with self.lock:
            for request in self.requests:
                for key, value in request.usage.items():
                    total[key] = total.get(key, 0) + value
        return total

    def _next_turn(self, path: str, body: dict[str, Any]) -> _Scripted | None:
        if not path.endswith("/responses") and not body.get("tools"):
            return None  # a side call (title, quota probe, summary): not the agent's conversation
        if _structured(body):
            return None  # Codex's side call (the TUI's task title, a JSON schema answer): not the conversation
        with self.lock:
            return self.turns.pop(0) if self.turns else _Scripted([Text("(end of script)")])

    # -- HTTP ---------------------------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        model = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                path = self.path.split("?")[0]
                try:
                    model._answer(self, path, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                except Exception as exc:  # noqa: BLE001 - a script error must reach the test, not kill the thread
                    model.errors.append(f"{type(exc).__name__}: {exc}")
                    self._json(500, {"type": "error", "error": {"type": "api_error", "message": str(exc)}})

            def do_GET(self) -> None:
                if self.path.split("?")[0].endswith("/models"):
                    self._json(200, {"object": "list", "data": [], "models": []})
                else:
                    self._json(404, {"error": "not found"})

            def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def sse(self, events: Iterator[tuple[str, dict[str, Any]]]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                for name, data in events:
                    self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
                    self.wfile.flush()

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def _answer(self, handler: Any, path: str, body: dict[str, Any]) -> None:
        if path.endswith("/count_tokens"):
            handler._json(200, {"input_tokens": _tokens(conversation(body))})
            return
        turn = self._next_turn(path, body)
        request = Request(path=path, body=body, scripted=turn is not None)
        with self.lock:
            self.requests.append(request)
        if turn is not None and turn.gate is not None:
            turn.gate.wait(120)
        blocks = turn.blocks if turn is not None else [Text("ok")]
        if isinstance(blocks, RateLimit):
            request.status = 429
            reset = int(time.time() + blocks.resets_in)
            notice = f"Rate limit reached, resets in {int(blocks.resets_in)} seconds"
            handler._json(429, {"type": "error", "error": {"type": "rate_limit_error", "message": notice}},
                          {"retry-after": str(int(blocks.resets_in)),
                           "anthropic-ratelimit-unified-status": "rejected",
                           "anthropic-ratelimit-unified-reset": str(reset),
                           "x-codex-primary-reset-at": str(reset)})
            return
        text = conversation(body)
        built = [block(text) if callable(block) else block for block in blocks]
        request.usage = {"input_tokens": _tokens(text), "output_tokens": 5 + 3 * len(built)}
        if path.endswith("/responses"):
            handler.sse(self._responses_events(built, body, request.usage))
        else:
            handler.sse(self._messages_events(built, body, request.usage))

    # -- Anthropic Messages -------------------------------------------------------------------------------------
    def _messages_events(self, blocks: list[Block], body: dict[str, Any], usage: dict[str, int],
                         ) -> Iterator[tuple[str, dict[str, Any]]]:
        message_id = f"msg_{next(self._ids):06d}"
        yield "message_start", {"type": "message_start", "message": {
            "id": message_id, "type": "message", "role": "assistant", "model": body.get("model", "test"),
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 1,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}
        used_tool = False
        for index, block in enumerate(blocks):
            if isinstance(block, Text):
                yield "content_block_start", {"type": "content_block_start", "index": index,
                                              "content_block": {"type": "text", "text": ""}}
                yield "content_block_delta", {"type": "content_block_delta", "index": index,
                                              "delta": {"type": "text_delta", "text": block.text}}
            else:
                used_tool = True
                name, args = _claude_tool(block)
                yield "content_block_start", {"type": "content_block_start", "index": index, "content_block": {
                    "type": "tool_use", "id": f"toolu_{next(self._ids):06d}", "name": name, "input": {}}}
                yield "content_block_delta", {"type": "content_block_delta", "index": index,
                                              "delta": {"type": "input_json_delta", "partial_json": json.dumps(args)}}
            yield "content_block_stop", {"type": "content_block_stop", "index": index}
        yield "message_delta", {"type": "message_delta",
                                "delta": {"stop_reason": "tool_use" if used_tool else "end_turn", "stop_sequence": None},
                                "usage": {"output_tokens": usage["output_tokens"]}}
        yield "message_stop", {"type": "message_stop"}

    # -- OpenAI Responses ---------------------------------------------------------------------------------------
    def _responses_events(self, blocks: list[Block], body: dict[str, Any], usage: dict[str, int],
                          ) -> Iterator[tuple[str, dict[str, Any]]]:
        response_id = f"resp_{next(self._ids):06d}"
        yield "response.created", {"type": "response.created", "response": {"id": response_id}}
        for block in blocks:
            item_id = next(self._ids)
            if isinstance(block, Text):
                item = {"type": "message", "role": "assistant", "id": f"msg_{item_id:06d}",
                        "content": [{"type": "output_text", "text": block.text}]}
            elif isinstance(block, Tool):
                item = {"type": "function_call", "id": f"fc_{item_id:06d}", "call_id": f"call_{item_id:06d}",
                        "name": block.name, "arguments": json.dumps(block.input)}
            elif _offers_function(body, "exec_command"):  # the TUI: its shell tool is a function
                item = {"type": "function_call", "id": f"fc_{item_id:06d}", "call_id": f"call_{item_id:06d}",
                        "name": "exec_command", "arguments": json.dumps({"cmd": _codex_command(block)})}
            else:
                item = {"type": "custom_tool_call", "id": f"ctc_{item_id:06d}", "call_id": f"call_{item_id:06d}",
                        "name": "exec", "input": _codex_exec(block)}
            yield "response.output_item.done", {"type": "response.output_item.done", "item": item}
        yield "response.completed", {"type": "response.completed", "response": {"id": response_id, "usage": {
            "input_tokens": usage["input_tokens"], "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": usage["output_tokens"], "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage["input_tokens"] + usage["output_tokens"]}}}

    @contextmanager
    def running(self) -> Iterator["ModelServer"]:
        thread = threading.Thread(target=self.server.serve_forever, name="model-server", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            with self.lock:
                gates = [t.gate for t in self.turns if t.gate is not None]
            for gate in gates:
                gate.set()
            self.server.shutdown()
            self.server.server_close()


def _tokens(text: str) -> int:
    """A deterministic stand-in for a token count: one per four characters, at least one."""
    return max(1, len(text) // 4)


def _claude_tool(block: Block) -> tuple[str, dict[str, Any]]:
    if isinstance(block, Shell):
        return "Bash", {"command": block.command, "description": "run a command"}
    if isinstance(block, WriteFile):
        return "Write", {"file_path": block.path, "content": block.content}
    assert isinstance(block, Tool)
    return block.name, block.input


def _codex_command(block: Shell | WriteFile) -> str:
    """The shell command for a block (a file is written with a here-document)."""
    return block.command if isinstance(block, Shell) else \
        f"cat > {json.dumps(block.path)} <<'SWARM_EOF'\n{block.content}\nSWARM_EOF"


def _codex_exec(block: Shell | WriteFile) -> str:
    """`codex exec` (0.171) runs commands through its `exec` tool: JavaScript that calls `tools.exec_command`."""
    return f"const r = await tools.exec_command({{cmd: {json.dumps(_codex_command(block))}}});\ntext(r.output);\n"


def _structured(body: dict[str, Any]) -> bool:
    """Whether a Responses request asks for an answer in a JSON schema (codex 0.171's TUI titles each task so,
    in a thread of its own); the agent's own turns never do."""
    text = body.get("text")
    return isinstance(text, dict) and isinstance(text.get("format"), dict) and \
        text["format"].get("type") == "json_schema"


def _offers_function(body: dict[str, Any], name: str) -> bool:
    """Whether the request offers the model a function tool `name` (the codex 0.171 TUI offers `exec_command`
    itself; `codex exec` offers it only inside its `exec` tool)."""
    return any(tool.get("type") == "function" and tool.get("name") == name for tool in body.get("tools") or [])


@pytest.fixture
def model_server() -> Iterator[ModelServer]:
    """A scripted model on 127.0.0.1 for this test; its errors (a script that did not fit) fail the test."""
    server = ModelServer()
    with server.running():
        yield server
    assert not server.errors, server.errors
