"""Worktrees on worker hosts: a remote attempt works in a worktree of the host's own repository, made from a base
bundle the supervisor put in the swarm's JetStream object store; its branch comes home as a bundle when it reports
DONE, is validated on the supervisor's machine and lands through the merge queue. A real git repository, a real
nats-server, a host agent on loopback."""

import json
import subprocess
from pathlib import Path

import pytest

from conftest import run_cli
from gitkit import git, isolate_git, make_repo
from hostkit import HostedSwarm, loopback  # noqa: F401 - the fixture
from natskit import NatsServer, nats_server  # noqa: F401 - the fixture
from protocol.event import EventType
from protocol.messages import MessageType, make_message
from protocol.task import TaskStatus
from swarmd.git.repo import Git
from swarmd.git.settings import GitSettings
from swarmd.git.worktrees import create_attempt
from swarmd.home import SwarmHome
from swarmd.hosts.bundles import BundleError, bundle_branch, fast_forward, object_store, put_file
from swarmd.hosts.client import HostsClient
from swarmd.hosts.link import NatsLink
from swarmd.hosts.settings import HostsLink
from swarmd.hosts.wire import HostEvent, TreeOrder
from swarmd.ledger.log import Ledger
from swarmd.supervisor.loop import Supervisor
from swarmd.supervisor.state import WorkerState
from swarmkit import init_home, wait_until

INTEGRATION = "swarm/demo/_integration"
GATE = "while [ ! -e {gate} ]; do sleep 0.05; done; "


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    isolate_git(monkeypatch, tmp_path)
    return make_repo(tmp_path / "repo", {"README": "hello\n", "lib.txt": "header\n"})


def start_plan(swarm: HostedSwarm, tasks: list[dict]) -> Ledger:
    swarm.config(max_workers=1, local_workers=False)
    swarm.join("h1", slots=1)
    plan = swarm.root / "demo.json"
    plan.write_text(json.dumps({"defaults": {"workdir": "repo", "max_attempts": 1}, "tasks": tasks}))
    result = run_cli("swarm", "run", str(plan), "--home", str(swarm.home.root))
    assert result.returncode == 0, result.stdout + result.stderr
    return Ledger(swarm.home)


CHECKPOINT_THEN_DONE = (
    'if [ "$SWARM_ATTEMPT" = 1 ]; then echo one > one.txt && git add one.txt && git commit -qm one && '
    'agentmail send --from "$SWARM_AGENT" --to supervisor --type CHECKPOINT --task "$SWARM_TASK" '
    '--field next_steps=two; else test -f one.txt && echo two > two.txt && git add two.txt && git commit -qm two; fi')


def test_a_remote_attempts_commit_lands_through_the_merge_queue(loopback: HostedSwarm, repo: Path) -> None:
    gate = loopback.root / "gate"
    main = git(repo, "rev-parse", "main")
    ledger = start_plan(loopback, [{
        "id": "job", "title": "job",
        "description": GATE.format(gate=gate) + "echo 'from h1' >> lib.txt && git commit -qam 'job: lib on h1'",
        "validation": {"checks": [{"kind": "content_check", "path": "lib.txt", "pattern": "from h1"}]}},
        {"id": "next", "title": "next", "blocked_by": ["job"],  # its base is the merged job: sent incrementally
         "description": "grep -q 'from h1' lib.txt && echo next > next.txt && git add next.txt && git commit -qm next",
         "validation": {"checks": [{"kind": "files_exist", "paths": ["next.txt"]}]}},
        {"id": "resume", "title": "resume", "description": CHECKPOINT_THEN_DONE,  # its successor goes on from there
         "validation": {"checks": [{"kind": "files_exist", "paths": ["one.txt", "two.txt"]}]}}])
    host_tree = loopback.host_home("h1") / "worktrees" / "demo" / "job-a1"
    wait_until(lambda: ledger.task("job").status == TaskStatus.IN_PROGRESS and (host_tree / "lib.txt").exists(), 60,
               "the job to run on h1 in a worktree of its own")
    # the worker runs in the host's worktree, on the attempt's branch, at the supervisor's base
    assert git(host_tree, "rev-parse", "--abbrev-ref", "HEAD") == "swarm/demo/job"
    assert git(host_tree, "rev-parse", "HEAD") == git(repo, "rev-parse", "main")
    assert Path(git(host_tree, "rev-parse", "--git-common-dir")).resolve() == (loopback.host_home("h1") / "repo")
    gate.touch()

    wait_until(lambda: all(t.status in (TaskStatus.DONE, TaskStatus.BLOCKED) for t in ledger.board().values()), 90,
               "the tasks to end")
    for task in ledger.board().values():
        assert task.status == TaskStatus.DONE, [e.summary for e in ledger.events(task=task.id)]
    assert len(ledger.task("resume").attempts) == 2  # a CHECKPOINT, then a DONE from where it left off
    landed = [e for e in ledger.events(types=[EventType.TASK_COMPLETED.value]) if e.task == "job"]
    assert landed[0].detail["merge"]["integration"] == INTEGRATION
    # the supervisor's repository has the worker's commit (made on h1), and the queue landed it
    commit = landed[0].detail["merge"]["commit"]
    worker = landed[0].detail["worker"]
    assert git(repo, "log", "-1", "--format=%s %ae", commit) == f"job: lib on h1 {worker}@t.swarm.invalid"
    assert git(repo, "show", f"{INTEGRATION}:lib.txt") == "header\nfrom h1"
    assert [git(repo, "show", f"{INTEGRATION}:{name}") for name in ("next.txt", "one.txt", "two.txt")] == [
        "next", "one", "two"]
    assert git(repo, "rev-parse", "main") == main  # the user's branch: as it was
    # the first base went whole; the later ones less the bases the host holds
    sent = [e.detail for e in ledger.events(types=[EventType.CUSTOM.value]) if e.detail.get("kind") == "base_sent"]
    assert sent[0]["left_out"] == 0 and sent[0]["bundle"], sent
    assert all(d["left_out"] >= 1 for d in sent if d["base"] != main), sent
    # the attempts are over: the host's worktrees go, and their branches (their work is home)
    wait_until(lambda: not host_tree.exists(), 30, "the host to remove the attempt's worktree")
    host_repo = loopback.host_home("h1") / "repo"
    wait_until(lambda: git(host_repo, "branch", "--list", "swarm/demo/job", "swarm/demo/next",
                           "swarm/demo/resume-a2") == "", 30, "the host's attempt branches to go")
    wait_until(lambda: stored_bundles(loopback.url) == [], 30, "the bundles to be deleted from the bucket")


