-- Seeds a synthetic, deterministic threat-intel graph into intel_nodes / intel_edges.
--
--   psql -v nodes=100000 -v edges=300000 -f scripts/sql/seed-intel.sql "$DATABASE_URL"
--   psql -v reset=1 ...          first empty both tables (otherwise they must already be empty)
--
-- Defaults: 1000 nodes, 3000 edges. Needs schema/platform.sql loaded. Stops at the first error (exit 3).
--
-- Same variables, same rows, byte for byte: every value is computed from the row number (no random(), no
-- now()), so two databases seeded alike export to the same digest. Node ids are 1..:nodes and edge ids
-- 1..:edges, inserted explicitly; the identity sequences are moved past them at the end. Every edge points
-- at existing nodes. Properties are small jsonb objects (confidence, source, tags, first_seen, sometimes
-- score / tlp / a non-ASCII note, decimals with trailing zeros) whose keys PostgreSQL stores in a different
-- order than the export's bytewise order, so the canonicalisation is exercised.
--
-- 100 000 nodes and 300 000 edges take a few seconds (one insert … select per table, one transaction).
-- The psql variables are interpolated into SQL: pass integers only.
\set ON_ERROR_STOP on
\if :{?nodes}
\else
\set nodes 1000
\endif
\if :{?edges}
\else
\set edges 3000
\endif

select (:edges)::bigint = 0 or (:nodes)::bigint >= 1 as seed_intel_sizes_ok \gset
\if :seed_intel_sizes_ok
\else
do $$ begin raise exception 'edges need at least one node to point to (pass -v nodes=N with N >= 1)'; end $$;
\endif

begin;
-- A seed can be re-run: no need to wait for its WAL to reach the disk at commit.
set local synchronous_commit = off;

\if :{?reset}
truncate intel_edges, intel_nodes;
\endif

do $$
begin
    if exists (select 1 from intel_nodes) or exists (select 1 from intel_edges) then
        raise exception 'intel_nodes / intel_edges are not empty'
            using hint = 'seed an empty database, or pass -v reset=1 to empty both tables first';
    end if;
end
$$;

