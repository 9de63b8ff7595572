"""Usage limits with the real Claude Code TUI (2.1.332) in tmux against the scripted model: the model's first
answer is a 429 whose limit resets a few seconds ahead; the worker is paused (not failed: its attempt's timeout
and stale checks do not count the pause), the registry and the feed say until when, and at the reset it is
given a "continue" prompt, goes on, reports DONE and its task validates."""

from pathlib import Path

from modelserver import ModelServer, RateLimit, Text, WriteFile, from_prompt
from rich.console import Console

from protocol.event import EventType
from protocol.task import AttemptOutcome, TaskStatus
from swarmd.cli.view import status_view
from swarmd.home import SwarmHome
from swarmd.operate import Operator
from swarmkit import events, wait_until
from test_interactive_agents import REPORT, swarm_running


def test_rate_limited_worker_is_paused_then_continued_at_the_reset(
        agent_clis: dict[str, Path], model_server: ModelServer, swarm_home: SwarmHome, tmp_path: Path) -> None:
    project = swarm_home.root.parent
    model_server.script(RateLimit(resets_in=8),
                        [WriteFile(str(project / "out.txt"), "made after the limit\n")],
                        [from_prompt(REPORT.format(kind="DONE"))],
                        [Text("All done.")])
    task = {"description": "Write out.txt.\n\nIt says: made after the limit.\n\nThen report DONE.",
            "max_attempts": 1,
            "validation": {"checks": [{"kind": "content_check", "path": "out.txt", "pattern": "made after"}]}}
    with swarm_running(swarm_home, tmp_path, model_server, task) as ledger:
        operator = Operator(swarm_home)

        def paused_report() -> dict | None:
            report = operator.status()
            return report if any(w.paused_until for w in report["workers"]) else None
        report = wait_until(paused_report, 60, "`swarm status` to show the worker paused")
        shown = report["workers"][0]
        assert shown.agent_state == "rate_limited"
        console = Console(width=250, record=True)
        console.print(status_view(report))
        assert f"rate_limited until {shown.paused_until[11:19]} UTC" in console.export_text()
        wait_until(lambda: ledger.task("job").status == TaskStatus.DONE, 120, "the task to be validated")
        worker = ledger.task("job").attempts[-1].worker
    summaries = [e.summary for e in events(swarm_home) if e.agent == "supervisor"]
    pauses = [s for s in summaries if f"{worker} paused until" in s]
    assert pauses, summaries
    resumed = [r for r in model_server.scripted() if "[resume from supervisor]" in r.text()]
    assert resumed and "continue" in resumed[0].text().lower()
    assert [a.outcome for a in ledger.task("job").attempts] == [AttemptOutcome.DONE], "one attempt, not failed"
    assert not any("no reset time given" in s for s in pauses), "the pause lasts until the notice's reset time"
    updates = [e.detail["fields"]["metadata"] for e in events(swarm_home)
               if e.type == EventType.AGENT_UPDATED and e.detail.get("name") == worker
               and "paused_until" in e.detail["fields"].get("metadata", {})]
    assert any(m["paused_until"] for m in updates), "the registry says until when it is paused"
