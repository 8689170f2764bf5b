#!/usr/bin/env python3
"""A writer on one node and a reader on another, in step (cluster_test.sh).

  crossnode.py writer PATH SIZE RECORD SYNCDIR
  crossnode.py reader PATH SIZE SYNCDIR MODE
  crossnode.py make PATH SIZE

The writer writes SIZE bytes of a known pattern (nonzero bytes) to PATH in writes of RECORD
bytes (unaligned on purpose). After each write returns it publishes how many bytes it has
written (SYNCDIR/w.K) and waits until the reader has read (SYNCDIR/r.K); at the end it closes
PATH and publishes SYNCDIR/closed. The reader, on the other node, reads PATH after each step
twice: through a new open and through a descriptor it keeps open from the start. It checks
that every byte it gets is the byte the writer wrote there (never a byte the writer did not
write, a zero of a hole or of space reserved ahead), and with MODE=strict that it gets every
byte whose write returned before the read started. After the writer closed, a new open reads
the whole file. No timing is asserted: the two wait for each other through files outside the
mounts. Needs python3 only. `make` writes the pattern to PATH (a reference file).
"""
import os
import sys
import time

PERIOD = 65521  # a prime: the pattern does not line up with any block size


def pattern_block():
    seed = 12345
    out = bytearray(PERIOD)
    for i in range(PERIOD):
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        out[i] = 1 + (seed >> 16) % 255  # never 0
    return bytes(out)


BLOCK = pattern_block()


def expected(offset, length):
    """The pattern's bytes at [offset, offset + length)."""
    start = offset % PERIOD
    reps = (start + length) // PERIOD + 1
    return (BLOCK * reps)[start:start + length]


def wait_for(path, other_failed):
    """Polls for PATH; stops (exit 1) when the other side reported a failure."""
    while not os.path.exists(path):
        if os.path.exists(other_failed):
            sys.exit(f"crossnode: the other side failed ({other_failed})")
        time.sleep(0.005)


def publish(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def writer(path, size, record, sync):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    written, step = 0, 0
    publish(f"{sync}/w.{step}", "0")
    wait_for(f"{sync}/r.{step}", f"{sync}/reader.failed")
    while written < size:
        chunk = expected(written, min(record, size - written))
        n = os.write(fd, chunk)
        if n != len(chunk):
            sys.exit(f"crossnode writer: short write {n} of {len(chunk)} at {written}")
        written += n
        step += 1
        publish(f"{sync}/w.{step}", str(written))
        wait_for(f"{sync}/r.{step}", f"{sync}/reader.failed")
    os.close(fd)
    publish(f"{sync}/closed", str(written))
    print(f"crossnode writer: {written} bytes in {step} writes of {record}")


def read_all(fd):
    out = bytearray()
    while True:
        piece = os.pread(fd, 1 << 20, len(out))
        if not piece:
            return bytes(out)
        out += piece


def check(data, written, what, strict):
    """Fails unless DATA is the writer's bytes only (and, strict, all WRITTEN of them)."""
    if len(data) > written:
        raise SystemExit(f"crossnode reader: {what}: {len(data)} bytes, the writer had written "
                         f"{written}")
    if data != expected(0, len(data)):
        bad = next(i for i, (a, b) in enumerate(zip(data, expected(0, len(data)))) if a != b)
        raise SystemExit(f"crossnode reader: {what}: byte {bad} is {data[bad]}, the writer "
                         f"wrote {expected(bad, 1)[0]} there (of {len(data)} read, {written} "
                         f"written)")
    if strict and len(data) != written:
        raise SystemExit(f"crossnode reader: {what}: {len(data)} bytes, but the writes of "
                         f"{written} had returned before the read (strict)")


def reader(path, size, sync, mode):
    strict = mode == "strict"
    step, short = 0, {"new open": 0, "kept open": 0}
    try:
        wait_for(f"{sync}/w.0", f"{sync}/writer.failed")
        kept = os.open(path, os.O_RDONLY)
        while True:
            wait_for(f"{sync}/w.{step}", f"{sync}/writer.failed")
            with open(f"{sync}/w.{step}") as f:
                written = int(f.read())
            fd = os.open(path, os.O_RDONLY)
            for what, desc in (("new open", fd), ("kept open", kept)):
                data = read_all(desc)
                check(data, written, f"step {step}, {what}", strict)
                short[what] += len(data) < written
            os.close(fd)
            publish(f"{sync}/r.{step}", "")
            if written >= size:
                break
            step += 1
        wait_for(f"{sync}/closed", f"{sync}/writer.failed")
        os.close(kept)
        fd = os.open(path, os.O_RDONLY)
        data = read_all(fd)
        os.close(fd)
        if len(data) != size or data != expected(0, size):
            raise SystemExit(f"crossnode reader: after the writer closed, a new open read "
                             f"{len(data)} bytes, not the {size} written (or other bytes)")
    except BaseException:
        publish(f"{sync}/reader.failed", "")
        raise
    print(f"crossnode reader ({mode}): {step} steps; reads short of what was written: "
          f"{short['new open']} by a new open, {short['kept open']} through the kept descriptor")


def main():
    cmd = sys.argv[1]
    if cmd == "writer":
        sync = sys.argv[5]
        try:
            writer(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sync)
        except BaseException:
            publish(f"{sync}/writer.failed", "")
            raise
    elif cmd == "reader":
        reader(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    elif cmd == "make":
        with open(sys.argv[2], "wb") as f:
            f.write(expected(0, int(sys.argv[3])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
