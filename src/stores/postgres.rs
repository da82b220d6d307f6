//! The `postgres` store: a PostgreSQL database mapped like the `sqlite` store, worked in batched statements
//! (see [`super::sql`]). Rows are named by `ctid` between the locking query and the statement that erases them,
//! so tables need no particular key; views and partitioned tables are refused.

use super::sql::{Backend, Dialect, Param, RowFn, RowRef, Sql};
use super::StoreError;
use crate::config::{SqlConfig, TlsMode};
use postgres::config::SslMode;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, NoTls};
use std::time::Duration;

/// A connection to a PostgreSQL server.
pub(crate) struct PgConn {
    client: Client,
}

/// The password from `password_file` or `password_env`, if either is set.
pub(crate) fn password(config: &SqlConfig) -> Result<Option<String>, StoreError> {
    if let Some(file) = &config.password_file {
        let text = std::fs::read_to_string(file).map_err(|e| {
            StoreError::Unavailable(format!("cannot read password_file {}: {e}", file.display()))
        })?;
        return Ok(Some(text.lines().next().unwrap_or_default().to_owned()));
    }
    if let Some(var) = &config.password_env {
        return std::env::var(var).map(Some).map_err(|_| {
            StoreError::Unavailable(format!("environment variable {var} is not set"))
        });
    }
    Ok(None)
}

/// An error's text without what the server says about values (`DETAIL`, `HINT`).
fn server_error(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// A connection error with its causes (what TLS refused: `invalid peer certificate: UnknownIssuer`); a server's
/// refusal stays as [`server_error`] gives it.
fn connect_error(e: &postgres::Error) -> String {
    let mut text = server_error(e);
    if e.as_db_error().is_none() {
        let mut cause = std::error::Error::source(e);
        while let Some(c) = cause {
            text.push_str(&format!(": {c}"));
            cause = c.source();
        }
    }
    text
}

/// The TLS connector for `prefer`, `require` (any certificate) and `verify-full` (checked; see [`super::tls`]).
fn tls(config: &SqlConfig) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let client = if config.tls == TlsMode::VerifyFull {
        super::tls::verifying(config.ca_file.as_deref())?
    } else {
        // `prefer` and `require` encrypt without checking who answers, as libpq's sslmode does.
        super::tls::unverified()?
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(client))
}

impl PgConn {
    fn error(&self, e: &postgres::Error) -> StoreError {
        use postgres::error::SqlState;
        const BUSY: [SqlState; 4] = [
            SqlState::QUERY_CANCELED,
            SqlState::LOCK_NOT_AVAILABLE,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
        ];
        if self.client.is_closed() || e.as_db_error().is_none() {
            StoreError::Unavailable(format!("connection lost: {}", server_error(e)))
        } else if e.code().is_some_and(|c| BUSY.contains(c)) {
            StoreError::Busy(server_error(e))
        } else {
            StoreError::Server(server_error(e))
        }
    }
}

fn params(sql: &Sql) -> Vec<&(dyn ToSql + Sync)> {
    sql.params
        .iter()
        .map(|p| match p {
            Param::Text(t) => t as &(dyn ToSql + Sync),
            Param::List(l) => l as &(dyn ToSql + Sync),
        })
        .collect()
}

impl Backend for PgConn {
    const DIALECT: Dialect = Dialect::Postgres;

