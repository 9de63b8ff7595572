"""Workers: the tmux layer, spawning a worker, its prompt file and the wrapper that runs in its pane."""
