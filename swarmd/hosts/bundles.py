"""Git work between the supervisor's repository and a host's, carried as `git bundle` files in a JetStream object
store: git makes and checks the bundles, JetStream stores and carries them (nothing here is a transfer protocol).

- Out: when an attempt in a worktree goes to a host, the supervisor bundles its branch at the base commit, less
  what the host is known to hold already (an incremental bundle; none at all when the host holds the base), puts
  it in the bucket `swarm_<swarm>_git` and names the object in the start order. The host fetches it into its own
  bare repository (`<host home>/repo`, kept between attempts), sets its copy of the integration branch to the
  base, and makes the attempt's worktree there with the same code as a local attempt (`swarmd.git.worktrees`).
- Home: when the worker reports DONE (or CHECKPOINT), the host commits what it left, bundles `base..branch`, puts
  it in the bucket and names it in the mail's event; the supervisor fetches it into the attempt's own worktree
  on its machine, which moves by fast-forward only: a bundle that git cannot read, that needs commits the
  repository lacks, or whose branch does not descend from the base fails the attempt with that reason.

The idea of moving history as bundle files over a store is git's own (`git bundle`, "sneakernet"); JetStream's
object store chunks and checksums them (SHA-256).
"""

import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from swarmd.errors import SwarmError
from swarmd.git.repo import Git, GitError
from swarmd.git.settings import GitSettings
from swarmd.git.worktrees import (AttemptTree, commit_leftovers, create_attempt, git_note, remove_worktree,
                                  worker_identity)
from swarmd.home import SwarmHome
from swarmd.hosts.wire import TreeOrder

log = logging.getLogger("swarmd.hosts")

BUCKET_TTL = 7 * 86400.0  # seconds an object is kept at most (each side deletes what it has used before then)
TRANSFER_TIMEOUT = 300.0  # seconds a host waits for a base bundle to come
KNOWN_LIMIT = 16  # base commits remembered per host as held there: the `--not` list of an incremental bundle


class BundleError(SwarmError):
    """A bundle that cannot be made, stored, fetched or applied; the message says which and why."""


def bucket_name(swarm: str) -> str:
    """The object store of one swarm's bundles (`swarm` is a validated swarm name)."""
    return f"swarm_{swarm}_git"


def base_object(host: str, worker: str, attempt: int) -> str:
    return f"{host}/{worker}.a{attempt}.base"


def done_object(host: str, worker: str, attempt: int) -> str:
    return f"{host}/{worker}.a{attempt}.done"


# ----- git ----------------------------------------------------------------------------------------------------
def bundle_branch(git: Git, ref: str, exclude: list[str], dest: Path) -> bool:
    """Write `dest`, a bundle of `ref` without the history of the commits in `exclude` (those this repository
    does not hold are passed over); False (and no file) when that leaves nothing to carry. Raises GitError."""
    revs = ["--ignore-missing", ref, *(f"^{c}" for c in exclude)]
    if int(git.run("rev-list", "--count", *revs)) == 0:
        return False
    git.run("bundle", "create", "-q", str(dest), *revs)
    return True


def bundle_head(git: Git, bundle: Path) -> tuple[str, str]:
    """The one branch a bundle carries: (its commit, its ref). Raises BundleError for a file that is no bundle,
    one whose prerequisite commits the repository lacks, or one with other than one branch."""
    try:
        git.run("bundle", "verify", str(bundle))  # not -q: git then says nothing of what is wrong
        heads = [line.split() for line in git.run("bundle", "list-heads", str(bundle)).splitlines() if line.strip()]
    except GitError as exc:
        said = " ".join(line.split(":", 1)[-1].strip() for line in exc.output.splitlines()
                        if line.startswith(("error:", "fatal:")))
        raise BundleError(f"the bundle does not apply: {said or exc}") from None
    if len(heads) != 1 or len(heads[0]) != 2:
        raise BundleError(f"the bundle carries {len(heads)} refs where one branch was expected")
    commit, ref = heads[0]
    if not re.fullmatch(r"[0-9a-f]{40,64}", commit) or not ref.startswith("refs/heads/"):
        raise BundleError(f"the bundle carries {ref[:80]!r}, not a branch")
    return commit, ref


def fetch_into(git: Git, bundle: Path, ref: str) -> str:
    """Fetch the bundle's one branch into `ref` (forced); its commit. Raises BundleError."""
    commit, head = bundle_head(git, bundle)
    try:
        git.run("fetch", "-q", "--no-tags", str(bundle), f"+{head}:{ref}")
    except GitError as exc:
        raise BundleError(f"the bundle does not apply: {exc}") from None
    return commit


