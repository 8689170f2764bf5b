#!/usr/bin/env python3
"""Reads FILE (a file of a dbopt mount) from start to end in BLOCK-byte reads and reports how
many of its pages the kernel's page cache held: the most at any moment while it was read, and
what is left once the reader closed it (polled for up to 5 s: the daemon drops them on a
thread of its own, just after the close).

usage: kernel_window.py FILE BLOCK
prints: "peak PAGES after PAGES bytes BYTES"; exit 0, or 77 when cachestat(2) is missing.

The pages are counted with cachestat(2) on a descriptor opened first and kept open: every open
of a FUSE file that does not keep the cache drops its pages, so a counter opened later (fincore)
would always see none.
"""
import ctypes
import errno
import os
import sys
import time

SYS_CACHESTAT = 451  # the same number on every architecture (Linux 6.5)


class Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class Stat(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in
                ("nr_cache", "nr_dirty", "nr_writeback", "nr_evicted", "nr_recently_evicted")]


libc = ctypes.CDLL(None, use_errno=True)


def cached_pages(fd):
    whole, st = Range(0, 0), Stat()
    if libc.syscall(SYS_CACHESTAT, fd, ctypes.byref(whole), ctypes.byref(st), 0) != 0:
        err = ctypes.get_errno()
        if err == errno.ENOSYS:
            print("no cachestat(2) on this kernel", file=sys.stderr)
            sys.exit(77)
        raise OSError(err, os.strerror(err))
    return st.nr_cache


def main():
    path, block = sys.argv[1], int(sys.argv[2])
    measure = os.open(path, os.O_RDONLY)
    reader = os.open(path, os.O_RDONLY)
    peak = total = 0
    while True:
        data = os.read(reader, block)
        if not data:
            break
        total += len(data)
        peak = max(peak, cached_pages(measure))
    os.close(reader)
    after = cached_pages(measure)
    deadline = time.monotonic() + 5
    while after and time.monotonic() < deadline:
        time.sleep(0.01)
        after = cached_pages(measure)
    print(f"peak {peak} after {after} bytes {total}")


main()
