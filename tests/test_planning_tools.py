"""The planning tools of the agentops swarm skill, end to end with real tmux and script workers: OL waves
(`--from-wave`, `ol hero ratchet` after validation) and beads (`--beads`, `--bead-ids`, a bead's status
following its task). `ol` and `bd` are stand-ins on PATH that record their calls (tests/standins.py)."""

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import run_cli
from protocol.event import EventType
from protocol.task import AttemptOutcome, TaskStatus
from standins import StandIns, issue, path_without
from swarmd.supervisor.daemon import running_pid
from swarmd.home import SwarmHome
from swarmd.integrations.bead_sync import BeadFollower
from swarmd.integrations.beads import Bead, bead_task
from swarmd.integrations.ol import quest_id
from swarmd.ledger.log import Ledger
from swarmkit import init_home, wait_until

OL_REQUIRED = "Error: ol CLI required for --from-wave. Install ol or use swarm without wave integration."


def write_wave(tmp_path: Path, beads: dict[str, str]) -> Path:
    """A wave file of OL hero-hunt output; each bead's spec (a script, for the script profile) in specs/."""
    (tmp_path / "specs").mkdir()
    wave = []
    for priority, (bead, script) in enumerate(beads.items(), start=1):
        (tmp_path / "specs" / f"{bead}.md").write_text(script)
        wave.append({"id": bead, "title": f"Bead {bead}", "spec_path": f"specs/{bead}.md", "priority": priority})
    path = tmp_path / "wave.json"
    path.write_text(json.dumps({"wave": wave, "blocked": [], "completed": []}))
    return path


def swarm_run(home: SwarmHome, tools: StandIns, *args: str) -> tuple[int, str, str]:
    result = run_cli("swarm", "run", *args, "--home", str(home.root), "--wait", "--timeout", "90s",
                     env={**tools.env(), "COLUMNS": "200"}, timeout=120)
    return result.returncode, result.stdout, result.stderr


def test_wave_tasks_are_ratcheted_in_ol_after_validation(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home)
    tools = StandIns(tmp_path / "bin", names=("ol",))
    wave = write_wave(tmp_path, {"ol-527.1": "echo one > one.txt", "ol-527.2": "echo two > two.txt"})
    code, out, err = swarm_run(swarm_home, tools, "--from-wave", str(wave))
    assert code == 0, out + err
    assert sorted(tools.calls("ol")) == [["ol", "hero", "ratchet", "ol-527.1", "--quest", "ol-527"],
                                         ["ol", "hero", "ratchet", "ol-527.2", "--quest", "ol-527"]]
    board = Ledger(swarm_home).board()
    for bead in ("ol-527.1", "ol-527.2"):
        task = board[bead]
        assert task.status == TaskStatus.DONE
        assert task.metadata | {"ol_ratchet": None} == {"ol_bead_id": bead, "ol_spec_path": f"specs/{bead}.md",
                                                        "ol_priority": int(bead[-1]), "ol_ratchet": None}
        assert task.metadata["ol_ratchet"]["passed"] is True
    table = out[out.index("OL ratchet"):]
    assert [line.split()[1:4] for line in table.splitlines() if "ol-527." in line] == [
        ["ol-527.1", "│", "ol-527"], ["ol-527.2", "│", "ol-527"]] and table.count("complete") == 2, out


def test_a_failed_ratchet_is_a_failed_attempt_with_its_stderr(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home)
    swarm_home.config_file.write_text(swarm_home.config_file.read_text() + "max_attempts = 2\n")
    refusal = {"exit": 1, "stderr": "ratchet: ol-9.1 acceptance criteria not met: tests/test_auth.py missing\n"}
    tools = StandIns(tmp_path / "bin", names=("ol",),
                     ratchet={"ol-9.1": [refusal], "ol-9.2": [refusal, refusal]})
    wave = write_wave(tmp_path, {"ol-9.1": "true", "ol-9.2": "true"})
    code, out, err = swarm_run(swarm_home, tools, "--from-wave", str(wave))
    assert code == 1, out + err  # ol-9.2 never passed its ratchet
    board = Ledger(swarm_home).board()
    retried, blocked = board["ol-9.1"], board["ol-9.2"]
    assert retried.status == TaskStatus.DONE and blocked.status == TaskStatus.BLOCKED, \
        (retried.attempts, blocked.attempts)  # seen once with both cores busy, not since: keep the reasons
    first = retried.attempts[0]
    assert first.outcome == AttemptOutcome.FAILED and refusal["stderr"].strip() in first.reason
    assert [a.outcome for a in blocked.attempts] == [AttemptOutcome.FAILED, AttemptOutcome.FAILED]
    assert tools.calls("ol").count(["ol", "hero", "ratchet", "ol-9.1", "--quest", "ol-9"]) == 2
    assert blocked.metadata["ol_ratchet"] | {"stderr": ""} == {"bead": "ol-9.2", "quest": "ol-9", "attempt": 2,
                                                               "exit": 1, "passed": False, "stderr": ""}
    table = out[out.index("OL ratchet"):]
    assert "failed (exit 1)" in table and "acceptance criteria not met" in table and "complete" in table, out