def fast_forward(tree: AttemptTree, bundle: Path | None, tip: str) -> str:
    """Bring an attempt's branch home into its worktree (`tree`, on the supervisor's machine): fetch `bundle` and
    move the worktree's branch to its tip, which must be `tip` and descend from the attempt's base. With no
    bundle `tip` must be the base (the worker committed nothing). The new tip; BundleError otherwise."""
    work = Git(Path(tree.path))
    if bundle is None:
        if tip != tree.base:
            raise BundleError(f"the host sent no bundle for {tip[:12]}, which is not the attempt's base")
        return tip
    commit, head = bundle_head(work, bundle)
    if commit != tip:
        raise BundleError(f"the bundle's branch is at {commit[:12]}, the host said {tip[:12]}")
    try:
        work.run("fetch", "-q", "--no-tags", str(bundle), head)
    except GitError as exc:
        raise BundleError(f"the bundle does not apply: {exc}") from None
    if not work.is_ancestor(tree.base, commit):
        raise BundleError(f"the attempt's branch ({commit[:12]}) does not descend from its base {tree.base[:12]}: "
                          "a branch that rewrote or left the history it was given cannot be merged")
    try:
        work.run("merge", "-q", "--ff-only", commit)
    except GitError as exc:
        raise BundleError(f"the attempt's worktree {tree.path} cannot move to {commit[:12]}: {exc}") from None
    return commit


def host_repository(home: SwarmHome) -> Git:
    """The host's own bare repository, `<home>/repo`, made the first time."""
    path = home.root / "repo"
    if not (path / "HEAD").is_file():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        Git(path).run("init", "-q", "--bare")
    return Git(path)


def host_attempt(home: SwarmHome, bundle: Path | None, *, base: str, plan: str, integration: str, subdir: str,
                 task: str, attempt: int, setup: str | None, teardown: str | None) -> AttemptTree:
    """On a host: apply the base bundle (when one came), point the host's copy of the integration branch at the
    base, and make the attempt's branch and worktree from there (`swarmd.git.worktrees.create_attempt`: the
    same names, the same setup command). Raises BundleError or GitError (SetupError)."""
    git = host_repository(home)
    ref = f"refs/heads/{integration}"
    if bundle is not None:
        fetch_into(git, bundle, ref)
    if git.commit_of(base) is None:
        raise BundleError(f"the host's repository lacks the base commit {base[:12]} and no bundle brought it")
    git.run("update-ref", "-m", "swarm: base of an attempt", ref, base)
    settings = GitSettings(integration=integration, setup=setup, teardown=teardown, include=[])
    return create_attempt(home, git.path, git.path / subdir, plan=plan, task=task, attempt=attempt,
                          settings=settings, start=base)


