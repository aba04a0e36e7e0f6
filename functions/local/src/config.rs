//! Command-line configuration of the `local` binary.

use std::time::Duration;

use crate::front_door::DEFAULT_MAX_BODY_BYTES;
use crate::sqs::{SqsMapping, MAX_BATCH_SIZE};

/// `local --help` text.
pub const USAGE: &str = "\
local: dev-only AWS glue in front of functions running under `cargo lambda watch`
(API Gateway REST front door and SQS event source mappings, via the Lambda Invoke API).

Usage: local [OPTIONS]

Options:
  --invoke-url URL            Lambda Invoke API base URL [env LAMBDA_INVOKE_URL; default http://127.0.0.1:9000]
  --http-port PORT            REST front door port on 127.0.0.1, 0 for any free port [default 8080]
  --sqs QUEUE_URL=FUNCTION    poll QUEUE_URL and invoke FUNCTION; repeatable
                              [default: GATEWAY_JOB_QUEUE_URL and GATEWAY_JOB_DLQ_URL -> batch-worker]
  --batch-size N              messages per invocation, 1-10 [default 10]
  --invoke-timeout-secs N     per-invocation timeout [default 900]
  --max-body-bytes N          larger request bodies get 413 [default 6291456]
  -h, --help                  print this help

SQS is reached through the AWS SDK (AWS_ENDPOINT_URL, AWS_REGION, credentials from the environment).
";

/// Function the default queue mappings invoke.
pub const DEFAULT_SQS_FUNCTION: &str = "batch-worker";

/// Resolved settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Lambda Invoke API base URL.
    pub invoke_url: String,
    /// Port of the REST front door on 127.0.0.1 (0 = any free port).
    pub http_port: u16,
    /// Queue → function mappings to poll.
    pub sqs: Vec<SqsMapping>,
    /// Messages per invocation (1..=10).
    pub batch_size: i32,
    /// Timeout of one invocation.
    pub invoke_timeout: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Print [`USAGE`] and exit.
    Help,
    /// Run with this configuration.
    Run(Config),
}

/// Parses `args` (without the program name); `env` looks up environment variables.
/// Accepts `--name value` and `--name=value`.
pub fn parse_args<I, E>(args: I, env: E) -> Result<Command, String>
where
    I: IntoIterator<Item = String>,
    E: Fn(&str) -> Option<String>,
{
    let non_empty_env = |name: &str| env(name).filter(|value| !value.trim().is_empty());
    let mut invoke_url =
        non_empty_env("LAMBDA_INVOKE_URL").unwrap_or_else(|| "http://127.0.0.1:9000".to_string());
    let mut http_port: u16 = 8080;
    let mut sqs = Vec::new();
    let mut batch_size = MAX_BATCH_SIZE;
    let mut invoke_timeout_secs: u64 = 900;
    let mut max_body_bytes = DEFAULT_MAX_BODY_BYTES;

    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help);
        }
        let (name, inline_value) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                (name.to_string(), Some(value.to_string()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline_value
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value (see --help)"))
        };
        match name.as_str() {
            "--invoke-url" => invoke_url = value()?,
            "--http-port" => http_port = parse_number(&name, &value()?)?,
            "--sqs" => sqs.push(parse_mapping(&value()?)?),
            "--batch-size" => {
                batch_size = parse_number(&name, &value()?)?;
                if !(1..=MAX_BATCH_SIZE).contains(&batch_size) {
                    return Err(format!("--batch-size must be from 1 to {MAX_BATCH_SIZE}"));
                }
            }
            "--invoke-timeout-secs" => invoke_timeout_secs = parse_number(&name, &value()?)?,
            "--max-body-bytes" => max_body_bytes = parse_number(&name, &value()?)?,
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    if sqs.is_empty() {
        for variable in ["GATEWAY_JOB_QUEUE_URL", "GATEWAY_JOB_DLQ_URL"] {
            if let Some(queue_url) = non_empty_env(variable) {
                sqs.push(SqsMapping {
                    queue_url,
                    function: DEFAULT_SQS_FUNCTION.to_string(),
                });
            }
        }
    }
    Ok(Command::Run(Config {
        invoke_url,
        http_port,
        sqs,
        batch_size,
        invoke_timeout: Duration::from_secs(invoke_timeout_secs),
        max_body_bytes,
    }))
}

fn parse_number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{name}: {value:?} is not a valid number"))
}

