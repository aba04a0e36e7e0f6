//! Test harness shared by the handler and end-to-end tests: provisions a private set of
//! emulator resources (unique prefix) with the project's own scripts, loads the seeds
//! pointing at an in-process mock LLM, and drives SQS like the Lambda event source does.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use gateway_core::aws::{AwsClients, DynamoCatalog, GatewayEnv};
use gateway_core::engine::{Gateway, Limits};
use gateway_core::llm::RetryPolicy;
use mock_llm::MockLlm;
use uuid::Uuid;

/// Ids of the seeded catalog (`seeds/`).
pub mod seeds {
    use uuid::{uuid, Uuid};
    pub const PROVIDER_ID: Uuid = uuid!("0b0d3f3e-0000-4000-8000-000000000001");
    pub const MODEL_ID: Uuid = uuid!("0b0d3f3e-0000-4000-8000-000000000101");
    pub const SUMMARIZE_SERVICE_ID: Uuid = uuid!("0b0d3f3e-0000-4000-8000-000000000201");
    pub const ITERATIVE_FLAVOR_ID: Uuid = uuid!("0b0d3f3e-0000-4000-8000-000000000301");
    pub const SINGLE_PASS_FLAVOR_ID: Uuid = uuid!("0b0d3f3e-0000-4000-8000-000000000302");
    /// Not seeded: [`super::TestStack::add_chat_flavor`] stores it (`events/chat-completions.json`
    /// names it).
    pub const CHAT_FLAVOR_ID: Uuid = uuid!("0b0d3f3e-0000-4000-8000-000000000391");
}

/// System prompt of the chat flavor tests add ([`TestStack::add_chat_flavor`]).
pub const CHAT_SYSTEM_PROMPT: &str = "You answer questions about the meeting \"{conversation_name}\".\nTranscript:\n{transcript}\n\n{summary_section}";

/// API key of the seeded provider in test stacks; the mock LLM requires it.
pub const SEEDED_API_KEY: &str = "test-key-not-secret";

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// The Python of the project venv (`GATEWAY_PYTHON` overrides).
pub fn python() -> PathBuf {
    std::env::var_os("GATEWAY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".local/venv/bin/python"))
}

/// The emulator endpoint; tests need it (`tests/run.sh` starts the emulator and sets it).
pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").expect(
        "AWS_ENDPOINT_URL is not set: run the tests with tests/run.sh, which starts the emulator",
    )
}

/// A private, provisioned and seeded stack plus a mock LLM.
pub struct TestStack {
    pub prefix: String,
    /// The environment a function process of this stack needs (`GATEWAY_*`, AWS_*).
    pub vars: Vec<(String, String)>,
    pub env: GatewayEnv,
    pub clients: AwsClients,
    pub catalog: DynamoCatalog,
    pub gateway: Gateway,
    pub mock: MockLlm,
    pub dead_letter_queue_url: String,
}

/// LLM retry settings that keep tests fast.
pub fn test_limits() -> Limits {
    Limits {
        max_input_bytes: 5_000_000,
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
        },
        llm_timeout: Duration::from_secs(5),
        step_deadline: Duration::from_secs(10),
        step_patience: Duration::from_secs(30),
        requeue_base: Duration::from_millis(100),
        requeue_max: Duration::from_secs(1),
        // Tests change providers between jobs: always read them.
        catalog_cache_ttl: Duration::ZERO,
        ..Limits::default()
    }
}

impl TestStack {
    /// Provisions resources under a fresh prefix and seeds the catalog with the mock LLM as
    /// the default provider.
    pub async fn start() -> TestStack {
        Self::start_with_visibility_timeout(30).await
    }