def stored_bundles(url: str) -> list[str]:
    """The names of the objects in swarm t's bundle bucket (not deleted)."""
    from nats.js.errors import NotFoundError

    async def names(js) -> list[str]:
        try:
            return [o.name for o in await (await object_store(js, "t")).list(ignore_deletes=True)]
        except NotFoundError:
            return []

    link = NatsLink(url, name="test").start()
    try:
        wait_until(lambda: link.connected, 30, "the test's link to be up")
        return link.run(names(link.js))
    finally:
        link.close()


def test_a_branch_that_left_its_base_fails_the_attempt_with_the_reason(loopback: HostedSwarm, repo: Path) -> None:
    orphan = "git reset -q --hard $(git commit-tree -m foreign $(git mktree </dev/null))"
    ledger = start_plan(loopback, [{"id": "job", "title": "job", "description": orphan}])
    wait_until(lambda: ledger.task("job").status in (TaskStatus.DONE, TaskStatus.BLOCKED), 60, "the job to end")
    task = ledger.task("job")
    assert task.status == TaskStatus.BLOCKED
    reason = task.attempts[-1].reason or ""
    assert "could not be brought home" in reason and "does not descend from its base" in reason, reason
    assert git(repo, "rev-parse", f"{INTEGRATION}") == git(repo, "rev-parse", "main")  # nothing landed
    # the host's worktree goes with the attempt; its branch, whose work never came home, stays there
    wait_until(lambda: not (loopback.host_home("h1") / "worktrees" / "demo" / "job-a1").exists(), 30,
               "the host to remove the attempt's worktree")
    assert git(loopback.host_home("h1") / "repo", "log", "-1", "--format=%s", "swarm/demo/job") == "foreign"


def tree_at_base(tmp_path: Path, repo: Path):
    home = SwarmHome(tmp_path / "home")
    return create_attempt(home, repo, repo, plan="demo", task="t", attempt=1, settings=GitSettings())


def test_a_corrupt_or_foreign_bundle_is_refused_with_its_reason(tmp_path: Path, repo: Path) -> None:
    tree = tree_at_base(tmp_path, repo)
    junk = tmp_path / "junk.bundle"
    junk.write_bytes(b"# v2 git bundle\nnot a bundle at all\n")
    with pytest.raises(BundleError, match="does not apply"):
        fast_forward(tree, junk, "0" * 40)
    # a bundle of another repository, made on a commit this one lacks
    other = make_repo(tmp_path / "other", {"x": "1\n"})
    (other / "x").write_text("2\n")
    git(other, "commit", "-qam", "two")
    foreign = tmp_path / "foreign.bundle"
    assert bundle_branch(Git(other), "refs/heads/main", [git(other, "rev-parse", "HEAD^")], foreign)
    with pytest.raises(BundleError, match="does not apply.*(lacks|prerequisite)"):
        fast_forward(tree, foreign, git(other, "rev-parse", "HEAD"))
    git(repo, "tag", "v1")  # a bundle of anything but one branch
    tagged = tmp_path / "tag.bundle"
    assert bundle_branch(Git(repo), "refs/tags/v1", [], tagged)
    with pytest.raises(BundleError, match="not a branch"):
        fast_forward(tree, tagged, tree.base)
    assert git(Path(tree.path), "rev-parse", "HEAD") == tree.base  # the attempt's worktree did not move


