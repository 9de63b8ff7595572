"""Commands that run and operate a swarm: up, down, run, status, attach, logs, steer, kill, teardown, demo, worker."""

from swarmd.cli import main  # noqa: F401
