//! The command line: global options and subcommands (clap derive), and the WebSocket URL
//! derived from the REST endpoint.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use reqwest::Url;

/// Default REST endpoint: the local front door (`functions/local`).
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8080";

/// Largest `--timeout`: a week.
pub const MAX_TIMEOUT_SECS: u64 = 7 * 24 * 3600;

/// `llmgw`: the command-line client of the LLM Gateway.
#[derive(Debug, Parser)]
#[command(
    name = "llmgw",
    version,
    about = "Command-line client of the LLM Gateway",
    after_help = "Exit codes: 0 ok, 1 job failed or cancelled, 2 usage error, 3 API error (4xx/5xx), \
                  4 gateway unreachable, 5 timed out."
)]
pub struct Cli {
    /// Options shared by every command.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every command.
#[derive(Debug, Args)]
pub struct Global {
    /// Base URL of the REST API.
    #[arg(long, global = true, env = "LLMGW_ENDPOINT", default_value = DEFAULT_ENDPOINT, value_name = "URL")]
    pub endpoint: String,
    /// URL of the WebSocket API (default: for a local http://HOST:PORT endpoint, ws://HOST:PORT+1).
    #[arg(long = "ws", global = true, env = "LLMGW_WS", value_name = "URL")]
    pub ws: Option<String>,
    /// Organization (tenant) the requests act for; without it, the operator's view.
    #[arg(long, global = true, env = "LLMGW_ORG", value_name = "ORG")]
    pub org: Option<String>,
    /// Machine output: print the API's raw JSON answers.
    #[arg(long, global = true)]
    pub json: bool,
    /// Give up after SECS seconds (the whole command, including waiting for a job).
    #[arg(long, global = true, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
    pub timeout: Option<u64>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Submit a document to a service, follow the job live and print its result.
    Run(RunArgs),
    /// List, show, cancel or delete jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Export a completed job's result as a DOCX, PDF or HTML document.
    Export(ExportArgs),
    /// Catalog services.
    #[command(subcommand)]
    Services(ServicesCommand),
}

/// `llmgw run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The service: its id, name or route (e.g. `summarize`).
    #[arg(long, value_name = "NAME_OR_ID")]
    pub service: String,
    /// The flavor: its name or id (default: the service's default flavor).
    #[arg(long, value_name = "NAME")]
    pub flavor: Option<String>,
    /// Write the result to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Run the job even when a completed job of the same document and settings could
    /// answer from the result cache.
    #[arg(long)]
    pub no_cache: bool,
    /// The document to process; `-` reads stdin.
    #[arg(value_name = "FILE|-")]
    pub input: String,
}

/// `llmgw jobs ...`.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List {
        /// Only jobs with this status (queued, processing, completed, failed, cancelled).
        #[arg(long, value_name = "S")]
        status: Option<String>,
        /// At most N jobs.
        #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
        limit: u64,
    },
    /// Show one job.
    Get {
        /// The job id.
        id: String,
    },
    /// Cancel a queued or running job.
    Cancel {
        /// The job id.
        id: String,
    },
    /// Delete a finished job and its stored objects.
    Delete {
        /// The job id.
        id: String,
    },
}

/// Document formats of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Word document.
    Docx,
    /// PDF document.
    Pdf,
    /// Standalone HTML page.
    Html,
}

impl Format {
    /// The path segment and file extension.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Docx => "docx",
            Format::Pdf => "pdf",
            Format::Html => "html",
        }
    }
}

/// `llmgw export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The job id.
    pub job: String,
    /// Document format.
    #[arg(long, value_enum)]
    pub format: Format,
    /// Where to save it (default: the file name the gateway gives; `-` is stdout).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Document template id (default: the service's, else the global default).
    #[arg(long, value_name = "ID")]
    pub template: Option<String>,
    /// Result version to export (default: the current one).
    #[arg(long, value_name = "N")]
    pub version: Option<u32>,
    /// IANA time zone of the dates in the document (default UTC).
    #[arg(long, value_name = "TZ")]
    pub timezone: Option<String>,
}

/// `llmgw services ...`.
#[derive(Debug, Subcommand)]
pub enum ServicesCommand {
    /// List the services visible to the organization.
    List,
}

