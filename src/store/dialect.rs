//! The SQL dialects: the few places where SQLite and PostgreSQL differ
//! (uuids, timestamps, json), and database URLs fit for logs.

use std::time::SystemTime;

use super::StoreError;

/// The SQL dialect behind a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Dialect {
    /// The dialect a database URL names.
    pub fn of_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Dialect::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Dialect::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl(redact(url)))
        }
    }

    /// Placeholder `$n` for a uuid given as text.
    pub(super) fn uuid(self, n: usize) -> String {
        self.cast(n, "uuid")
    }

    /// Placeholder `$n` for an RFC 3339 timestamp given as text.
    pub(super) fn timestamp(self, n: usize) -> String {
        self.cast(n, "timestamptz")
    }

    /// Placeholder `$n` for a JSON document given as text.
    pub(super) fn json(self, n: usize) -> String {
        self.cast(n, "jsonb")
    }

    pub(super) fn cast(self, n: usize, postgres_type: &str) -> String {
        match self {
            // SQLite stores all three as text.
            Dialect::Sqlite => format!("${n}"),
            Dialect::Postgres => format!("${n}::{postgres_type}"),
        }
    }

    /// A uuid or json column read back as text.
    pub(super) fn text(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => column.to_string(),
            Dialect::Postgres => format!("{column}::text"),
        }
    }

    /// A timestamp column read back as RFC 3339 text in UTC, as SQLite stores it.
    pub(super) fn timestamp_text(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => column.to_string(),
            Dialect::Postgres => {
                format!("to_char({column} at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')")
            }
        }
    }
}

/// A database URL with any password replaced, fit for logs and errors.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// RFC 3339 in UTC with milliseconds: sorts as text, and PostgreSQL casts it.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
