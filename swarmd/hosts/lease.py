"""A host's lease on running its workers: its heartbeat key is the lease, each acknowledged put a renewal.

The supervisor gives a host's attempts to others once the host's key has expired (the bucket's TTL, counted by
the NATS server) and a grace has passed after that (counted by the supervisor); the host stops its own workers
once it has gone a shorter time without a renewal (counted on its monotonic clock from the moment it *sent* its
last acknowledged put, which is no later than the moment the server stored it). So a host cut off ends its
workers before their tasks start elsewhere, without hearing from anyone: the idea and the bound are those of
C. Gray and D. Cheriton, "Leases: An Efficient Fault-Tolerant Mechanism for Distributed File Cache
Consistency", SOSP 1989 (a holder shortens its term by the clocks' possible drift, the grantor waits it out).

The bound. Let `s` be when the host sent its last acknowledged renewal, `T` the TTL, `e` the largest rate
difference between any two of the clocks (CLOCK_RATE_BOUND), `m = T * MARGIN` the host's margin, `g = T * GRACE`
the supervisor's grace and `k` the time the host takes to end its workers once its lease has lapsed. The
workers are gone by `s + (T - m)(1 + e) + k` in real time; the key expires no sooner than `s + T(1 - e)` and
the supervisor re-queues no sooner than `g(1 - e)` after that. Safe when `m + g >= 2eT + k` (to first order):
with the values below, whenever ending the workers takes under 0.28 T (4.2 s at the default TTL of 15 s).
A grantor may not shorten a lease it has granted: a supervisor that lowers the bucket's TTL gives no host up
until the old TTL has passed (`swarmd.hosts.client.Snapshot`), and a host reads the TTL before each renewal.
"""

import time
from collections.abc import Callable

CLOCK_RATE_BOUND = 0.01  # largest rate difference between two clocks (1%: far above what NTP-kept clocks show)
MARGIN = 0.2  # the host stops its workers after (1 - MARGIN) * TTL without a renewal
GRACE = 0.1  # the supervisor waits GRACE * TTL past a host's key expiring before its attempts run elsewhere


def host_term(ttl: float) -> float:
    """Seconds (the host's clock) a host may run its workers after sending its last acknowledged renewal."""
    return ttl * (1 - MARGIN)


def supervisor_grace(ttl: float) -> float:
    """Seconds (the supervisor's clock) between seeing a host's key gone and giving its attempts to others."""
    return ttl * GRACE


class Lease:
    """A host's lease, renewed from the NATS loop and read from any thread.

    `renew(sent, ttl)`: a put sent at `sent` (monotonic seconds) was acknowledged under a bucket TTL of `ttl`
    seconds. Until the first renewal the lease counts from its creation (a host gets one term to connect; the
    agent gives the TTL it last read, so that one restarted while cut off ends its workers in time).
    """

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._expires = clock() + host_term(ttl)

    def renew(self, sent: float, ttl: float) -> None:
        self._expires = sent + host_term(ttl)  # renewals are acknowledged one at a time, in the order sent

    def remaining(self) -> float:
        """Seconds until the lease lapses (<= 0: lapsed)."""
        return self._expires - self.clock()

    @property
    def lapsed(self) -> bool:
        return self.remaining() <= 0
