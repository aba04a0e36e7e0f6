//! `mock-llm [--host 127.0.0.1] [--port 8089] [--latency-ms N] [--delta-delay-ms N]`
//!
//! Prints exactly one line, `mock-llm listening on http://HOST:PORT/v1`, to
//! stdout once ready; logs go to stderr. Exits on SIGTERM / SIGINT.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use mock_llm::MockLlm;
use tracing_subscriber::EnvFilter;

const USAGE: &str =
    "usage: mock-llm [--host 127.0.0.1] [--port 8089] [--latency-ms N] [--delta-delay-ms N]";

struct Args {
    host: String,
    port: u16,
    latency_ms: u64,
    /// Pause before each delta of a streamed answer after the first.
    delta_delay_ms: u64,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut out = Args {
        host: "127.0.0.1".into(),
        port: 8089,
        latency_ms: 0,
        delta_delay_ms: 0,
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--host" => out.host = value()?,
            "--port" => {
                let v = value()?;
                out.port = v.parse().map_err(|_| format!("invalid --port {v:?}"))?;
            }
            "--latency-ms" => {
                let v = value()?;
                out.latency_ms = v
                    .parse()
                    .map_err(|_| format!("invalid --latency-ms {v:?}"))?;
            }
            "--delta-delay-ms" => {
                let v = value()?;
                out.delta_delay_ms = v
                    .parse()
                    .map_err(|_| format!("invalid --delta-delay-ms {v:?}"))?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(out))
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(err) => {
                tracing::warn!(%err, "cannot install SIGTERM handler; waiting for SIGINT only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            eprintln!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("mock-llm: {err}\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    let target = format!("{}:{}", args.host, args.port);
    let addr = match tokio::net::lookup_host(target.as_str()).await {
        Ok(mut addrs) => match addrs.next() {
            Some(addr) => addr,
            None => {
                eprintln!("mock-llm: {target} resolves to no address");
                return ExitCode::from(2);
            }
        },
        Err(err) => {
            eprintln!("mock-llm: cannot resolve {target}: {err}");
            return ExitCode::from(2);
        }
    };

    let mock = match MockLlm::start(addr).await {
        Ok(mock) => mock,
        Err(err) => {
            eprintln!("mock-llm: cannot listen on {addr}: {err}");
            return ExitCode::FAILURE;
        }
    };
    mock.set_latency(Duration::from_millis(args.latency_ms));
    mock.set_delta_delay(Duration::from_millis(args.delta_delay_ms));

    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "mock-llm listening on {}", mock.base_url());
    let _ = stdout.flush();
    drop(stdout);

    wait_for_signal().await;
    tracing::info!("signal received; shutting down");
    mock.shutdown().await;
    ExitCode::SUCCESS
}
