"""``python -m harness.bench [pairs=256] [batch=32] [steps=4] [repeats=5] [threads=N] [wait=120] [compile=1]``: how fast
the backbone trains, against TRL (the benchmark is ``benchmarks/train_speed.py``)."""
import sys

from benchmarks.train_speed import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
