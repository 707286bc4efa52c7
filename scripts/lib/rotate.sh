# shellcheck shell=bash
#
# What scripts/bench-rotate and scripts/crash-rotate share: the binaries, a database with the
# schema, an `init`ed world, the agent simulator read through a FIFO, an independent check of the
# trust keys, and the header that says where the figures come from.
#
# Source it after scripts/lib/sandbox.sh, from the repository root. Like the sandbox library it
# does not change shell options; every function reports failures as `error:` / `hint:` lines on
# stderr and returns non-zero.
#
#   rot_build WORK             cargo build --release -p ransomeye-ops -p ransomeye-agent-sim (into
#                              $CARGO_TARGET_DIR if set, else the workspace's target dir); private
#                              copies in WORK; sets ROT_OPS, ROT_SIM
#   rot_db_url URL NAME        prints URL with its database replaced by NAME
#   rot_fresh_db URL NAME      (re)creates database NAME on the server of URL and loads
#                              schema/platform.sql; sets ROT_DB_URL
#   rot_drop_db URL NAME       drops database NAME (if it exists)
#   rot_init DIR DB_URL        `ransomeye-ops init` into DIR (config DIR/etc/kernel.toml, keys
#                              DIR/keys, ...); sets ROT_CFG, ROT_KEYS
#   rot_sim_start DIR N ACK    starts ransomeye-agent-sim (N agents, --ack-fraction ACK) on the
#                              world of rot_init, its stdout on the FIFO DIR/sim.fifo, and reads it
#                              up to its `ready` line; sets ROT_SIM_PID, ROT_SIM_FD (the read end,
#                              inherited by children), ROT_SIM_LOG (every line read, DIR/sim.out),
#                              ROT_SIM_ERR (its stderr)
#   rot_sim_read_until ERE SECS
#                              reads the simulator's lines (logging them) until one matches ERE;
#                              sets ROT_SIM_LINE
#   rot_sim_stop               SIGTERM to the simulator (SIGKILL after 10 s); idempotent
#   rot_keycheck_py            prints the Python module behind rot_keycheck (import it as a module:
#                              check(config, final=False) -> (info, problems, notes))
#   rot_keycheck CONFIG [--final]
#                              checks the trust keys without ransomeye-ops (below); prints one
#                              JSON line {info, problems, notes}; non-zero if a problem was found
#   rot_tree                   prints the tree: short HEAD, plus "dirty (N paths)" if the working
#                              tree differs from it
#   rot_cpu_busy SECS          percent of all CPUs busy over SECS (from /proc/stat)
#   rot_machine                prints one line: date, cores, CPU, RAM, load average
#
# The key check (python3 with the `cryptography` package; neither it nor OpenSSL 3.0 reads ring's
# PKCS#8 v2 Ed25519 files, so the DER is taken apart here and the public key derived from the
# seed):
#   - the configuration parses as TOML and has [trust] with version >= 1, public_key (64 hex) and
#     key_id = the first 8 bytes of SHA-256 of the public key, and [keys] dir;
#   - exactly one of signing.key and signing.key.next exists and holds the configured key; every
#     key file present is a well-formed Ed25519 key whose embedded public key is its seed's, that
#     signs and verifies, and that is neither group-writable nor readable by others;
#   - the keys directory holds only the known names (archive.key, backup.key, signing.key,
#     signing.key.next, rotation-journal.json, .rotate-keys.lock, retired/) and temporary files
#     (.<name>.tmp-*, noted); retired/ only <key id> files holding that key (and temporary files);
#     the configuration's directory only the configuration and temporary files (noted);
#   - the journal (if any) parses, and the configuration agrees with its latest rotation: its `from`
#     side while pending/aborting/aborted, its `to` side once committed, either while committing;
#     once committed, retired/<from key id> holds the old key;
#   - with --final additionally: no signing.key.next, and the latest rotation is committed or
#     aborted.