def scratch_file(directory: Path, suffix: str) -> Path:
    """A new private file name in `directory` (made 0700) for a bundle on its way; the caller removes it."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(suffix=suffix, dir=directory)
    os.close(fd)
    os.unlink(name)  # git bundle create wants to make the file itself
    return Path(name)


# ----- the object store (coroutines: they run on a NatsLink's loop) ---------------------------------------------
async def object_store(js: Any, swarm: str) -> Any:
    """The swarm's bundle bucket (file storage), made when missing. Returns nats-py's ObjectStore."""
    from nats.js.api import ObjectStoreConfig, StorageType
    from nats.js.errors import BucketNotFoundError, NotFoundError

    try:
        return await js.object_store(bucket_name(swarm))
    except (BucketNotFoundError, NotFoundError):
        return await js.create_object_store(bucket_name(swarm), config=ObjectStoreConfig(
            ttl=BUCKET_TTL, storage=StorageType.FILE))


async def put_file(js: Any, swarm: str, name: str, path: Path) -> None:
    """Store the file under `name` (replacing any object of that name)."""
    store = await object_store(js, swarm)
    with open(path, "rb") as f:
        await store.put(name, f)


async def get_file(js: Any, swarm: str, name: str, path: Path) -> None:
    """Write object `name` into `path` (its SHA-256 checked by nats-py). Raises BundleError when it is missing."""
    from nats.js.errors import ObjectNotFoundError

    store = await object_store(js, swarm)
    try:
        with open(path, "wb") as f:
            await store.get(name, writeinto=f)
    except ObjectNotFoundError:
        raise BundleError(f"no object {name!r} in the bundle bucket") from None


async def delete_object(js: Any, swarm: str, name: str) -> None:
    """Remove object `name`; one already gone is no error."""
    from nats.js.errors import NotFoundError

    store = await object_store(js, swarm)
    try:
        await store.delete(name)
    except NotFoundError:
        pass


async def get_until_had(link: Any, swarm: str, name: str, path: Path) -> None:
    """`get_file`, tried again through outages until it is had. Raises BundleError at once for an object that is
    missing or whose checksum does not match (no retry mends those)."""
    import asyncio

    from nats.js.errors import DigestMismatchError

    from swarmd.hosts.link import RETRY_WAIT

    while True:
        if link.js is not None and link.connected:
            try:
                await get_file(link.js, swarm, name, path)
                return
            except DigestMismatchError:
                raise BundleError(f"bundle {name} is corrupt: its SHA-256 does not match") from None
            except BundleError:
                raise
            except Exception as exc:  # noqa: BLE001 - down meanwhile: the next try fetches it again, whole
                log.debug("bundle %s not fetched yet: %s", name, exc)
        await asyncio.sleep(RETRY_WAIT)


async def put_until_stored(link: Any, swarm: str, name: str, path: Path, closing: Any) -> None:
    """`put_file`, tried again through outages (as `swarmd.hosts.link.publish_until_acked`) until the server has
    it or `closing()` says to give up (then BundleError)."""
    import asyncio

    from swarmd.hosts.link import RETRY_WAIT

    while True:
        if link.js is not None and link.connected:
            try:
                await put_file(link.js, swarm, name, path)
                return
            except Exception as exc:  # noqa: BLE001 - down meanwhile: the next try puts it again, whole
                log.debug("bundle %s not stored yet: %s", name, exc)
        if closing():
            raise BundleError(f"bundle {name} not stored: the link is closing")
        await asyncio.sleep(RETRY_WAIT)


# ----- on a host: an attempt's worktree, its branch sent home, its end ------------------------------------------
def receive_attempt(link: Any, home: SwarmHome, swarm: str, order: TreeOrder, *, task: str,
                    attempt: int) -> AttemptTree:
    """Fetch the order's base bundle (if any) and make the attempt's worktree (`host_attempt`). Raises BundleError
    (the bundle could not be fetched or applied) or GitError (SetupError)."""
    path = scratch_file(home.run_dir / "bundles", ".bundle") if order.bundle else None
    try:
        if path is not None:
            try:
                link.run(get_until_had(link, swarm, order.bundle, path), timeout=TRANSFER_TIMEOUT)
            except TimeoutError:
                raise BundleError(f"the base bundle {order.bundle} did not come in {TRANSFER_TIMEOUT:g} s") from None
        return host_attempt(home, path, base=order.base, plan=order.plan, integration=order.integration,
                            subdir=order.subdir, task=task, attempt=attempt, setup=order.setup,
                            teardown=order.teardown)
    finally:
        if path is not None:
            path.unlink(missing_ok=True)


def send_branch(link: Any, home: SwarmHome, swarm: str, tree: AttemptTree, *, host: str, worker: str,
                closing: Any) -> dict[str, str]:
    """Commit what the worker left, then bundle its branch from the base and store it (waiting through outages):
    the fields of the mail's event (`tip`, `bundle`, or `git_error` when git could not)."""
    try:
        commit_leftovers(tree, worker, swarm)
        git = Git(Path(tree.path))
        ref = f"refs/heads/{tree.branch}"
        tip = git.commit_of(ref)
        if tip is None:
            return {"git_error": f"the attempt's branch {tree.branch} is gone on host {host}"}
        path = scratch_file(home.run_dir / "bundles", ".bundle")
        try:
            if not bundle_branch(git, ref, [tree.base], path):
                return {"tip": tip}
            name = done_object(host, worker, tree.attempt)
            link.run(put_until_stored(link, swarm, name, path, closing), timeout=None)
        finally:
            path.unlink(missing_ok=True)
    except (GitError, OSError) as exc:
        return {"git_error": f"the attempt's branch could not be bundled on host {host}: {exc}"}
    return {"tip": tip, "bundle": name}


def drop_attempt(link: Any, swarm: str, tree: AttemptTree, *, host: str, worker: str, teardown: str | None,
                 home_tip: str) -> None:
    """The supervisor has ended the attempt: its worktree goes (what it left is committed on its branch first, the
    teardown command runs), as `swarm clean` does with a local one; its branch goes too when its tip is `home_tip`
    (the supervisor holds that commit), else it stays in the host's repository with the work that never came
    home. Its bundles are deleted from the bucket (the supervisor has fetched what it wanted before it ends an
    attempt)."""
    commit_leftovers(tree, worker, swarm, " (kept by the host)")
    remove_worktree(tree, GitSettings(teardown=teardown))
    git = Git(Path(tree.repo))
    tip = git.commit_of(f"refs/heads/{tree.branch}")
    if tip is not None and tip == home_tip:
        git.ok("update-ref", "-m", "swarm: attempt over, its work sent home", "-d", f"refs/heads/{tree.branch}", tip)
    for name in (base_object(host, worker, tree.attempt), done_object(host, worker, tree.attempt)):
        link.spawn(_delete_quietly(link, swarm, name))


def spawn_args(tree: AttemptTree, worker: str, swarm: str) -> dict[str, Any]:
    """How a worker in a host's worktree is started: where, as whom it commits, what its prompt says of git."""
    env = {**worker_identity(worker, swarm).env(), "SWARM_WORKTREE": tree.path, "SWARM_BRANCH": tree.branch}
    return {"workdir": tree.workdir, "env": env, "git_note": git_note(tree)}


async def _delete_quietly(link: Any, swarm: str, name: str) -> None:
    try:
        await delete_object(link.js, swarm, name)
    except Exception as exc:  # noqa: BLE001 - the bucket's TTL removes it in the end
        log.debug("bundle %s not deleted: %s", name, exc)
