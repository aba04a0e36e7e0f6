//! The health check load balancers and operators poll: a real read of each dependency
//! (DynamoDB jobs and catalog tables, the S3 bucket, the SQS queues).

use futures_util::future::join4;
use serde_json::{json, Value};
use uuid::Uuid;

use super::Gateway;
use crate::domain::{now_timestamp, QueueLane};
use crate::ports::IoResult;

/// Whether every dependency answered, and the body of `/healthcheck` in the reference's
/// shape (`status`, one `connected`/`disconnected` per dependency, `timestamp`), plus the
/// number of waiting job steps per lane.
pub async fn check(gateway: &Gateway) -> (bool, Value) {
    let (jobs, catalog, blobs, queues) = join4(
        gateway.jobs.get(Uuid::nil()),
        gateway.catalog.service(Uuid::nil()),
        gateway.blobs.get("health/probe"),
        queue_depths(gateway),
    )
    .await;
    let state = |ok: bool| if ok { "connected" } else { "disconnected" };
    let database = answered("dynamodb jobs", &jobs) & answered("dynamodb catalog", &catalog);
    let storage = answered("s3", &blobs);
    let queue = answered("sqs", &queues);
    let healthy = database && storage && queue;
    let body = json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "database": state(database),
        "storage": state(storage),
        "queue": state(queue),
        "pending_steps": queues.ok(),
        "timestamp": now_timestamp(),
    });
    (healthy, body)
}

/// Whether a dependency answered (its failure is logged).
fn answered<T>(dependency: &str, result: &IoResult<T>) -> bool {
    if let Err(error) = result {
        tracing::warn!(dependency, %error, "health check failed");
    }
    result.is_ok()
}

async fn queue_depths(gateway: &Gateway) -> IoResult<Value> {
    let mut depths = serde_json::Map::new();
    for lane in QueueLane::ALL {
        depths.insert(
            lane.as_str().into(),
            json!(gateway.queue.pending(lane).await?),
        );
    }
    Ok(Value::Object(depths))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryGateway;

    #[tokio::test]
    async fn healthy_when_every_dependency_answers_and_not_otherwise() {
        let memory = MemoryGateway::new();
        let (healthy, body) = check(&memory.gateway).await;
        assert!(healthy, "{body}");
        assert_eq!(body["status"], "healthy");
        assert_eq!(body["database"], "connected");
        assert_eq!(body["pending_steps"]["bulk"], 0);

        memory.jobs.fail_next_gets(1);
        let (healthy, body) = check(&memory.gateway).await;
        assert!(!healthy);
        assert_eq!(
            (body["status"].as_str(), body["database"].as_str()),
            (Some("unhealthy"), Some("disconnected"))
        );
        assert_eq!(body["storage"], "connected");
    }
}
