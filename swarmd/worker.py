"""`python -m swarmd.worker`: the stable name that worker profiles start (swarm.toml files already written name
it); the wrapper itself lives in `swarmd.workers.wrapper`. It starts with the standard library alone (no
pydantic, click or rich): `tests/test_worker_fastpath.py` checks what it imports."""

import sys

from swarmd.workers.wrapper import main

if __name__ == "__main__":
    sys.exit(main())
