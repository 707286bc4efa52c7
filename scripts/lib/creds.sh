# shellcheck shell=bash
#
# What the rotate-db-creds scripts (scripts/crash-creds, scripts/demo) share: a throwaway
# PostgreSQL cluster that wants scram-sha-256 passwords for every TCP login (the sandbox's
# cluster trusts everyone, which would make any password "work"), and the stand-in service's
# restart and check scripts (as tools/testkit's StandinService writes them).
# Needs scripts/lib/sandbox.sh sourced first.
#
#   creds_pg_up DIR        initdb + start under DIR/pg on a free loopback port; sets
#                          CREDS_PG_PORT, CREDS_PG_SUPERURL (postgres with its password)
#   creds_pg_down DIR      stop it (immediate); idempotent
#   creds_sql SQL          run SQL as the superuser (over the unix socket, trust)
#   creds_login_ok USER PASSWORD
#                          whether USER logs in over TCP with PASSWORD (in PGPASSWORD, not argv)
#   creds_standin DIR EXE ENVFILE KEY
#                          write DIR/restart.sh and DIR/check.sh for ransomeye-standin-service

creds_pg_up() {
    local dir="$1" bindir pg superpw
    bindir="$(_sb_pg_bindir)" || return 1
    pg="$dir/pg"
    mkdir -p "$pg"
    chmod 755 "$dir"
    superpw="$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
    printf '%s\n' "$superpw" >"$pg/pwfile"
    chmod 600 "$pg/pwfile"
    if _sb_is_root; then chown -R postgres:postgres "$pg"; fi
    _sb_as_pg "$bindir/initdb" -D "$pg/data" -U postgres --auth-local=trust \
        --auth-host=scram-sha-256 --pwfile="$pg/pwfile" -E UTF8 --locale=C --no-sync \
        >"$pg/initdb.log" 2>&1 || { _sb_tail "$pg/initdb.log"; return 1; }
    rm -f "$pg/pwfile"
    CREDS_PG_PORT="$(_sb_free_port)" || return 1
    {
        printf "listen_addresses = '127.0.0.1'\n"
        printf 'port = %s\n' "$CREDS_PG_PORT"
        printf "unix_socket_directories = '%s'\n" "$pg"
        printf 'fsync = off\n'
        printf "log_statement = 'all'\n"
    } >>"$pg/data/postgresql.conf"
    _sb_as_pg "$bindir/pg_ctl" -D "$pg/data" -l "$pg/postgres.log" -w start >/dev/null ||
        { _sb_tail "$pg/postgres.log"; return 1; }
    _CREDS_PG_DIR="$pg"
    _CREDS_PG_BINDIR="$bindir"
    CREDS_PG_SUPERURL="postgres://postgres:$superpw@127.0.0.1:$CREDS_PG_PORT/postgres"
    export PGCONNECT_TIMEOUT=5
}

creds_pg_down() {
    local pg="$1/pg"
    [[ -d "$pg/data" ]] || return 0
    _sb_as_pg "$(_sb_pg_bindir)/pg_ctl" -D "$pg/data" -m immediate -w stop >/dev/null 2>&1 || true
}

creds_sql() {
    psql -X -q -h "$_CREDS_PG_DIR" -p "$CREDS_PG_PORT" -U postgres -d postgres -Atc "$1"
}

creds_login_ok() {
    PGPASSWORD="$2" psql -X -h 127.0.0.1 -p "$CREDS_PG_PORT" -U "$1" -d postgres \
        -Atc 'select 1' >/dev/null 2>&1
}

creds_standin() {
    local dir="$1" exe="$2" env="$3" key="$4"
    mkdir -p "$dir"
    cat >"$dir/restart.sh" <<SH
#!/bin/sh
# Stops the running stand-in (waiting until it is gone), starts a new one.
if [ -f $dir/pid ]; then
  old=\$(cat $dir/pid)
  kill "\$old" 2>/dev/null
  while kill -0 "\$old" 2>/dev/null; do sleep 0.01; done
fi
rm -f $dir/ready
setsid $exe --env-file $env --key $key --state $dir </dev/null >>$dir/service.log 2>&1 &
echo \$! > $dir/pid
SH
    cat >"$dir/check.sh" <<SH
#!/bin/sh
# Succeeds once the stand-in logged in (ready); fails as soon as it exited.
pid=\$(cat $dir/pid 2>/dev/null) || exit 1
i=0
while [ \$i -lt 1000 ]; do
  [ "\$(cat $dir/ready 2>/dev/null)" = "\$pid" ] && exit 0
  kill -0 "\$pid" 2>/dev/null || exit 1
  sleep 0.01; i=\$((i+1))
done
exit 1
SH
    chmod 755 "$dir/restart.sh" "$dir/check.sh"
}
