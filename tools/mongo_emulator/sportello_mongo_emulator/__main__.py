"""``python -m sportello_mongo_emulator --port 27017 [--snapshot FILE]``: serve until
SIGTERM/SIGINT. With ``--snapshot``, the data is loaded from FILE at start and written to
it every ``--snapshot-every`` seconds and on stop, so that ``make up`` keeps its tickets
across restarts."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from sportello_mongo_emulator.server import MongoEmulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=27017, help="0 picks a free port")
    parser.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    parser.add_argument("--snapshot", type=Path, help="keep the data in this file")
    parser.add_argument("--snapshot-every", type=float, default=30.0, metavar="SECONDS")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s mongo-emulator %(message)s")

    emulator = MongoEmulator(args.host, args.port, snapshot=args.snapshot,
                             snapshot_every_s=args.snapshot_every)
    port = emulator.start()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if args.port_file:
        tmp = args.port_file.with_suffix(".tmp")
        tmp.write_text(str(port))
        tmp.replace(args.port_file)
    kept = (f"kept in {args.snapshot} (every {args.snapshot_every:g} s and on stop)"
            if args.snapshot else "in memory, nothing is kept across restarts")
    print(f"mongo emulator (mongomock via mockupdb) listening on mongodb://{args.host}:{port} "
          f"- {kept}", flush=True)
    stop.wait()
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
