# shellcheck shell=bash
#
# Throwaway PostgreSQL + NATS (JetStream) sandbox for tests and the demo.
#
# Source this file from a bash script; it does not change shell options, and
# every function reports failures as `error:` / `hint:` lines on stderr and
# returns non-zero (so it works with and without `set -euo pipefail`).
#
#   sandbox_install_deps   install missing packages via apt, ensure the
#                          `ransomeye-admin` system group exists
#   sandbox_up DIR         start PostgreSQL + nats-server on free loopback
#                          ports with all state under DIR; export
#                          DATABASE_URL and NATS_URL; write DIR/env and
#                          DIR/teardown.  If DATABASE_URL and NATS_URL are
#                          both already set, use them and do nothing else.
#   sandbox_down DIR       stop what sandbox_up started in DIR, remove DIR.
#                          Idempotent; never touches services it did not
#                          start.
#
# Tunables (environment):
#   SANDBOX_PG_BINDIR      PostgreSQL server bin dir (default: highest
#                          /usr/lib/postgresql/<major>/bin)
#   SANDBOX_START_TIMEOUT  seconds to wait for each service (default 60)

# Absolute path of this library, used by the generated DIR/teardown script.
_SB_LIB="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
_SB_MARKER=".ransomeye-sandbox"
_SB_STATE="state"

_sb_err() {
    # _sb_err MESSAGE HINT
    printf 'error: %s\n' "$1" >&2
    if [[ -n "${2:-}" ]]; then
        printf 'hint: %s\n' "$2" >&2
    fi
    return 1
}

_sb_info() {
    printf 'sandbox: %s\n' "$*" >&2
}

_sb_tail() {
    # _sb_tail FILE : print the last lines of a log file to stderr, indented.
    if [[ -r "$1" ]]; then
        printf -- '--- last lines of %s ---\n' "$1" >&2
        tail -n 25 -- "$1" | sed 's/^/    /' >&2
        printf -- '---\n' >&2
    fi
}

_sb_is_root() {
    [[ "$(id -u)" -eq 0 ]]
}

# Run a command as the user that owns the PostgreSQL data directory: `postgres`
# when we are root, ourselves otherwise.  Runs from `/` so that a cwd the
# postgres user cannot read (e.g. /root) does not upset initdb/pg_ctl.
_sb_as_pg() {
    if _sb_is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

# Print the PostgreSQL server bin directory (highest installed major).
_sb_pg_bindir() {
    if [[ -n "${SANDBOX_PG_BINDIR:-}" ]]; then
        if [[ -x "$SANDBOX_PG_BINDIR/initdb" && -x "$SANDBOX_PG_BINDIR/pg_ctl" ]]; then
            printf '%s\n' "$SANDBOX_PG_BINDIR"
            return 0
        fi
        _sb_err "SANDBOX_PG_BINDIR=$SANDBOX_PG_BINDIR has no initdb/pg_ctl" \
            "unset SANDBOX_PG_BINDIR or point it at /usr/lib/postgresql/<major>/bin"
        return 1
    fi
    local d best="" best_major=-1 major
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]] || continue
        major="$(basename "$(dirname "$d")")"
        [[ "$major" =~ ^[0-9]+$ ]] || continue
        if ((major > best_major)); then
            best_major="$major"
            best="$d"
        fi
    done
    if [[ -z "$best" ]]; then
        _sb_err "no PostgreSQL server found in /usr/lib/postgresql/<major>/bin" \
            "run sandbox_install_deps (or: apt-get install postgresql)"
        return 1
    fi
    printf '%s\n' "$best"
}

