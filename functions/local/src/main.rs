//! `local`: runs the REST and WebSocket front doors, the SQS pollers and the DynamoDB
//! stream pollers until SIGINT/SIGTERM.

use std::io::Write;
use std::time::Duration;

use local::{
    parse_args, routes::ROUTES, Command, FrontDoor, Invoker, SqsPoller, StreamPoller, WsFrontDoor,
};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    init_logging();
    let config = match parse_args(std::env::args().skip(1), |name| std::env::var(name).ok()) {
        Ok(Command::Help) => {
            print!("{}", local::config::USAGE);
            return std::process::ExitCode::SUCCESS;
        }
        Ok(Command::Run(config)) => config,
        Err(error) => {
            eprintln!("local: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "local stopped");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.with_ansi(false).init();
    }
}

async fn run(config: local::Config) -> Result<(), String> {
    let invoker = Invoker::new(&config.invoke_url, config.invoke_timeout)
        .map_err(|error| error.to_string())?
        .with_concurrency(config.concurrency);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.http_port))
        .await
        .map_err(|error| format!("cannot listen on 127.0.0.1:{}: {error}", config.http_port))?;
    let port = listener
        .local_addr()
        .map_err(|error| error.to_string())?
        .port();
    let ws_listener = tokio::net::TcpListener::bind(("127.0.0.1", config.ws_port))
        .await
        .map_err(|error| format!("cannot listen on 127.0.0.1:{}: {error}", config.ws_port))?;
    let ws_port = ws_listener
        .local_addr()
        .map_err(|error| error.to_string())?
        .port();

    let (stop_pollers, pollers_stopped) = watch::channel(false);
    let mut pollers = Vec::new();
    let aws = if config.sqs.is_empty() && config.streams.is_empty() {
        None
    } else {
        Some(gateway_core::aws::sdk_config()?)
    };
    if let (false, Some(aws)) = (config.sqs.is_empty(), &aws) {
        let sqs = aws_sdk_sqs::Client::new(aws);
        for mapping in &config.sqs {
            let poller = SqsPoller::new(
                sqs.clone(),
                invoker.clone(),
                mapping.clone(),
                config.batch_size,
            );
            pollers.push(tokio::spawn(poller.run(pollers_stopped.clone())));
        }
    }
    if let (false, Some(aws)) = (config.streams.is_empty(), &aws) {
        let streams = aws_sdk_dynamodbstreams::Client::new(aws);
        for mapping in &config.streams {
            let poller = StreamPoller::new(
                streams.clone(),
                invoker.clone(),
                mapping.clone(),
                config.stream_batch_size,
            );
            pollers.push(tokio::spawn(poller.run(pollers_stopped.clone())));
        }
    }
    let ws_front_door = WsFrontDoor {
        invoker: invoker.clone(),
        function: config.ws_function.clone(),
        routes: config.ws_routes.clone(),
    };

    let front_door = FrontDoor {
        invoker,
        routes: ROUTES,
        max_body_bytes: config.max_body_bytes,
        timeout: config.rest_timeout,
    };
    tracing::info!(
        invoke_url = %config.invoke_url,
        port,
        ws_port,
        queues = config.sqs.len(),
        concurrency = config.concurrency,
        streams = config.streams.len(),
        "starting"
    );
    println!("local listening on http://127.0.0.1:{port}");
    println!("local websocket on ws://127.0.0.1:{ws_port}");
    let _ = std::io::stdout().flush();

    let stopping = pollers_stopped.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_pollers.send(true);
    });
    let stopped = |mut receiver: watch::Receiver<bool>| async move {
        let _ = receiver.wait_for(|stop| *stop).await;
    };
    let (served, ws_served) = tokio::join!(
        local::serve_http(listener, front_door, stopped(stopping.clone())),
        local::serve_ws(ws_listener, ws_front_door, stopped(stopping.clone())),
    );
    for poller in pollers {
        // A poll cycle may be mid-invocation; its messages simply become visible again.
        let abort = poller.abort_handle();
        if tokio::time::timeout(Duration::from_secs(3), poller)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    tracing::info!("stopped");
    served.map_err(|error| format!("http server: {error}"))?;
    ws_served.map_err(|error| format!("websocket server: {error}"))
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
