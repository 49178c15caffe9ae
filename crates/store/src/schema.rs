//! Versioned schemas for every SQLite file Vellum keeps (the server's database, device
//! profiles): an integrity check on open, numbered SQL migrations run by `refinery`, and a
//! clear refusal of a file written by a newer Vellum.
//!
//! refinery's own rusqlite driver stops at rusqlite 0.41, so [`Driver`] implements its
//! (small, public) driver traits over our rusqlite; its PostgreSQL drivers are used as they are.

use refinery::{Migration, Runner};
use rusqlite::{Connection, OptionalExtension};

/// refinery's history table: one row per applied migration.
const HISTORY: &str = "refinery_schema_history";

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "the database file is damaged (SQLite integrity check: {0}); restore it from a backup"
    )]
    Damaged(String),
    #[error(
        "the database is at schema version {found}, newer than this vellum supports (up to \
         version {supported}); use the vellum that wrote it or a newer one"
    )]
    TooNew { found: i64, supported: i64 },
    #[error("migrating the database schema failed: {0}")]
    Migration(String),
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Runs `PRAGMA quick_check`: a damaged file is refused before anything reads or writes it.
pub fn quick_check(conn: &Connection) -> Result<(), SchemaError> {
    let damaged = |e: rusqlite::Error| SchemaError::Damaged(e.to_string());
    let mut stmt = conn.prepare("PRAGMA quick_check").map_err(damaged)?;
    let problems = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(damaged)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(damaged)?;
    match problems.as_slice() {
        [ok] if ok == "ok" => Ok(()),
        _ => Err(SchemaError::Damaged(problems.join("; "))),
    }
}

/// Checks an existing file through a read-only connection before anything opens it for
/// writing: a damaged file, or one written by a newer version, is refused unchanged (a
/// read-write open would already set its journal mode or checkpoint its WAL on close).
pub fn check_existing(path: &std::path::Path, runner: &Runner) -> Result<(), SchemaError> {
    if std::fs::metadata(path).map_or(true, |m| m.len() == 0) {
        return Ok(()); // nothing there yet: it is created
    }
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| SchemaError::Damaged(e.to_string()))?;
    quick_check(&conn)?;
    let supported = supported_version(runner);
    match schema_version(&conn)? {
        Some(found) if found > supported => Err(SchemaError::TooNew { found, supported }),
        _ => Ok(()),
    }
}

fn supported_version(runner: &Runner) -> i64 {
    runner
        .get_migrations()
        .iter()
        .map(|m| m.version() as i64)
        .max()
        .unwrap_or(0)
}

/// The highest migration recorded in the file, if it has a history at all.
pub fn schema_version(conn: &Connection) -> Result<Option<i64>, SchemaError> {
    if !has_table(conn, HISTORY)? {
        return Ok(None);
    }
    Ok(
        conn.query_row(&format!("SELECT MAX(version) FROM {HISTORY}"), [], |r| {
            r.get::<_, Option<i64>>(0)
        })?,
    )
}

fn has_table(conn: &Connection, name: &str) -> Result<bool, SchemaError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [name],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Brings the file at `conn` to the newest schema `runner` knows.
///
/// A file written before numbered migrations existed (0.1.0: tables, no history) is taken
/// as version 1, whose statements are exactly 0.1.0's `CREATE … IF NOT EXISTS` schema, so
/// running V1 over it only adds what is missing. Files from before 0.1.0 also lack columns
/// that were added to `CREATE TABLE` in place; those are added first, with their defaults.
pub fn migrate(conn: &mut Connection, runner: Runner) -> Result<(), SchemaError> {
    let supported = supported_version(&runner);
    let migrations = runner.get_migrations();
    let found = schema_version(conn)?;
    if let Some(found) = found.filter(|v| *v > supported) {
        return Err(SchemaError::TooNew { found, supported });
    }
    if found.is_none() {
        let v1 = migrations
            .iter()
            .find(|m| m.version() == 1)
            .and_then(|m| m.sql())
            .ok_or_else(|| SchemaError::Migration("no V1 migration".into()))?;
        add_missing_columns(conn, v1)?;
    }
    // Grouped: every pending migration and its history row commit in one transaction, so a
    // crash leaves the file at the old version or the new one, never between.
    runner
        .set_grouped(true)
        .run(&mut Driver(conn))
        .map(|_| ())
        .map_err(|e| SchemaError::Migration(e.to_string()))
}

/// Adds to existing tables the columns `reference_sql` declares and they lack.
fn add_missing_columns(conn: &Connection, reference_sql: &str) -> Result<(), SchemaError> {
    let reference = Connection::open_in_memory()?;
    reference.execute_batch(reference_sql)?;
    let tables: Vec<String> = reference
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for table in tables {
        if !has_table(conn, &table)? {
            continue; // V1 creates it whole
        }
        let have = columns(conn, &table)?;
        for (name, decl) in columns(&reference, &table)? {
            if !have.iter().any(|(n, _)| *n == name) {
                conn.execute_batch(&format!("ALTER TABLE \"{table}\" ADD COLUMN {decl}"))?;
            }
        }
    }
    Ok(())
}

/// (name, declaration as `ALTER TABLE … ADD COLUMN` takes it) of each column of `table`.
fn columns(conn: &Connection, table: &str) -> Result<Vec<(String, String)>, SchemaError> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info(\"{table}\")"))?;
    let rows = stmt.query_map([], |r| {
        let name: String = r.get(1)?;
        let ty: String = r.get(2)?;
        let not_null: bool = r.get(3)?;
        let default: Option<String> = r.get(4)?;
        let mut decl = format!("\"{name}\" {ty}");
        if not_null {
            decl.push_str(" NOT NULL");
        }
        if let Some(d) = default {
            decl.push_str(&format!(" DEFAULT {d}"));
        }
        Ok((name, decl))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// refinery's driver traits over a rusqlite connection.
struct Driver<'a>(&'a mut Connection);

impl refinery::Migrate for Driver<'_> {}

impl refinery_core::traits::sync::Transaction for Driver<'_> {
    type Error = rusqlite::Error;

    fn execute<'a, T: Iterator<Item = &'a str>>(
        &mut self,
        queries: T,
    ) -> Result<usize, Self::Error> {
        let tx = self.0.transaction()?;
        let mut count = 0;
        for query in queries {
            tx.execute_batch(query)?;
            count += 1;
        }
        tx.commit()?;
        Ok(count)
    }
}

impl refinery_core::traits::sync::Query<Vec<Migration>> for Driver<'_> {
    fn query(&mut self, query: &str) -> Result<Vec<Migration>, Self::Error> {
        use time::format_description::well_known::Rfc3339;
        let mut stmt = self.0.prepare(query)?;
        let rows = stmt.query_map([], |r| {
            let version: i32 = r.get(0)?;
            let name: String = r.get(1)?;
            let applied_on: String = r.get(2)?;
            let checksum: String = r.get(3)?;
            Ok((version, name, applied_on, checksum))
        })?;
        let mut applied = Vec::new();
        for row in rows {
            let (version, name, applied_on, checksum) = row?;
            let bad = |what: &str| {
                rusqlite::Error::InvalidColumnType(
                    0,
                    format!("{HISTORY}.{what}"),
                    rusqlite::types::Type::Text,
                )
            };
            let applied_on = time::OffsetDateTime::parse(&applied_on, &Rfc3339)
                .map_err(|_| bad("applied_on"))?;
            let checksum = checksum.parse::<u64>().map_err(|_| bad("checksum"))?;
            applied.push(Migration::applied(version, name, applied_on, checksum));
        }
        Ok(applied)
    }
}