_ROT_KNOWN_KEYS_ENTRIES="archive.key backup.key signing.key signing.key.next rotation-journal.json .rotate-keys.lock retired"

rot_build() {
    local work="${1:?rot_build WORK}" target_dir b
    if ! cargo build --release -q -p ransomeye-ops -p ransomeye-agent-sim; then
        _sb_err "cargo build --release -p ransomeye-ops -p ransomeye-agent-sim failed" "see the compiler output above"
        return 1
    fi
    # cargo metadata follows CARGO_TARGET_DIR and .cargo/config, as the build did.
    target_dir="$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')" || {
        _sb_err "cargo metadata failed" "run: cargo metadata --format-version 1 --no-deps"
        return 1
    }
    # Private copies: a rebuild in the workspace during the runs must not change what is measured.
    for b in ransomeye-ops ransomeye-agent-sim; do
        [[ -x "$target_dir/release/$b" ]] || {
            _sb_err "$target_dir/release/$b not built" "check the output of: cargo build --release -p $b"
            return 1
        }
        cp "$target_dir/release/$b" "$work/$b" || return 1
    done
    ROT_OPS="$work/ransomeye-ops"
    ROT_SIM="$work/ransomeye-agent-sim"
}

rot_db_url() {
    local url="$1" name="$2" query="" scheme rest
    if [[ "$url" == *\?* ]]; then
        query="?${url#*\?}"
        url="${url%%\?*}"
    fi
    scheme="${url%%://*}"
    rest="${url#*://}"
    rest="${rest%%/*}"
    printf '%s://%s/%s%s' "$scheme" "$rest" "$name" "$query"
}

rot_drop_db() {
    psql "$1" -X -q -At -v ON_ERROR_STOP=1 -c "SET client_min_messages TO warning" \
        -c "DROP DATABASE IF EXISTS $2 WITH (FORCE)" >/dev/null
}

rot_fresh_db() {
    local admin="$1" name="$2"
    rot_drop_db "$admin" "$name" || {
        _sb_err "cannot drop database $name" "DATABASE_URL must be a superuser URL"
        return 1
    }
    psql "$admin" -X -q -At -v ON_ERROR_STOP=1 -c "CREATE DATABASE $name" >/dev/null || {
        _sb_err "cannot create database $name" "DATABASE_URL must be a superuser URL"
        return 1
    }
    ROT_DB_URL="$(rot_db_url "$admin" "$name")"
    psql "$ROT_DB_URL" -X -q -At -v ON_ERROR_STOP=1 -f schema/platform.sql >/dev/null || {
        _sb_err "loading schema/platform.sql into $name failed" "see the psql output above"
        return 1
    }
}

rot_init() {
    local dir="$1" db_url="$2" out
    ROT_CFG="$dir/etc/kernel.toml"
    ROT_KEYS="$dir/keys"
    if ! out="$("$ROT_OPS" --config "$ROT_CFG" init --database-url "$db_url" --nats-url "$NATS_URL" \
        --keys-dir "$ROT_KEYS" --archive-dir "$dir/archive" --backup-dir "$dir/backup" 2>&1)"; then
        printf '%s\n' "$out" >&2
        _sb_err "ransomeye-ops init failed" "see its output above"
        return 1
    fi
}

