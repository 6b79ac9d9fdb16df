#!/usr/bin/env python3
"""A small HTTP protocol fuzzer: malformed requests at the drill's nginx, one JSON line a second.

Each request is a valid one with one mutation (a bad method, version, header, length, chunk,
a long line, random bytes, a truncation). Counts the answers by class; a finding is an answer
of 500, 502, 503 or 504 (the server failed, where a 4xx, 501 or 505 is it refusing what it
should refuse), or the server refusing connections after it had answered (it died). The lines also go to
fuzz.jsonl in the drill's scratch directory, where the steady-state check reads them.
"""

import json
import os
import random
import socket
import sys
import time

HOST, PORT = sys.argv[1] if len(sys.argv) > 1 else "10.201.0.2", 8080
BASE = b"GET / HTTP/1.1\r\nHost: drill\r\nUser-Agent: chaos-fuzz\r\n\r\n"


def mutate(rng):
    kind = rng.choice(["method", "version", "header", "length", "chunked", "long", "bytes", "cut"])
    if kind == "method":
        return BASE.replace(b"GET", rng.choice([b"G\x00T", b"", b"GETT", b"get", b"X" * 300]))
    if kind == "version":
        return BASE.replace(b"HTTP/1.1", rng.choice([b"HTTP/9.9", b"HTTP/1.", b"HTP/1.1", b""]))
    if kind == "header":
        return BASE.replace(b"\r\n\r\n", b"\r\n" + rng.choice([b"X: \x01\x02", b": empty", b"A" * 70000 + b": x", b"Host: second"]) + b"\r\n\r\n")
    if kind == "length":
        return b"POST / HTTP/1.1\r\nHost: drill\r\nContent-Length: " + rng.choice([b"-1", b"99999999999999999999", b"1, 2", b"abc"]) + b"\r\n\r\nx"
    if kind == "chunked":
        return b"POST / HTTP/1.1\r\nHost: drill\r\nTransfer-Encoding: chunked\r\n\r\n" + rng.choice([b"zz\r\n", b"ffffffffffffffffff\r\n", b"5\r\nab\r\n0\r\n\r\n"])
    if kind == "long":
        return b"GET /" + b"a" * rng.choice([1000, 9000, 70000]) + b" HTTP/1.1\r\nHost: drill\r\n\r\n"
    if kind == "bytes":
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200))) + b"\r\n\r\n"
    return BASE[: rng.randint(1, len(BASE) - 1)]


FAILED = (b"500", b"502", b"503", b"504")


def send(payload):
    """The status class of the answer ('2xx', '4xx'...; 'failed' for a failure of the server),
    'reset', 'timeout', 'no-answer' or 'refused'."""
    try:
        with socket.create_connection((HOST, PORT), timeout=2) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            answer = sock.recv(64)
    except ConnectionRefusedError:
        return "refused"
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    except (socket.timeout, TimeoutError):
        return "timeout"
    except OSError:
        return "reset"
    if answer.startswith(b"HTTP/") and len(answer) >= 12:
        if answer[9:12] in FAILED:
            return "failed"
        return answer[9:10].decode(errors="replace") + "xx"
    return "no-answer"


def main():
    scratch = os.environ.get("CHAOS_DRILL_DIR", "/tmp/chaos-drill-http")
    os.makedirs(scratch, exist_ok=True)
    kept = open(os.path.join(scratch, "fuzz.jsonl"), "a", encoding="utf-8")
    rng = random.Random(1)
    answered = False
    findings = 0
    while True:
        counts = {"sent": 0, "2xx": 0, "4xx": 0, "5xx": 0, "failed": 0, "reset": 0,
                  "timeout": 0, "no-answer": 0, "refused": 0}
        until = time.monotonic() + 1
        while time.monotonic() < until:
            outcome = send(mutate(rng))
            counts["sent"] += 1
            counts[outcome] = counts.get(outcome, 0) + 1
            answered |= outcome.endswith("xx") or outcome == "failed"
            if outcome == "failed" or (answered and outcome == "refused"):
                findings += 1
        counts["findings"] = findings
        line = json.dumps(counts)
        print(line, flush=True)
        kept.write(line + "\n")
        kept.flush()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
