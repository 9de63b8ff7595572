"""The supervisor: its loop, the daemon around it, validation of DONE claims, hooks, retention."""
