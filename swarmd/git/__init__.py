"""Git: a worktree per attempt, the merge queue that lands validated work, advisory file reservations."""
