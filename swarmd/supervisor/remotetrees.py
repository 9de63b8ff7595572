"""The worktrees of attempts on worker hosts, on the supervisor's side (see `swarmd.hosts.bundles`).

An isolated attempt placed on a host gets its branch and worktree here as a local one does (`Integration.isolate`:
the same names, the same ledger event), where its work is validated and merged; its base goes to the host as a
bundle in the swarm's object store. Its DONE mail comes with the host's bundle of its branch, fetched into that
worktree by its validation (off the loop's thread) before any check runs: validation and the merge queue then go
on exactly as for a local attempt. A CHECKPOINT's is fetched at once (the next attempt starts from it). A bundle
that cannot be had or applied fails the attempt with the reason.
"""

from pathlib import Path

from protocol.event import EventType
from protocol.messages import Message, MessageType
from protocol.task import Task
from swarmd.git.repo import Git, GitError
from swarmd.hosts.bundles import (KNOWN_LIMIT, BundleError, base_object, bundle_branch, delete_object, done_object,
                                  fast_forward, get_until_had, put_until_stored, scratch_file)
from swarmd.hosts.wire import HostEvent, StartOrder, TreeOrder
from swarmd.supervisor.state import SUPERVISOR, WorkerState

BRANCH_SENT = "branch_sent"  # the `kind` of the custom event that records a branch a host sent
BASE_SENT = "base_sent"  # ... and of the one that records the base sent to a host
FETCH_TIMEOUT = 300.0  # seconds a validation waits for a branch's bundle to come from the object store


