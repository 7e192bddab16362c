"""``orderflow api-key new CLIENT_ID``: make an API key; only its hash is ever configured.

Prints the key once (it is not stored anywhere) and the line to add to the file named by
``ORDERFLOW_API_KEYS_FILE``; with ``--keys-file FILE`` the line is appended there and only the
key is printed (for scripts: ``make run`` makes its development key so).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from orderflow.domain.auth import hash_key, new_api_key

__all__ = ["main"]

_CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="orderflow api-key")
    commands = parser.add_subparsers(dest="command", required=True)
    new = commands.add_parser("new", help="make a key for a client (printed once)")
    new.add_argument("client_id", help="the client's id (orders belong to it)")
    new.add_argument("--keys-file", type=Path, help="append the client's line to this file")
    args = parser.parse_args(list(argv))
    if not _CLIENT_ID.fullmatch(args.client_id):
        parser.error(f"CLIENT_ID must match {_CLIENT_ID.pattern}")
    key = new_api_key()
    line = f"{args.client_id} {hash_key(key)}"
    if args.keys_file is not None:
        with args.keys_file.open("a") as keys_file:
            keys_file.write(line + "\n")
        print(key)
        return 0
    print(f"API key for {args.client_id} (shown once; send it as 'Authorization: Bearer <key>'):")
    print(f"  {key}")
    print("Add this line to the file named by ORDERFLOW_API_KEYS_FILE (workers read it at start):")
    print(f"  {line}")
    sys.stdout.flush()
    return 0
