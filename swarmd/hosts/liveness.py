"""A remote worker's own heartbeat, carried from its host to the supervisor.

A worker on a host touches its heartbeat file there (`swarmd.ledger.heartbeats`), as on the supervisor's machine.
Its host puts the file's time in each of its beats (`HostBeat.worker_beats`); the supervisor takes a changed time as
a sign of life and touches the worker's heartbeat file in its own home (its own clock: the host's is only compared
with itself), so that the health check, the registry and `swarm status` see a remote worker as they see a local one.
The host's beat comes every `ttl` / 3 s: a remote heartbeat reaches the supervisor that much later at most.
"""

from datetime import datetime

from swarmd.home import SwarmHome
from swarmd.ledger.heartbeats import read_heartbeat


def worker_beats(home: SwarmHome, workers: dict[str, int]) -> dict[str, datetime | None]:
    """Each of `workers`' last heartbeat in the host's home `home` (None: none yet)."""
    directory = home.run_dir / "heartbeats"
    return {name: read_heartbeat(directory, name) for name in workers}
