#!/usr/bin/env python3
"""What a lock costs in DIR (a diofs mount or a plain directory): run by tests/bench/locks.sh.

    locks.py pairs DIR N        N lock/unlock pairs (fcntl F_SETLK), microseconds per request
    locks.py handoff DIR N      N handoffs: the median microseconds from the holder's unlock to
                                the grant of a waiter blocked in F_SETLKW (another process)
    locks.py park DIR N SECS PID  N OFD waits (F_OFD_SETLKW, a thread each) parked on a locked
                                file for SECS seconds: the CPU time daemon PID used meanwhile,
                                and its threads
"""
import fcntl
import os
import statistics
import struct
import sys
import threading
import time

F_OFD_SETLKW = 38


def lock_struct(kind, start=0, length=1):
    return struct.pack("hhqqi", kind, 0, start, length, 0)


def pairs(path, n):
    fd = os.open(path, os.O_RDWR)
    start = time.perf_counter()
    for _ in range(n):
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0)
    took = time.perf_counter() - start
    print(f"{took / (2 * n) * 1e6:.1f}")


def handoff(path, n):
    go_r, go_w = os.pipe()
    got_r, got_w = os.pipe()
    child = os.fork()
    if child == 0:  # the waiter
        fd = os.open(path, os.O_RDWR)
        for _ in range(n):
            os.read(go_r, 1)
            fcntl.lockf(fd, fcntl.LOCK_EX, 1, 0)  # blocks until the holder lets go
            os.write(got_w, struct.pack("d", time.monotonic()))
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0)
        os._exit(0)
    fd = os.open(path, os.O_RDWR)
    waits = []
    for _ in range(n):
        fcntl.lockf(fd, fcntl.LOCK_EX, 1, 0)
        os.write(go_w, b"g")
        time.sleep(0.02)  # the waiter is blocked by now
        let_go = time.monotonic()
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, 0)
        granted = struct.unpack("d", os.read(got_r, 8))[0]
        waits.append(granted - let_go)
        time.sleep(0.005)  # the waiter unlocks
    os.waitpid(child, 0)
    print(f"{statistics.median(waits) * 1e6:.0f}")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def threads(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])


def park(path, n, secs, pid):
    holder = os.open(path, os.O_RDWR)
    fcntl.fcntl(holder, 37, lock_struct(fcntl.F_WRLCK))  # F_OFD_SETLK
    fds = [os.open(path, os.O_RDWR) for _ in range(n)]
    results = []

    def wait(fd):
        try:
            fcntl.fcntl(fd, F_OFD_SETLKW, lock_struct(fcntl.F_RDLCK))
            results.append(0)
        except OSError as e:
            results.append(e.errno)

    for fd in fds:
        threading.Thread(target=wait, args=(fd,), daemon=True).start()
    time.sleep(2)
    before = cpu_ticks(pid)
    time.sleep(secs)
    used = cpu_ticks(pid) - before
    print(f"{used / os.sysconf('SC_CLK_TCK') / secs * 1000:.1f} {threads(pid)} {len(results)}")
    fcntl.fcntl(holder, 37, lock_struct(fcntl.F_UNLCK))
    deadline = time.monotonic() + 60
    while len(results) < n and time.monotonic() < deadline:
        time.sleep(0.05)


if __name__ == "__main__":
    mode, where = sys.argv[1], sys.argv[2]
    # A file of each run's own: a daemon that kept an OFD lock after its last close (before
    # issue 18) would otherwise fail the next run.
    path = os.path.join(where, f"{mode}-{os.getpid()}")
    if not os.path.exists(path):
        open(path, "w").close()
    if mode == "pairs":
        pairs(path, int(sys.argv[3]))
    elif mode == "handoff":
        handoff(path, int(sys.argv[3]))
    else:
        park(path, int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
