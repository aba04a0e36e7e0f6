//! Command-line configuration of the `local` binary.

use std::time::Duration;

use crate::front_door::DEFAULT_MAX_BODY_BYTES;
use crate::invoke::DEFAULT_CONCURRENCY;
use crate::sqs::{SqsMapping, MAX_BATCH_SIZE};
use crate::streams::{StreamMapping, MAX_STREAM_BATCH_SIZE};
use crate::websocket::{DEFAULT_WS_FUNCTION, DEFAULT_WS_ROUTES};

/// `local --help` text.
pub const USAGE: &str = "\
local: dev-only AWS glue in front of functions running under `cargo lambda watch`
(API Gateway REST and WebSocket front doors, the API Gateway management API, SQS and
DynamoDB stream event source mappings, all via the Lambda Invoke API).

Usage: local [OPTIONS]

Options:
  --invoke-url URL            Lambda Invoke API base URL [env LAMBDA_INVOKE_URL; default http://127.0.0.1:9000]
  --http-port PORT            REST front door port on 127.0.0.1, 0 for any free port [default 8080]
  --sqs QUEUE_URL[,QUEUE_URL...]=FUNCTION
                              poll the queues and invoke FUNCTION; several queues are priority
                              lanes, most urgent first (a lane is served only while the ones
                              before it are empty); repeatable
                              [default: GATEWAY_JOB_QUEUE_URGENT_URL,GATEWAY_JOB_QUEUE_URL,
                              GATEWAY_JOB_QUEUE_BULK_URL -> batch-worker, and
                              GATEWAY_JOB_DLQ_URL -> batch-worker]
  --batch-size N              messages per invocation, 1-10 [default 10]
  --concurrency N             invocations of one function at once, 1-100: start that many
                              processes of each function; each SQS mapping runs up to N
                              batches at once [env GATEWAY_LOCAL_CONCURRENCY; default 4]
  --invoke-timeout-secs N     longest invocation (WebSocket and stream events) [default 900]
  --rest-timeout-secs N       REST invocations get 504 after this, like API Gateway's
                              integration timeout [default 29]; an SQS invocation's deadline
                              is its messages' visibility timeout
  --max-body-bytes N          larger request bodies get 413 [default 10485760]
  --ws-port PORT              WebSocket front door + management API (POST/GET/DELETE /@connections/{id})
                              on 127.0.0.1, 0 for any free port [default 8081]
  --ws-function NAME          function for $connect, $disconnect and every route [default ws]
  --ws-routes A,B             route keys selected by the frame's `action` (else $default)
                              [default subscribe,unsubscribe]
  --stream STREAM_ARN=FUNCTION
                              read the DynamoDB stream and invoke FUNCTION; repeatable
                              [default: GATEWAY_JOBS_STREAM_ARN -> ws]
  --stream-batch-size N       stream records per invocation, 1-100 [default 100]
  -h, --help                  print this help

SQS and DynamoDB Streams are reached through the AWS SDK (AWS_ENDPOINT_URL, AWS_REGION,
credentials from the environment). Stdout gets two lines once listening:
  local listening on http://127.0.0.1:PORT
  local websocket on ws://127.0.0.1:PORT
";

/// API Gateway's REST integration timeout, the default of `--rest-timeout-secs`.
pub const DEFAULT_REST_TIMEOUT_SECS: u64 = 29;

/// Most invocations of one function at once.
pub const MAX_CONCURRENCY: usize = 100;

/// Function the default queue mappings invoke.
pub const DEFAULT_SQS_FUNCTION: &str = "batch-worker";

/// Function the default stream mapping invokes.
pub const DEFAULT_STREAM_FUNCTION: &str = "ws";

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
    /// Invocations of one function at once (instances of each function).
    pub concurrency: usize,
    /// Timeout of one invocation (the longest deadline).
    pub invoke_timeout: Duration,
    /// Timeout of a REST invocation (API Gateway's integration timeout).
    pub rest_timeout: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Port of the WebSocket front door and management API on 127.0.0.1 (0 = any).
    pub ws_port: u16,
    /// Function the WebSocket API invokes.
    pub ws_function: String,
    /// Route keys selectable by a frame's `action`.
    pub ws_routes: Vec<String>,
    /// DynamoDB stream → function mappings to poll.
    pub streams: Vec<StreamMapping>,
    /// Stream records per invocation (1..=100).
    pub stream_batch_size: i32,
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
    let mut rest_timeout_secs: u64 = DEFAULT_REST_TIMEOUT_SECS;
    let mut concurrency = match non_empty_env("GATEWAY_LOCAL_CONCURRENCY") {
        Some(value) => parse_number("GATEWAY_LOCAL_CONCURRENCY", &value)?,
        None => DEFAULT_CONCURRENCY,
    };
    let mut max_body_bytes = DEFAULT_MAX_BODY_BYTES;
    let mut ws_port: u16 = 8081;
    let mut ws_function = DEFAULT_WS_FUNCTION.to_string();
    let mut ws_routes: Vec<String> = DEFAULT_WS_ROUTES.iter().map(|r| r.to_string()).collect();
    let mut streams = Vec::new();
    let mut stream_batch_size = MAX_STREAM_BATCH_SIZE;

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
            "--rest-timeout-secs" => rest_timeout_secs = parse_number(&name, &value()?)?,
            "--concurrency" => concurrency = parse_number(&name, &value()?)?,
            "--max-body-bytes" => max_body_bytes = parse_number(&name, &value()?)?,
            "--ws-port" => ws_port = parse_number(&name, &value()?)?,
            "--ws-function" => {
                ws_function = value()?;
                if ws_function.trim().is_empty() {
                    return Err("--ws-function needs a function name".to_string());
                }
            }
            "--ws-routes" => {
                ws_routes = value()?
                    .split(',')
                    .map(str::trim)
                    .filter(|route| !route.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            "--stream" => streams.push(parse_stream_mapping(&value()?)?),
            "--stream-batch-size" => {
                stream_batch_size = parse_number(&name, &value()?)?;
                if !(1..=MAX_STREAM_BATCH_SIZE).contains(&stream_batch_size) {
                    return Err(format!(
                        "--stream-batch-size must be from 1 to {MAX_STREAM_BATCH_SIZE}"
                    ));
                }
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
        return Err(format!(
            "--concurrency (GATEWAY_LOCAL_CONCURRENCY) must be from 1 to {MAX_CONCURRENCY}"
        ));
    }
    if sqs.is_empty() {
        let lanes = [
            "GATEWAY_JOB_QUEUE_URGENT_URL",
            "GATEWAY_JOB_QUEUE_URL",
            "GATEWAY_JOB_QUEUE_BULK_URL",
        ];
        let mappings = [&lanes[..], &["GATEWAY_JOB_DLQ_URL"]].map(|variables| SqsMapping {
            queue_urls: variables.iter().filter_map(|v| non_empty_env(v)).collect(),
            function: DEFAULT_SQS_FUNCTION.to_string(),
        });
        sqs.extend(
            mappings
                .into_iter()
                .filter(|mapping| !mapping.queue_urls.is_empty()),
        );
    }
    if streams.is_empty() {
        if let Some(stream_arn) = non_empty_env("GATEWAY_JOBS_STREAM_ARN") {
            streams.push(StreamMapping {
                stream_arn,
                function: DEFAULT_STREAM_FUNCTION.to_string(),
            });
        }
    }
    Ok(Command::Run(Config {
        invoke_url,
        http_port,
        sqs,
        batch_size,
        concurrency,
        invoke_timeout: Duration::from_secs(invoke_timeout_secs),
        rest_timeout: Duration::from_secs(rest_timeout_secs),
        max_body_bytes,
        ws_port,
        ws_function,
        ws_routes,
        streams,
        stream_batch_size,
    }))
}

fn parse_number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{name}: {value:?} is not a valid number"))
}

/// Parses `QUEUE_URL[,QUEUE_URL...]=FUNCTION` (split at the last `=`, since queue URLs
/// may hold one).
fn parse_mapping(value: &str) -> Result<SqsMapping, String> {
    let invalid = || format!("--sqs expects QUEUE_URL[,QUEUE_URL...]=FUNCTION, got {value:?}");
    let (queues, function) = value.rsplit_once('=').ok_or_else(invalid)?;
    let queue_urls: Vec<String> = queues.split(',').map(str::to_string).collect();
    if function.is_empty() || queue_urls.iter().any(String::is_empty) {
        return Err(invalid());
    }
    Ok(SqsMapping {
        queue_urls,
        function: function.to_string(),
    })
}

/// Parses `STREAM_ARN=FUNCTION` (split at the last `=`).
fn parse_stream_mapping(value: &str) -> Result<StreamMapping, String> {
    match value.rsplit_once('=') {
        Some((stream_arn, function)) if !stream_arn.is_empty() && !function.is_empty() => {
            Ok(StreamMapping {
                stream_arn: stream_arn.to_string(),
                function: function.to_string(),
            })
        }
        _ => Err(format!(
            "--stream expects STREAM_ARN=FUNCTION, got {value:?}"
        )),
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
                ("GATEWAY_JOB_QUEUE_URGENT_URL", "http://q/urgent.fifo"),
                ("GATEWAY_JOB_QUEUE_URL", "http://q/jobs.fifo"),
                ("GATEWAY_JOB_QUEUE_BULK_URL", "http://q/bulk.fifo"),
                ("GATEWAY_JOB_DLQ_URL", "http://q/dlq.fifo"),
                (
                    "GATEWAY_JOBS_STREAM_ARN",
                    "arn:aws:dynamodb:us-east-1:1:table/t/stream/x",
                ),
            ],
        );
        assert_eq!(config.invoke_url, "http://127.0.0.1:9100");
        assert_eq!(config.http_port, 8080);
        assert_eq!(config.batch_size, 10);
        assert_eq!(config.invoke_timeout, Duration::from_secs(900));
        assert_eq!(config.rest_timeout, Duration::from_secs(29));
        assert_eq!(config.concurrency, 4);
        assert_eq!(config.max_body_bytes, 10 * 1024 * 1024);
        assert_eq!(config.ws_port, 8081);
        assert_eq!(config.ws_function, "ws");
        assert_eq!(config.ws_routes, vec!["subscribe", "unsubscribe"]);
        assert_eq!(config.stream_batch_size, 100);
        assert_eq!(
            config.streams,
            vec![StreamMapping {
                stream_arn: "arn:aws:dynamodb:us-east-1:1:table/t/stream/x".into(),
                function: "ws".into()
            }]
        );
        let functions: Vec<(String, &str)> = config
            .sqs
            .iter()
            .map(|m| (m.queue_urls.join(" "), m.function.as_str()))
            .collect();
        assert_eq!(
            functions,
            vec![
                (
                    "http://q/urgent.fifo http://q/jobs.fifo http://q/bulk.fifo".into(),
                    "batch-worker"
                ),
                ("http://q/dlq.fifo".into(), "batch-worker")
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
                "http://q/a?x=1,http://q/b=worker",
                "--batch-size",
                "3",
                "--invoke-timeout-secs=5",
                "--rest-timeout-secs=3",
                "--max-body-bytes",
                "100",
                "--concurrency",
                "7",
            ],
            &[
                ("GATEWAY_JOB_QUEUE_URL", "http://q/jobs.fifo"),
                ("GATEWAY_LOCAL_CONCURRENCY", "2"),
            ],
        );
        assert_eq!(config.concurrency, 7);
        assert_eq!(config.rest_timeout, Duration::from_secs(3));
        assert_eq!(config.invoke_url, "http://x:1");
        assert_eq!(config.http_port, 0);
        assert_eq!(
            config.sqs,
            vec![SqsMapping {
                queue_urls: vec!["http://q/a?x=1".into(), "http://q/b".into()],
                function: "worker".into()
            }]
        );
        assert_eq!(config.batch_size, 3);
        assert_eq!(config.invoke_timeout, Duration::from_secs(5));
        assert_eq!(config.max_body_bytes, 100);
        assert!(config.streams.is_empty());
    }

    #[test]
    fn websocket_and_stream_flags() {
        let config = config(
            &[
                "--ws-port=0",
                "--ws-function",
                "sockets",
                "--ws-routes",
                "a, b,,c",
                "--stream",
                "arn:s1=f1",
                "--stream=arn:s2=f2",
                "--stream-batch-size",
                "7",
            ],
            &[("GATEWAY_JOBS_STREAM_ARN", "arn:env")],
        );
        assert_eq!(config.ws_port, 0);
        assert_eq!(config.ws_function, "sockets");
        assert_eq!(config.ws_routes, vec!["a", "b", "c"]);
        assert_eq!(
            config.streams,
            vec![
                StreamMapping {
                    stream_arn: "arn:s1".into(),
                    function: "f1".into()
                },
                StreamMapping {
                    stream_arn: "arn:s2".into(),
                    function: "f2".into()
                }
            ]
        );
        assert_eq!(config.stream_batch_size, 7);
        assert!(parse(&["--stream-batch-size", "101"], &[]).is_err());
        assert!(parse(&["--stream-batch-size", "0"], &[]).is_err());
        assert!(parse(&["--stream", "arn-only"], &[]).is_err());
        assert!(parse(&["--ws-port", "70000"], &[]).is_err());
        assert!(parse(&["--ws-function="], &[]).is_err());
    }

    #[test]
    fn help_and_errors() {
        assert_eq!(parse(&["--help"], &[]), Ok(Command::Help));
        assert!(parse(&["--bogus"], &[]).is_err());
        assert!(parse(&["--http-port"], &[]).is_err());
        assert!(parse(&["--http-port", "x"], &[]).is_err());
        assert!(parse(&["--batch-size", "11"], &[]).is_err());
        assert!(parse(&["--sqs", "no-function"], &[]).is_err());
        assert!(parse(&["--concurrency", "0"], &[]).is_err());
        assert!(parse(&[], &[("GATEWAY_LOCAL_CONCURRENCY", "x")]).is_err());
        assert_eq!(
            config(&[], &[("GATEWAY_LOCAL_CONCURRENCY", "3")]).concurrency,
            3
        );
    }
}
