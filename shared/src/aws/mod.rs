//! AWS implementations of the ports: DynamoDB (jobs, catalog, WebSocket connections), S3
//! (blobs), SQS FIFO (job steps), KMS (provider secrets), API Gateway management API
//! (WebSocket posts). Clients are built once per execution environment.

mod blobs;
mod breakers;
mod calls;
mod catalog;
mod config;
mod connections;
mod jobs;
mod notifier;
mod queue;
mod secrets;
mod usage;

use crate::cached::{CachedCatalog, CachedSecrets};
pub use blobs::S3Blobs;
pub use breakers::DynamoBreakers;
use calls::CallLog;
pub use catalog::DynamoCatalog;
pub use config::sdk_config;
pub use connections::DynamoConnectionStore;
pub use jobs::DynamoJobStore;
pub use notifier::ApiGatewayNotifier;
pub use queue::SqsJobQueue;
pub use secrets::KmsSecrets;
pub use usage::DynamoUsage;

use std::sync::Arc;

use crate::domain::QueueLane;
use crate::engine::notify::Realtime;
use crate::engine::{Gateway, Limits};
use crate::llm::OpenAiClient;
use crate::ports::IoError;

/// Maps an AWS SDK error to an [`IoError`] naming the operation, with the whole error
/// chain (the SDKs' own `Display` says only "service error").
fn sdk_error<E: std::error::Error>(operation: &'static str) -> impl FnOnce(E) -> IoError {
    move |error| {
        IoError::new(
            operation,
            aws_sdk_dynamodb::error::DisplayErrorContext(error),
        )
    }
}

/// Resource names, read from the environment (see `docs/local-contract.md`).
#[derive(Debug, Clone)]
pub struct GatewayEnv {
    pub jobs_table: String,
    pub catalog_table: String,
    pub bucket: String,
    pub job_queues: LaneQueueUrls,
    pub kms_key_id: Option<String>,
    pub breakers_table: String,
    pub usage_table: String,
}

/// URLs of the job queue of each priority lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneQueueUrls {
    pub urgent: String,
    pub standard: String,
    pub bulk: String,
}

impl LaneQueueUrls {
    /// The queue of `lane`.
    pub fn of(&self, lane: QueueLane) -> &str {
        match lane {
            QueueLane::Urgent => &self.urgent,
            QueueLane::Standard => &self.standard,
            QueueLane::Bulk => &self.bulk,
        }
    }
}

/// A required environment variable; the error names it.
fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
}

impl GatewayEnv {
    /// Reads `GATEWAY_*` variables; the error names the missing one.
    pub fn from_env() -> Result<Self, String> {
        Ok(GatewayEnv {
            jobs_table: var("GATEWAY_JOBS_TABLE")?,
            catalog_table: var("GATEWAY_CATALOG_TABLE")?,
            bucket: var("GATEWAY_BUCKET")?,
            job_queues: LaneQueueUrls {
                urgent: var("GATEWAY_JOB_QUEUE_URGENT_URL")?,
                standard: var("GATEWAY_JOB_QUEUE_URL")?,
                bulk: var("GATEWAY_JOB_QUEUE_BULK_URL")?,
            },
            kms_key_id: std::env::var("GATEWAY_KMS_KEY_ID").ok(),
            breakers_table: var("GATEWAY_BREAKERS_TABLE")?,
            usage_table: var("GATEWAY_USAGE_TABLE")?,
        })
    }
}

/// SDK clients sharing one configuration (endpoint from `AWS_ENDPOINT_URL` when set).
#[derive(Clone, Debug)]
pub struct AwsClients {
    /// The configuration, for clients built later (e.g. the management API's).
    pub config: aws_types::SdkConfig,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub kms: aws_sdk_kms::Client,
}

impl AwsClients {
    /// Reads the shared AWS configuration ([`sdk_config`]) and builds every client; the
    /// error names a missing environment variable.
    pub fn load() -> Result<Self, String> {
        let config = sdk_config()?;
        let local = std::env::var("AWS_ENDPOINT_URL").is_ok();
        let s3_config = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(local)
            .interceptor(CallLog)
            .build();
        Ok(AwsClients {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(
                aws_sdk_dynamodb::config::Builder::from(&config)
                    .interceptor(CallLog)
                    .build(),
            ),
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            sqs: aws_sdk_sqs::Client::from_conf(
                aws_sdk_sqs::config::Builder::from(&config)
                    .interceptor(CallLog)
                    .build(),
            ),
            kms: aws_sdk_kms::Client::from_conf(
                aws_sdk_kms::config::Builder::from(&config)
                    .interceptor(CallLog)
                    .build(),
            ),
            config,
        })
    }
}

/// The AWS-backed gateway over the given resources and clients.
pub fn gateway(env: GatewayEnv, clients: &AwsClients, limits: Limits) -> Gateway {
    let catalog = Arc::new(DynamoCatalog::new(
        clients.dynamodb.clone(),
        env.catalog_table,
    ));
    let secrets = Arc::new(KmsSecrets::new(clients.kms.clone(), env.kms_key_id.clone()));
    Gateway {
        jobs: Arc::new(DynamoJobStore::new(
            clients.dynamodb.clone(),
            env.jobs_table,
        )),
        catalog: Arc::new(CachedCatalog::new(
            catalog.clone(),
            limits.catalog_cache_ttl,
        )),
        records: catalog,
        blobs: Arc::new(S3Blobs::new(clients.s3.clone(), env.bucket)),
        usage: Arc::new(DynamoUsage::new(clients.dynamodb.clone(), env.usage_table)),
        breakers: Arc::new(DynamoBreakers::new(
            clients.dynamodb.clone(),
            env.breakers_table,
        )),
        queue: Arc::new(SqsJobQueue::new(clients.sqs.clone(), env.job_queues)),
        secrets: Arc::new(CachedSecrets::new(secrets, limits.catalog_cache_ttl)),
        llm: Arc::new(OpenAiClient::new(limits.llm_timeout)),
        limits,
    }
}

/// The WebSocket side: subscriptions in `GATEWAY_CONNECTIONS_TABLE`, posts through the
/// management API at `GATEWAY_WS_MANAGEMENT_URL`.
pub fn realtime(clients: &AwsClients) -> Result<Realtime, String> {
    Ok(Realtime {
        connections: Arc::new(DynamoConnectionStore::new(
            clients.dynamodb.clone(),
            var("GATEWAY_CONNECTIONS_TABLE")?,
        )),
        notifier: Arc::new(ApiGatewayNotifier::new(
            &clients.config,
            &var("GATEWAY_WS_MANAGEMENT_URL")?,
        )),
    })
}

/// Start-up shared by every function binary: JSON logs, then the gateway from the
/// environment.
pub async fn bootstrap() -> Result<Gateway, String> {
    Ok(bootstrap_with_clients().await?.0)
}

/// Like [`bootstrap`], also returning the AWS clients for functions that need more of them
/// (the configuration is loaded once).
pub async fn bootstrap_with_clients() -> Result<(Gateway, AwsClients), String> {
    crate::logging::init();
    let env = GatewayEnv::from_env()?;
    let clients = AwsClients::load()?;
    Ok((gateway(env, &clients, Limits::from_env()), clients))
}
