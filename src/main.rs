//! The `candor` binary: parse the command line, set up logging and threads, run.

use clap::Parser;

use candor::cli::{Cli, Command, LogFormat};

// candle allocates a fresh buffer for every intermediate tensor; glibc's
// allocator returns large ones to the kernel and faults them back in, which
// cost about a fifth of training time. mimalloc keeps them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's option `purge_delay` (the same index in its v2 and v3 headers).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Offline commands (training above all) keep the memory they free for the
/// next step: by default mimalloc hands freed pages back to the kernel after
/// 10 ms, and faulting them in again zeroed cost a fifth of the CPU time of
/// fine-tuning MiniLM. The server keeps the default, so its memory falls back
/// after a large request.
fn keep_freed_memory(command: &Command) {
    if !matches!(command, Command::Serve(_) | Command::Healthcheck(_)) {
        // SAFETY: sets one of mimalloc's options before the work starts.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    keep_freed_memory(&cli.command);
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
