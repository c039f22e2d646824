//! What can go wrong talking to the database, and whether retrying can help.
//!
//! The prediction log retries what is the database's fault (it is away,
//! busy, restarting) and sets aside what is the data's fault (a value the
//! database refuses), so one bad row never holds up the rows behind it.
//! The split follows the database's own error codes: PostgreSQL's SQLSTATE
//! classes 22 (data exception) and 23 (integrity constraint), and SQLite's
//! constraint, too-big and type-mismatch result codes, are the data;
//! connection, I/O, pool-timeout and protocol errors, and every other
//! database code, are the database.

use sqlx::error::DatabaseError;

/// What went wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no supported database.
    #[error(
        "unsupported database URL '{0}': use sqlite://FILE or postgres://USER:PASSWORD@HOST/DB"
    )]
    UnsupportedUrl(String),
    /// The driver failed (connection, query, constraint).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed or the applied ones differ from the shipped ones.
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value cannot be read back.
    #[error("malformed value in the database: {0}")]
    Malformed(String),
}

impl StoreError {
    /// True when retrying cannot help: the data is refused (see
    /// [`is_refused_data`](Self::is_refused_data)) or the request cannot be
    /// made at all (a bad URL or setting, a value that cannot be read back),
    /// rather than the database being away or busy.
    pub fn is_permanent(&self) -> bool {
        match self {
            StoreError::Database(e) => is_refused(e) || is_unworkable(e),
            StoreError::UnsupportedUrl(_) | StoreError::Malformed(_) => true,
            StoreError::Migrate(_) => false,
        }
    }

    /// True when the database refused the values sent (a constraint, a value
    /// it cannot store): sending the same values again fails again.
    pub fn is_refused_data(&self) -> bool {
        matches!(self, StoreError::Database(e) if is_refused(e))
    }

    /// The database's own reason, without the connection details: what to
    /// log or answer about a refused row. It names no stored value.
    pub fn reason(&self) -> String {
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => match e.code() {
                Some(code) => format!("{} (code {code})", e.message()),
                None => e.message().to_string(),
            },
            other => other.to_string(),
        }
    }
}

/// The data's fault: the database refused the values themselves.
fn is_refused(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(e) => database_refuses_data(e.as_ref()),
        sqlx::Error::Encode(_) => true,
        _ => false,
    }
}

/// Neither the data's fault nor the database's: the request cannot be made.
fn is_unworkable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Configuration(_)
            | sqlx::Error::InvalidArgument(_)
            | sqlx::Error::TypeNotFound { .. }
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::AnyDriverError(_)
    )
}

fn database_refuses_data(error: &dyn DatabaseError) -> bool {
    let Some(code) = error.code() else {
        return false;
    };
    if error
        .try_downcast_ref::<sqlx::sqlite::SqliteError>()
        .is_some()
    {
        code.parse().is_ok_and(sqlite_code_refuses_data)
    } else {
        sqlstate_refuses_data(&code)
    }
}

/// PostgreSQL: SQLSTATE class 22 (data exception, e.g. 22021 a NUL in
/// text) or 23 (integrity constraint violation, e.g. 23505 a duplicate key).
fn sqlstate_refuses_data(sqlstate: &str) -> bool {
    sqlstate.starts_with("22") || sqlstate.starts_with("23")
}

/// SQLite: an extended result code whose primary code (its low byte) is
/// SQLITE_TOOBIG (18), SQLITE_CONSTRAINT (19) or SQLITE_MISMATCH (20).
fn sqlite_code_refuses_data(extended: i32) -> bool {
    const TOOBIG: i32 = 18;
    const CONSTRAINT: i32 = 19;
    const MISMATCH: i32 = 20;
    matches!(extended & 0xff, TOOBIG | CONSTRAINT | MISMATCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_exceptions_and_integrity_violations_are_the_datas_fault() {
        for sqlstate in ["22021", "22001", "22P02", "23505", "23503", "23502"] {
            assert!(sqlstate_refuses_data(sqlstate), "{sqlstate}");
        }
    }

    #[test]
    fn connection_shutdown_and_serialization_errors_are_the_databases_fault() {
        // connection failure, admin shutdown, too many connections,
        // serialization failure, deadlock, undefined table, disk full.
        for sqlstate in [
            "08006", "57P01", "53300", "40001", "40P01", "42P01", "53100",
        ] {
            assert!(!sqlstate_refuses_data(sqlstate), "{sqlstate}");
        }
    }

    #[test]
    fn sqlite_constraint_too_big_and_mismatch_codes_are_the_datas_fault() {
        // SQLITE_CONSTRAINT_PRIMARYKEY, _UNIQUE, _NOTNULL, the primary codes.
        for code in [1555, 2067, 1299, 18, 19, 20] {
            assert!(sqlite_code_refuses_data(code), "{code}");
        }
    }

    #[test]
    fn sqlite_busy_locked_full_and_io_codes_are_the_databases_fault() {
        // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_FULL, SQLITE_IOERR_WRITE, SQLITE_CANTOPEN.
        for code in [5, 6, 13, 778, 14] {
            assert!(!sqlite_code_refuses_data(code), "{code}");
        }
    }

    #[test]
    fn io_pool_timeout_and_protocol_errors_are_transient() {
        let transient = [
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            sqlx::Error::PoolTimedOut,
            sqlx::Error::Protocol("unexpected message".into()),
            sqlx::Error::WorkerCrashed,
        ];
        for error in transient {
            let error = StoreError::Database(error);
            assert!(!error.is_permanent(), "{error}");
            assert!(!error.is_refused_data(), "{error}");
        }
    }

    #[test]
    fn a_value_that_cannot_be_encoded_is_refused_data() {
        let error = StoreError::Database(sqlx::Error::Encode("too large".into()));
        assert!(error.is_permanent());
        assert!(error.is_refused_data());
    }

    #[tokio::test]
    async fn a_duplicate_key_in_a_real_sqlite_database_is_refused_data() {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::query("create table t (id integer primary key)")
            .execute(&pool)
            .await
            .unwrap();
        let insert = || sqlx::query("insert into t (id) values (1)").execute(&pool);
        insert().await.unwrap();
        let error = StoreError::from(insert().await.unwrap_err());
        assert!(error.is_refused_data(), "{error}");
        assert!(error.is_permanent());
        assert!(error.reason().contains("UNIQUE"), "{}", error.reason());
    }

    #[tokio::test]
    async fn a_database_that_is_not_there_is_transient() {
        sqlx::any::install_default_drivers();
        let error = sqlx::any::AnyPoolOptions::new()
            .acquire_timeout(std::time::Duration::from_millis(500))
            .connect("postgres://nobody:nothing@127.0.0.1:1/none")
            .await
            .unwrap_err();
        let error = StoreError::from(error);
        assert!(!error.is_permanent(), "{error}");
    }
}
