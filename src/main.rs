//! The `candor` binary: parse the command line, set up logging and threads, run.

use clap::Parser;

use candor::cli::{Cli, LogFormat};

// candle allocates a fresh buffer for every intermediate tensor; glibc's
// allocator returns large ones to the kernel and faults them back in, which
// cost about a fifth of training time. mimalloc keeps them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // candle's CPU kernels size their rayon pool from this variable; set it
    // before any tensor work starts, while the process is single-threaded.
    std::env::set_var("RAYON_NUM_THREADS", cli.compute_threads().to_string());
    init_tracing(cli.log_format);
    candor::cli::run(cli)
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
