//! Real databases for the tests: a fresh SQLite file, or a fresh database on
//! the PostgreSQL server named by `CANDOR_TEST_DATABASE_URL`
//! (`scripts/postgres.sh` starts one and prints it), or a private PostgreSQL
//! server a test may stop and start.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use candor::serve::{Persistence, ServeSettings};
use candor::store::log::LogSettings;
use candor::store::Store;
use sqlx::Connection;

use crate::helpers::test_settings;

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary folder.
    Sqlite,
    /// A database on the shared PostgreSQL test server.
    Postgres,
}

/// A fresh, empty database; SQLite's folder lives as long as this.
pub struct TestDatabase {
    /// Its URL.
    pub url: String,
    _folder: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// A fresh empty database of `backend`.
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let folder = tempfile::tempdir().expect("temporary folder");
                let url = format!("sqlite://{}", folder.path().join("candor.db").display());
                TestDatabase {
                    url,
                    _folder: Some(folder),
                }
            }
            Backend::Postgres => {
                let admin = postgres_test_url();
                let name = format!("candor_test_{}", uuid::Uuid::new_v4().simple());
                let mut connection = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("connect to the PostgreSQL test server");
                sqlx::query(&format!("create database {name}"))
                    .execute(&mut connection)
                    .await
                    .expect("create a test database");
                let url = match admin.rfind('/') {
                    Some(i) => format!("{}/{name}", &admin[..i]),
                    None => panic!("CANDOR_TEST_DATABASE_URL has no database name: {admin}"),
                };
                TestDatabase { url, _folder: None }
            }
        }
    }

    /// The SQLite file, for SQLite databases.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        self.url.strip_prefix("sqlite://").map(PathBuf::from)
    }

    /// A migrated store on this database.
    pub async fn store(&self) -> Store {
        let store = Store::connect(&self.url).await.expect("connect");
        store.migrate().await.expect("migrate");
        store
    }
}

/// The PostgreSQL server the tests use; a missing URL is a failure, not a skip.
pub fn postgres_test_url() -> String {
    std::env::var("CANDOR_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "CANDOR_TEST_DATABASE_URL is not set: the PostgreSQL tests need a server. \
             Run the tests with scripts/test.sh, or export CANDOR_TEST_DATABASE_URL=$(scripts/postgres.sh)"
        )
    })
}

/// Test settings that log to `url`, with a short drain timeout.
pub fn settings_with_database(url: &str) -> ServeSettings {
    let mut settings = test_settings();
    settings.persistence = Some(Persistence {
        database_url: url.to_string(),
        store_text: true,
        max_stored_text_chars: 10_000,
        log: LogSettings {
            capacity: 10_000,
            max_backlog_bytes: 64 << 20,
            batch_rows: 256,
            drain_timeout: Duration::from_secs(10),
        },
        connect_patience: Duration::from_secs(10),
    });
    settings
}

/// Writes one `#[tokio::test]` per backend, `name::sqlite` and
/// `name::postgres`, around `async fn body(backend: Backend)`.
#[macro_export]
macro_rules! on_both_databases {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$body($crate::database::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$body($crate::database::Backend::Postgres).await
            }
        }
    };
}

/// A PostgreSQL server of the test's own, so it can be stopped and started.
pub struct PrivatePostgres {
    folder: PathBuf,
    bin: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    /// Creates a cluster in a temporary folder and starts it on a free port.
    pub fn start() -> Self {
        let bin = postgres_bin();
        let folder =
            std::env::temp_dir().join(format!("candor-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&folder).expect("create the cluster folder");
        if is_root() {
            // PostgreSQL refuses to run as root: the cluster belongs to `postgres`.
            run(Command::new("chown").arg("postgres:postgres").arg(&folder));
        }
        let data = folder.join("data");
        run(as_postgres_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "candor", "--auth=trust", "-E", "UTF8", "--no-sync"]));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let server = PrivatePostgres { folder, bin, port };
        server.resume();
        server
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("postgres://candor@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (fast shutdown: connections are cut).
    pub fn stop(&self) {
        run(self.pg_ctl().args(["-m", "fast", "-w", "stop"]));
    }

    /// Starts the stopped server again on the same port.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.folder.display()
        );
        run(self
            .pg_ctl()
            .args(["-w", "-o", &options, "-l"])
            .arg(self.folder.join("server.log"))
            .arg("start"));
    }

    fn pg_ctl(&self) -> Command {
        let mut command = as_postgres_user(&self.bin.join("pg_ctl"));
        command.arg("-D").arg(self.folder.join("data"));
        command
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self
            .pg_ctl()
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

fn postgres_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("CANDOR_TEST_PG_BIN") {
        return PathBuf::from(bin);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(Path::file_name)
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .pop()
        .filter(|bin| bin.join("initdb").exists())
        .expect("PostgreSQL's programs: install Debian's postgresql (scripts/postgres.sh does) or set CANDOR_TEST_PG_BIN")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn as_postgres_user(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(command: &mut Command) {
    let output = command.output().expect("start a PostgreSQL program");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
