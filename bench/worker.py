"""Worker process entry point: ``python -m bench.worker <system> <index>``.

The runner starts this with the BENCH_* environment (see BenchEnv); it loads the system class
and hands over to its ``worker_main``.
"""

from __future__ import annotations

import sys

from bench.systems import load_system
from bench.systems.base import BenchEnv


def main() -> None:
    name, index = sys.argv[1], int(sys.argv[2])
    load_system(name).worker_main(BenchEnv.from_environ(), index)


if __name__ == "__main__":
    main()
