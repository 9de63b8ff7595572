"""Text files written on other systems read the same as ours: a UTF-8 byte order mark is dropped and CRLF
(or a lone CR) line ends are LF, in plans, wave files and their specs, swarm.toml, body files, mail files and
the files content checks read."""

import json
from pathlib import Path

import pytest

from agentmail import PostOffice
from standins import StandIns
from conftest import run_cli
from protocol import parse_message
from protocol.task import Check, Task, TaskStatus, ValidationSpec
from swarmd.home import SwarmHome
from swarmd.plans.plan import load_plan, load_wave
from swarmd.supervisor.validation import run_checks
from swarmkit import init_home, statuses

BOM = "\ufeff"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def windows(text: str) -> bytes:
    """`text` as a Windows editor saves it: a BOM, then CRLF line ends."""
    return (BOM + text.replace("\n", "\r\n")).encode("utf-8")


def comparable(tasks: list[Task]) -> list[dict]:
    return [t.model_dump(exclude={"created", "updated", "workdir"}) for t in tasks]  # workdir: the plan's own directory


@pytest.mark.parametrize("example", ["plan.toml", "plan.json"])
def test_plan_with_a_bom_and_crlf_loads_like_the_plain_file(tmp_path: Path, example: str) -> None:
    plain = EXAMPLES / example
    foreign = tmp_path / example
    foreign.write_bytes(windows(plain.read_text()))
    assert comparable(load_plan(foreign).tasks) == comparable(load_plan(plain).tasks)


@pytest.mark.parametrize("ending", ["\r\n", "\r"])
def test_wave_with_a_bom_and_spec_with_crlf_or_cr_read_as_lf(tmp_path: Path, ending: str) -> None:
    (tmp_path / "spec.md").write_bytes(windows("line one\nline two\n").replace(b"\r\n", ending.encode()))
    wave = tmp_path / "wave.json"
    wave.write_bytes(windows(json.dumps({"wave": [{"id": "w1", "title": "one", "spec_path": "spec.md"}]})))
    (task,) = load_wave(wave).tasks
    assert task.description == "line one\nline two\n"


def test_swarm_toml_with_a_bom_works_for_every_command(swarm_home: SwarmHome, tmp_path: Path) -> None:
    init_home(swarm_home)
    config = swarm_home.config_file
    config.write_bytes(windows(config.read_text() + '[profiles.custom]\ncommand = "{python} -m swarmd.worker --script"\n'))
    home = ["--home", str(swarm_home.root)]
    commands = [
        ["init"], ["task", "add", "first", "--id", "t-1"], ["task", "note", "t-1", "a note"], ["task", "show", "t-1"],
        ["task", "update", "t-1", "--priority", "2"], ["board", "--json"], ["feed", "--json"], ["stats", "--json"],
        ["registry", "list", "--json"], ["status", "--json"], ["up"], ["status", "--json"], ["down"],
    ]
    for command in commands:
        result = run_cli("swarm", *command, *home)
        assert result.returncode == 0, (command, result.stderr)


def test_body_file_with_a_bom_and_crlf_is_read(home_dir: Path, tmp_path: Path) -> None:
    PostOffice(home_dir).register("w1")
    body = tmp_path / "body.json"
    body.write_bytes(windows(json.dumps({"summary": "all done", "files": ["a.py"]}, indent=2)))
    sent = run_cli("agentmail", "send", "--home", str(home_dir), "--from", "w1", "--to", "w1", "--type", "DONE",
                   "--task", "t-1", "--body-file", str(body), "--json")
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["body"]["summary"] == "all done"


def test_mail_file_with_a_bom_is_read(home_dir: Path) -> None:
    message = PostOffice(home_dir, durable=False).register("w1") and parse_message(
        '{"from": "sup", "to": ["w1"], "type": "STEER", "body": {"text": "hi"}}')
    box = PostOffice(home_dir).mailbox("w1")
    (box.path / "new" / f"000000000001-{message.id}.json").write_bytes(windows(message.to_json()))
    assert [d.message.id for d in box.list()] == [message.id] and box.bad() == []


def test_content_check_reads_a_crlf_file_as_lf(tmp_path: Path) -> None:
    (tmp_path / "out.txt").write_bytes(windows("started\nfinished\n"))
    check = Check(kind="content_check", path="out.txt", pattern="(?m)^finished$")
    report = run_checks(ValidationSpec(checks=[check]), workdir=tmp_path)
    assert report.passed, report


def test_crlf_wave_spec_runs_the_script_it_holds(swarm_home: SwarmHome, tmp_path: Path) -> None:
    """A spec saved with CRLF used to run `mkdir out\\r` and `exit 0\\r`: the work went to a directory named
    `out\\r` (or nowhere) whatever the verdict. It must run the script as written."""
    init_home(swarm_home)
    out = tmp_path / "out"
    (tmp_path / "build.sh").write_bytes(windows(f"mkdir -p {out}\nprintf built > {out}/result\nexit 0\n"))
    wave = tmp_path / "wave.json"
    wave.write_text(json.dumps({"wave": [{"id": "build", "title": "build it", "spec_path": "build.sh"}]}))
    ol = StandIns(tmp_path / "bin", names=("ol",))  # --from-wave needs OL on PATH; its ratchet passes
    result = run_cli("swarm", "run", "--from-wave", str(wave), "--home", str(swarm_home.root), "--wait",
                     "--timeout", "60s", env=ol.env(), timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    assert statuses(swarm_home) == {"build": TaskStatus.DONE}
    assert (out / "result").read_text() == "built"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "build.sh", "home", "out", "wave.json"]