/// The WebSocket URL for a REST endpoint when none is given: a plain-HTTP endpoint with an
/// explicit port (the local front door, REST on PORT and WebSocket on PORT+1) gives
/// `ws://HOST:PORT+1`; anything else (a deployed https API) has no derivable WebSocket URL.
pub fn derived_ws_url(endpoint: &str) -> Option<String> {
    let url = Url::parse(endpoint).ok()?;
    if url.scheme() != "http" {
        return None;
    }
    let host = url.host_str()?;
    let port = url.port()?.checked_add(1)?;
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    Some(format!("ws://{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("llmgw").chain(args.iter().copied()))
    }

    #[test]
    fn run_takes_service_flavor_output_and_a_file_or_stdin() {
        let cli = parse(&[
            "--org",
            "acme",
            "run",
            "--service",
            "summarize",
            "--flavor",
            "single-pass",
            "-o",
            "out.md",
            "notes.txt",
        ])
        .unwrap();
        assert_eq!(cli.global.org.as_deref(), Some("acme"));
        let Command::Run(run) = cli.command else {
            panic!("not run: {:?}", cli.command)
        };
        assert_eq!(run.service, "summarize");
        assert_eq!(run.flavor.as_deref(), Some("single-pass"));
        assert_eq!(run.output, Some(PathBuf::from("out.md")));
        assert_eq!(run.input, "notes.txt");

        let cli = parse(&["run", "--service", "x", "-"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.input, "-");
    }

    #[test]
    fn global_options_go_anywhere_and_have_defaults() {
        let cli = parse(&["jobs", "get", "j1", "--json", "--timeout", "7"]).unwrap();
        assert!(cli.global.json);
        assert_eq!(cli.global.timeout, Some(7));
        // The default unless LLMGW_ENDPOINT is set in the test environment.
        if std::env::var_os("LLMGW_ENDPOINT").is_none() {
            assert_eq!(cli.global.endpoint, DEFAULT_ENDPOINT);
        }
        assert!(matches!(cli.command, Command::Jobs(JobsCommand::Get { ref id }) if id == "j1"));
    }

    #[test]
    fn jobs_list_export_and_services() {
        let cli = parse(&["jobs", "list", "--status", "failed", "--limit", "5"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Jobs(JobsCommand::List { ref status, limit: 5 }) if status.as_deref() == Some("failed")
        ));
        let cli = parse(&[
            "export",
            "j1",
            "--format",
            "pdf",
            "-o",
            "f.pdf",
            "--template",
            "t",
            "--version",
            "2",
            "--timezone",
            "Europe/Paris",
        ])
        .unwrap();
        let Command::Export(export) = cli.command else {
            panic!("not export")
        };
        assert_eq!(export.format, Format::Pdf);
        assert_eq!(export.version, Some(2));
        assert_eq!(export.timezone.as_deref(), Some("Europe/Paris"));
        assert!(matches!(
            parse(&["services", "list"]).unwrap().command,
            Command::Services(ServicesCommand::List)
        ));
    }

    #[test]
    fn usage_errors_are_clap_errors_with_exit_code_2() {
        for args in [
            &["run", "notes.txt"][..],                      // no --service
            &["export", "j1", "--format", "odt"][..],       // unknown format
            &["jobs", "list", "--limit", "0"][..],          // limit >= 1
            &["jobs", "frobnicate"][..],                    // unknown subcommand
            &["--timeout", "soon", "services", "list"][..], // not a number
        ] {
            let error = parse(args).expect_err(&format!("{args:?} parsed"));
            assert_eq!(error.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn the_websocket_url_is_derived_for_local_http_endpoints_only() {
        assert_eq!(
            derived_ws_url("http://127.0.0.1:8080").as_deref(),
            Some("ws://127.0.0.1:8081")
        );
        assert_eq!(
            derived_ws_url("http://localhost:8180/").as_deref(),
            Some("ws://localhost:8181")
        );
        assert_eq!(derived_ws_url("https://api.example.com"), None);
        assert_eq!(derived_ws_url("http://api.example.com"), None);
        assert_eq!(derived_ws_url("not a url"), None);
    }
}