insert into intel_nodes (id, kind, value, properties, created_at)
select i,
       k.kind,
       case k.kind
           when 'ipv4-addr' then format('%s.%s.%s.%s', 11 + (i * 7) % 200, (i / 65536) % 256, (i / 256) % 256, i % 256)
           when 'domain-name' then format('%s-%s.%s', (array['update', 'cdn', 'login', 'mail', 'sync', 'static'])[1 + i % 6],
                                          to_hex((i::bigint * 2654435761) % 16777216),
                                          (array['com', 'net', 'org', 'ru', 'xn--p1ai', 'io', 'top'])[1 + i % 7])
           when 'url' then format('https://%s.example-cdn.net/%s/%s.php?id=%s', to_hex((i::bigint * 40503) % 1048576),
                                  (array['wp-content', 'gate', 'panel', 'api/v2', 'files'])[1 + i % 5],
                                  (array['index', 'upload', 'beacon', 'check'])[1 + i % 4], i)
           when 'file-sha256' then encode(sha256(int8send(i::bigint)), 'hex')
           when 'email-addr' then format('%s.%s@%s', (array['invoice', 'hr', 'it-support', 'ceo', 'noreply'])[1 + i % 5], i,
                                         (array['mail.example.com', 'example.org', 'correo.example.es', 'почта.example'])[1 + i % 4])
           when 'host' then format('ws-%s.corp.example', lpad(i::text, 7, '0'))
           when 'malware' then format('%s %s.%s', (array['LockBit', 'BlackCat', 'Conti', 'Royal', 'Akira', 'Play', 'Rhysida', 'Cl0p'])[1 + i % 8],
                                      1 + i % 5, i % 100)
           when 'campaign' then format('%s #%s', (array['Operation Night Fox', 'Opération Fantôme', 'Kampagne Schattenfuchs',
                                                       '作戦 雷鳥', 'Операция «Полярная ночь»'])[1 + i % 5], i)
           when 'threat-actor' then format('%s-%s', (array['FIN', 'TA', 'UNC', 'Storm', 'APT'])[1 + i % 5], 100 + i % 9000)
           else format('CVE-%s-%s', 2018 + i % 9, lpad((1000 + (i * 37) % 90000)::text, 5, '0'))
       end,
       jsonb_build_object(
           'confidence', round(((i * 37) % 101) / 100.0, 2),
           'source', (array['misp', 'otx', 'internal-sandbox', 'vendor-feed', 'analyst'])[1 + i % 5],
           'tags', case i % 4
                       when 0 then '[]'::jsonb
                       when 1 then jsonb_build_array('ransomware')
                       when 2 then jsonb_build_array('ransomware', 'initial-access', '初始访问')
                       else jsonb_build_array('c2', 'exfiltration', 'tor')
                   end,
           'first_seen', to_char(timestamp '2025-01-01 00:00:00' + i * interval '7 minutes 3.5 seconds',
                                 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
       || case when i % 7 = 0 then jsonb_build_object('score', round((i % 1000) / 10.0, 1), 'tlp', 'amber') else '{}' end
       || case when i % 11 = 0 then jsonb_build_object('note', 'Beobachtet in „Schattenfuchs" — Zeile ' || i || E' \U0001F98A',
                                                       'seen_count', i % 5000, 'ratio', round(-(i % 13) / 8.0, 3))
               else '{}' end,
       timestamptz '2026-01-01 00:00:00+00' + i * interval '1.000137 seconds'
from generate_series(1, :nodes) as g (i)
cross join lateral (
    select (array['ipv4-addr', 'ipv4-addr', 'domain-name', 'domain-name', 'url', 'file-sha256', 'file-sha256',
                  'file-sha256', 'email-addr', 'host', 'host', 'host', 'host', 'malware', 'malware', 'campaign',
                  'threat-actor', 'vulnerability', 'domain-name', 'ipv4-addr'])[1 + i % 20] as kind
) as k;

-- Checking 2 foreign keys row by row and inserting random keys into the two endpoint indexes costs ~4x the
-- insert itself. So, inside this transaction, the foreign keys and secondary indexes of intel_edges are dropped
-- and re-created afterwards from their own catalogued definitions (whatever this installation has, same names);
-- re-adding a foreign key validates every row in one join. On any error everything rolls back.
create temporary table seed_intel_ddl on commit drop as
select 1 as step, format('alter table intel_edges drop constraint %I', conname) as drop_sql,
       format('alter table intel_edges add constraint %I %s', conname, pg_get_constraintdef(oid)) as create_sql
from pg_constraint
where conrelid = 'intel_edges'::regclass and contype = 'f'
union all
select 2, format('drop index %s', i.indexrelid::regclass), pg_get_indexdef(i.indexrelid)
from pg_index as i
where i.indrelid = 'intel_edges'::regclass
  and not exists (select 1 from pg_constraint as c where c.conindid = i.indexrelid);

do $$
declare
    r record;
begin
    for r in select drop_sql from seed_intel_ddl order by step, drop_sql loop
        execute r.drop_sql;
    end loop;
end
$$;

insert into intel_edges (id, source_id, target_id, kind, properties, created_at)
select i,
       1 + (i::bigint * 2654435761) % :nodes,
       1 + (i::bigint * 1103515245 + 12345) % :nodes,
       (array['indicates', 'uses', 'attributed-to', 'communicates-with', 'targets', 'related-to', 'drops',
              'resolves-to'])[1 + i % 8],
       jsonb_build_object(
           'confidence', round(((i * 53) % 101) / 100.0, 2),
           'source', (array['misp', 'otx', 'internal-sandbox', 'vendor-feed', 'analyst'])[1 + (i / 3) % 5],
           'first_seen', to_char(timestamp '2025-06-01 00:00:00' + i * interval '95 seconds', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
       || case when i % 5 = 0 then jsonb_build_object('weight', i % 10, 'tags', jsonb_build_array('observed', 'sandbox'))
               else '{}' end,
       timestamptz '2026-02-01 00:00:00+00' + i * interval '0.250001 seconds'
from generate_series(1, :edges) as g (i);

do $$
declare
    r record;
begin
    for r in select create_sql from seed_intel_ddl order by step desc, create_sql loop
        execute r.create_sql;
    end loop;
end
$$;

-- The next generated ids follow the explicit ones.
do $$
begin
    perform setval(pg_get_serial_sequence('intel_nodes', 'id'), coalesce(max(id), 0) + 1, false) from intel_nodes;
    perform setval(pg_get_serial_sequence('intel_edges', 'id'), coalesce(max(id), 0) + 1, false) from intel_edges;
end
$$;

commit;

-- Statistics for the columns queries filter, join and sort on (the jsonb and value columns, the slow ones
-- to sample, are left to autovacuum).
analyze intel_nodes (id, kind);
analyze intel_edges (id, source_id, target_id, kind);