def test_from_wave_without_ol_on_path_exits_1_with_the_contract_message(swarm_home: SwarmHome,
                                                                        tmp_path: Path) -> None:
    wave = write_wave(tmp_path, {"ol-1.1": "true"})
    result = run_cli("swarm", "run", "--from-wave", str(wave), "--home", str(swarm_home.root),
                     env={"PATH": path_without("ol")})
    assert (result.returncode, result.stderr, result.stdout) == (1, OL_REQUIRED + "\n", "")
    assert not swarm_home.root.exists(), "nothing was loaded, no home made"


def test_beads_follow_their_tasks_open_in_progress_closed(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home)
    flaky = "test -f flaky.seen || { touch flaky.seen; exit 1; }"  # fails its first attempt, passes its second
    dies = "test -f dies.seen || { touch dies.seen; kill -KILL $PPID; }"  # its first worker dies without a word
    tools = StandIns(tmp_path / "bin", names=("bd",), beads=[
        issue("bd-a1", "Steady", "true", priority=1), issue("bd-b2", "Flaky", flaky, priority=2),
        issue("bd-c3", "Dies once", dies, priority=2), issue("bd-d4", "Fourth ready bead", "true", priority=3)])
    code, out, err = swarm_run(swarm_home, tools, "--beads", "--max-workers", "3")
    assert code == 0, out + err
    board = Ledger(swarm_home).board()
    assert sorted(board) == ["bd-a1", "bd-b2", "bd-c3"], "at most --max-workers ready beads"
    assert "without reporting" in board["bd-c3"].attempts[0].reason
    calls = tools.calls("bd")
    assert calls[0] == ["bd", "ready", "--json"]
    assert [c for c in calls if "bd-a1" in c] == [["bd", "update", "bd-a1", "--status", "in_progress"],
                                                  ["bd", "close", "bd-a1"]]
    for retried in ("bd-b2", "bd-c3"):
        assert [c for c in calls if retried in c] == [["bd", "update", retried, "--status", "in_progress"],
                                                      ["bd", "update", retried, "--status", "open"],
                                                      ["bd", "update", retried, "--status", "in_progress"],
                                                      ["bd", "close", retried]]
    assert [tools.bead_status(b) for b in ("bd-a1", "bd-b2", "bd-c3", "bd-d4")] == ["closed"] * 3 + ["open"]


def test_bead_ids_name_the_beads_to_run(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home)
    tools = StandIns(tmp_path / "bin", names=("bd",), beads=[
        issue("bd-a1", "First", "true"), issue("bd-b2", "Second", "true"), issue("bd-c3", "Third", "true")])
    code, out, err = swarm_run(swarm_home, tools, "--bead-ids", "bd-c3,bd-a1")
    assert code == 0, out + err
    assert sorted(Ledger(swarm_home).board()) == ["bd-a1", "bd-c3"]
    assert ["bd", "ready", "--json"] not in tools.calls("bd")
    assert [tools.bead_status(b) for b in ("bd-a1", "bd-b2", "bd-c3")] == ["closed", "open", "closed"]


def test_bead_ids_that_could_escape_a_path_are_refused_before_bd_runs(swarm_home: SwarmHome,
                                                                     tmp_path: Path) -> None:
    tools = StandIns(tmp_path / "bin", names=("bd",), beads=[])
    result = run_cli("swarm", "run", "--bead-ids", "bd-1,../x", "--home", str(swarm_home.root), env=tools.env())
    assert result.returncode == 2 and "invalid task id" in result.stderr and result.stderr.count("\n") == 1
    assert tools.calls() == []


