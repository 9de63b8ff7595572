"""Plans: reading, checking and revising a plan, and `swarm run` putting one on the board."""