sandbox_install_deps() {
    local -a pkgs=()
    _sb_pg_bindir >/dev/null 2>&1 || pkgs+=(postgresql)
    local c
    for c in psql pg_dump pg_restore; do
        if ! command -v "$c" >/dev/null 2>&1; then
            pkgs+=(postgresql-client)
            break
        fi
    done
    command -v nats-server >/dev/null 2>&1 || pkgs+=(nats-server)
    command -v zstd >/dev/null 2>&1 || pkgs+=(zstd)
    command -v openssl >/dev/null 2>&1 || pkgs+=(openssl)
    command -v ss >/dev/null 2>&1 || pkgs+=(iproute2)
    command -v runuser >/dev/null 2>&1 || pkgs+=(util-linux)
    command -v setsid >/dev/null 2>&1 || pkgs+=(util-linux)
    command -v timeout >/dev/null 2>&1 || pkgs+=(coreutils)
    # tune workers' test starts a real gunicorn with the configuration it wrote.
    command -v gunicorn >/dev/null 2>&1 || pkgs+=(gunicorn)
    # systemd-tmpfiles: the differential test of `clean` (ops/tests/clean.rs).
    command -v systemd-tmpfiles >/dev/null 2>&1 || pkgs+=(systemd)
    # alerts tests and demo: a real rsyslog with RELP and TLS inputs, python3 for the
    # independent syslog parser, faketime for the wrong-clock test.
    command -v rsyslogd >/dev/null 2>&1 || pkgs+=(rsyslog)
    [[ -n "$(compgen -G '/usr/lib/*/rsyslog/imrelp.so')" ]] ||
        pkgs+=(rsyslog-relp)
    [[ -n "$(compgen -G '/usr/lib/*/rsyslog/lmnsd_gtls.so')" ]] || pkgs+=(rsyslog-gnutls)
    command -v python3 >/dev/null 2>&1 || pkgs+=(python3)
    command -v faketime >/dev/null 2>&1 || pkgs+=(faketime)
    # de-duplicate
    if ((${#pkgs[@]})); then
        mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | sort -u)
    fi

    if ((${#pkgs[@]})); then
        if ! _sb_is_root; then
            _sb_err "missing packages: ${pkgs[*]}" \
                "run as root, or install them first: sudo apt-get install ${pkgs[*]}"
            return 1
        fi
        if ! command -v apt-get >/dev/null 2>&1; then
            _sb_err "missing packages: ${pkgs[*]} and apt-get is not available" \
                "install them with your package manager"
            return 1
        fi
        _sb_info "installing ${pkgs[*]} (apt)"
        if ! DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2; then
            _sb_err "apt-get update failed" "check network access to the Debian mirrors"
            return 1
        fi
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${pkgs[@]}" >&2; then
            _sb_err "apt-get install ${pkgs[*]} failed" "see apt output above"
            return 1
        fi
        if ! _sb_pg_bindir >/dev/null; then
            return 1
        fi
    fi

    if ! getent group ransomeye-admin >/dev/null 2>&1; then
        if ! _sb_is_root; then
            _sb_err "system group 'ransomeye-admin' does not exist" \
                "run as root, or: sudo groupadd --system ransomeye-admin"
            return 1
        fi
        _sb_info "creating system group ransomeye-admin"
        if ! groupadd --system ransomeye-admin; then
            _sb_err "groupadd --system ransomeye-admin failed" "create the group manually"
            return 1
        fi
    fi
    return 0
}

# _sb_port_listening PORT : true if something listens on PORT (any address).
_sb_port_listening() {
    local port="$1"
    if command -v ss >/dev/null 2>&1; then
        [[ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]] && return 0
    fi
    _sb_port_accepts "$port"
}

# _sb_port_accepts PORT : true if 127.0.0.1:PORT accepts a TCP connection.
_sb_port_accepts() {
    local port="$1"
    # shellcheck disable=SC2016 # $1 is expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$port" >/dev/null 2>&1
}

# _sb_free_port [EXCLUDED_PORT...] : print a random free port in 20000-60000.
_sb_free_port() {
    local i port ex skip
    for ((i = 0; i < 200; i++)); do
        port=$((20000 + ((RANDOM << 15) | RANDOM) % 40001))
        skip=0
        for ex in "$@"; do
            [[ "$port" == "$ex" ]] && skip=1
        done
        ((skip)) && continue
        if ! _sb_port_listening "$port"; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    _sb_err "could not find a free TCP port in 20000-60000" \
        "check 'ss -ltn' for what is listening"
    return 1
}

# _sb_state_set DIR KEY VALUE : record KEY=VALUE in DIR/state (append).
_sb_state_set() {
    printf '%s=%s\n' "$2" "$3" >>"$1/$_SB_STATE"
}

# _sb_state_get DIR KEY : print the last recorded value of KEY (may be empty).
_sb_state_get() {
    local f="$1/$_SB_STATE" k v out=""
    [[ -r "$f" ]] || return 0
    while IFS='=' read -r k v; do
        [[ "$k" == "$2" ]] && out="$v"
    done <"$f"
    printf '%s' "$out"
}

# _sb_pid_matches PID NEEDLE : true if process PID is alive and its command
# line contains NEEDLE (guards against killing a recycled pid).
_sb_pid_matches() {
    local pid="$1" needle="$2" cmdline
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    cmdline="$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")" || return 1
    [[ "$cmdline" == *"$needle"* ]]
}

_sb_conf_quote() {
    # single-quote a value for postgresql.conf
    printf "'%s'" "${1//\'/\'\'}"
}

# _sb_pg_start DIR : initdb + start PostgreSQL; sets _SB_PG_PORT.
_sb_pg_start() {
    local dir="$1" bindir pgdir data sockdir log port attempt timeout
    timeout="${SANDBOX_START_TIMEOUT:-60}"
    bindir="$(_sb_pg_bindir)" || return 1
    pgdir="$dir/pg"
    data="$pgdir/data"
    log="$pgdir/postgres.log"
    sockdir="$pgdir/run"

    mkdir -p "$pgdir" "$sockdir" || {
        _sb_err "cannot create $pgdir" "check that $dir is writable"
        return 1
    }
    # A unix socket path must fit in sun_path (107 bytes); use a short
    # directory under /tmp when the sandbox path is too long.
    if ((${#sockdir} + 20 > 100)); then
        sockdir="$(mktemp -d /tmp/rmye-pgsock.XXXXXX)" || {
            _sb_err "cannot create a socket directory under /tmp" "check /tmp"
            return 1
        }
        chmod 755 "$sockdir"
        _sb_state_set "$dir" PG_EXTRA_SOCKDIR "$sockdir"
    fi
    if _sb_is_root; then
        if ! id -u postgres >/dev/null 2>&1; then
            _sb_err "user 'postgres' does not exist" \
                "install the postgresql package (sandbox_install_deps)"
            return 1
        fi
        chown -R postgres:postgres "$pgdir" "$sockdir" || {
            _sb_err "cannot chown $pgdir to postgres" "check the file system of $dir"
            return 1
        }
        if ! (cd / && runuser -u postgres -- test -w "$pgdir"); then
            _sb_err "user postgres cannot write $pgdir" \
                "every parent directory of $dir must be traversable by others (chmod o+x); use a directory under /tmp"
            return 1
        fi
    fi
    _sb_state_set "$dir" PG_BINDIR "$bindir"
    _sb_state_set "$dir" PG_DATA "$data"

    if ! _sb_as_pg "$bindir/initdb" -D "$data" -U postgres -A trust -E UTF8 \
        --locale=C --no-sync >"$pgdir/initdb.log" 2>&1; then
        _sb_tail "$pgdir/initdb.log"
        _sb_err "initdb failed (log: $pgdir/initdb.log)" \
            "check the log above; the sandbox dir must be writable by user postgres"
        return 1
    fi

    {
        printf '\n# --- ransomeye-ops sandbox ---\n'
        printf 'listen_addresses = %s\n' "'127.0.0.1'"
        printf 'unix_socket_directories = %s\n' "$(_sb_conf_quote "$sockdir")"
        printf 'max_connections = 200\n'
        printf 'fsync = off\n'
        printf 'synchronous_commit = off\n'
        printf 'full_page_writes = off\n'
        printf 'logging_collector = off\n'
        printf "include_if_exists = 'sandbox_port.conf'\n"
    } >>"$data/postgresql.conf" || {
        _sb_err "cannot write $data/postgresql.conf" "check permissions on $data"
        return 1
    }

    local -a used=()
    for ((attempt = 1; attempt <= 5; attempt++)); do
        port="$(_sb_free_port "${used[@]}")" || return 1
        used+=("$port")
        printf 'port = %s\n' "$port" >"$data/sandbox_port.conf"
        _sb_is_root && chown postgres:postgres "$data/sandbox_port.conf"
        _sb_state_set "$dir" PG_STARTED 1
        if [[ -f "$log" ]]; then
            : >"$log"
        fi
        if _sb_as_pg "$bindir/pg_ctl" -D "$data" -l "$log" -w -t "$timeout" start \
            >"$pgdir/pg_ctl.log" 2>&1; then
            _SB_PG_PORT="$port"
            _sb_state_set "$dir" PG_PORT "$port"
            return 0
        fi
        if grep -q 'Address already in use' "$log" 2>/dev/null; then
            _sb_info "port $port was taken, retrying PostgreSQL on another port"
            _sb_as_pg "$bindir/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
            continue
        fi
        break
    done
    _sb_tail "$pgdir/pg_ctl.log"
    _sb_tail "$log"
    _sb_err "PostgreSQL did not start (log: $log)" \
        "check the log above; is /dev/shm writable, is there free disk space?"
    return 1
}

# _sb_nats_start DIR : start nats-server with JetStream; sets _SB_NATS_PORT.
_sb_nats_start() {
    local dir="$1" port attempt timeout pidfile log store launcher pid="" i steps
    timeout="${SANDBOX_START_TIMEOUT:-60}"
    pidfile="$dir/nats.pid"
    log="$dir/nats.log"
    store="$dir/nats"
    if ! command -v nats-server >/dev/null 2>&1; then
        _sb_err "nats-server not found in PATH" "run sandbox_install_deps (apt-get install nats-server)"
        return 1
    fi
    mkdir -p "$store" || {
        _sb_err "cannot create $store" "check that $dir is writable"
        return 1
    }
    _sb_state_set "$dir" NATS_PIDFILE "$pidfile"
    _sb_state_set "$dir" NATS_STORE "$store"

    local -a used=("${_SB_PG_PORT:-0}")
    for ((attempt = 1; attempt <= 5; attempt++)); do
        port="$(_sb_free_port "${used[@]}")" || return 1
        used+=("$port")
        rm -f "$pidfile"
        : >"$log"
        # setsid: keep the server out of our process group so a Ctrl-C in the
        # terminal does not kill a sandbox that is meant to outlive the script.
        setsid nats-server -a 127.0.0.1 -p "$port" -js -sd "$store" -P "$pidfile" \
            </dev/null >>"$log" 2>&1 &
        launcher=$!
        _sb_state_set "$dir" NATS_STARTED 1
        steps=$((timeout * 10))
        pid=""
        for ((i = 0; i < steps; i++)); do
            if [[ -z "$pid" && -s "$pidfile" ]]; then
                pid="$(head -n1 "$pidfile" 2>/dev/null | tr -dc '0-9')"
            fi
            if [[ -n "$pid" ]] && ! _sb_pid_matches "$pid" "$store"; then
                break # started, then died
            fi
            if [[ -z "$pid" ]] && ((i > 50)) && ! kill -0 "$launcher" 2>/dev/null; then
                break # never got as far as writing its pid file
            fi
            if [[ -n "$pid" ]] && _sb_port_accepts "$port"; then
                _SB_NATS_PORT="$port"
                _sb_state_set "$dir" NATS_PID "$pid"
                _sb_state_set "$dir" NATS_PORT "$port"
                return 0
            fi
            sleep 0.1
        done
        # Not up: make sure nothing is left behind before retrying / failing.
        if [[ -n "$pid" ]] && _sb_pid_matches "$pid" "$store"; then
            kill "$pid" 2>/dev/null || true
        fi
        if grep -qiE 'address already in use' "$log" 2>/dev/null; then
            _sb_info "port $port was taken, retrying nats-server on another port"
            continue
        fi
        break
    done
    _sb_tail "$log"
    _sb_err "nats-server did not accept connections on 127.0.0.1:$port within ${timeout}s (log: $log)" \
        "check the log above; try running: nats-server -a 127.0.0.1 -p $port -js -sd $store"
    return 1
}

_sb_write_env() {
    local dir="$1"
    {
        printf '# ransomeye-ops sandbox: source this file to use the sandbox services\n'
        printf 'export DATABASE_URL=%q\n' "$DATABASE_URL"
        printf 'export NATS_URL=%q\n' "$NATS_URL"
    } >"$dir/env" || return 1
    {
        printf '#!/usr/bin/env bash\n'
        printf '# Stop the ransomeye-ops sandbox in %s and delete it.\n' "$dir"
        printf 'set -euo pipefail\n'
        printf 'dir=%q\n' "$dir"
        printf 'lib=%q\n' "$_SB_LIB"
        cat <<'TEARDOWN'
if [[ ! -r "$lib" ]]; then
    echo "error: $lib not found (was the repository moved?)" >&2
    echo "hint: kill the pid in $dir/nats.pid, run 'runuser -u postgres -- pg_ctl -D $dir/pg/data -m immediate stop', then rm -rf $dir" >&2
    exit 1
fi
# shellcheck source=/dev/null
. "$lib"
sandbox_down "$dir"
TEARDOWN
    } >"$dir/teardown" || return 1
    chmod 755 "$dir/teardown"
}

sandbox_up() {
    local dir="${1:-}"
    if [[ -n "${DATABASE_URL:-}" && -n "${NATS_URL:-}" ]]; then
        _sb_info "using DATABASE_URL and NATS_URL from the environment"
        return 0
    fi
    if [[ -z "$dir" ]]; then
        _sb_err "sandbox_up: missing DIR argument" "usage: sandbox_up DIR (e.g. a fresh mktemp -d /tmp/sandbox.XXXXXX)"
        return 1
    fi
    if [[ -n "${DATABASE_URL:-}${NATS_URL:-}" ]]; then
        _sb_info "only one of DATABASE_URL/NATS_URL is set; starting a full sandbox and overriding both"
    fi
    mkdir -p "$dir" || {
        _sb_err "cannot create $dir" "choose a writable directory (e.g. mktemp -d /tmp/sandbox.XXXXXX)"
        return 1
    }
    dir="$(cd "$dir" && pwd)" || return 1
    if [[ -e "$dir/$_SB_MARKER" ]]; then
        _sb_err "$dir already holds a sandbox" "run $dir/teardown (or sandbox_down $dir) first, or use a fresh directory"
        return 1
    fi
    # The postgres user must be able to traverse into DIR.
    chmod 755 "$dir" || {
        _sb_err "cannot chmod $dir" "use a directory you own"
        return 1
    }
    printf 'ransomeye-ops sandbox\n' >"$dir/$_SB_MARKER" || {
        _sb_err "cannot write to $dir" "use a writable directory"
        return 1
    }
    : >"$dir/$_SB_STATE"

    _sb_info "starting PostgreSQL in $dir/pg"
    if ! _sb_pg_start "$dir"; then
        _sb_stop_services "$dir"
        return 1
    fi
    _sb_info "starting nats-server (JetStream) in $dir/nats"
    if ! _sb_nats_start "$dir"; then
        _sb_stop_services "$dir"
        return 1
    fi

    export DATABASE_URL="postgres://postgres@127.0.0.1:${_SB_PG_PORT}/postgres"
    export NATS_URL="nats://127.0.0.1:${_SB_NATS_PORT}"
    if ! _sb_write_env "$dir"; then
        _sb_stop_services "$dir"
        _sb_err "cannot write $dir/env or $dir/teardown" "check that $dir is writable"
        return 1
    fi
    _sb_info "DATABASE_URL=$DATABASE_URL"
    _sb_info "NATS_URL=$NATS_URL"
    return 0
}

# Stop the services recorded in DIR/state; keep DIR.  Returns non-zero if a
# service could not be stopped.
_sb_stop_services() {
    local dir="$1" rc=0 pid store bindir data pgpid i extra
    [[ -e "$dir/$_SB_MARKER" ]] || return 0

    if [[ "$(_sb_state_get "$dir" NATS_STARTED)" == 1 ]]; then
        store="$(_sb_state_get "$dir" NATS_STORE)"
        pid="$(_sb_state_get "$dir" NATS_PID)"
        if [[ -z "$pid" && -s "$dir/nats.pid" ]]; then
            pid="$(head -n1 "$dir/nats.pid" | tr -dc '0-9')"
        fi
        if [[ -n "$pid" && -n "$store" ]] && _sb_pid_matches "$pid" "$store"; then
            kill -TERM "$pid" 2>/dev/null || true
            for ((i = 0; i < 100; i++)); do
                _sb_pid_matches "$pid" "$store" || break
                sleep 0.1
            done
            if _sb_pid_matches "$pid" "$store"; then
                kill -KILL "$pid" 2>/dev/null || true
                sleep 0.2
            fi
            if _sb_pid_matches "$pid" "$store"; then
                _sb_err "nats-server (pid $pid) did not stop" "kill it manually: kill -9 $pid"
                rc=1
            fi
        fi
        _sb_state_set "$dir" NATS_STARTED 0
    fi

    if [[ "$(_sb_state_get "$dir" PG_STARTED)" == 1 ]]; then
        bindir="$(_sb_state_get "$dir" PG_BINDIR)"
        data="$(_sb_state_get "$dir" PG_DATA)"
        if [[ -n "$data" && -s "$data/postmaster.pid" ]]; then
            if ! _sb_as_pg "$bindir/pg_ctl" -D "$data" -m immediate -w -t 30 stop >/dev/null 2>&1; then
                pgpid="$(head -n1 "$data/postmaster.pid" 2>/dev/null | tr -dc '0-9')"
                if [[ -n "$pgpid" ]] && _sb_pid_matches "$pgpid" "$data"; then
                    kill -QUIT "$pgpid" 2>/dev/null || true
                    for ((i = 0; i < 100; i++)); do
                        _sb_pid_matches "$pgpid" "$data" || break
                        sleep 0.1
                    done
                fi
                if [[ -n "$pgpid" ]] && _sb_pid_matches "$pgpid" "$data"; then
                    _sb_err "PostgreSQL (pid $pgpid, data $data) did not stop" \
                        "stop it manually: runuser -u postgres -- $bindir/pg_ctl -D $data -m immediate stop"
                    rc=1
                fi
            fi
        fi
        _sb_state_set "$dir" PG_STARTED 0
    fi

    extra="$(_sb_state_get "$dir" PG_EXTRA_SOCKDIR)"
    if [[ -n "$extra" && "$extra" == /tmp/rmye-pgsock.* && -d "$extra" ]]; then
        rm -rf -- "$extra"
    fi
    return "$rc"
}

sandbox_down() {
    local dir="${1:-}"
    if [[ -z "$dir" ]]; then
        _sb_err "sandbox_down: missing DIR argument" "usage: sandbox_down DIR"
        return 1
    fi
    [[ -d "$dir" ]] || return 0 # already gone
    dir="$(cd "$dir" && pwd)" || return 1
    if [[ ! -e "$dir/$_SB_MARKER" ]]; then
        # Not ours (e.g. sandbox_up used DATABASE_URL/NATS_URL from the
        # environment): nothing to stop.  Only remove the directory if empty.
        rmdir -- "$dir" 2>/dev/null || true
        return 0
    fi
    if ! _sb_stop_services "$dir"; then
        _sb_err "not removing $dir because a service is still running" \
            "stop it (see above), then run: $dir/teardown"
        return 1
    fi
    if [[ "$dir" == / ]]; then
        _sb_err "refusing to remove /" "pass the sandbox directory"
        return 1
    fi
    # Forget the URLs if they point at the sandbox we just stopped.
    local pg_port nats_port
    pg_port="$(_sb_state_get "$dir" PG_PORT)"
    nats_port="$(_sb_state_get "$dir" NATS_PORT)"
    if [[ -n "$pg_port" && "${DATABASE_URL:-}" == "postgres://postgres@127.0.0.1:${pg_port}/postgres" ]]; then
        unset DATABASE_URL
    fi
    if [[ -n "$nats_port" && "${NATS_URL:-}" == "nats://127.0.0.1:${nats_port}" ]]; then
        unset NATS_URL
    fi
    if ! rm -rf -- "$dir"; then
        _sb_err "could not remove $dir" "remove it manually: rm -rf $dir"
        return 1
    fi
    _sb_info "sandbox $dir stopped and removed"
    return 0
}
