//! The `mysql` store: a MySQL or MariaDB database mapped like the `sqlite` store, worked in batched statements
//! (see [`super::sql`]). Rows are named by their primary key, which must be a single column.

use super::sql::{Backend, Dialect, Param, RowFn, RowRef, Sql, SqlConfig, TlsMode};
use super::{DriverError, MappingError, StoreError, Unreachable};
use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder, SslOpts, Value};

/// A connection to a MySQL or MariaDB server.
pub(crate) struct MyConn {
    pub(super) conn: Conn,
}

/// The store error for `e`: the server busy, a refused statement, a bad `url`, or the connection lost.
pub(super) fn error(e: mysql::Error) -> StoreError {
    match e {
        // Lock wait timeout, deadlock, statement time limit (MySQL, MariaDB): busy, not a row's fault.
        mysql::Error::MySqlError(ref m) if matches!(m.code, 1205 | 1213 | 3024 | 1969) => {
            StoreError::Busy(DriverError::Mysql(e))
        }
        mysql::Error::MySqlError(_)
        | mysql::Error::FromValueError(_)
        | mysql::Error::FromRowError(_) => StoreError::Server(DriverError::Mysql(e)),
        mysql::Error::UrlError(e) => MappingError::MysqlUrl(e).into(),
        other => Unreachable::Lost(DriverError::Mysql(other)).into(),
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(f) => Some(f.to_string()),
        other => Some(other.as_sql(true).trim_matches('\'').to_owned()),
    }
}

fn params(sql: &Sql) -> mysql::Params {
    let mut values = Vec::new();
    for p in &sql.params {
        match p {
            Param::Text(t) => values.push(Value::from(t.as_str())),
            Param::List(l) => values.extend(l.iter().map(|t| Value::from(t.as_str()))),
        }
    }
    if values.is_empty() {
        mysql::Params::Empty
    } else {
        mysql::Params::Positional(values)
    }
}

fn opts(config: &SqlConfig, tls: bool) -> Result<OptsBuilder, StoreError> {
    let opts = Opts::from_url(&config.url).map_err(MappingError::MysqlUrl)?;
    let mut b =
        OptsBuilder::from_opts(opts).tcp_connect_timeout(Some(config.connect_timeout_seconds));
    if let Some(pw) = super::sql::password(config)? {
        b = b.pass(Some(pw));
    }
    if tls {
        // The mysql crate builds its own rustls configuration with the process's default provider: ours.
        super::tls::provider();
        let mut ssl = SslOpts::default();
        if config.tls == TlsMode::VerifyFull {
            // The crate trusts Mozilla's roots (webpki-roots) plus one PEM file: `ca_file`, or else the
            // platform's CA bundle, so that a CA the machine trusts is trusted here as by the other stores.
            let roots = match &config.ca_file {
                Some(ca) => {
                    super::tls::ca_file_certs(ca)?;
                    Some(ca.clone())
                }
                None => super::tls::platform_bundle(),
            };
            ssl = ssl.with_root_cert_path(roots);
        } else {
            ssl = ssl
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true);
        }
        b = b.ssl_opts(Some(ssl));
    }
    Ok(b)
}

impl Backend for MyConn {
    const DIALECT: Dialect = Dialect::Mysql;

    fn connect(config: &SqlConfig) -> Result<MyConn, StoreError> {
        let cannot = |e: mysql::Error| Unreachable::Connect(DriverError::Mysql(e));
        let conn = match config.tls {
            TlsMode::Disable => Conn::new(opts(config, false)?).map_err(cannot)?,
            TlsMode::Prefer => match Conn::new(opts(config, true)?) {
                Ok(c) => c,
                Err(mysql::Error::DriverError(mysql::DriverError::TlsNotSupported)) => {
                    Conn::new(opts(config, false)?).map_err(cannot)?
                }
                Err(e) => return Err(cannot(e).into()),
            },
            TlsMode::Require | TlsMode::VerifyFull => {
                Conn::new(opts(config, true)?).map_err(cannot)?
            }
        };
        let mut conn = MyConn { conn };
        let version: Option<String> = conn.conn.query_first("SELECT VERSION()").map_err(error)?;
        let t = config.statement_timeout_seconds.as_secs();
        let limit = if version.is_some_and(|v| v.contains("MariaDB")) {
            format!("max_statement_time = {t}")
        } else {
            format!("max_execution_time = {}", t * 1000)
        };
        conn.batch(&format!(
            "SET NAMES utf8mb4; SET SESSION {limit}, innodb_lock_wait_timeout = {t}"
        ))?;
        Ok(conn)
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.conn.query_drop(sql).map_err(error)
    }

    fn query(&mut self, sql: &Sql, each: &mut RowFn<'_>) -> Result<(), StoreError> {
        let rows = self
            .conn
            .exec_iter(sql.text.as_str(), params(sql))
            .map_err(error)?;
        let mut cells = Vec::new();
        for row in rows {
            let row = row.map_err(error)?;
            cells.clear();
            cells.extend((0..row.len()).map(|i| text(row.as_ref(i))));
            each(&cells)?;
        }
        Ok(())
    }

    fn execute(&mut self, sql: &Sql) -> Result<u64, StoreError> {
        self.conn
            .exec_drop(sql.text.as_str(), params(sql))
            .map_err(error)?;
        Ok(self.conn.affected_rows())
    }

    fn uses_index(&mut self, table: &str, predicate: &str) -> Result<bool, StoreError> {
        let sql = format!(
            "EXPLAIN SELECT 1 FROM {} WHERE {predicate}",
            Dialect::Mysql.quote(table)
        );
        let rows = self.conn.query_iter(sql).map_err(error)?;
        let mut usable = false;
        for row in rows {
            let row = row.map_err(error)?;
            let at = row
                .columns_ref()
                .iter()
                .position(|c| c.name_str().eq_ignore_ascii_case("possible_keys"));
            usable |= at
                .and_then(|i| text(row.as_ref(i)))
                .is_some_and(|k| !k.is_empty());
        }
        Ok(usable)
    }

    fn row_reference(&mut self, table: &str) -> Result<RowRef, StoreError> {
        let keys: Vec<String> = self
            .conn
            .exec(
                "SELECT CAST(column_name AS CHAR) FROM information_schema.key_column_usage \
                 WHERE table_schema = DATABASE() AND table_name = ? AND constraint_name = 'PRIMARY' \
                 ORDER BY ordinal_position",
                (table,),
            )
            .map_err(error)?;
        match keys.as_slice() {
            [key] => Ok(RowRef::Key(key.clone())),
            [] => Err(MappingError::NoPrimaryKey {
                table: table.to_owned(),
            }
            .into()),
            _ => Err(MappingError::CompositeKey {
                table: table.to_owned(),
            }
            .into()),
        }
    }
}
