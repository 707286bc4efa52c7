-- The part of RansomEye's PostgreSQL schema that ransomeye-ops relies on.
-- Real installations may have more columns and tables; every command works with them.
-- Idempotent: safe to load into a database that already has these tables.

-- Audit trail of every security-relevant action. Archived to cold storage by `archive`.
create table if not exists audit_logs (
    id          bigserial primary key,
    created_at  timestamptz not null,
    actor       text,
    action      text,
    target      text,
    details     jsonb
);
create index if not exists audit_logs_created_at_idx on audit_logs (created_at);

-- Endpoint agents and the Ed25519 key each one signs its trust-update acks with.
create table if not exists agents (
    id          uuid primary key,
    hostname    text,
    public_key  bytea not null,
    status      text,
    last_seen   timestamptz
);