    fn connect(config: &SqlConfig) -> Result<PgConn, StoreError> {
        let mut pg: postgres::Config = config
            .url
            .parse()
            .map_err(|e| StoreError::Mapping(format!("url: {e}")))?;
        if let Some(pw) = password(config)? {
            pg.password(pw);
        }
        pg.connect_timeout(Duration::from_secs(config.connect_timeout_seconds))
            .application_name("gdprd");
        let client = match config.tls {
            TlsMode::Disable => pg.ssl_mode(SslMode::Disable).connect(NoTls),
            TlsMode::Prefer => pg.ssl_mode(SslMode::Prefer).connect(tls(config)?),
            TlsMode::Require | TlsMode::VerifyFull => {
                pg.ssl_mode(SslMode::Require).connect(tls(config)?)
            }
        }
        .map_err(|e| StoreError::Unavailable(format!("cannot connect: {}", connect_error(&e))))?;
        let mut conn = PgConn { client };
        let t = config.statement_timeout_seconds;
        let mut setup = format!("SET statement_timeout = '{t}s'; SET lock_timeout = '{t}s';");
        if let Some(schema) = &config.schema {
            setup.push_str(&format!(
                " SET search_path TO {};",
                Dialect::Postgres.quote(schema)
            ));
        }
        conn.batch(&setup)?;
        Ok(conn)
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.client.batch_execute(sql).map_err(|e| self.error(&e))
    }

    fn query(&mut self, sql: &Sql, each: &mut RowFn<'_>) -> Result<(), StoreError> {
        let result = (|| {
            let mut rows = self.client.query_raw(&sql.text, params(sql))?;
            let mut cells = Vec::new();
            while let Some(row) = rows.next()? {
                cells.clear();
                for i in 0..row.len() {
                    cells.push(row.try_get::<_, Option<String>>(i)?);
                }
                if let Err(e) = each(&cells) {
                    return Ok(Err(e));
                }
            }
            Ok(Ok(()))
        })();
        result.map_err(|e: postgres::Error| self.error(&e))?
    }

    fn execute(&mut self, sql: &Sql) -> Result<u64, StoreError> {
        let params = params(sql);
        self.client
            .execute(sql.text.as_str(), &params)
            .map_err(|e| self.error(&e))
    }

    fn uses_index(&mut self, table: &str, predicate: &str) -> Result<bool, StoreError> {
        // With sequential scans priced out, the planner picks an index whenever one can answer.
        self.batch("BEGIN; SET LOCAL enable_seqscan = off")?;
        let sql = Sql {
            dialect: Dialect::Postgres,
            text: format!(
                "EXPLAIN SELECT 1 FROM {} WHERE {predicate}",
                Dialect::Postgres.quote(table)
            ),
            params: Vec::new(),
        };
        let mut plan = String::new();
        let result = self.query(&sql, &mut |row| {
            plan.extend(row.iter().flatten().map(String::as_str));
            plan.push('\n');
            Ok(())
        });
        self.batch("ROLLBACK")?;
        result?;
        Ok(plan.contains("Index") && !plan.contains("Seq Scan"))
    }

    fn row_reference(&mut self, table: &str) -> Result<RowRef, StoreError> {
        let sql = Sql {
            dialect: Dialect::Postgres,
            text: "SELECT c.relkind::text FROM pg_class c WHERE c.oid = to_regclass($1::text)"
                .into(),
            params: vec![Param::Text(Dialect::Postgres.quote(table))],
        };
        let mut kind = None;
        self.query(&sql, &mut |row| {
            kind = row.first().cloned().flatten();
            Ok(())
        })?;
        match kind.as_deref() {
            Some("r") => Ok(RowRef::Ctid),
            Some("p") => Err(StoreError::Mapping(format!(
                "table {table:?} is partitioned: map its partitions instead"
            ))),
            Some(_) => Err(StoreError::Mapping(format!(
                "{table:?} is not a plain table (a view?): map the table that holds the data"
            ))),
            None => Err(StoreError::Mapping(format!(
                "table {table:?} does not exist"
            ))),
        }
    }

    fn load(
        &mut self,
        table: &str,
        columns: &[String],
        rows: &[Vec<Option<String>>],
    ) -> Result<(), StoreError> {
        use std::io::Write;
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
        result.map_err(|e| self.error(&e))?;
        if columns.iter().any(|c| c == "id") {
            self.batch(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT COALESCE(max(id), 0) + 1 FROM {}), false)",
                d.quote(table)
            ))?;
        }
        Ok(())
    }
}