rot_sim_start() {
    local dir="$1" agents="$2" ack="$3" line
    ROT_SIM_LOG="$dir/sim.out"
    ROT_SIM_ERR="$dir/sim.err"
    rm -f "$dir/sim.fifo"
    mkfifo "$dir/sim.fifo" || return 1
    : >"$ROT_SIM_LOG"
    # The database URL comes from the configuration rot_init wrote (the agents must be in the
    # database rotate-keys reads).
    local db_url
    db_url="$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["database"]["url"])' "$ROT_CFG")" ||
        return 1
    "$ROT_SIM" --database-url "$db_url" --nats-url "$NATS_URL" --agents "$agents" \
        --ack-fraction "$ack" --config "$ROT_CFG" >"$dir/sim.fifo" 2>"$ROT_SIM_ERR" </dev/null &
    ROT_SIM_PID=$!
    # Blocks until the simulator has opened its end (or died trying: then the read sees EOF).
    exec {ROT_SIM_FD}<"$dir/sim.fifo"
    rm -f "$dir/sim.fifo"
    if ! rot_sim_read_until '^ready$' 300; then
        _sb_err "the simulator (${agents} agents) did not become ready" \
            "its own error is above; it needs the database named in $ROT_CFG (with the schema) and nats-server at $NATS_URL"
        return 1
    fi
    line="$(grep -m1 '^registered' "$ROT_SIM_ERR" 2>/dev/null || true)"
    [[ -n "$line" ]] && printf 'simulator (pid %s): %s\n' "$ROT_SIM_PID" "$line" >&2
    return 0
}

rot_sim_read_until() {
    local ere="$1" secs="$2" line end now left rc
    end=$((${EPOCHSECONDS:-$(date +%s)} + secs))
    ROT_SIM_LINE=""
    while :; do
        now=${EPOCHSECONDS:-$(date +%s)}
        left=$((end - now))
        if ((left <= 0)); then
            _sb_err "no simulator line matching /$ere/ within ${secs}s" "its output so far: $ROT_SIM_LOG, stderr: $ROT_SIM_ERR"
            return 1
        fi
        rc=0
        IFS= read -r -t "$left" -u "$ROT_SIM_FD" line || rc=$?
        if ((rc > 128)); then
            continue # timed out: the loop says so
        elif ((rc != 0)); then
            [[ -n "$line" ]] && printf '%s\n' "$line" >>"$ROT_SIM_LOG"
            _sb_err "the simulator closed its stdout (exited?); its stderr: $ROT_SIM_ERR" \
                "$(tail -n 3 "$ROT_SIM_ERR" 2>/dev/null | tr '\n' ' ')"
            return 1
        fi
        printf '%s\n' "$line" >>"$ROT_SIM_LOG"
        if [[ "$line" =~ $ere ]]; then
            # shellcheck disable=SC2034 # for the caller
            ROT_SIM_LINE="$line"
            return 0
        fi
    done
}

rot_sim_stop() {
    local i
    if [[ -n "${ROT_SIM_PID:-}" ]] && kill -0 "$ROT_SIM_PID" 2>/dev/null; then
        kill -TERM "$ROT_SIM_PID" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$ROT_SIM_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$ROT_SIM_PID" 2>/dev/null || true
        wait "$ROT_SIM_PID" 2>/dev/null || true
    fi
    if [[ -n "${ROT_SIM_FD:-}" ]]; then
        exec {ROT_SIM_FD}<&-
    fi
    ROT_SIM_PID=""
    ROT_SIM_FD=""
}

