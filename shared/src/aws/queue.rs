//! The FIFO job step queues, one per priority lane.

use async_trait::async_trait;

use super::{sdk_error, LaneQueueUrls};
use crate::domain::{QueueLane, StepMessage};
use crate::ports::{IoError, IoResult, JobQueue};

/// The FIFO job queues (one per lane): group = the job (per generation), deduplication
/// id = job:step (per generation).
#[derive(Clone, Debug)]
pub struct SqsJobQueue {
    client: aws_sdk_sqs::Client,
    queues: LaneQueueUrls,
}

impl SqsJobQueue {
    pub fn new(client: aws_sdk_sqs::Client, queues: LaneQueueUrls) -> Self {
        SqsJobQueue { client, queues }
    }
}

#[async_trait]
impl JobQueue for SqsJobQueue {
    async fn send(&self, message: &StepMessage, lane: QueueLane) -> IoResult<()> {
        let body =
            serde_json::to_string(message).map_err(|e| IoError::new("encode step message", e))?;
        self.client
            .send_message()
            .queue_url(self.queues.of(lane))
            .message_body(body)
            .message_group_id(message.group_id())
            .message_deduplication_id(message.deduplication_id())
            .send()
            .await
            .map_err(sdk_error("enqueue step"))?;
        Ok(())
    }

    async fn pending(&self, lane: QueueLane) -> IoResult<u64> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(self.queues.of(lane))
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(sdk_error("read queue attributes"))?;
        Ok(output
            .attributes
            .and_then(|attributes| {
                attributes
                    .get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                    .and_then(|count| count.parse().ok())
            })
            .unwrap_or(0))
    }

    async fn postpone(
        &self,
        lane: QueueLane,
        receipt_handle: &str,
        delay: std::time::Duration,
    ) -> IoResult<()> {
        /// SQS's largest visibility timeout (12 hours).
        const MAX_VISIBILITY_SECS: u64 = 43_200;
        self.client
            .change_message_visibility()
            .queue_url(self.queues.of(lane))
            .receipt_handle(receipt_handle)
            .visibility_timeout(delay.as_secs().min(MAX_VISIBILITY_SECS) as i32)
            .send()
            .await
            .map_err(sdk_error("postpone step"))?;
        Ok(())
    }
}
