#!/usr/bin/env python3
"""Publishes N alert documents to JetStream as sensors do, each confirmed by the stream.

    publish-alerts.py HOST PORT N TAG

Ids are TAG-000000 … TAG-(N-1); prints nothing and exits 0 once JetStream stored every one (its
ack carries a sequence number), 1 otherwise. Speaks the NATS text protocol directly (no client
library needed), publishing in windows of 500 with a reply inbox for the acks.
"""

import json
import socket
import sys

WINDOW = 500


def main():
    host, port, n, tag = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    s = socket.create_connection((host, port), timeout=30)
    f = s.makefile("rb")
    if not f.readline().startswith(b"INFO"):
        print("no INFO from nats-server", file=sys.stderr)
        return 1
    s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB _INBOX.bench 1\r\nPING\r\n')
    while f.readline().strip() != b"PONG":
        pass
    stored = 0
    for start in range(0, n, WINDOW):
        batch = []
        for i in range(start, min(n, start + WINDOW)):
            alert = json.dumps({
                "id": f"{tag}-{i:06d}", "severity": "medium", "title": f"bench alert {i}",
                "host": "ws-bench", "source": "edr", "raised_at": "2026-12-01T10:00:00.000001Z",
                "metadata": {"n": str(i), "path": "C:\\Users\\bench\\Documents\\file.docx"},
            }).encode()
            batch.append(b"PUB alerts.medium _INBOX.bench %d\r\n%s\r\n" % (len(alert), alert))
        s.sendall(b"".join(batch))
        want = len(batch)
        while want:
            line = f.readline()
            if line.startswith(b"PING"):
                s.sendall(b"PONG\r\n")
                continue
            if not line.startswith(b"MSG"):
                continue
            size = int(line.split()[-1])
            body = f.read(size + 2)[:size]
            if b'"seq"' not in body:
                print(f"not stored: {body!r}", file=sys.stderr)
                return 1
            stored += 1
            want -= 1
    return 0 if stored == n else 1


if __name__ == "__main__":
    sys.exit(main())