def test_a_base_the_host_holds_is_not_sent_again(tmp_path: Path, repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD")
    assert not bundle_branch(Git(repo), "refs/heads/main", [base], tmp_path / "b.bundle")
    (repo / "README").write_text("changed\n")
    git(repo, "commit", "-qam", "two")
    assert bundle_branch(Git(repo), "refs/heads/main", [base, "1" * 40], tmp_path / "b.bundle")  # one unheld
    heads = subprocess.run(["git", "-C", str(repo), "bundle", "verify", str(tmp_path / "b.bundle")],
                           capture_output=True, text=True)
    assert base in heads.stdout + heads.stderr  # incremental: the base is a prerequisite, not carried


def supervisor_on(home: SwarmHome, server: NatsServer) -> Supervisor:
    """A supervisor (not serving) with its hosts' link up, as after its start."""
    supervisor = Supervisor(home)
    supervisor.remote = HostsClient(HostsLink(server.url, None, None), ttl=3.0, swarm="t", wake=lambda: None).start()
    wait_until(lambda: supervisor.remote.link.connected, 30, "the hosts' link to be up")
    return supervisor


def test_a_restarted_supervisor_fetches_the_branch_its_ledger_says_was_sent(
        tmp_path: Path, repo: Path, swarm_home: SwarmHome, nats_server: NatsServer) -> None:
    init_home(swarm_home)
    tree = create_attempt(swarm_home, repo, repo, plan="demo", task="job", attempt=1, settings=GitSettings())
    # the host's side: a commit on the attempt's branch, bundled from the base and stored
    host = tmp_path / "host"
    git(tmp_path, "clone", "-q", "--branch", tree.branch, str(repo), str(host))
    (host / "lib.txt").write_text("header\nfrom h1\n")
    git(host, "commit", "-qam", "on h1")
    tip = git(host, "rev-parse", "HEAD")
    assert bundle_branch(Git(host), f"refs/heads/{tree.branch}", [tree.base], tmp_path / "done.bundle")
    junk = tmp_path / "junk.bundle"
    junk.write_bytes(b"# v2 git bundle\nnot a bundle at all\n")
    worker = WorkerState(name="w1", task="job", attempt=1, session="t-w1", started_at=0.0, host="h1")
    done = make_message(MessageType.DONE, "w1", "supervisor", {"task": "job", "summary": "did it"}, thread="job")

    first = supervisor_on(swarm_home, nats_server)
    try:
        link = first.remote.link
        link.run(put_file(link.js, "t", "h1/w1.a1.done", tmp_path / "done.bundle"))
        link.run(put_file(link.js, "t", "h1/w9.a1.done", junk))
        # a corrupt object fails the attempt's validation with its reason, before any check
        first.trees["job"] = tree
        bad = HostEvent(kind="mail", id="m0", host="h1", worker="w9", attempt=1, tip=tip, bundle="h1/w9.a1.done")
        assert first.branch_arrives(bad, done, WorkerState(name="w9", task="job", attempt=1, session="t-w9",
                                                           started_at=0.0, host="h1")) == ""
        why = first.come_home(WorkerState(name="w9", task="job", attempt=1, session="t-w9", started_at=0.0,
                                          host="h1"))
        assert "could not be brought home" in why and "does not apply" in why, why
        # the DONE is taken (and recorded); the supervisor stops before its validation fetched the branch
        event = HostEvent(kind="mail", id="m1", host="h1", worker="w1", attempt=1, tip=tip, bundle="h1/w1.a1.done")
        assert first.branch_arrives(event, done, worker) == ""
    finally:
        first.remote.close()
    assert git(Path(tree.path), "rev-parse", "HEAD") == tree.base

    again = supervisor_on(swarm_home, nats_server)
    try:
        again.trees["job"] = tree  # as recover_git rebuilds it from the ledger
        assert again.come_home(worker) == ""
    finally:
        again.remote.close()
    assert git(Path(tree.path), "rev-parse", "HEAD") == tip  # the validation then checks the host's work


@pytest.mark.parametrize("field", [{"subdir": "../up"}, {"subdir": "/etc"}, {"integration": "a..b"},
                                   {"base": "HEAD"}])
def test_a_start_orders_worktree_is_checked_before_any_path_or_ref_is_made(field: dict) -> None:
    with pytest.raises(ValueError):
        TreeOrder.model_validate({"base": "a" * 40, "plan": "demo", "integration": INTEGRATION, **field})
    with pytest.raises(ValueError):
        HostEvent.model_validate({"kind": "mail", "id": "m", "host": "h1", "worker": "w1", "attempt": 1,
                                  "tip": "--upload-pack=x"})
