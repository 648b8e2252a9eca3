"""``--workers N``: N gateway processes sharing one port through SO_REUSEPORT.

The kernel spreads new connections over the workers; each worker is a node of the cluster, so
they share rooms and presence through Redis exactly like separate machines would. Only the
WebSocket transport is offered: Socket.IO long-polling needs every request of a session to reach
the same process, which SO_REUSEPORT does not guarantee.

The parent process only supervises: it restarts a worker that dies, forwards SIGTERM/SIGINT for
a graceful shutdown, and exits 2 if a worker reports a configuration error. A worker whose
supervisor vanished (SIGKILL, OOM killer) shuts itself down gracefully: nobody could stop or
restart it any more, and it would go on holding the port.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from dataclasses import replace
from typing import Any

from .config import Settings

log = logging.getLogger(__name__)

EXIT_CONFIG = 2
RESTART_DELAY = 1.0
STOP_TIMEOUT = 15.0


PR_SET_PDEATHSIG = 1
"""Linux prctl(2) option: the signal the kernel sends this process when its parent dies."""


def _end_with_parent(supervisor: int) -> None:
    """Have the kernel SIGTERM this worker when its supervisor dies (Linux; elsewhere a no-op)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor:  # it died before the request above took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _worker_main(settings: Settings, index: int, supervisor: int) -> None:
    from .cli import run_prepared

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _end_with_parent(supervisor)
    sys.exit(run_prepared(settings, reuse_port=True, announce=index == 0))


def run_workers(settings: Settings) -> int:
    context = multiprocessing.get_context("fork")
    worker_settings = replace(settings, workers=1)
    processes: dict[int, Any] = {}
    stopping = False

    def start(index: int) -> None:
        process = context.Process(
            target=_worker_main, args=(worker_settings, index, os.getpid()), name=f"worker-{index}"
        )
        process.start()
        processes[index] = process
        log.info("worker %d started (pid %d)", index, process.pid)

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for process in processes.values():
            if process.is_alive():
                process.terminate()  # SIGTERM: each worker shuts down gracefully

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for index in range(settings.workers):
        start(index)

    exit_code = 0
    while not stopping:
        sentinels = {process.sentinel: index for index, process in processes.items()}
        for sentinel in multiprocessing.connection.wait(list(sentinels), timeout=1.0):
            index = sentinels[sentinel]  # type: ignore[index]
            process = processes[index]
            process.join()
            if stopping:
                break
            if process.exitcode == EXIT_CONFIG:
                log.error("worker %d could not start; stopping", index)
                exit_code = EXIT_CONFIG
                stop(signal.SIGTERM, None)
                break
            log.warning("worker %d exited with %s; restarting", index, process.exitcode)
            time.sleep(RESTART_DELAY)
            start(index)

    deadline = time.monotonic() + STOP_TIMEOUT
    for process in processes.values():
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
    return exit_code
