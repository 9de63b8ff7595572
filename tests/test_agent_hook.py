"""The hook process a worker's Claude Code runs (`python -m swarmd.agents.hook claude AGENT_DIR`), run as Claude
Code runs it: the event's JSON on stdin. Claude Code may run its Stop hook before it writes the turn's answer into
the transcript (anthropics/claude-code#15812); the answer's usage must still reach the supervisor, and a late
report must never overtake a newer one."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agentmail import PostOffice
from conftest import pids_mentioning
from swarmd.agents.base import CONTEXT_FILE
from swarmkit import wait_until


def _line(entry: dict[str, Any]) -> str:
    return json.dumps(entry, separators=(",", ":")) + "\n"  # compact, as Claude Code writes its transcript


def _user(text: str) -> str:
    return _line({"type": "user", "message": {"role": "user", "content": text}})


def _answer(message_id: str, tokens_in: int, tokens_out: int) -> str:
    return _line({"type": "assistant", "message": {
        "id": message_id, "role": "assistant", "content": [{"type": "text", "text": "Done."}],
        "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out}}})


class Agent:
    """A worker's agent directory, its transcript, and the hook run on it as Claude Code runs it."""

    def __init__(self, root: Path) -> None:
        self.home = root / "home"
        self.dir = root / "agent"
        self.dir.mkdir(parents=True)
        self.transcript = root / "session.jsonl"
        (self.dir / CONTEXT_FILE).write_text(json.dumps({
            "cli": "claude", "home": str(self.home), "agent": "w1", "task": "t1", "prefixes": [], "exact": []}))

    def hook(self, event: str) -> None:
        payload = {"hook_event_name": event, "session_id": "s1", "transcript_path": str(self.transcript)}
        done = subprocess.run([sys.executable, "-m", "swarmd.agents.hook", "claude", str(self.dir)],
                              input=json.dumps(payload), capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and not (self.dir / "hook-errors.log").exists(), done.stderr

    def reports(self) -> list[tuple[str, int]]:
        """The AGENT_STATE mail sent to the supervisor so far: (state, input tokens) each, in order."""
        mail = PostOffice(self.home, strict=False).mailbox("supervisor").list()
        return [(d.message.body.state, int(d.message.body.usage.get("input_tokens", 0))) for d in mail]

    def hooks_running(self) -> bool:
        """Whether a hook process of this agent (a child left to report late) is still alive."""
        return bool(pids_mentioning(str(self.dir)))


def _tool_call(message_id: str) -> str:
    return _line({"type": "assistant", "message": {
        "id": message_id, "role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash"}],
        "usage": {"input_tokens": 100, "output_tokens": 1}}})


def _tool_result() -> str:
    return _line({"type": "user", "message": {"role": "user", "content": [{"type": "tool_result",
                                                                              "tool_use_id": "t1"}]}})


@pytest.mark.parametrize("written", ["nothing", "the prompt", "a tool's call and result"])
def test_a_stops_usage_written_after_its_hook_still_reaches_the_supervisor(tmp_path: Path, written: str) -> None:
    agent = Agent(tmp_path)
    agent.transcript.write_text(_user("Say hello.") + _answer("msg_1", 10, 5))
    agent.hook("UserPromptSubmit")  # the next prompt; of its turn, Claude Code has written `written` by its Stop
    turn = {"nothing": [], "the prompt": [_user("Also say bye.")],
            "a tool's call and result": [_user("Also say bye."), _tool_call("msg_2"), _tool_result()]}[written]
    with agent.transcript.open("a") as f:
        f.writelines(turn)
    agent.hook("Stop")  # returns at once: Claude Code waits for its Stop hooks (and for their pipes to close)
    so_far = 10 + 100 * (len(turn) == 3)
    assert agent.reports() == [("working", 0), ("idle", so_far)]  # idle at once, with the usage written so far
    with agent.transcript.open("a") as f:
        f.writelines([] if turn else [_user("Also say bye.")])
        f.write(_answer("msg_3", 7, 3))
    wait_until(lambda: len(agent.reports()) == 3, 60, "the usage of the turn's answer")
    assert agent.reports() == [("working", 0), ("idle", so_far), ("idle", so_far + 7)]
    wait_until(lambda: not agent.hooks_running(), 60, "the hook's child to end")


def test_a_late_usage_never_overtakes_a_newer_state(tmp_path: Path) -> None:
    agent = Agent(tmp_path)
    agent.hook("UserPromptSubmit")
    agent.transcript.write_text(_user("Say hello."))
    agent.hook("Stop")
    agent.hook("UserPromptSubmit")  # the next prompt, before the first one's answer was written
    with agent.transcript.open("a") as f:
        f.write(_answer("msg_1", 10, 5))
    wait_until(lambda: not agent.hooks_running(), 60, "the hook's child to end")
    assert agent.reports() == [("working", 0), ("idle", 0), ("working", 0)]


def test_a_stop_whose_answer_is_written_reports_once(tmp_path: Path) -> None:
    agent = Agent(tmp_path)
    agent.hook("UserPromptSubmit")
    agent.transcript.write_text(_user("Say hello.") + _answer("msg_1", 10, 5))
    agent.hook("Stop")
    assert agent.reports() == [("working", 0), ("idle", 10)] and not agent.hooks_running()