rot_keycheck_py() {
    printf '"""Checks a RansomEye world'"'"'s trust keys without ransomeye-ops (scripts/lib/rotate.sh)."""\n'
    printf 'KNOWN = set("%s".split())\n' "$_ROT_KNOWN_KEYS_ENTRIES"
    cat <<'PY'
import hashlib, json, os, re, stat, sys, tomllib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# ring's Ed25519 PKCS#8: v2 (RFC 5958, with the public key as [1] IMPLICIT BIT STRING) or v1.
V2_HEAD = bytes.fromhex("3051020101300506032b657004220420")
V2_MID = bytes.fromhex("812100")
V1_HEAD = bytes.fromhex("302e020100300506032b657004220420")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")


def key_id(public):
    return hashlib.sha256(public).digest()[:8].hex()


def is_temp(name):
    return name.startswith(".") and ".tmp-" in name


def load_key(path):
    """The public key (hex) of the Ed25519 key file at path; raises ValueError if malformed."""
    with open(path, "rb") as f:
        der = f.read()
    if len(der) == 83 and der.startswith(V2_HEAD) and der[48:51] == V2_MID:
        seed, embedded = der[16:48], der[51:]
    elif len(der) == 48 and der.startswith(V1_HEAD):
        seed, embedded = der[16:48], None
    else:
        raise ValueError(f"not an Ed25519 PKCS#8 v1/v2 key as ring writes it ({len(der)} bytes)")
    key = Ed25519PrivateKey.from_private_bytes(seed)
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if embedded is not None and embedded != public:
        raise ValueError("its embedded public key is not its seed's")
    try:
        key.public_key().verify(key.sign(b"ransomeye keycheck"), b"ransomeye keycheck")
    except InvalidSignature:
        raise ValueError("it does not verify its own signature")
    if os.stat(path).st_mode & (stat.S_IROTH | stat.S_IWOTH | stat.S_IWGRP):
        raise ValueError(f"loose permissions {oct(os.stat(path).st_mode & 0o777)}")
    return public.hex()


def side_of(trust):
    return {"version": trust.get("version"), "key_id": trust.get("key_id"), "public_key": trust.get("public_key")}


def check(config, final=False):
    """(info, problems, notes) for the world whose configuration is `config`."""
    info, problems, notes = {}, [], []
    try:
        with open(config, "rb") as f:
            conf = tomllib.load(f)
    except Exception as e:
        return info, [f"the configuration does not parse as TOML: {e}"], notes
    trust, keys = conf.get("trust"), conf.get("keys")
    if not isinstance(trust, dict) or not isinstance(keys, dict) or not isinstance(keys.get("dir"), str):
        return info, ["the configuration has no [trust] table or no [keys] dir"], notes
    version, kid, pub = trust.get("version"), trust.get("key_id"), trust.get("public_key")
    info.update(version=version, key_id=kid)
    if not isinstance(version, int) or version < 1:
        problems.append(f"[trust] version {version!r} is not a positive integer")
    if not isinstance(pub, str) or not HEX64.match(pub):
        return info, problems + [f"[trust] public_key {pub!r} is not 64 lower-case hex digits"], notes
    if kid != key_id(bytes.fromhex(pub)):
        problems.append(f"[trust] key_id {kid!r} is not the id of public_key ({key_id(bytes.fromhex(pub))})")
    kdir = info["keys_dir"] = keys["dir"]

    # signing.key / signing.key.next: exactly one holds the configured key.
    held = {}
    for name in ("signing.key", "signing.key.next"):
        path = os.path.join(kdir, name)
        if not os.path.lexists(path):
            continue
        try:
            held[name] = load_key(path)
        except Exception as e:
            problems.append(f"{name}: {e}")
    matching = [n for n, p in held.items() if p == pub]
    info["active_file"] = matching[0] if len(matching) == 1 else None
    info["next_present"] = os.path.lexists(os.path.join(kdir, "signing.key.next"))
    if len(matching) != 1:
        problems.append(f"{len(matching)} of signing.key / signing.key.next hold the configured key {kid} "
                        f"(present: {', '.join(f'{n} = {key_id(bytes.fromhex(p))}' for n, p in held.items()) or 'none'})")
    if final and info["next_present"]:
        problems.append("signing.key.next is still there")

    # What else is in the keys directory, retired/ and the configuration's directory.
    temps = []
    try:
        entries = sorted(os.listdir(kdir))
    except OSError as e:
        entries = []
        problems.append(f"cannot list the keys directory: {e}")
    for n in entries:
        if is_temp(n):
            temps.append(n)
        elif n not in KNOWN:
            problems.append(f"unexpected file in the keys directory: {n}")
    retired = {}
    rdir = os.path.join(kdir, "retired")
    if os.path.isdir(rdir):
        for n in sorted(os.listdir(rdir)):
            if is_temp(n):
                temps.append("retired/" + n)
                continue
            try:
                p = load_key(os.path.join(rdir, n))
            except Exception as e:
                problems.append(f"retired/{n}: {e}")
                continue
            if not HEX16.match(n) or key_id(bytes.fromhex(p)) != n:
                problems.append(f"retired/{n} holds key {key_id(bytes.fromhex(p))}")
            retired[n] = p
    cdir = os.path.dirname(os.path.abspath(config))
    for n in sorted(os.listdir(cdir)):
        if is_temp(n):
            temps.append("config dir/" + n)
        elif n != os.path.basename(config):
            problems.append(f"unexpected file beside the configuration: {n}")
    info["retired"] = len(retired)
    if temps:
        notes.append("temporary files: " + ", ".join(temps))
    info["temps"] = temps

    # The journal's latest rotation and the configuration agree.
    jpath = os.path.join(kdir, "rotation-journal.json")
    info["journal_state"], info["rotation_id"] = None, None
    if os.path.exists(jpath):
        try:
            with open(jpath) as f:
                rotations = json.load(f)["rotations"]
        except Exception as e:
            return info, problems + [f"the journal does not parse: {e}"], notes
        if rotations:
            last = rotations[-1]
            state = last.get("state")
            info.update(journal_state=state, rotation_id=last.get("rotation_id"),
                        journal_from=last.get("from"), journal_to=last.get("to"),
                        outcome_published=last.get("outcome_published"))
            here = side_of(trust)
            allowed = {"pending": ["from"], "aborting": ["from"], "aborted": ["from"],
                       "committing": ["from", "to"], "committed": ["to"]}.get(state)
            if allowed is None:
                problems.append(f"the journal's latest rotation is in state {state!r}")
            elif not any(here == last.get(s) for s in allowed):
                problems.append(f"the configuration's [trust] (version {version}, key {kid}) is not the latest "
                                f"rotation's {' or '.join(allowed)} side while it is {state}: "
                                f"from {last.get('from')}, to {last.get('to')}")
            if state == "committed":
                old = (last.get("from") or {})
                if retired.get(old.get("key_id")) != old.get("public_key"):
                    problems.append(f"committed, but retired/{old.get('key_id')} does not hold the old key")
            if final and state not in ("committed", "aborted"):
                problems.append(f"the journal's latest rotation is still {state}")
    return info, problems, notes


if __name__ == "__main__":
    info, problems, notes = check(sys.argv[1], final="--final" in sys.argv[2:])
    print(json.dumps({"info": info, "problems": problems, "notes": notes}))
    sys.exit(1 if problems else 0)
PY
}

