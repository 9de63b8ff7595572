"""Commands over the ledger: init, task, board, feed, stats, registry."""

from swarmd.cli import main  # noqa: F401
