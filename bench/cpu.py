"""Machine-wide CPU time, from /proc/stat: every process counts (the benchmark's own, the web
workers, PostgreSQL, RabbitMQ). Divided by the work done in a window it gives CPU per event or
per request, the figure that decides what fits on this machine's shared cores."""

import os

_TICKS = os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU seconds spent not idle, summed over all cores, since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / _TICKS


def group_seconds(pgid: int) -> float:
    """CPU seconds (user + system) of the live processes of process group ``pgid``, and of
    their children they have waited for."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat(int(entry))
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == pgid:  # pgrp
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / _TICKS


def broker_pid() -> int | None:
    """RabbitMQ's Erlang VM on this machine (``beam.smp`` of the rabbit node), if one runs."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"beam.smp") and any(b"rabbit" in a for a in argv):
            return int(entry)
    return None


def process_seconds(pid: int) -> float:
    """CPU seconds (user + system) of one process, all its threads."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime stime


def _stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after "pid (comm) " (state, ppid, pgrp, ...)."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    return stat[stat.rindex(")") + 2:].split()
