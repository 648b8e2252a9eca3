"""Waiting for the benchmark's cores to be idle: the machine is shared (other sessions run test
suites on it), and a case measured while another process holds the server's core mostly
measures that process."""

import time


def _core_times(core):
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{core} "):
                values = [int(v) for v in line.split()[1:]]
                return values[3] + values[4], sum(values)  # idle + iowait, total
    raise ValueError(f"no cpu{core} in /proc/stat")


def busy_share(cores, seconds=1.0):
    """The busiest of `cores` over the next `seconds`, as a share of that core (0..1)."""
    before = {c: _core_times(c) for c in cores}
    time.sleep(seconds)
    shares = []
    for c in cores:
        idle0, total0 = before[c]
        idle1, total1 = _core_times(c)
        shares.append(1 - (idle1 - idle0) / max(1, total1 - total0))
    return max(shares)


def wait_quiet(cores, max_wait, threshold=0.15):
    """Waits (at most `max_wait` seconds) until no core in `cores` is busier than `threshold`.
    Returns the busy share last seen, for the record."""
    deadline = time.monotonic() + max_wait
    while True:
        busy = busy_share(cores)
        if busy <= threshold or time.monotonic() >= deadline:
            return round(busy, 2)