class RemoteTrees:
    """The part of `Supervisor` that gives remote attempts their worktrees and brings their branches home.

    A mixin; its own state: `host_bases` (host -> the base commits it has started an attempt on, newest last: what
    an incremental bundle leaves out), `bases_sent` (worker -> its attempt's base, until its host has started it)
    and `homecoming` (worker -> the event of its DONE that carries its branch, until its
    validation fetches it)."""

    def remote_tree(self, task: Task, state: WorkerState) -> tuple[TreeOrder, Path | None] | None:
        """Make the attempt's worktree here and bundle its base for its host (None: the task is not isolated):
        what the start order says of it, and the bundle file to store first (None: the host holds the base; else
        `send_start` stores it and removes the file). Raises SwarmError (ConfigError, GitError)."""
        tree = self.isolate(task, state.name, state.attempt)
        if tree is None:
            return None
        known = self.host_bases.get(state.host, [])
        path: Path | None = scratch_file(self.home.run_dir / "bundles", ".bundle")
        try:
            if not bundle_branch(Git(Path(tree.repo)), f"refs/heads/{tree.branch}", known, path):
                path = None
        except GitError:
            path.unlink(missing_ok=True)
            raise
        self.bases_sent = {w: b for w, b in self.bases_sent.items() if w in self.workers}  # never started: gone
        self.bases_sent[state.name] = tree.base
        settings = self.git_settings(task)
        order = TreeOrder(bundle=base_object(state.host, state.name, state.attempt) if path else "", base=tree.base,
                          plan=tree.plan, integration=tree.integration, subdir=tree.subdir, setup=settings.setup,
                          teardown=settings.teardown)
        size = path.stat().st_size if path else 0
        how = (f"bundle {order.bundle}, {size} bytes" + (f", less {len(known)} bases it holds" if known else ", whole")
               if path else "none needed: the host holds it")
        self.ledger.append(EventType.CUSTOM, SUPERVISOR, task.id, kind=BASE_SENT, worker=state.name,
                           attempt=state.attempt, host=state.host, base=tree.base, bundle=order.bundle, bytes=size,
                           left_out=len(known), summary=f"base {tree.base[:12]} of {state.name} sent to host "
                                                        f"{state.host}: {how}")
        return order, path

    def send_start(self, host: str, order: StartOrder, bundle: Path | None) -> None:
        """Queue the start order; when it needs a base bundle, once that is stored (on the link's loop, through any
        outage: the loop's thread never waits for the network)."""
        assert self.remote is not None
        if bundle is None or order.git is None:
            self.remote.send(host, order)
            return
        link, name = self.remote.link, order.git.bundle

        async def store_then_send() -> None:
            try:
                await put_until_stored(link, self.config.name, name, bundle, self.stopping.is_set)
            finally:
                bundle.unlink(missing_ok=True)
            self.remote.send(host, order)

        link.spawn(store_then_send())

    def home_tip(self, worker: str, attempt: int) -> str:
        """The commit of `worker`'s attempt branch that is home (in its worktree here); "" when none is."""
        entry = self.ledger.registry().get(worker)
        tree = self.trees.get(entry.task or "") if entry is not None else None
        if tree is None or tree.attempt != attempt:
            return ""
        return Git(Path(tree.path)).commit_of("HEAD") or ""

    def base_held(self, host: str, worker: str) -> None:
        """The host has started `worker`: it holds its attempt's base, which the next bundles for it leave out."""
        base = self.bases_sent.pop(worker, None)
        if base is not None:
            known = [c for c in self.host_bases.get(host, []) if c != base]
            self.host_bases[host] = known[-(KNOWN_LIMIT - 1):] + [base]

    def base_not_sent(self, host: str, worker: str) -> None:
        """The host could not start `worker`: what it holds is unknown, so its next base goes whole."""
        self.bases_sent.pop(worker, None)
        self.host_bases.pop(host, None)

    def branch_arrives(self, event: HostEvent, message: Message, state: WorkerState) -> str:
        """A worker's mail from its host, before it is handled: the branch a DONE carries is fetched by its
        validation (`come_home`, off the loop's thread), the one a CHECKPOINT carries now (the next attempt starts
        from it). "", or why the branch cannot be had (the attempt then fails)."""
        if not (event.tip or event.git_error) or state.reported:
            return ""
        sent = f"bundle {event.bundle}" if event.bundle else "no bundle: nothing was committed"
        self.ledger.append(EventType.CUSTOM, SUPERVISOR, state.task, kind=BRANCH_SENT, worker=state.name,
                           attempt=state.attempt, host=event.host, **event.model_dump(include={"tip", "bundle",
                                                                                               "git_error"}),
                           summary=f"{state.name} on host {event.host} sent its branch" + (
                               f" at {event.tip[:12]} ({sent})" if event.tip else f": {event.git_error}"))
        if message.type == MessageType.CHECKPOINT:
            return self.bring_home(event, state)
        self.homecoming[state.name] = event
        return ""

    def come_home(self, worker: WorkerState) -> str:
        """For a validation (on its thread): fetch the branch the worker's DONE said its host sent (as the ledger
        says, after a restart); "" when done or when there is none to fetch, else why it cannot be had."""
        event = self.homecoming.pop(worker.name, None)
        if event is None and worker.host:
            event = self._recorded_homecoming(worker)
        return self.bring_home(event, worker) if event is not None else ""

    def _recorded_homecoming(self, worker: WorkerState) -> HostEvent | None:
        """The branch the worker's host last said it sent, from the ledger (the supervisor restarted since)."""
        for recorded in reversed(self.ledger.events(types=[EventType.CUSTOM.value], task=worker.task)):
            d = recorded.detail
            if d.get("kind") == BRANCH_SENT and d.get("worker") == worker.name and d.get("attempt") == worker.attempt:
                return HostEvent(kind="mail", id=f"recorded.{recorded.seq}", host=d.get("host", ""),
                                 worker=worker.name, attempt=worker.attempt, tip=d.get("tip", ""),
                                 bundle=d.get("bundle", ""), git_error=d.get("git_error", ""))
        return None

    def bring_home(self, event: HostEvent, state: WorkerState) -> str:
        """Fetch the branch a worker's report carries into its attempt's worktree here; "" when done (or when the
        attempt has no worktree here, or the branch is home already), else why it cannot be."""
        tree = self.trees.get(state.task)
        if tree is None or tree.attempt != state.attempt:
            return ""
        if event.git_error:
            return event.git_error
        if event.bundle and event.bundle != done_object(event.host, state.name, state.attempt):
            return f"host {event.host} named a bundle that is not this attempt's: {event.bundle[:80]!r}"
        if Git(Path(tree.path)).commit_of("HEAD") == event.tip:
            return ""  # the same report again: its bundle was fetched before
        assert self.remote is not None
        path = scratch_file(self.home.run_dir / "bundles", ".bundle") if event.bundle else None
        try:
            if path is not None:
                self.remote.link.run(get_until_had(self.remote.link, self.config.name, event.bundle, path),
                                     timeout=FETCH_TIMEOUT)
            fast_forward(tree, path, event.tip)
        except TimeoutError:
            return (f"the work of {state.name} on host {event.host} could not be brought home: bundle "
                    f"{event.bundle} could not be fetched within {FETCH_TIMEOUT:g} s")
        except (BundleError, GitError, OSError) as exc:
            return f"the work of {state.name} on host {event.host} could not be brought home: {exc}"
        finally:
            if path is not None:
                path.unlink(missing_ok=True)
        if event.bundle:
            self.remote.link.spawn(delete_object(self.remote.link.js, self.config.name, event.bundle))
        return ""
