"""Same-run floors and whole-process timings for scripts/bench_swarm.py: bare tmux loops, commands and the
worker's start-up timed against `python -c pass`, and an idle supervisor's CPU and memory.

Every figure is measured in the run that prints it, beside its floor, so that a loaded machine (two cores
shared with other work) shifts both alike and the ratio stays meaningful. Wall times are medians of runs
that alternate with the baseline; CPU times (user + system of the child) are given too, being less
sensitive to the machine's load.
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
HEAVY = ("pydantic", "pydantic_core", "click", "rich")


def run_timed(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[float, float]:
    """(wall s, CPU s) of one run of `argv` to its end; RuntimeError if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:4]} exited {done.returncode}: {done.stderr.decode()[-300:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def against_python(commands: dict[str, list[str]], runs: int, env: dict[str, str] | None = None,
                   before_each: Any = None) -> dict[str, Any]:
    """Each command's median wall and CPU time, and its ratio to `python -c pass` run alternately with it."""
    bare: list[tuple[float, float]] = []
    timed: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for i in range(runs):
        for name, argv in commands.items():
            bare.append(run_timed([sys.executable, "-c", "pass"]))
            if before_each is not None:
                before_each(name, i)
            timed[name].append(run_timed(argv, env))
    floor_wall = statistics.median(w for w, _ in bare)
    floor_cpu = statistics.median(c for _, c in bare)
    result: dict[str, Any] = {"python_c_pass_s": round(floor_wall, 4), "python_c_pass_cpu_s": round(floor_cpu, 4)}
    for name, runs_of in timed.items():
        wall, cpu = statistics.median(w for w, _ in runs_of), statistics.median(c for _, c in runs_of)
        result[name] = {"wall_s": round(wall, 4), "cpu_s": round(cpu, 4), "ratio_wall": round(wall / floor_wall, 2),
                        "ratio_cpu": round(cpu / floor_cpu, 2)}
    return result


def bench_commands(home: Path, runs: int = 9) -> dict[str, Any]:
    """`swarm --version`, `swarm status` (text and --json) and `agentmail send` in a home whose supervisor is
    not running, against `python -c pass`."""
    home.parent.mkdir(parents=True, exist_ok=True)
    # From the home's directory: from anywhere inside a repository, `swarm init` would take it for the project
    # and the workers' attempts would become worktrees (and branches) of that repository.
    subprocess.run([str(BIN / "swarm"), "init", "--home", str(home)], check=True, capture_output=True,
                   cwd=home.parent)
    commands = {
        "swarm --version": [str(BIN / "swarm"), "--version"],
        "swarm status": [str(BIN / "swarm"), "status", "--home", str(home)],
        "swarm status --json": [str(BIN / "swarm"), "status", "--json", "--home", str(home)],
        "agentmail send": [str(BIN / "agentmail"), "send", "--home", str(home), "--from", "operator", "--to",
                           "supervisor", "--type", "STEER", "--field", "text=bench"],
    }
    return against_python(commands, runs)


def bench_worker_process(home: Path, runs: int = 9) -> dict[str, Any]:
    """A whole no-op worker (`python -m swarmd.worker --script` of `true`: claim TASK_ASSIGN, ACCEPTED, a
    heartbeat, run the script, DONE) against `python -c pass`; and the heavy packages its start-up imports."""
    sys.path.insert(0, str(Path(__file__).parent.parent))
    from agentmail import PostOffice
    from protocol.messages import MessageType, make_message

    post = PostOffice(home, durable=False)
    post.register("supervisor", role="supervisor")
    env = {**os.environ, "SWARM_HOME": str(home), "SWARM_AGENT": "w", "SWARM_TASK": "t",
           "SWARM_HEARTBEAT_INTERVAL": "5", "SWARM_DURABLE": "0"}

    def assign(_name: str, i: int) -> None:
        agent = f"w{i}"
        env.update(SWARM_AGENT=agent, SWARM_TASK=agent)
        post.register(agent)
        post.send(make_message(MessageType.TASK_ASSIGN, "supervisor", agent,
                               {"task": agent, "title": "bench", "description": "true"}, thread=agent))

    result = against_python({"worker_no_op": [sys.executable, "-m", "swarmd.worker", "--script"]}, runs, env, assign)
    assign("probe", runs)
    probe = subprocess.run([sys.executable, "-X", "importtime", "-m", "swarmd.worker", "--script"], env=env,
                           capture_output=True, text=True, check=True)
    modules = [line.split("|")[-1].strip() for line in probe.stderr.splitlines() if line.startswith("import time:")]
    result["heavy_packages_imported"] = sorted({m.split(".")[0] for m in modules} & set(HEAVY))
    result["modules_imported"] = len(modules)
    return result


def bare_tmux_sessions(socket: Path, count: int) -> float:
    """Seconds for a bare loop of `count` `tmux new-session -d` (running `sleep 30`) on a fresh private server."""
    t0 = time.perf_counter()
    for i in range(count):
        subprocess.run(["tmux", "-S", str(socket), "new-session", "-d", "-s", f"bare{i}", "sleep 30"], check=True)
    elapsed = time.perf_counter() - t0
    subprocess.run(["tmux", "-S", str(socket), "kill-server"], capture_output=True)
    return elapsed


def bare_tmux_tasks(socket: Path, count: int, parallel: int) -> float:
    """Seconds for `count` no-op tasks each run in its own tmux session, `parallel` at a time: a session runs
    `true` and signals a channel (`tmux wait-for -S`) that its slot waits on, as a worker's end is awaited."""
    tmux = ["tmux", "-S", str(socket)]
    subprocess.run([*tmux, "new-session", "-d", "-s", "holder", "sleep 600"], check=True)  # the server stays up

    def one(i: int) -> None:
        channel = f"done{i}"
        subprocess.run([*tmux, "new-session", "-d", "-s", f"t{i}", f"true; tmux -S {socket} wait-for -S {channel}"],
                       check=True)
        subprocess.run([*tmux, "wait-for", channel], check=True, timeout=60)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, range(count)))
    elapsed = time.perf_counter() - t0
    subprocess.run([*tmux, "kill-server"], capture_output=True)
    return elapsed


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds used so far by process `pid` and the children it has waited for (the tmux
    clients it runs), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident set size of process `pid`, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pss_mb(pid: int) -> float:
    """Proportional set size of process `pid`, MiB: its private pages plus its share of those it shares (a
    forked worker shares most of its fork server's pages), from /proc/PID/smaps_rollup."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def uss_mb(pid: int) -> float:
    """Unique set size of process `pid`, MiB: the pages it alone maps (what its end gives back), from
    /proc/PID/smaps_rollup."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
    return sum(int(fields[key].split()[0]) for key in ("Private_Clean", "Private_Dirty")) / 1024


