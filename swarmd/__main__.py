from swarmd.cli import main

main(prog_name="swarm")
