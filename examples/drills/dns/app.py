#!/usr/bin/env python3
"""The application: it resolves its dependency (db.drill.test) and another name
(cache.drill.test) through the drill's resolver, each in a loop of its own with 100 ms between
lookups, as a client library would: each lookup tries up to 3 times, waiting 1 s for an answer,
100 ms between tries. Prints one JSON line a second: lookups resolved and failed per name, the
dependency's tries, SERVFAILs and timeouts, and, when the dependency resolves again after
failing, how long it was unresolvable (from the start of the first lookup that failed).
"""

import json
import random
import socket
import struct
import threading
import time

RESOLVER = ("10.202.0.2", 53)
TRIES, TIMEOUT, BETWEEN = 3, 1.0, 0.1


def query(name):
    """One try: 'ok', 'servfail', 'nxdomain', 'refused', 'timeout' or 'error'."""
    ident = random.getrandbits(16)
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.split("."))
    packet = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question + b"\0" + struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.sendto(packet, RESOLVER)
        try:
            while True:
                answer, _ = sock.recvfrom(512)
                if len(answer) >= 12 and struct.unpack("!H", answer[:2])[0] == ident:
                    break
        except (socket.timeout, TimeoutError):
            return "timeout"
    rcode = answer[3] & 0x0F
    answers = struct.unpack("!H", answer[6:8])[0]
    return {0: "ok" if answers else "error", 2: "servfail", 3: "nxdomain", 5: "refused"}.get(rcode, "error")


def lookup(name, record):
    """Resolves `name` with retries, handing each try's outcome to `record`; whether it
    resolved."""
    for attempt in range(TRIES):
        outcome = query(name)
        record(outcome)
        if outcome == "ok":
            return True
        if attempt + 1 < TRIES:
            time.sleep(BETWEEN)
    return False


def main():
    counts = new_counts()
    lock = threading.Lock()
    failing_since = [None]

    def record(outcome):
        with lock:
            counts["tries"] += 1
            if outcome != "ok":
                counts[outcome] = counts.get(outcome, 0) + 1

    def dependency():
        while True:
            started = time.monotonic()
            resolved = lookup("db.drill.test", record)
            with lock:
                if resolved:
                    counts["db_resolved"] += 1
                    if failing_since[0] is not None:
                        counts["unresolvable_ms"] = round((time.monotonic() - failing_since[0]) * 1000)
                        failing_since[0] = None
                else:
                    counts["db_failed"] += 1
                    failing_since[0] = failing_since[0] or started
            time.sleep(0.1)

    def other_name():
        while True:
            resolved = lookup("cache.drill.test", lambda outcome: None)
            with lock:
                counts["other_resolved" if resolved else "other_failed"] += 1
            time.sleep(0.1)

    for target in (dependency, other_name):
        threading.Thread(target=target, daemon=True).start()
    while True:
        time.sleep(1)
        with lock:
            line, counts = json.dumps(counts), new_counts()
        print(line, flush=True)


def new_counts():
    return {"db_resolved": 0, "db_failed": 0, "other_resolved": 0, "other_failed": 0,
            "tries": 0, "servfail": 0, "timeout": 0}


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