def worker_processes(socket: Path, waiting: bool = False) -> list[list[int]]:
    """For each live pane of the tmux server at `socket` that runs a worker (with `waiting`: each pane of the
    pool waiting for one instead), swarmd's processes that keep it: the pane's first process (the fork
    server's client, or the shell), and the `swarmd` processes on the pane's terminal or under that shell (the
    fork server's keeper and the wrapper, or the wrapper); the agent is not counted."""
    from swarmd.workers.warmpanes import WARM_MARK  # (the caller has put the checkout on sys.path)

    panes = subprocess.run(["tmux", "-S", str(socket), "list-panes", "-a", "-F",
                            "#{pane_pid} #{pane_tty} #{session_name}"], capture_output=True, text=True).stdout
    by_tty = {os.stat(tty).st_rdev: int(pid) for pid, tty, session in (line.split() for line in panes.splitlines())
              if (WARM_MARK in session) == waiting}
    groups = {pid: [pid] for pid in by_tty.values()}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid, tty = int(fields[1]), int(fields[4])
        owner = by_tty.get(tty) if tty else None
        owner = owner if owner is not None else (ppid if ppid in groups else None)
        if owner is not None and int(entry.name) != owner and b"swarmd" in cmdline:
            groups[owner].append(int(entry.name))
    return list(groups.values())


