#!/usr/bin/env python3
"""Encryption at rest throughput: encrypt and decrypt a recording-sized file.

A 1 MB file (--mb; 8 kHz 16-bit mono WAV is 960 KB a minute), random bytes,
in a temporary folder (the page cache: this measures the cipher and the
Python around it, plus one fsync per encryption).  Timed --repeat times each,
median and best printed:

- ``encrypt``: ``encrypt_file`` (read, AES-256-GCM per 64 KiB chunk, both
  SHA-256s, write, fsync);
- ``decrypt``: ``open_encrypted`` + ``iter_plain`` over the whole file;
- ``range``: one 64 KiB Range read at a random offset (two chunks at most),
  as an HTTP Range request would.

Usage:
    .venv/bin/python bench/crypt_bench.py
    .venv/bin/python bench/crypt_bench.py --mb 60 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hotline.recordings.crypt import CHUNK_SIZE, SiteKeys, encrypt_file, open_encrypted  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--mb", type=float, default=1.0, help="file size in MB (10^6 bytes)")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--chunk", type=int, default=CHUNK_SIZE)
    args = ap.parse_args()
    size = int(args.mb * 1_000_000)
    keys = SiteKeys.generate()
    enc_t: list[float] = []
    dec_t: list[float] = []
    range_t: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "call.wav", Path(tmp) / "call.wav.enc"
        src.write_bytes(os.urandom(size))
        for _ in range(args.repeat):
            t = time.perf_counter()
            encrypt_file(src, dst, keys, args.chunk)
            enc_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            with open_encrypted(dst, keys) as r:
                n = sum(len(p) for p in r.iter_plain())
            dec_t.append(time.perf_counter() - t)
            assert n == size
            with open_encrypted(dst, keys) as r:
                for _ in range(10):
                    start = random.randrange(max(1, size - 65536))
                    t = time.perf_counter()
                    r.read_range(start, min(start + 65535, size - 1))
                    range_t.append(time.perf_counter() - t)
    mb = size / 1e6
    print(f"file {mb:g} MB, chunk {args.chunk} B, {args.repeat} runs, {os.cpu_count()} CPUs")
    for name, times in (("encrypt", enc_t), ("decrypt", dec_t)):
        med, best = statistics.median(times), min(times)
        print(
            f"{name}: median {mb / med:7.1f} MB/s ({med * 1e3:6.2f} ms), "
            f"best {mb / best:7.1f} MB/s ({best * 1e3:6.2f} ms)"
        )
    print(
        f"range 64 KiB: median {statistics.median(range_t) * 1e6:.0f} µs, "
        f"p99 {sorted(range_t)[int(len(range_t) * 0.99)] * 1e6:.0f} µs ({len(range_t)} reads)"
    )


if __name__ == "__main__":
    main()
