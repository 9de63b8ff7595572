"""`swarm hosts`: the worker hosts a swarm knows, read from the heartbeat bucket and the ledger."""

from dataclasses import asdict, dataclass, field
from datetime import datetime

from protocol.ids import utcnow
from swarmd.config import Config
from swarmd.home import SwarmHome
from swarmd.hosts.link import NatsLink
from swarmd.hosts.relay import connect
from swarmd.hosts.streams import bucket_beats, ensure_bucket
from swarmd.hosts.wire import HostBeat, Layout
from swarmd.ledger.log import Ledger
from swarmd.ledger.registry import LIVE_STATUSES


@dataclass
class HostView:
    """One host as `swarm hosts` shows it: `up` while its heartbeat key lives; `beat_age` in seconds."""

    name: str
    up: bool
    slots: int | None = None
    labels: list[str] = field(default_factory=list)
    running: list[str] = field(default_factory=list)  # workers its last beat listed
    assigned: list[str] = field(default_factory=list)  # live workers the ledger places there
    pid: int | None = None
    ssh: str = ""  # how to reach it by ssh (`swarm host join --ssh`), "" when it gave none
    beat_age: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def list_hosts(home: SwarmHome, config: Config, now: datetime | None = None) -> list[HostView]:
    """Every host with a live key, and every host the ledger has a live worker on (down if its key is gone).
    Raises HostError when swarm.toml names no hosts' server or it cannot be reached within CONNECT_WAIT s."""
    beats = read_beats(config, home)
    now = now or utcnow()
    assigned: dict[str, list[str]] = {}
    for entry in Ledger(home, durable=config.durable).registry().values():
        host = entry.metadata.get("remote_host")
        if isinstance(host, str) and host and entry.status in LIVE_STATUSES:
            assigned.setdefault(host, []).append(entry.name)
    views = []
    for name in sorted(set(beats) | set(assigned)):
        beat = beats.get(name)
        view = HostView(name=name, up=beat is not None, assigned=sorted(assigned.get(name, [])))
        if beat is not None:
            view.slots, view.labels, view.running, view.pid = beat.slots, beat.labels, sorted(beat.workers), beat.pid
            view.ssh = beat.ssh
            view.beat_age = max(0.0, (now - beat.ts).total_seconds())
        views.append(view)
    return views


def read_beats(config: Config, home: SwarmHome) -> dict[str, HostBeat]:
    """The beats in the hosts' bucket now: host name -> beat."""
    link = connect(home, config, "swarm-hosts")
    try:
        return link.run(_read(link, Layout(config.name)))
    finally:
        link.close()


async def _read(link: NatsLink, layout: Layout) -> dict[str, HostBeat]:
    return await bucket_beats(link.js, await ensure_bucket(link.js, layout, None), layout)
