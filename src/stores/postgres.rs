//! The `postgres` store: a PostgreSQL database mapped like the `sqlite` store, worked in batched statements
//! (see [`super::sql`]). Rows are named by `ctid` between the locking query and the statement that erases them,
//! so tables need no particular key; views and partitioned tables are refused.

use super::sql::{Backend, Dialect, Param, RowFn, RowRef, Sql, SqlConfig, TlsMode};
use super::{DriverError, MappingError, StoreError, Unreachable};
use postgres::config::SslMode;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, NoTls};
use std::path::Path;

/// A connection to a PostgreSQL server.
pub(crate) struct PgConn {
    pub(super) client: Client,
}

/// The TLS connector for `prefer`, `require` (any certificate) and `verify-full` (checked; see [`super::tls`]).
fn tls(
    mode: TlsMode,
    ca_file: Option<&Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let client = if mode == TlsMode::VerifyFull {
        super::tls::verifying(ca_file)?
    } else {
        // `prefer` and `require` encrypt without checking who answers, as libpq's sslmode does.
        super::tls::unverified()?
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(client))
}

/// A client connected with `pg` over the transport `mode` says (`ca_file` for `verify-full`): what the
/// `postgres` store and the PostgreSQL ledger of a cluster (`crate::journal`) both connect with.
///
/// # Errors
/// [`StoreError::Unavailable`] when the server cannot be reached or refuses the login, [`StoreError::Mapping`]
/// when the `ca_file` is unusable.
pub(crate) fn connect_client(
    pg: &mut postgres::Config,
    mode: TlsMode,
    ca_file: Option<&Path>,
) -> Result<Client, StoreError> {
    pg.application_name("gdprd");
    Ok(match mode {
        TlsMode::Disable => pg.ssl_mode(SslMode::Disable).connect(NoTls),
        TlsMode::Prefer => pg.ssl_mode(SslMode::Prefer).connect(tls(mode, ca_file)?),
        TlsMode::Require | TlsMode::VerifyFull => {
            pg.ssl_mode(SslMode::Require).connect(tls(mode, ca_file)?)
        }
    }
    .map_err(|e| Unreachable::Connect(DriverError::Postgres(e)))?)
}

impl PgConn {
    /// The store error for `e`: the connection lost, the server busy, or a refused statement.
    pub(super) fn error(&self, e: postgres::Error) -> StoreError {
        use postgres::error::SqlState;
        const BUSY: [SqlState; 4] = [
            SqlState::QUERY_CANCELED,
            SqlState::LOCK_NOT_AVAILABLE,
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
        ];
        if self.client.is_closed() || e.as_db_error().is_none() {
            Unreachable::Lost(DriverError::Postgres(e)).into()
        } else if e.code().is_some_and(|c| BUSY.contains(c)) {
            StoreError::Busy(DriverError::Postgres(e))
        } else {
            StoreError::Server(DriverError::Postgres(e))
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
        let mut pg: postgres::Config = config.url.parse().map_err(MappingError::PostgresUrl)?;
        if let Some(pw) = super::sql::password(config)? {
            pg.password(pw);
        }
        pg.connect_timeout(config.connect_timeout_seconds);
        let client = connect_client(&mut pg, config.tls, config.ca_file.as_deref())?;
        let mut conn = PgConn { client };
        let t = config.statement_timeout_seconds.as_secs();
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
        self.client.batch_execute(sql).map_err(|e| self.error(e))
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
        result.map_err(|e: postgres::Error| self.error(e))?
    }

    fn execute(&mut self, sql: &Sql) -> Result<u64, StoreError> {
        let params = params(sql);
        self.client
            .execute(sql.text.as_str(), &params)
            .map_err(|e| self.error(e))
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
            Some("p") => Err(MappingError::Partitioned {
                table: table.to_owned(),
            }
            .into()),
            Some(_) => Err(MappingError::NotPlainTable {
                table: table.to_owned(),
            }
            .into()),
            None => Err(MappingError::NoTable {
                table: table.to_owned(),
            }
            .into()),
        }
    }
}
