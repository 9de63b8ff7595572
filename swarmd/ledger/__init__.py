"""The ledger: the append-only event log and the folds read from it (board, registry, feed, questions)."""
