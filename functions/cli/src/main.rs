//! `llmgw`: the command-line client of the LLM Gateway. Submits documents to a service and
//! follows the job live (WebSocket, polling as a fallback), lists, shows, cancels and
//! deletes jobs, exports results and lists services.
//!
//! Exit codes: 0 ok, 1 job failed or cancelled, 2 usage error, 3 API error, 4 gateway
//! unreachable, 5 timed out.

mod cli;
mod client;
mod error;
mod export;
mod files;
mod follow;
mod jobs;
mod output;
mod progress;
mod run;
mod services;
mod submit;
mod table;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, ServicesCommand};
use crate::client::{ApiClient, Deadline};
use crate::error::{CliError, CliResult, EXIT_OK};
use crate::output::Output;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // Help and version print to stdout and exit 0; usage errors exit 2.
            let _ = error.print();
            return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
        }
    };
    follow::install_tls_provider();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// Runs the command.
async fn dispatch(cli: Cli) -> CliResult<()> {
    let global = cli.global;
    let client = ApiClient::new(
        &global.endpoint,
        global.org.clone(),
        Deadline::after(global.timeout),
    )?;
    let out = Output { json: global.json };
    match cli.command {
        Command::Run(args) => {
            let ws = global
                .ws
                .clone()
                .filter(|ws| !ws.trim().is_empty())
                .or_else(|| cli::derived_ws_url(&global.endpoint))
                .ok_or_else(|| {
                    CliError::Usage(format!(
                        "no WebSocket URL for {}: give --ws URL (or LLMGW_WS)",
                        global.endpoint
                    ))
                })?;
            run::run(&client, Some(&ws), &out, &args).await
        }
        Command::Jobs(command) => jobs::run(&client, &out, &command).await,
        Command::Export(args) => export::run(&client, &out, &args).await,
        Command::Services(ServicesCommand::List) => {
            let (items, pages) = services::all(&client).await?;
            if out.json {
                match pages.as_slice() {
                    [one] => out.json_value(one),
                    _ => {
                        out.json_value(&serde_json::json!({ "items": items, "total": items.len() }))
                    }
                }
            } else if items.is_empty() {
                out.line("no services")
            } else {
                out.line(&services::render(&items))
            }
        }
    }
}
