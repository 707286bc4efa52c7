//! The archived table: its shape (columns, primary key), the cutoff and the dry run's estimate.

use sqlx::{AssertSqlSafe, PgConnection};

use super::Job;
use super::RunReport;
use crate::db::{quote_ident, Answer};
use crate::error::{Exit, OpsError};

/// The table's columns as the archive needs them.
pub(super) struct TableShape {
    /// `"schema"."table"` or `"table"`, quoted.
    pub(super) quoted: String,
    /// The single integer primary-key column.
    pub(super) primary_key: String,
    /// Every column, quoted, primary key first (so each JSON line starts with it).
    select_list: String,
    /// The same columns of the row aliased `t` (`t."id", t."created_at", …`): selected from a
    /// row, they give its JSON exactly as the export wrote it.
    pub(super) row_list: String,
    pub(super) time_column: String,
}

impl TableShape {
    pub(super) async fn load(
        conn: &mut PgConnection,
        table: &str,
        time_column: &str,
    ) -> Result<TableShape, OpsError> {
        let quoted = table
            .split('.')
            .map(quote_ident)
            .collect::<Vec<_>>()
            .join(".");
        let exists: Option<String> = sqlx::query_scalar("select to_regclass($1)::text")
            .bind(&quoted)
            .fetch_one(&mut *conn)
            .answer("looking up the archive table")
            .await?;
        if exists.is_none() {
            return Err(OpsError::new(
                Exit::Config,
                format!("[archive] table `{table}` does not exist in the database"),
            )
            .hint(
                "fix [archive] table, or check [database] url points at the RansomEye database",
            ));
        }
        let columns: Vec<(String, String)> = sqlx::query_as(
            "select a.attname::text, format_type(a.atttypid, a.atttypmod) from pg_attribute a \
             where a.attrelid = $1::regclass and a.attnum > 0 and not a.attisdropped order by a.attnum",
        )
        .bind(&quoted)
        .fetch_all(&mut *conn)
        .answer("reading the archive table's columns")
        .await?;
        let keys: Vec<(String, String)> = sqlx::query_as(
            "select a.attname::text, format_type(a.atttypid, a.atttypmod) from pg_index i \
             join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey) \
             where i.indrelid = $1::regclass and i.indisprimary",
        )
        .bind(&quoted)
        .fetch_all(&mut *conn)
        .answer("reading the archive table's primary key")
        .await?;
        let primary_key = match keys.as_slice() {
            [(name, ty)] if matches!(ty.as_str(), "bigint" | "integer" | "smallint") => name.clone(),
            _ => {
                return Err(OpsError::new(
                    Exit::Config,
                    format!("[archive] table `{table}` needs a single-column integer primary key (found {keys:?})"),
                ))
            }
        };
        match columns.iter().find(|(name, _)| name == time_column) {
            Some((_, ty)) if ty.starts_with("timestamp") || ty == "date" => {}
            Some((_, ty)) => {
                return Err(OpsError::new(
                    Exit::Config,
                    format!(
                    "[archive] time_column `{time_column}` of `{table}` is {ty}, not a timestamp"
                ),
                ))
            }
            None => {
                return Err(OpsError::new(
                    Exit::Config,
                    format!(
                        "[archive] time_column `{time_column}` does not exist in table `{table}`"
                    ),
                )
                .hint("fix [archive] time_column in the configuration"))
            }
        }
        let mut ordered: Vec<String> = vec![quote_ident(&primary_key)];
        ordered.extend(
            columns
                .iter()
                .filter(|(n, _)| *n != primary_key)
                .map(|(n, _)| quote_ident(n)),
        );
        Ok(TableShape {
            quoted,
            select_list: ordered.join(", "),
            row_list: ordered
                .iter()
                .map(|c| format!("t.{c}"))
                .collect::<Vec<_>>()
                .join(", "),
            primary_key,
            time_column: time_column.to_string(),
        })
    }
}

/// Step 3: the cutoff, fixed once from the database clock, as RFC 3339.
pub(super) async fn cutoff(conn: &mut PgConnection, days: u32) -> Result<String, OpsError> {
    sqlx::query_scalar("select to_json(now() - make_interval(days => $1))#>>'{}'")
        .bind(days as i32)
        .fetch_one(&mut *conn)
        .answer("computing the cutoff")
        .await
}

/// `--dry-run`: rows and JSON size exactly, file size estimated by compressing a sample. Rows
/// inside the id ranges of the interrupted archives the run would complete first (`pending`,
/// first and last ids) are left out: that run prunes them instead of archiving them again.
pub(super) async fn estimate(
    conn: &mut PgConnection,
    job: &Job,
    shape: &TableShape,
    cutoff: &str,
    pending: &[(i64, i64)],
    report: &mut RunReport,
) -> Result<(), OpsError> {
    let (lows, highs): (Vec<i64>, Vec<i64>) = pending.iter().copied().unzip();
    let not_pending = format!(
        "not exists (select 1 from unnest($2::int8[], $3::int8[]) p(lo, hi) where {} between p.lo and p.hi)",
        quote_ident(&shape.primary_key)
    );
    let sql = format!(
        "select count(*)::int8, coalesce(sum(octet_length(row_to_json(x)::text) + 1), 0)::int8 \
         from (select {} from {} where {} < $1::timestamptz and {not_pending}) x",
        shape.select_list,
        shape.quoted,
        quote_ident(&shape.time_column)
    );
    let (rows, bytes): (i64, i64) = sqlx::query_as(AssertSqlSafe(sql))
        .bind(cutoff)
        .bind(&lows)
        .bind(&highs)
        .fetch_one(&mut *conn)
        .answer("counting rows to archive")
        .await?;
    let sample_sql = format!(
        "select coalesce(string_agg(row_to_json(x)::text, E'\\n'), '') from \
         (select {} from {} where {} < $1::timestamptz and {not_pending} order by {} limit 5000) x",
        shape.select_list,
        shape.quoted,
        quote_ident(&shape.time_column),
        quote_ident(&shape.primary_key)
    );
    let sample: String = sqlx::query_scalar(AssertSqlSafe(sample_sql))
        .bind(cutoff)
        .bind(&lows)
        .bind(&highs)
        .fetch_one(&mut *conn)
        .answer("sampling rows to archive")
        .await?;
    let compressed = zstd::bulk::compress(sample.as_bytes(), job.zstd_level)
        .map(|c| c.len())
        .unwrap_or(0);
    report.status = "dry_run";
    report.rows = rows as u64;
    report.plaintext_bytes = bytes as u64;
    if !sample.is_empty() {
        report.estimated_file_bytes =
            Some((bytes as f64 * compressed as f64 / sample.len() as f64) as u64);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("audit_logs"), "\"audit_logs\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
