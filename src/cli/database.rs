//! `candor healthcheck`, `candor db` and `candor feedback`: the commands
//! that talk to a running server or its database.

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::store::{redact, Store};

/// Options of `candor healthcheck`.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Address of the server to ask (its --addr; 0.0.0.0 is asked on 127.0.0.1).
    #[arg(long, env = "CANDOR_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 3_000)]
    pub timeout_ms: u64,
}

/// `candor db …`.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply the migrations not yet applied (a no-op when all are).
    Migrate(DatabaseArgs),
}

/// `candor feedback …`.
#[derive(Debug, Subcommand)]
pub enum FeedbackCommand {
    /// Write the corrections as JSONL `{"text", "label"}` rows to stdout, for `candor train --extra`.
    Export(ExportArgs),
}

/// Which database to use.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// `sqlite://FILE` (created if missing; one instance only) or
    /// `postgres://USER:PASSWORD@HOST:PORT/DB` (shared by replicas).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://candor.db",
        hide_env_values = true
    )]
    pub database_url: String,
}

/// Options of `candor feedback export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Only feedback on this model's predictions (its directory name).
    #[arg(long)]
    pub model: Option<String>,
}

/// `GET /readyz` over a plain TCP connection: one request, the status line read.
pub(super) async fn healthcheck(args: &HealthcheckArgs) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = args.addr.replace("0.0.0.0", "127.0.0.1");
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(&addr).await?;
        stream
            .write_all(
                format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut head = vec![0u8; 64];
        let n = stream.read(&mut head).await?;
        anyhow::Ok(String::from_utf8_lossy(&head[..n]).into_owned())
    };
    let answer = tokio::time::timeout(std::time::Duration::from_millis(args.timeout_ms), ask)
        .await
        .with_context(|| format!("{addr} did not answer within {} ms", args.timeout_ms))?
        .with_context(|| format!("asking {addr}/readyz"))?;
    let status = answer.lines().next().unwrap_or_default();
    if status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200") {
        Ok(())
    } else {
        anyhow::bail!("{addr}/readyz answered '{status}'")
    }
}

async fn open(args: &DatabaseArgs) -> anyhow::Result<Store> {
    let url = &args.database_url;
    Store::connect(url)
        .await
        .with_context(|| format!("connecting to {}", redact(url)))
}

pub(super) async fn migrate(args: &DatabaseArgs) -> anyhow::Result<()> {
    let store = open(args).await?;
    store
        .migrate()
        .await
        .with_context(|| format!("migrating {}", redact(&args.database_url)))?;
    store.close().await;
    eprintln!("{} is up to date", redact(&args.database_url));
    Ok(())
}

pub(super) async fn export(args: &ExportArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let store = open(&args.database).await?;
    store.migrate().await.context("migrating the database")?;
    let corrections = store.corrections(args.model.as_deref()).await?;
    store.close().await;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for row in &corrections.rows {
        serde_json::to_writer(&mut out, row)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    eprintln!("exported {} corrections", corrections.rows.len());
    if corrections.without_text > 0 {
        eprintln!(
            "skipped {} feedback rows on predictions logged without their text (--store-text=false)",
            corrections.without_text
        );
    }
    Ok(())
}
