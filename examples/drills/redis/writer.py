#!/usr/bin/env python3
"""The application: it writes keys to the drill's Redis one at a time (SET k:N N) and counts
those Redis acknowledged. When the connection breaks (the server died) it reconnects, and once
the server is back it checks that every acknowledged key is there. Prints one JSON line a second
(also to writer.jsonl in the scratch directory, for the steady-state check): writes acknowledged
and failed, reconnects and how long the server was away, keys checked after a restart and
acknowledged keys lost.
"""

import json
import os
import socket
import time

ADDRESS = ("127.0.0.1", 6399)


def command(sock, *words):
    """Sends one command in RESP and reads a one-line reply (+OK, :N, -ERR)."""
    payload = f"*{len(words)}\r\n" + "".join(f"${len(str(w))}\r\n{w}\r\n" for w in words)
    sock.sendall(payload.encode())
    reply = b""
    while not reply.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        reply += chunk
    return reply.decode().strip()


def connect():
    while True:
        try:
            return socket.create_connection(ADDRESS, timeout=5)
        except OSError:
            time.sleep(0.05)


def missing(sock, acked):
    """How many of keys k:1..k:acked are not there (EXISTS counts those that are)."""
    absent = 0
    for start in range(1, acked + 1, 500):
        keys = [f"k:{n}" for n in range(start, min(start + 500, acked + 1))]
        reply = command(sock, "EXISTS", *keys)
        # A restarted server accepts connections while it reads its files back, and answers
        # -LOADING until it has them all.
        while reply.startswith("-LOADING"):
            time.sleep(0.05)
            reply = command(sock, "EXISTS", *keys)
        present = int(reply[1:])
        absent += len(keys) - present
    return absent


def main():
    scratch = os.environ.get("CHAOS_DRILL_DIR", "/tmp/chaos-drill-redis")
    kept = open(os.path.join(scratch, "writer.jsonl"), "a", encoding="utf-8")
    sock, acked, lost = connect(), 0, 0
    counts = {"acked": 0, "failed": 0, "reconnects": 0, "checked": 0}
    next_line = time.monotonic() + 1
    while True:
        try:
            if command(sock, "SET", f"k:{acked + 1}", acked + 1) == "+OK":
                acked += 1
                counts["acked"] += 1
        except OSError:
            broke = time.monotonic()
            counts["failed"] += 1
            sock.close()
            sock = connect()
            counts["reconnects"] += 1
            counts["down_ms"] = round((time.monotonic() - broke) * 1000)
            while True:
                try:
                    lost = missing(sock, acked)
                    break
                except OSError:
                    sock.close()
                    sock = connect()
            counts["checked"] += acked
        if time.monotonic() >= next_line:
            line = json.dumps(dict(counts, total_acked=acked, lost=lost))
            print(line, flush=True)
            kept.write(line + "\n")
            kept.flush()
            counts = {"acked": 0, "failed": 0, "reconnects": 0, "checked": 0}
            next_line += 1


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