/// Parses `QUEUE_URL=FUNCTION` (split at the last `=`, since queue URLs may hold one).
fn parse_mapping(value: &str) -> Result<SqsMapping, String> {
    match value.rsplit_once('=') {
        Some((queue_url, function)) if !queue_url.is_empty() && !function.is_empty() => {
            Ok(SqsMapping {
                queue_url: queue_url.to_string(),
                function: function.to_string(),
            })
        }
        _ => Err(format!("--sqs expects QUEUE_URL=FUNCTION, got {value:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Command, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_args(args.iter().map(|arg| arg.to_string()), |name| {
            env.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        })
    }

    fn config(args: &[&str], env: &[(&str, &str)]) -> Config {
        match parse(args, env) {
            Ok(Command::Run(config)) => config,
            other => panic!("expected a config, got {other:?}"),
        }
    }

    #[test]
    fn defaults_come_from_env() {
        let config = config(
            &[],
            &[
                ("LAMBDA_INVOKE_URL", "http://127.0.0.1:9100"),
                ("GATEWAY_JOB_QUEUE_URL", "http://q/jobs.fifo"),
                ("GATEWAY_JOB_DLQ_URL", "http://q/dlq.fifo"),
            ],
        );
        assert_eq!(config.invoke_url, "http://127.0.0.1:9100");
        assert_eq!(config.http_port, 8080);
        assert_eq!(config.batch_size, 10);
        assert_eq!(config.invoke_timeout, Duration::from_secs(900));
        assert_eq!(config.max_body_bytes, 6 * 1024 * 1024);
        let functions: Vec<(&str, &str)> = config
            .sqs
            .iter()
            .map(|m| (m.queue_url.as_str(), m.function.as_str()))
            .collect();
        assert_eq!(
            functions,
            vec![
                ("http://q/jobs.fifo", "batch-worker"),
                ("http://q/dlq.fifo", "batch-worker")
            ]
        );
    }

    #[test]
    fn flags_override_and_sqs_replaces_env_mappings() {
        let config = config(
            &[
                "--invoke-url=http://x:1",
                "--http-port",
                "0",
                "--sqs",
                "http://q/a?x=1=worker",
                "--batch-size",
                "3",
                "--invoke-timeout-secs=5",
                "--max-body-bytes",
                "100",
            ],
            &[("GATEWAY_JOB_QUEUE_URL", "http://q/jobs.fifo")],
        );
        assert_eq!(config.invoke_url, "http://x:1");
        assert_eq!(config.http_port, 0);
        assert_eq!(
            config.sqs,
            vec![SqsMapping {
                queue_url: "http://q/a?x=1".into(),
                function: "worker".into()
            }]
        );
        assert_eq!(config.batch_size, 3);
        assert_eq!(config.invoke_timeout, Duration::from_secs(5));
        assert_eq!(config.max_body_bytes, 100);
    }

    #[test]
    fn help_and_errors() {
        assert_eq!(parse(&["--help"], &[]), Ok(Command::Help));
        assert!(parse(&["--bogus"], &[]).is_err());
        assert!(parse(&["--http-port"], &[]).is_err());
        assert!(parse(&["--http-port", "x"], &[]).is_err());
        assert!(parse(&["--batch-size", "11"], &[]).is_err());
        assert!(parse(&["--sqs", "no-function"], &[]).is_err());
    }
}
