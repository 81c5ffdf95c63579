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
