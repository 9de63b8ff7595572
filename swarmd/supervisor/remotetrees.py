"""The worktrees of attempts on worker hosts, on the supervisor's side (see `swarmd.hosts.bundles`).

An isolated attempt placed on a host gets its branch and worktree here as a local one does (`Integration.isolate`:
the same names, the same ledger event), where its work is validated and merged; its base goes to the host as a
bundle in the swarm's object store. Its DONE (or CHECKPOINT) mail comes with the host's bundle of its branch,
fetched into that worktree before the mail is handled: validation and the merge queue then go on exactly as for a
local attempt. A bundle that cannot be had or applied fails the attempt with the reason.
"""

import logging
from pathlib import Path

from protocol.task import Task
from swarmd.git.repo import Git, GitError
from swarmd.hosts.bundles import (KNOWN_LIMIT, TRANSFER_TIMEOUT, BundleError, base_object, bundle_branch,
                                  delete_object, fast_forward, get_file, put_file, scratch_file)
from swarmd.hosts.wire import HostEvent, TreeOrder
from swarmd.supervisor.state import WorkerState

log = logging.getLogger("swarmd.supervisor")


class RemoteTrees:
    """The part of `Supervisor` that gives remote attempts their worktrees and brings their branches home.

    A mixin; its own state: `host_bases` (host -> the base commits bundled to it, newest last: what an incremental
    bundle leaves out)."""

    def remote_tree(self, task: Task, state: WorkerState) -> TreeOrder | None:
        """Make the attempt's worktree here and send its base to its host; what the start order says of it (None:
        the task is not isolated). Raises SwarmError (ConfigError, GitError, BundleError)."""
        tree = self.isolate(task, state.name, state.attempt)
        if tree is None:
            return None
        assert self.remote is not None
        known = self.host_bases.setdefault(state.host, [])
        path = scratch_file(self.home.run_dir / "bundles", ".bundle")
        name = ""
        try:
            if bundle_branch(Git(Path(tree.repo)), f"refs/heads/{tree.branch}", known, path):
                name = base_object(state.host, state.name, state.attempt)
                try:
                    self.remote.link.run(put_file(self.remote.link.js, self.config.name, name, path),
                                         timeout=TRANSFER_TIMEOUT)
                except Exception as exc:  # noqa: BLE001 - the link's errors are many: each is this one failure
                    raise BundleError(f"the base bundle for host {state.host} could not be stored: "
                                      f"{exc or type(exc).__name__}") from None
        finally:
            path.unlink(missing_ok=True)
        self.host_bases[state.host] = [c for c in known if c != tree.base][-(KNOWN_LIMIT - 1):] + [tree.base]
        settings = self.git_settings(task)
        return TreeOrder(bundle=name, base=tree.base, plan=tree.plan, integration=tree.integration,
                         subdir=tree.subdir, setup=settings.setup, teardown=settings.teardown)

    def home_tip(self, worker: str, attempt: int) -> str:
        """The commit of `worker`'s attempt branch that is home (in its worktree here); "" when none is."""
        entry = self.ledger.registry().get(worker)
        tree = self.trees.get(entry.task or "") if entry is not None else None
        if tree is None or tree.attempt != attempt:
            return ""
        return Git(Path(tree.path)).commit_of("HEAD") or ""

    def base_not_sent(self, host: str) -> None:
        """The host could not start an attempt: what it holds is unknown, so the next base goes whole."""
        self.host_bases.pop(host, None)

    def bring_home(self, event: HostEvent, state: WorkerState) -> str:
        """Fetch the branch a worker's DONE or CHECKPOINT carries into its attempt's worktree here; "" when done
        (or when the attempt has no worktree here, or the branch is home already), else why it cannot be."""
        tree = self.trees.get(state.task)
        if tree is None or tree.attempt != state.attempt or not (event.tip or event.git_error):
            return ""
        if event.git_error:
            return event.git_error
        if Git(Path(tree.path)).commit_of("HEAD") == event.tip:
            return ""  # the same report again: its bundle was fetched before
        assert self.remote is not None
        path = scratch_file(self.home.run_dir / "bundles", ".bundle") if event.bundle else None
        try:
            if path is not None:
                self._fetch_object(event.bundle, path)
            fast_forward(tree, path, event.tip)
        except (BundleError, GitError, OSError) as exc:
            return f"the work of {state.name} on host {event.host} could not be brought home: {exc}"
        finally:
            if path is not None:
                path.unlink(missing_ok=True)
        if event.bundle:
            self.remote.link.spawn(delete_object(self.remote.link.js, self.config.name, event.bundle))
        return ""

    def _fetch_object(self, name: str, path: Path) -> None:
        assert self.remote is not None
        try:
            self.remote.link.run(get_file(self.remote.link.js, self.config.name, name, path),
                                 timeout=TRANSFER_TIMEOUT)
        except BundleError:
            raise
        except Exception as exc:  # noqa: BLE001 - the link's errors are many: each is this one failure
            raise BundleError(f"bundle {name} could not be fetched: {exc or type(exc).__name__}") from None
