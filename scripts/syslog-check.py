#!/usr/bin/env python3
"""An independent, strict syslog parser for the alerts tests (docs/ALERTS.md, "Renderings").

    syslog-check.py rfc5424 FILE   every line of FILE as RFC 5424 (ABNF of RFC 5424 section 6)
    syslog-check.py rfc3164 FILE   every line of FILE as RFC 3164 plus the key="value" content

Prints a JSON array with one object per line (all fields, structured data unescaped) and exits 0;
exits 1 naming the first line that does not parse and why. Written from the RFCs, sharing nothing
with the Rust code it checks.
"""

import datetime
import json
import re
import sys

PRINTUSASCII = set(range(33, 127))
BOM = "\ufeff"
TS_5424 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(Z|[+-]\d{2}:\d{2})$"
)
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


class Bad(Exception):
    pass


def header_field(tok, maxlen, what):
    if tok == "-":
        return None
    if not (1 <= len(tok) <= maxlen) or any(ord(c) not in PRINTUSASCII for c in tok):
        raise Bad(f"{what} {tok!r} is not 1-{maxlen} PRINTUSASCII")
    return tok


def sd_name(s, i, what):
    j = i
    while j < len(s) and ord(s[j]) in PRINTUSASCII and s[j] not in '= ]"':
        j += 1
    name = s[i:j]
    if not 1 <= len(name) <= 32:
        raise Bad(f"{what} {name!r} is not an SD-NAME of 1-32 characters")
    return name, j


def parse_sd(s, i):
    """Structured data at s[i:]: (dict of element id -> list of (name, value)), next index."""
    if s[i:i + 1] == "-":
        return {}, i + 1
    elements = {}
    if s[i:i + 1] != "[":
        raise Bad("structured data is neither - nor [")
    while s[i:i + 1] == "[":
        sd_id, i = sd_name(s, i + 1, "SD-ID")
        if sd_id in elements:
            raise Bad(f"SD-ID {sd_id} repeated")
        params = []
        while s[i:i + 1] == " ":
            name, i = sd_name(s, i + 1, "PARAM-NAME")
            if s[i:i + 2] != '="':
                raise Bad(f"PARAM-NAME {name} not followed by =\"")
            i += 2
            value = []
            while True:
                if i >= len(s):
                    raise Bad("PARAM-VALUE not closed")
                c = s[i]
                if c == "\\" and i + 1 < len(s) and s[i + 1] in '"\\]':
                    value.append(s[i + 1])
                    i += 2
                elif c == '"':
                    i += 1
                    break
                elif c == "]":
                    raise Bad(f"unescaped ] in the value of {name}")
                else:
                    value.append(c)
                    i += 1
            params.append([name, "".join(value)])
        if s[i:i + 1] != "]":
            raise Bad(f"SD-ELEMENT {sd_id} not closed")
        i += 1
        elements[sd_id] = params
    return elements, i


def parse_5424(raw):
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Bad(f"not UTF-8: {e}")
    m = re.match(r"^<(\d{1,3})>1 ", s)
    if not m:
        raise Bad("no <PRI>1 header")
    pri = int(m.group(1))
    if pri > 191 or (len(m.group(1)) > 1 and m.group(1)[0] == "0"):
        raise Bad(f"PRI {m.group(1)} out of range")
    rest = s[m.end():]
    parts = rest.split(" ", 5)
    if len(parts) < 6:
        raise Bad("too few header fields")
    ts, host, app, procid, msgid, tail = parts
    if ts != "-":
        t = TS_5424.match(ts)
        if not t:
            raise Bad(f"TIMESTAMP {ts!r} is not RFC 5424's")
        datetime.datetime(*(int(t.group(k)) for k in range(1, 7)))  # raises on a bad date
    sd, i = parse_sd(tail, 0)
    msg = None
    if i < len(tail):
        if tail[i] != " ":
            raise Bad("no SP between structured data and MSG")
        msg = tail[i + 1:]
        if msg.startswith(BOM):
            msg = msg[1:]
    return {
        "pri": pri,
        "facility": pri // 8,
        "severity": pri % 8,
        "timestamp": None if ts == "-" else ts,
        "hostname": header_field(host, 255, "HOSTNAME"),
        "app_name": header_field(app, 48, "APP-NAME"),
        "procid": header_field(procid, 128, "PROCID"),
        "msgid": header_field(msgid, 32, "MSGID"),
        "sd": sd,
        "msg": msg,
    }


def parse_pairs(content, truncated):
    """key="value" pairs; with `truncated`, the last value may be cut short (no closing quote)."""
    pairs = []
    i = 0
    while i < len(content):
        m = re.compile(r' ([^ ="]+)="').match(content, i)
        if not m:
            break
        i = m.end()
        value = []
        while True:
            if i >= len(content):
                if truncated:
                    pairs.append([m.group(1), "".join(value)])
                    return pairs, ""
                raise Bad(f"value of {m.group(1)} not closed")
            c = content[i]
            if c == "\\" and i + 1 < len(content):
                value.append({"n": "\n", "r": "\r", "t": "\t"}.get(content[i + 1], content[i + 1]))
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                value.append(c)
                i += 1
        pairs.append([m.group(1), "".join(value)])
    return pairs, content[i:]


def parse_3164(raw):
    if len(raw) > 1024:
        raise Bad(f"{len(raw)} bytes, more than 1024")
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Bad(f"not UTF-8 (a cut inside a character?): {e}")
    m = re.match(r"^<(\d{1,3})>([A-Z][a-z]{2}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\S+) ([A-Za-z0-9_.-]{1,32}):", s)
    if not m:
        raise Bad("not <PRI>Mmm dd hh:mm:ss HOST TAG:")
    if m.group(2) not in MONTHS or int(m.group(1)) > 191:
        raise Bad("bad month or PRI")
    truncated = s.endswith("...[truncated]")
    body = s[m.end():]
    if truncated:
        body = body[: -len("...[truncated]")]
    pairs, leftover = parse_pairs(body, truncated)
    if leftover and not truncated:
        raise Bad(f"content left over: {leftover!r}")
    pri = int(m.group(1))
    return {
        "pri": pri,
        "facility": pri // 8,
        "severity": pri % 8,
        "timestamp": f"{m.group(2)} {m.group(3)} {m.group(4)}:{m.group(5)}:{m.group(6)}",
        "hostname": m.group(7),
        "tag": m.group(8),
        "pairs": pairs,
        "truncated": truncated,
        "bytes": len(raw),
    }


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("rfc5424", "rfc3164"):
        print(__doc__, file=sys.stderr)
        return 64
    parse = parse_5424 if sys.argv[1] == "rfc5424" else parse_3164
    out = []
    with open(sys.argv[2], "rb") as f:
        for n, line in enumerate(f.read().split(b"\n"), 1):
            if not line:
                continue
            try:
                out.append(parse(line))
            except Bad as e:
                print(f"line {n}: {e}: {line!r}", file=sys.stderr)
                return 1
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
