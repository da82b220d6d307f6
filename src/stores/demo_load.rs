//! Demo data for database servers (`gdprd demo-db`): runs a schema and appends rows in bulk. No store does this
//! in its work, so it lives here, beside the stores, rather than in their [`Backend`] trait.

use super::mysql::MyConn;
use super::postgres::PgConn;
use super::sql::{Backend, Dialect};
use super::StoreError;
use crate::config::{SqlConfig, StoreConfig};
use ::mysql::prelude::Queryable;
use ::mysql::Value;
use std::io::Write;

/// One table's rows as text (`None` for NULL): name, columns, rows.
pub type TableRows = (String, Vec<String>, Vec<Vec<Option<String>>>);

/// Why the demo data could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DemoLoadError {
    /// The config is not a database server's (a `sqlite` demo database is made by the demo itself).
    #[error(
        "the demo loader fills database servers; sqlite demo databases are made by create_database"
    )]
    NotAServer,
    /// The server could not be reached, or refused the schema or the rows.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Runs the schema `ddl` on the database server `config` names and loads `tables` into it: how `gdprd demo-db`
/// fills PostgreSQL and MySQL with the demo data.
///
/// # Errors
/// [`DemoLoadError`]; a config that is not a database server's is [`DemoLoadError::NotAServer`].
pub fn load_demo(
    config: &StoreConfig,
    ddl: &str,
    tables: &[TableRows],
) -> Result<(), DemoLoadError> {
    match config {
        StoreConfig::Sqlite(_) | StoreConfig::Csv(_) | StoreConfig::CallbackHttp(_) => {
            Err(DemoLoadError::NotAServer)
        }
        StoreConfig::Postgres(c) => Ok(load::<PgConn>(c, ddl, tables)?),
        StoreConfig::Mysql(c) => Ok(load::<MyConn>(c, ddl, tables)?),
    }
}

/// Runs `ddl` and loads `tables` over a new connection made by `config`.
fn load<B: BulkLoad>(
    config: &SqlConfig,
    ddl: &str,
    tables: &[TableRows],
) -> Result<(), StoreError> {
    let mut conn = B::connect(config)?;
    conn.batch(ddl)?;
    for (table, columns, rows) in tables {
        conn.load(table, columns, rows)?;
    }
    Ok(())
}

/// A connection that appends rows in bulk.
trait BulkLoad: Backend {
    /// Appends `rows` (text, `None` for NULL) to `table`.
    fn load(
        &mut self,
        table: &str,
        columns: &[String],
        rows: &[Vec<Option<String>>],
    ) -> Result<(), StoreError>;
}

impl BulkLoad for PgConn {
    fn load(
        &mut self,
        table: &str,
        columns: &[String],
        rows: &[Vec<Option<String>>],
    ) -> Result<(), StoreError> {
        let d = Dialect::Postgres;
        let cols: Vec<String> = columns.iter().map(|c| d.quote(c)).collect();
        let copy = format!("COPY {} ({}) FROM STDIN", d.quote(table), cols.join(", "));
        let mut text = String::new();
        for row in rows {
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    text.push('\t');
                }
                match cell {
                    None => text.push_str("\\N"),
                    Some(v) => {
                        for c in v.chars() {
                            match c {
                                '\\' => text.push_str("\\\\"),
                                '\t' => text.push_str("\\t"),
                                '\n' => text.push_str("\\n"),
                                '\r' => text.push_str("\\r"),
                                c => text.push(c),
                            }
                        }
                    }
                }
            }
            text.push('\n');
        }
        let mut io = None;
        let result = self.client.copy_in(copy.as_str()).and_then(|mut w| {
            match w.write_all(text.as_bytes()) {
                Ok(()) => w.finish(),
                Err(e) => {
                    io = Some(e);
                    Ok(0)
                }
            }
        });
        if let Some(e) = io {
            return Err(StoreError::Io(e));
        }
        result.map_err(|e| self.error(e))?;
        if columns.iter().any(|c| c == "id") {
            self.batch(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT COALESCE(max(id), 0) + 1 FROM {}), false)",
                d.quote(table)
            ))?;
        }
        Ok(())
    }
}

impl BulkLoad for MyConn {
    fn load(
        &mut self,
        table: &str,
        columns: &[String],
        rows: &[Vec<Option<String>>],
    ) -> Result<(), StoreError> {
        let d = Dialect::Mysql;
        let cols: Vec<String> = columns.iter().map(|c| d.quote(c)).collect();
        let marks = format!("({})", vec!["?"; columns.len()].join(", "));
        for chunk in rows.chunks(500) {
            let sql = format!(
                "INSERT INTO {} ({}) VALUES {}",
                d.quote(table),
                cols.join(", "),
                vec![marks.as_str(); chunk.len()].join(", ")
            );
            let values: Vec<Value> = chunk
                .iter()
                .flatten()
                .map(|cell| match cell {
                    None => Value::NULL,
                    // DATETIME takes `2025-06-01 09:00:00`, not RFC 3339's `2025-06-01T09:00:00Z`.
                    Some(v) if is_rfc3339_utc(v) => Value::from(v[..19].replacen('T', " ", 1)),
                    Some(v) => Value::from(v.as_str()),
                })
                .collect();
            self.conn
                .exec_drop(sql, values)
                .map_err(super::mysql::error)?;
        }
        Ok(())
    }
}

fn is_rfc3339_utc(v: &str) -> bool {
    v.len() == 20 && v.as_bytes()[10] == b'T' && v.ends_with('Z')
}