    /// Like [`TestStack::start`], with the job queue's visibility timeout in seconds.
    pub async fn start_with_visibility_timeout(visibility_timeout_secs: u32) -> TestStack {
        let prefix = format!("t{}", &Uuid::new_v4().simple().to_string()[..10]);
        let endpoint = endpoint();
        let mock = MockLlm::start("127.0.0.1:0".parse().unwrap())
            .await
            .expect("mock LLM starts");
        // Every call must authenticate with the seeded provider's key (stored encrypted).
        mock.require_api_key(Some(SEEDED_API_KEY));
        let root = repo_root();
        let provision = run_python(
            &[
                root.join("localstack/provision.py").to_str().unwrap(),
                "--endpoint",
                &endpoint,
                "--prefix",
                &prefix,
            ],
            &[(
                "GATEWAY_VISIBILITY_TIMEOUT",
                &visibility_timeout_secs.to_string(),
            )],
        );
        let mut vars: Vec<(String, String)> = provision
            .lines()
            .filter_map(|line| line.strip_prefix("export "))
            .filter_map(|pair| pair.split_once('='))
            .map(|(name, value)| {
                (
                    name.to_string(),
                    value.trim_matches(|c| c == '\'' || c == '"').to_string(),
                )
            })
            .collect();
        for name in [
            "AWS_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_ENDPOINT_URL",
        ] {
            if !vars.iter().any(|(n, _)| n == name) {
                vars.push((name.to_string(), std::env::var(name).unwrap_or_default()));
            }
        }
        run_python(
            &[
                root.join("localstack/load_seeds.py").to_str().unwrap(),
                "--endpoint",
                &endpoint,
                "--prefix",
                &prefix,
                "--seeds",
                root.join("seeds").to_str().unwrap(),
            ],
            &[
                ("LLM_BASE_URL", &mock.base_url()),
                ("LLM_API_KEY", SEEDED_API_KEY),
            ],
        );
        let var = |name: &str| {
            vars.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("provision.py printed no {name}"))
        };
        let env = GatewayEnv {
            jobs_table: var("GATEWAY_JOBS_TABLE"),
            catalog_table: var("GATEWAY_CATALOG_TABLE"),
            bucket: var("GATEWAY_BUCKET"),
            job_queues: gateway_core::aws::LaneQueueUrls {
                urgent: var("GATEWAY_JOB_QUEUE_URGENT_URL"),
                standard: var("GATEWAY_JOB_QUEUE_URL"),
                bulk: var("GATEWAY_JOB_QUEUE_BULK_URL"),
            },
            kms_key_id: Some(var("GATEWAY_KMS_KEY_ID")),
            breakers_table: var("GATEWAY_BREAKERS_TABLE"),
            usage_table: var("GATEWAY_USAGE_TABLE"),
        };
        let dead_letter_queue_url = var("GATEWAY_JOB_DLQ_URL");
        let clients = AwsClients::load().expect("AWS configuration from the environment");
        let catalog = DynamoCatalog::new(clients.dynamodb.clone(), env.catalog_table.clone());
        let gateway = gateway_core::aws::gateway(env.clone(), &clients, test_limits());
        TestStack {
            prefix,
            vars,
            env,
            clients,
            catalog,
            gateway,
            mock,
            dead_letter_queue_url,
        }
    }

    /// Receives up to 10 visible messages of `queue_url` as a Lambda SQS event (None when
    /// the queue has nothing visible after a 1 s long poll).
    pub async fn receive_event(&self, queue_url: &str) -> Option<SqsEvent> {
        self.receive_event_waiting(queue_url, 1).await
    }

    async fn receive_event_waiting(&self, queue_url: &str, wait_seconds: i32) -> Option<SqsEvent> {
        let output = self
            .clients
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive");
        let messages = output.messages.unwrap_or_default();
        if messages.is_empty() {
            return None;
        }
        let queue_name = queue_url.rsplit('/').next().unwrap_or_default();
        let arn = format!("arn:aws:sqs:us-east-1:123456789012:{queue_name}");
        Some(
            serde_json::from_value(local::sqs_event(&messages, &arn, "us-east-1"))
                .expect("valid SQS event"),
        )
    }

    /// Deletes the records of `event` not listed as failures (what the event source does).
    pub async fn acknowledge(
        &self,
        queue_url: &str,
        event: &SqsEvent,
        response: &SqsBatchResponse,
    ) {
        for record in &event.records {
            let failed = response
                .batch_item_failures
                .iter()
                .any(|failure| Some(&failure.item_identifier) == record.message_id.as_ref());
            if !failed {
                self.clients
                    .sqs
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(record.receipt_handle.clone().unwrap_or_default())
                    .send()
                    .await
                    .expect("delete");
            }
        }
    }

    /// Submits a job to the seeded summarize service through the core (no HTTP).
    pub async fn submit(
        &self,
        flavor: &str,
        organization_id: Option<&str>,
        input: String,
    ) -> gateway_core::domain::Job {
        let request = gateway_core::engine::execute::ExecuteRequest {
            input,
            flavor_id: None,
            flavor_name: Some(flavor.into()),
            organization_id: organization_id.map(str::to_string),
            ..Default::default()
        };
        gateway_core::engine::execute::submit(&self.gateway, seeds::SUMMARIZE_SERVICE_ID, request)
            .await
            .expect("job submitted")
    }

    /// Wraps an SQS event as the Lambda runtime would.
    pub fn lambda_event(event: SqsEvent) -> lambda_runtime::LambdaEvent<SqsEvent> {
        lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default())
    }
}

