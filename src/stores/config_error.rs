//! Why a `[stores.NAME]` section cannot be used: [`StoreConfigError`], found at load without I/O by the checks
//! beside each store's config type (the shared table mapping's in [`super::mapping`]). Every variant names the
//! store, and the table or column where there is one; its text is what `check-config` and a refused reload say.

/// What is wrong with one store's section.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreConfigError {
    /// The store's name is not 1-64 letters, digits, `-` or `_`.
    #[error("store {store:?}: name must be 1-64 letters, digits, '-' or '_'")]
    Name {
        /// The name as written.
        store: String,
    },
    /// `phones.default_country_code` is not 1-3 digits or empty.
    #[error("store {store:?}: phones.default_country_code must be 1-3 digits or empty")]
    CountryCode {
        /// The store.
        store: String,
        /// The value as written.
        value: String,
    },
    /// `phones.trunk_prefix` or `phones.international_prefix` is not digits.
    #[error("store {store:?}: phones.trunk_prefix and phones.international_prefix must be digits")]
    PhonePrefix {
        /// The store.
        store: String,
    },
    /// No `[[stores.NAME.tables]]` (or `files`).
    #[error("store {store:?}: no tables mapped")]
    NoTables {
        /// The store.
        store: String,
    },
    /// A SQL store's table name is not an identifier.
    #[error("store {store:?}, table {table:?}: table names must be letters, digits and '_'")]
    TableName {
        /// The store.
        store: String,
        /// The table name as written.
        table: String,
    },
    /// A CSV store's file pattern would leave the folder or name hidden files.
    #[error("store {store:?}, table {table:?}: a file pattern names files in the folder: no '/', not starting with '.'")]
    FilePattern {
        /// The store.
        store: String,
        /// The pattern as written.
        table: String,
    },
    /// The same table is mapped twice.
    #[error("store {store:?}, table {table:?}: mapped twice")]
    TableTwice {
        /// The store.
        store: String,
        /// The table.
        table: String,
    },
    /// A table maps no device column.
    #[error("store {store:?}, table {table:?}: map at least one phone, email or ipaddr column")]
    NoDeviceColumn {
        /// The store.
        store: String,
        /// The table.
        table: String,
    },
    /// A suppression list with `forget = "delete"`.
    #[error("store {store:?}, table {table:?}: a suppression list keeps its rows: forget = \"delete\" would let a later import contact the person again")]
    SuppressionDeleted {
        /// The store.
        store: String,
        /// The table.
        table: String,
    },
    /// `mask` names a column that is not a mapped device or personal column.
    #[error("store {store:?}, table {table:?}: mask names {column:?}, which is not a mapped device or personal column")]
    MaskUnmapped {
        /// The store.
        store: String,
        /// The table.
        table: String,
        /// The column `mask` names.
        column: String,
    },
    /// `pseudonymise` names a device column.
    #[error("store {store:?}, table {table:?}: pseudonymise names the device column {column:?}: a forget replaces a device with a random placeholder, never a value derived from it (`781-555-1212` masked is `7xx-5xx-1xx2`). Remove {column:?} from pseudonymise; masking belongs to pseudonymisation requests, which mask the columns in `mask`")]
    PseudonymiseDevice {
        /// The store.
        store: String,
        /// The table.
        table: String,
        /// The device column.
        column: String,
    },
    /// `pseudonymise` names a column that is not a mapped personal column.
    #[error("store {store:?}, table {table:?}: pseudonymise names {column:?}, which is not a mapped personal column")]
    PseudonymiseUnmapped {
        /// The store.
        store: String,
        /// The table.
        table: String,
        /// The column `pseudonymise` names.
        column: String,
    },
    /// `pseudonymise` on a table whose rows are deleted.
    #[error("store {store:?}, table {table:?}: pseudonymise needs forget = \"anonymise\" (deleted rows are not masked)")]
    PseudonymiseDeleted {
        /// The store.
        store: String,
        /// The table.
        table: String,
    },
    /// A column name that is not an identifier (SQL) or is empty or has control characters (CSV).
    #[error("store {store:?}, table {table:?}: column {column:?}: column names must be letters, digits and '_'")]
    ColumnName {
        /// The store.
        store: String,
        /// The table.
        table: String,
        /// The column as written.
        column: String,
    },
    /// A column is named twice in one table's mapping.
    #[error("store {store:?}, table {table:?}: column {column:?} is mapped twice")]
    ColumnTwice {
        /// The store.
        store: String,
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
    /// `normalised` in a `sqlite` store.
    #[error("store {store:?}, table {table:?}: normalised columns are for postgres and mysql stores; a sqlite store matches by scanning")]
    SqliteNormalised {
        /// The store.
        store: String,
        /// The table.
        table: String,
    },
    /// `normalised` names a column that is not a mapped device column.
    #[error("store {store:?}, table {table:?}: normalised names {device:?}, which is not a mapped device column")]
    NormalisedUnmapped {
        /// The store.
        store: String,
        /// The table.
        table: String,
        /// The device column `normalised` names.
        device: String,
    },
    /// A `normalised` column that is not an identifier.
    #[error("store {store:?}, table {table:?}: column names must be letters, digits and '_'")]
    NormalisedName {
        /// The store.
        store: String,
        /// The table.
        table: String,
        /// The column as written.
        column: String,
    },
    /// A SQL store's `url` has the wrong scheme.
    #[error("store {store:?}: url must start with {scheme}")]
    UrlScheme {
        /// The store.
        store: String,
        /// The scheme the store's type needs.
        scheme: &'static str,
    },
    /// Both `password_file` and `password_env`.
    #[error("store {store:?}: set password_file or password_env, not both")]
    PasswordTwice {
        /// The store.
        store: String,
    },
    /// `schema` in a `mysql` store.
    #[error("store {store:?}: schema is for postgres; name the database in the url")]
    MysqlSchema {
        /// The store.
        store: String,
    },
    /// A `schema` that is not an identifier.
    #[error("store {store:?}: schema must be letters, digits and '_'")]
    SchemaName {
        /// The store.
        store: String,
        /// The schema as written.
        schema: String,
    },
    /// `connect_timeout_seconds` or `statement_timeout_seconds` is zero.
    #[error("store {store:?}: timeouts must be positive")]
    Timeouts {
        /// The store.
        store: String,
    },
    /// A CSV delimiter that is not one ASCII punctuation or space character.
    #[error("store {store:?}: delimiter must be one ASCII punctuation or space character")]
    Delimiter {
        /// The store.
        store: String,
        /// The delimiter as written.
        delimiter: char,
    },
    /// A key CSV lists do not support (`shortcode`, `state`, `file`, `normalised`).
    #[error("store {store:?}, files {list:?}: {key} is not supported in CSV lists")]
    CsvUnsupported {
        /// The store.
        store: String,
        /// The file pattern.
        list: String,
        /// The key.
        key: &'static str,
    },
    /// A callback store's `base_url` is not HTTP(S).
    #[error("store {store:?}: base_url must start with http:// or https://")]
    BaseUrl {
        /// The store.
        store: String,
    },
    /// Both `token_file` and `token_env`.
    #[error("store {store:?}: set token_file or token_env, not both")]
    TokenTwice {
        /// The store.
        store: String,
    },
    /// A zero `timeout_seconds`.
    #[error("store {store:?}: timeout_seconds must be positive")]
    Timeout {
        /// The store.
        store: String,
    },
    /// More `retries` than [`super::callback_http::MAX_RETRIES`].
    #[error(
        "store {store:?}: retries is {retries}, at most {max} (the waits double up to 10 s each)"
    )]
    Retries {
        /// The store.
        store: String,
        /// The value as written.
        retries: u32,
        /// The most allowed.
        max: u32,
    },
    /// A `retry_delay_ms` above [`super::callback_http::MAX_FIRST_DELAY`].
    #[error("store {store:?}: retry_delay_ms is {}, at most {}", .delay.as_millis(), .max.as_millis())]
    RetryDelay {
        /// The store.
        store: String,
        /// The value as written.
        delay: std::time::Duration,
        /// The most allowed.
        max: std::time::Duration,
    },
}