def idle_supervisor(home: Path, workers: int, seconds: float) -> dict[str, Any]:
    """A real `swarm up` daemon with `workers` workers each sleeping (a `sleep` task): its CPU % and RSS over
    `seconds` once every worker has been ACCEPTED, and each wrapper's RSS."""
    sys.path.insert(0, str(Path(__file__).parent.parent))
    from protocol.event import EventType
    from protocol.task import Task
    from swarmd.home import SwarmHome
    from swarmd.ledger.log import Ledger
    from swarmd.plans.plan import Plan
    from swarmd.plans.runner import load_onto_board
    from swarmd.supervisor.daemon import running_pid

    swarm = SwarmHome(home)
    # From the home's directory: from anywhere inside a repository, `swarm init` would take it for the project
    # and the workers' attempts would become worktrees (and branches) of that repository.
    home.parent.mkdir(parents=True, exist_ok=True)  # and init from there, as bench_commands does
    subprocess.run([str(BIN / "swarm"), "init", "--home", str(home)], check=True, capture_output=True,
                   cwd=home.parent)
    toml = swarm.config_file.read_text()
    swarm.config_file.write_text(toml.replace("max_workers = 4", f"max_workers = {workers}")
                                 .replace("durable = true", "durable = false").replace('name = "swarm"', 'name = "idle"'))
    subprocess.run([str(BIN / "swarm"), "up", "--home", str(home)], check=True, capture_output=True, cwd=home.parent)
    try:
        pid = running_pid(swarm)
        ledger = Ledger(swarm, durable=False)
        sleep_s = int(seconds * 3 + 120)
        load_onto_board(ledger, Plan(tasks=[Task(id=f"z{i}", title="sleeps", description=f"sleep {sleep_s}")
                                            for i in range(workers)]))
        deadline = time.monotonic() + 180
        while sum(e.type == EventType.TASK_STARTED for e in ledger.events()) < workers:
            if time.monotonic() > deadline:
                raise RuntimeError("the workers were not all ACCEPTED within 180 s")
            time.sleep(0.5)
        if pid is None:
            raise RuntimeError("the supervisor is not running")
        time.sleep(2)  # let the start-up burst settle
        cpu0, t0 = process_cpu_s(pid), time.monotonic()
        rss_samples = []
        while time.monotonic() - t0 < seconds:
            rss_samples.append(rss_mb(pid))
            time.sleep(1)
        cpu_pct = (process_cpu_s(pid) - cpu0) / (time.monotonic() - t0) * 100
        kept, waiting = worker_processes(swarm.tmux_socket), worker_processes(swarm.tmux_socket, waiting=True)
        rss = [sum(rss_mb(p) for p in group) for group in kept]
        pss = [sum(pss_mb(p) for p in group) for group in kept]
        uss = [sum(uss_mb(p) for p in group) for group in kept]
        return {"workers": workers, "seconds": seconds, "supervisor_cpu_pct_with_its_tmux_calls": round(cpu_pct, 2),
                "supervisor_rss_mb": round(max(rss_samples), 1),
                "workers_found": len(kept), "processes_per_worker": max(map(len, kept), default=0),
                # what one worker's swarmd processes hold (pane client, keeper, wrapper), without its agent:
                "worker_rss_mb_mean": round(statistics.fmean(rss), 1) if rss else None,  # shared pages counted whole
                "worker_pss_mb_mean": round(statistics.fmean(pss), 1) if pss else None,  # shared pages divided
                "worker_pss_mb_max": round(max(pss), 1) if pss else None,
                "worker_uss_mb_mean": round(statistics.fmean(uss), 1) if uss else None,  # its own pages alone
                # the pane pool's panes waiting for a worker (swarm.toml's warm_panes): each its client alone
                "pool_panes_waiting": len(waiting),
                "pool_pane_pss_mb_mean": round(statistics.fmean(pss_mb(g[0]) for g in waiting), 1) if waiting else None}
    finally:
        subprocess.run([str(BIN / "swarm"), "down", "--home", str(home)], capture_output=True)
        subprocess.run(["tmux", "-S", str(swarm.tmux_socket), "kill-server"], capture_output=True)


if __name__ == "__main__":
    print(json.dumps(bench_commands(Path(sys.argv[1]))))
