//! The row counts a backup's manifest records and a restore compares against it.

use std::collections::BTreeMap;

use sqlx::{AssertSqlSafe, PgConnection};

use crate::db::{self, Answer};
use crate::error::OpsError;

/// Exact row counts of every ordinary table outside the system schemas (`schema.table`), as
/// seen by `conn`'s current transaction.
pub async fn count_rows(conn: &mut PgConnection) -> Result<BTreeMap<String, u64>, OpsError> {
    let tables: Vec<(String, String)> = sqlx::query_as(
        "select n.nspname::text, c.relname::text from pg_class c \
         join pg_namespace n on n.oid = c.relnamespace \
         where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema') \
           and n.nspname not like 'pg_toast%' and n.nspname not like 'pg_temp%' \
         order by 1, 2",
    )
    .fetch_all(&mut *conn)
    .answer("listing tables")
    .await?;
    let mut counts = BTreeMap::new();
    for (schema, table) in tables {
        let quoted = format!("{}.{}", db::quote_ident(&schema), db::quote_ident(&table));
        let (n,): (i64,) = sqlx::query_as(AssertSqlSafe(format!("select count(*) from {quoted}")))
            .fetch_one(&mut *conn)
            .answer(&format!("counting rows of {schema}.{table}"))
            .await?;
        counts.insert(format!("{schema}.{table}"), n.max(0) as u64);
    }
    Ok(counts)
}
