"""Errors of the supervisor package; the CLI prints each as one line on stderr and exits with its
`exit_code` (2, a usage or input error, unless the class says otherwise)."""


class SwarmError(Exception):
    """Base of every refusal raised by `swarmd`."""


class ConfigError(SwarmError):
    """swarm.toml or a plan that cannot be used."""


class HomeError(SwarmError):
    """A swarm home that is missing, unsafe or not writable."""


class LedgerError(SwarmError):
    """An event or task change that the ledger refuses."""


class NotRunning(SwarmError):
    """The supervisor (or a worker) that an operation needs is not running."""


class WorkerEnded(NotRunning):
    """An operation on a worker that has already ended (steer it, kill it): said in one line, exit code 1."""

    exit_code = 1
