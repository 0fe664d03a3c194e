//! Store errors.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the database schema is not migrated (at version {found:?}, this build needs {expected}); run `pricestream migrate`")]
    Unmigrated { found: Option<i64>, expected: i64 },
    #[error("the database schema version {found} is newer than this build supports ({expected}); upgrade PriceStream")]
    TooNew { found: i64, expected: i64 },
    #[error("unsupported store url {0:?}: expected sqlite://… or postgres://…")]
    Url(String),
    #[error("value {value} does not fit column {column}")]
    OutOfRange { column: &'static str, value: i128 },
    #[error("stored data is invalid: {0}")]
    Data(#[from] pricestream_schemas::SchemaError),
    #[error("lake i/o on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

impl StoreError {
    /// The one place that decides whether a failed store call may succeed when retried.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Db(e) => {
                matches!(
                    e,
                    sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
                ) || e
                    .as_database_error()
                    .and_then(|d| d.code())
                    .is_some_and(|c| {
                        // SQLite busy; PostgreSQL serialization failure, deadlock, too many
                        // connections, shutdown in progress, connection exceptions (08xxx)
                        matches!(&*c, "5" | "40001" | "40P01" | "53300" | "57P01" | "57P03")
                            || c.starts_with("08")
                    })
            }
            StoreError::Io { .. } => true,
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;