def test_the_bead_follower_neither_misses_nor_repeats_a_change_across_a_restart(
        swarm_home: SwarmHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Driven from the ledger: a new follower (a restarted supervisor) applies only what was not applied,
    and an intent cut short by a crash is checked with `bd show` before it is repeated."""
    tools = StandIns(tmp_path / "bin", names=("bd",), beads=[issue("bd-a1", "A", "x"), issue("bd-b2", "B", "x")])
    monkeypatch.setenv("PATH", tools.env()["PATH"])
    ledger = Ledger(swarm_home)
    ledger.add_tasks([bead_task(Bead(id=b, title=b), tmp_path) for b in ("bd-a1", "bd-b2")], "operator")
    ledger.transition("bd-a1", TaskStatus.IN_PROGRESS, "operator")
    BeadFollower(ledger).sync()
    assert tools.calls() == [["bd", "update", "bd-a1", "--status", "in_progress"]]
    ledger.transition("bd-a1", TaskStatus.OPEN, "operator")
    ledger.transition("bd-a1", TaskStatus.IN_PROGRESS, "operator")
    BeadFollower(ledger).sync()  # a new follower replays the ledger and applies the two changes it has not
    assert tools.calls()[1:] == [["bd", "update", "bd-a1", "--status", "open"],
                                 ["bd", "update", "bd-a1", "--status", "in_progress"]]

    # The supervisor died after bd made a change and before the follower recorded it as applied.
    ledger.transition("bd-b2", TaskStatus.IN_PROGRESS, "operator")
    ledger.append(EventType.CUSTOM, "supervisor", "bd-b2", summary="bead bd-b2: setting in_progress",
                  kind="bead_status", phase="intent", bead="bd-b2", to="in_progress", cause=ledger.last_seq(),
                  cwd=str(tmp_path))
    subprocess.run(["bd", "update", "bd-b2", "--status", "in_progress"], check=True)
    seen = len(tools.calls())
    BeadFollower(ledger).sync()
    assert tools.calls()[seen:] == [["bd", "show", "bd-b2", "--json"]], "checked, not repeated"
    BeadFollower(ledger).sync()
    assert tools.calls()[seen + 1:] == [], "recorded as applied: nothing left to do"
    ledger.transition("bd-b2", TaskStatus.DONE, "operator")
    BeadFollower(ledger).sync()
    assert tools.calls()[seen + 1:] == [["bd", "close", "bd-b2"]]


def test_a_restarted_supervisor_does_not_repeat_bead_changes(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home)
    gate = tmp_path / "gate.fifo"
    os.mkfifo(gate)
    tools = StandIns(tmp_path / "bin", names=("bd",), beads=[issue("bd-g1", "Gated", f"read line < {gate}")])
    home = str(swarm_home.root)
    assert run_cli("swarm", "run", "--beads", "--home", home, env=tools.env()).returncode == 0
    started = ["bd", "update", "bd-g1", "--status", "in_progress"]
    wait_until(lambda: any(e.detail.get("phase") == "applied" for e in Ledger(swarm_home).events(types=["custom"])),
               timeout=30, what="the bead's in_progress to be recorded")
    os.kill(running_pid(swarm_home) or 0, signal.SIGKILL)
    wait_until(lambda: running_pid(swarm_home) is None, timeout=10, what="the supervisor to be gone")
    assert run_cli("swarm", "up", "--home", home, env=tools.env()).returncode == 0
    with open(gate, "w") as release:  # the worker, adopted by the new supervisor, may finish now
        release.write("go\n")
    closed = ["bd", "close", "bd-g1"]
    wait_until(lambda: closed in tools.calls(), timeout=30, what="the bead to be closed")
    assert run_cli("swarm", "down", "--teardown", "--home", home, env=tools.env()).returncode == 0
    assert [c for c in tools.calls() if "bd-g1" in c] == [started, closed]


@pytest.mark.parametrize(("bead", "quest"), [("ol-527.1", "ol-527"), ("ol-527.1.2", "ol-527.1"),
                                             ("auth-login", "auth-login")])
def test_the_quest_is_the_bead_id_without_its_last_part(bead: str, quest: str) -> None:
    assert quest_id(bead) == quest  # as the skill's `sed 's/\.[^.]*$//'`


def test_a_bead_bd_does_not_know_is_one_line_and_exit_2(swarm_home: SwarmHome, tmp_path: Path) -> None:
    tools = StandIns(tmp_path / "bin", names=("bd",), beads=[issue("bd-a1", "A", "true")])
    result = run_cli("swarm", "run", "--bead-ids", "bd-zz", "--home", str(swarm_home.root), env=tools.env())
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "bd show bd-zz --json` exit 1: Error: no issue found matching 'bd-zz'" in result.stderr
    assert not swarm_home.root.exists()
