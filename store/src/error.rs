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
                    .is_some_and(|c| c == "5" || c == "40001" || c == "40P01")
            }
            StoreError::Io { .. } => true,
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;
