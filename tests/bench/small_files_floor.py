#!/usr/bin/env python3
"""What many small files cost when each must be on the device at its close (issue 19).

dbopt promises that a file's bytes are on the device when close() returns and that no page of
the backing file stays cached. For a tree of small files that is one device write per file,
made while the writer waits; a plain directory makes none (the page cache takes the bytes).
This copies a tree of regular files into a directory on the backing filesystem, without FUSE,
in three ways, and prints the seconds of each:

  buffered    open, write, close: what tar x does in a plain directory
  direct      what the daemon does for a file at its close: the whole aligned blocks written
              with O_DIRECT, the tail through the page cache, written back and dropped
              (sync_file_range WAIT_BEFORE|WRITE|WAIT_AFTER, then POSIX_FADV_DONTNEED)
  fdatasync   buffered, then fdatasync before the close
  reserve     direct, with the room the writeback window reserves at each open: a fallocate
              (KEEP_SIZE) of 16 MiB (two 8 MiB windows) before the writes, a truncate to the
              size at the close (RoomReservation::reserve and give_back)

usage: small_files_floor.py TARGET_PARENT [SOURCE_DIR...]
       (default sources: /usr/include /usr/share/doc; TARGET_PARENT must be on the backing
       filesystem; each way copies into a new directory there and removes it after)
"""
import ctypes
import mmap
import os
import shutil
import sys
import time

ALIGN = 4096
LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
WAIT_BEFORE, WRITE, WAIT_AFTER = 1, 2, 4  # SYNC_FILE_RANGE_*


LIBC.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
KEEP_SIZE = 1  # FALLOC_FL_KEEP_SIZE


def reserve(fd, length):
    if LIBC.fallocate(fd, KEEP_SIZE, 0, length) != 0:
        raise OSError(ctypes.get_errno(), "fallocate")


def sync_range(fd, offset, length):
    if LIBC.sync_file_range(fd, offset, length, WAIT_BEFORE | WRITE | WAIT_AFTER) != 0:
        raise OSError(ctypes.get_errno(), "sync_file_range")


def files_of(sources):
    out = []
    for src in sources:
        for root, _dirs, names in os.walk(src):
            for name in names:
                path = os.path.join(root, name)
                if os.path.isfile(path) and not os.path.islink(path):
                    with open(path, "rb") as f:
                        out.append((os.path.relpath(path, "/"), f.read()))
    return out


def write_buffered(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def copy(files, target, way):
    buf = mmap.mmap(-1, 64 << 20)  # page-aligned memory for O_DIRECT
    made = set()
    start = time.monotonic()
    for rel, data in files:
        path = os.path.join(target, rel)
        parent = os.path.dirname(path)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            if way == "reserve":
                reserve(fd, 16 << 20)
            if way in ("direct", "reserve"):
                whole = len(data) // ALIGN * ALIGN
                if whole:
                    dfd = os.open(path, os.O_WRONLY | os.O_DIRECT)
                    try:
                        for at in range(0, whole, len(buf)):
                            n = min(len(buf), whole - at)
                            buf[:n] = data[at:at + n]
                            os.pwrite(dfd, memoryview(buf)[:n], at)
                    finally:
                        os.close(dfd)
                if whole < len(data):
                    os.pwrite(fd, data[whole:], whole)
                    sync_range(fd, whole, len(data) - whole)
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                if way == "reserve":
                    os.ftruncate(fd, len(data))
            else:
                write_buffered(fd, data)
                if way == "fdatasync":
                    os.fdatasync(fd)
        finally:
            os.close(fd)
    return time.monotonic() - start


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    parent = sys.argv[1]
    sources = sys.argv[2:] or ["/usr/include", "/usr/share/doc"]
    files = files_of(sources)
    total = sum(len(d) for _, d in files)
    print(f"{len(files)} files, {total / 2**20:.1f} MiB, from {' '.join(sources)}")
    for way in ("buffered", "direct", "reserve", "fdatasync"):
        target = os.path.join(parent, f"floor-{way}")
        shutil.rmtree(target, ignore_errors=True)
        os.sync()
        seconds = copy(files, target, way)
        print(f"{way}: {seconds:.2f} s ({seconds / len(files) * 1e6:.0f} us per file)")
        shutil.rmtree(target)


if __name__ == "__main__":
    main()