fn run_python(args: &[&str], extra_env: &[(&str, &str)]) -> String {
    let output = Command::new(python())
        .args(args)
        .envs(extra_env.iter().copied())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e} (run localstack/venv.sh first)",
                python().display()
            )
        });
    assert!(
        output.status.success(),
        "{args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A deterministic transcript of `turns` lines, `Name : text`, with a long turn every 17
/// lines (many sentences) and an unattributed line every 29.
pub fn transcript(turns: usize) -> String {
    const SPEAKERS: [&str; 5] = ["John", "Marie", "Ahmed", "Sofia", "Chen"];
    const WORDS: [&str; 12] = [
        "budget", "release", "client", "schedule", "risk", "review", "team", "data", "plan",
        "quarter", "report", "meeting",
    ];
    (0..turns)
        .map(|i| {
            let words: Vec<&str> = (0..(5 + i % 9))
                .map(|w| WORDS[(i * 7 + w * 3) % WORDS.len()])
                .collect();
            let sentence = format!("Turn {i} is about the {}.", words.join(" "));
            if i % 29 == 28 {
                format!("[inaudible] {sentence}")
            } else if i % 17 == 16 {
                format!("{} : {}", SPEAKERS[i % 5], vec![sentence; 12].join(" "))
            } else {
                format!("{} : {sentence}", SPEAKERS[i % 5])
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// An API Gateway REST proxy request as a `lambda_http` request (what the runtime hands
/// a handler): `resource` is the route template, `path_parameters` its values.
pub fn api_request(
    method: &str,
    resource: &str,
    path: &str,
    path_parameters: &[(&str, &str)],
    query: &[(&str, &str)],
    body: Option<&[u8]>,
) -> lambda_http::Request {
    api_request_of_type(
        method,
        resource,
        path,
        path_parameters,
        query,
        body,
        "application/json",
    )
}

/// [`api_request`] with a body of another `content_type` (a multipart upload, a form).
pub fn api_request_of_type(
    method: &str,
    resource: &str,
    path: &str,
    path_parameters: &[(&str, &str)],
    query: &[(&str, &str)],
    body: Option<&[u8]>,
    content_type: &str,
) -> lambda_http::Request {
    use base64::Engine as _;
    let (body, is_base64) = match body {
        None => (serde_json::Value::Null, false),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => (serde_json::Value::String(text.to_string()), false),
            Err(_) => (
                serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
                true,
            ),
        },
    };
    let map = |pairs: &[(&str, &str)]| {
        if pairs.is_empty() {
            serde_json::Value::Null
        } else {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
                .collect()
        }
    };
    let multi = |pairs: &[(&str, &str)]| -> serde_json::Value {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!([v])))
            .collect()
    };
    let event = serde_json::json!({
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": {"content-type": content_type, "host": "localhost"},
        "multiValueHeaders": {"content-type": [content_type], "host": ["localhost"]},
        "queryStringParameters": map(query),
        "multiValueQueryStringParameters": if query.is_empty() { serde_json::Value::Null } else { multi(query) },
        "pathParameters": map(path_parameters),
        "stageVariables": null,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": path,
            "stage": "test",
            "requestId": Uuid::new_v4().to_string(),
            "accountId": "123456789012",
            "identity": {"sourceIp": "127.0.0.1"}
        },
        "body": body,
        "isBase64Encoded": is_base64,
    });
    lambda_http::request::from_str(&event.to_string()).expect("valid API Gateway event")
}

impl TestStack {
    /// Runs up to `max_messages` queued step messages through the core worker (no Lambda
    /// glue), taking them from the most urgent non-empty lane first and deleting each
    /// after it is processed; returns how many ran.
    pub async fn run_worker_steps(&self, max_messages: usize) -> usize {
        let mut ran = 0;
        while ran < max_messages {
            let Some((queue_url, event)) = self.receive_step_event().await else {
                break;
            };
            for record in &event.records {
                let message: gateway_core::domain::StepMessage =
                    serde_json::from_str(record.body.as_deref().unwrap_or_default())
                        .expect("step message");
                gateway_core::engine::worker::process_step(&self.gateway, &message)
                    .await
                    .expect("step processed");
                ran += 1;
            }
            self.acknowledge(queue_url, &event, &SqsBatchResponse::default())
                .await;
        }
        ran
    }

    /// Receives a batch of step messages from the most urgent lane that has one.
    pub async fn receive_step_event(&self) -> Option<(&str, SqsEvent)> {
        let lanes = &self.env.job_queues;
        // Short polls on the urgent lanes; the last one waits a little for stragglers.
        for (queue_url, wait_seconds) in
            [(&lanes.urgent, 0), (&lanes.standard, 0), (&lanes.bulk, 1)]
        {
            if let Some(event) = self.receive_event_waiting(queue_url, wait_seconds).await {
                return Some((queue_url.as_str(), event));
            }
        }
        None
    }
}

impl TestStack {
    /// Stores a copy of the seeded iterative flavor named `name` (not default), changed
    /// by `edit`, and returns it.
    pub async fn add_iterative_flavor(
        &self,
        name: &str,
        edit: impl FnOnce(&mut gateway_core::domain::Flavor),
    ) -> gateway_core::domain::Flavor {
        use gateway_core::ports::Catalog;
        let mut flavor = self
            .catalog
            .flavor(seeds::SUMMARIZE_SERVICE_ID, seeds::ITERATIVE_FLAVOR_ID)
            .await
            .expect("read the seeded flavor")
            .expect("seeded iterative flavor");
        flavor.id = Uuid::new_v4();
        flavor.name = name.to_string();
        flavor.is_default = false;
        edit(&mut flavor);
        self.catalog
            .put_flavor(&flavor)
            .await
            .expect("store flavor");
        flavor
    }

    /// Stores the chat flavor [`seeds::CHAT_FLAVOR_ID`] (`chat`, not default) on the seeded
    /// summarize service: the seeded single-pass flavor's model and sampling, no user
    /// prompt, [`CHAT_SYSTEM_PROMPT`], changed by `edit`; returns it.
    pub async fn add_chat_flavor(
        &self,
        edit: impl FnOnce(&mut gateway_core::domain::Flavor),
    ) -> gateway_core::domain::Flavor {
        use gateway_core::ports::Catalog;
        let mut flavor = self
            .catalog
            .flavor(seeds::SUMMARIZE_SERVICE_ID, seeds::SINGLE_PASS_FLAVOR_ID)
            .await
            .expect("read the seeded flavor")
            .expect("seeded single-pass flavor");
        flavor.id = seeds::CHAT_FLAVOR_ID;
        flavor.name = "chat".into();
        flavor.is_default = false;
        flavor.prompt_user_content = String::new();
        flavor.prompt_system_content = Some(CHAT_SYSTEM_PROMPT.into());
        edit(&mut flavor);
        self.catalog
            .put_flavor(&flavor)
            .await
            .expect("store flavor");
        flavor
    }

    /// A provisioned variable of this stack.
    pub fn var(&self, name: &str) -> &str {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("provision.py printed no {name}"))
    }

    /// Subscriptions in this stack's connections table, posting through `management_url`.
    pub fn realtime(&self, management_url: &str) -> gateway_core::engine::notify::Realtime {
        use gateway_core::aws::{ApiGatewayNotifier, DynamoConnectionStore};
        gateway_core::engine::notify::Realtime {
            connections: std::sync::Arc::new(DynamoConnectionStore::new(
                self.clients.dynamodb.clone(),
                self.var("GATEWAY_CONNECTIONS_TABLE"),
            )),
            notifier: std::sync::Arc::new(ApiGatewayNotifier::new(
                &self.clients.config,
                management_url,
            )),
        }
    }
}
