"""``python -m offload.worker``: the lean worker entry point (``offload worker`` execs it).

Kept free of the command-line toolkit so that a worker process carries only what it runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="offload worker")
    parser.add_argument("--app", required=True, help="MODULE:ATTR of your Offload app")
    parser.add_argument("--queues", default=None, help="comma-separated queues (default: all)")
    parser.add_argument("--concurrency", type=int, default=10, help="jobs at once per process")
    parser.add_argument(
        "--prefetch", type=int, default=0, help="jobs claimed ahead of free slots (short jobs)"
    )
    parser.add_argument("--processes", type=int, default=1, help="worker processes")
    parser.add_argument("--grace", type=float, default=30.0, help="seconds to drain on SIGTERM")
    parser.add_argument("--log-level", default=os.environ.get("OFFLOAD_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    if args.concurrency < 1 or args.processes < 1 or args.prefetch < 0:
        parser.error("--concurrency and --processes must be >= 1, --prefetch >= 0")
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
    )
    if args.processes > 1:
        from .supervisor import supervise

        child = [
            "--app",
            args.app,
            "--concurrency",
            str(args.concurrency),
            "--prefetch",
            str(args.prefetch),
            "--grace",
            str(args.grace),
            "--log-level",
            args.log_level,
        ]
        if args.queues:
            child += ["--queues", args.queues]
        return supervise(child, args.processes)

    from .process import run_worker_process

    queues = [q.strip() for q in args.queues.split(",") if q.strip()] if args.queues else None
    return run_worker_process(
        args.app,
        queues=queues,
        concurrency=args.concurrency,
        prefetch=args.prefetch,
        grace=args.grace,
    )


if __name__ == "__main__":
    sys.exit(main())
