#!/usr/bin/env python3
"""One measured run of writers.sh: runs COMMAND (with sh -c) in a memory cgroup of its own
(cgroup v1) and prints its wall time in seconds and the largest page cache charged to that
cgroup while it ran (memory.stat "cache", sampled every millisecond), in KiB. The cgroup is
emptied and removed afterwards, also when the command fails.

usage: writers.py NAME COMMAND"""
import os
import subprocess
import sys
import threading
import time


def main():
    name, command = sys.argv[1], sys.argv[2]
    cgroup = f"/sys/fs/cgroup/memory/{name}-{os.getpid()}"
    os.mkdir(cgroup)
    peak = [0]
    done = threading.Event()

    def cache_bytes():
        with open(cgroup + "/memory.stat") as stat:
            for line in stat:
                key, value = line.split()
                if key == "cache":
                    return int(value)
        return 0

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], cache_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    try:
        sampler.start()
        start = time.monotonic()
        subprocess.run(["sh", "-c", f'echo $$ > {cgroup}/tasks && {command}'], check=True)
        seconds = time.monotonic() - start
        done.set()
        sampler.join()
        peak[0] = max(peak[0], cache_bytes())
        print(f"{seconds:.3f} {peak[0] // 1024}")
    finally:
        done.set()
        if sampler.is_alive():
            sampler.join()
        try:
            with open(cgroup + "/memory.force_empty", "w") as f:
                f.write("0")
        except OSError:
            pass
        for _ in range(50):
            try:
                os.rmdir(cgroup)
                break
            except OSError:
                time.sleep(0.1)


if __name__ == "__main__":
    main()