rot_keycheck() {
    local config="${1:?rot_keycheck CONFIG [--final]}"
    shift
    python3 -c "$(rot_keycheck_py)" "$config" "$@"
}

rot_tree() {
    local head n
    head="$(git rev-parse --short HEAD 2>/dev/null)" || {
        printf 'unknown (not a git checkout)'
        return 0
    }
    n="$(git status --porcelain 2>/dev/null | wc -l)"
    if ((n > 0)); then
        printf '%s dirty (%d paths differ from HEAD)' "$head" "$n"
    else
        printf '%s' "$head"
    fi
}

rot_cpu_busy() {
    local a b
    a="$(head -n1 /proc/stat)"
    sleep "$1"
    b="$(head -n1 /proc/stat)"
    awk -v a="$a" -v b="$b" 'BEGIN { n = split(a, x); split(b, y); for (i = 2; i <= n; i++) { d = y[i] - x[i]; t += d; if (i == 5 || i == 6) idle += d }
                                     printf "%.0f", t ? 100 * (t - idle) / t : 0 }'
}

rot_machine() {
    printf 'date: %s  machine: %s cores, %s, %s, load average %s\n' \
        "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)" \
        "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" \
        "$(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo)" \
        "$(cut -d' ' -f1-3 /proc/loadavg)"
}
