"""Adapters to outside planning tools: OL's hero ratchet (`ol`) and the beads issue tracker (`bd`).

Each module knows one program's arguments and output formats. swarmd needs neither program unless a plan
comes from it (`swarm run --from-wave`, `swarm run --beads`).
"""
