use std::process::ExitCode;

use clap::Parser;
use container_image_pusher::app;
use container_image_pusher::config::{Config, LogFormat, LoggingArgs};
use tracing_subscriber::EnvFilter;

/// A cold start parses the whole cluster and every image once, then keeps
/// a fraction of it: jemalloc hands the rest back to the system (after
/// its decay period), where glibc's and musl's allocators keep most of it
/// resident for good.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    init_tracing(&config.logging);
    let settings = match config.settings() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match app::run(settings).await {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "exiting");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, so `--dry-run` output on stdout stays clean.
fn init_tracing(logging: &LoggingArgs) {
    // --log-level was parsed as a filter already.
    let filter = EnvFilter::new(&logging.log_level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match logging.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
