//! SQS event source mapping: long-polls a queue, invokes a function with real SQS Lambda
//! events and deletes the records the function did not report in `batchItemFailures`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName, QueueAttributeName,
};
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{watch, Notify, OnceCell, Semaphore};
use tokio::task::JoinSet;

use crate::invoke::Invoker;

mod event;

pub use event::{records_to_delete, sqs_event};

/// How often a lane with a batch in flight is short-polled for its other message groups.
const BUSY_LANE_POLL: Duration = Duration::from_millis(50);

/// Most messages SQS returns per ReceiveMessage (and accepts per DeleteMessageBatch).
pub const MAX_BATCH_SIZE: i32 = 10;

/// Queues → function mapping. With several queues they are priority lanes, most
/// urgent first: a lane is received from only while every more urgent lane is empty,
/// that is has no visible message and no batch in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqsMapping {
    /// Queue URLs, most urgent first (at least one).
    pub queue_urls: Vec<String>,
    /// Function name to invoke.
    pub function: String,
}

/// What one poll cycle did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PollOutcome {
    /// Messages received.
    pub received: usize,
    /// Messages deleted after the invocation.
    pub deleted: usize,
    /// Whether the invocation failed as a whole (nothing deleted): a function error, an
    /// unreachable Invoke API, or no answer before the messages' visibility timeout.
    pub invoke_failed: bool,
}

/// A batch received from lane `lane`, not yet delivered.
struct Received {
    lane: usize,
    messages: Vec<Message>,
    at: Instant,
    _in_flight: InFlight,
}

/// Batches in flight per lane (received and not yet completed), shared by a poller's
/// clones: a lane with one closes the lanes after it.
#[derive(Debug)]
struct LaneLoad {
    in_flight: Vec<AtomicUsize>,
    /// Woken whenever a lane's last batch in flight ends, which may open the lanes after it.
    idle: Notify,
}

/// Counts a batch as in flight on its lane until dropped.
struct InFlight {
    load: Arc<LaneLoad>,
    lane: usize,
}

impl InFlight {
    fn new(load: &Arc<LaneLoad>, lane: usize) -> Self {
        load.in_flight[lane].fetch_add(1, Ordering::SeqCst);
        Self {
            load: load.clone(),
            lane,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.load.in_flight[self.lane].fetch_sub(1, Ordering::SeqCst) == 1 {
            self.load.idle.notify_waiters();
        }
    }
}

/// What the poller needs to know of a queue, read once with GetQueueAttributes.
#[derive(Clone, Debug)]
struct QueueInfo {
    arn: String,
    /// How long a received message stays invisible; the invocation's deadline.
    visibility_timeout: Option<Duration>,
}

/// Polls a mapping's queues for one function, like Lambda's event source mapping: up to
/// `concurrency` batches are invoked at once (SQS FIFO hands out a message group's next
/// message only once the previous one is deleted or its visibility timeout expired, so a
/// job's steps stay in order and one at a time).
///
/// Receiving, with a slot free to invoke what comes: short polls on the open lanes (lane
/// rule of [`SqsMapping`]), most urgent first, and the first batch found is invoked, so a
/// backlog is served in priority order. When they are all empty, every open lane is
/// long-polled at once (one ReceiveMessage each), and a message arriving on any of them is
/// invoked as soon as SQS hands it out. A batch a long poll brings that cannot be invoked
/// at that moment is handed back at once with ChangeMessageVisibilityBatch (visibility 0)
/// rather than held invisible: its lane was closed meanwhile by a more urgent batch going
/// in flight (also when several lanes answer together: the most urgent one is invoked), or
/// no slot is free. The next short polls take it again, in priority order. A hand-back
/// counts a receive toward the queue's `maxReceiveCount`, in practice once per message at
/// most: a lane is long-polled only right after it was found empty, so a handed-back
/// message is next received by a short poll, whose batch is always invoked.
#[derive(Clone, Debug)]
pub struct SqsPoller {
    sqs: aws_sdk_sqs::Client,
    invoker: Invoker,
    mapping: SqsMapping,
    batch_size: i32,
    wait_time_seconds: i32,
    concurrency: usize,
    queues: Arc<Vec<OnceCell<QueueInfo>>>,
    load: Arc<LaneLoad>,
}

impl SqsPoller {
    /// Creates a poller receiving up to `batch_size` messages (clamped to 1..=10) per
    /// invocation, with 1 s long polls. It runs as many batches at once as the invoker
    /// allows invocations of the function ([`Invoker::concurrency`]).
    pub fn new(
        sqs: aws_sdk_sqs::Client,
        invoker: Invoker,
        mapping: SqsMapping,
        batch_size: i32,
    ) -> Self {
        let lanes = mapping.queue_urls.len();
        Self {
            sqs,
            concurrency: invoker.concurrency(),
            invoker,
            queues: Arc::new((0..lanes).map(|_| OnceCell::new()).collect()),
            load: Arc::new(LaneLoad {
                in_flight: (0..lanes).map(|_| AtomicUsize::new(0)).collect(),
                idle: Notify::new(),
            }),
            mapping,
            batch_size: batch_size.clamp(1, MAX_BATCH_SIZE),
            wait_time_seconds: 1,
        }
    }

    /// The same poller with long polls of `seconds` (clamped to SQS's 1..=20). They add no
    /// latency (all open lanes are long-polled at once); longer ones mean fewer idle
    /// requests, and a longer empty [`poll_once`](Self::poll_once).
    pub fn with_wait_time_seconds(mut self, seconds: i32) -> Self {
        self.wait_time_seconds = seconds.clamp(1, 20);
        self
    }

    /// The mapping this poller serves.
    pub fn mapping(&self) -> &SqsMapping {
        &self.mapping
    }

    /// Runs until `shutdown` turns true: whenever fewer than `concurrency` batches are in
    /// flight, receives the next batch (see [`SqsPoller`]) and invokes the function with it
    /// in the background. Errors are logged and retried after a short pause. Before it
    /// returns, batches in flight are awaited, and what long polls still outstanding bring
    /// is handed back.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let queues = self.mapping.queue_urls.join(",");
        tracing::info!(%queues, function = %self.mapping.function, concurrency = self.concurrency, "sqs poller started");
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let mut batches = JoinSet::new();
        let mut lanes = LanePolls::new(&self);
        'run: while !*shutdown.borrow() {
            while batches.try_join_next().is_some() {}
            let slot = loop {
                tokio::select! {
                    biased;
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => break slot,
                        Err(_) => break 'run,
                    },
                    // No slot is free: what a long poll brings now cannot be invoked.
                    Some(ended) = lanes.ended() => self.hand_back_all(ended).await,
                    _ = shutdown.changed() => break 'run,
                }
            };
            let received = tokio::select! {
                received = lanes.next_batch() => received,
                _ = shutdown.changed() => break,
            };
            match received {
                Ok(batch) => {
                    let poller = self.clone();
                    batches.spawn(async move {
                        let _slot = slot;
                        if let Err(error) = poller.deliver(batch).await {
                            tracing::warn!(function = %poller.mapping.function, %error, "sqs batch not completed");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%queues, %error, "sqs poll failed");
                    lanes.finish().await;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
        tokio::join!(lanes.finish(), async {
            while batches.join_next().await.is_some() {}
        });
        tracing::info!(%queues, "sqs poller stopped");
    }

    /// One cycle, in the foreground: short polls on the open lanes, most urgent first, and
    /// if they are all empty one long poll on each at once; the first batch received is
    /// invoked, and the records the function did not report as failed are deleted, while
    /// the other long polls end (what they bring is handed back). If the invocation fails
    /// nothing is deleted: the messages come back after their visibility timeout (and the
    /// redrive policy moves poison ones to the DLQ). Errors are SQS API errors only.
    pub async fn poll_once(&self) -> Result<PollOutcome, String> {
        let mut lanes = LanePolls::new(self);
        let received = lanes.cycle().await;
        let (outcome, ()) = tokio::join!(
            async {
                match received? {
                    Some(batch) => self.deliver(batch).await,
                    None => Ok(PollOutcome::default()),
                }
            },
            lanes.finish()
        );
        outcome
    }

    /// The most urgent lane with a batch in flight, if any.
    fn busy_lane(&self) -> Option<usize> {
        self.load
            .in_flight
            .iter()
            .position(|count| count.load(Ordering::SeqCst) > 0)
    }

    /// How many lanes, most urgent first, are open: up to the first with a batch in flight
    /// (the lanes after it wait), or all of them.
    fn open_lanes(&self) -> usize {
        let in_flight = &self.load.in_flight;
        in_flight
            .iter()
            .position(|count| count.load(Ordering::SeqCst) > 0)
            .map_or(in_flight.len(), |busy| busy + 1)
    }

    /// Short polls on the open lanes, most urgent first; the first batch found.
    async fn sweep(&self) -> Result<Option<Received>, String> {
        for lane in 0..self.open_lanes() {
            let messages = self.receive(lane, 0).await?;
            if !messages.is_empty() {
                return Ok(Some(self.received(lane, messages, Instant::now())));
            }
        }
        Ok(None)
    }

    fn received(&self, lane: usize, messages: Vec<Message>, at: Instant) -> Received {
        Received {
            lane,
            messages,
            at,
            _in_flight: InFlight::new(&self.load, lane),
        }
    }

    async fn receive(&self, lane: usize, wait_time_seconds: i32) -> Result<Vec<Message>, String> {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.mapping.queue_urls[lane])
            .max_number_of_messages(self.batch_size)
            .wait_time_seconds(wait_time_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|error| {
                format!(
                    "ReceiveMessage: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(error)
                )
            })?;
        Ok(received.messages.unwrap_or_default())
    }

    /// Makes `messages` of lane `lane` visible again at once (visibility timeout 0). If
    /// that fails (logged), they come back after their visibility timeout.
    async fn hand_back(&self, lane: usize, messages: &[Message]) {
        let queue_url = &self.mapping.queue_urls[lane];
        let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = messages
            .iter()
            .filter_map(Message::receipt_handle)
            .enumerate()
            .filter_map(|(index, receipt_handle)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(receipt_handle)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            })
            .collect();
        tracing::debug!(queue = %queue_url, messages = entries.len(), "sqs batch handed back");
        match self
            .sqs
            .change_message_visibility_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(changed) => {
                for failure in changed.failed() {
                    tracing::warn!(queue = %queue_url, entry = failure.id(), code = failure.code(), message = ?failure.message(), "message not handed back");
                }
            }
            Err(error) => {
                tracing::warn!(queue = %queue_url, error = %aws_sdk_sqs::error::DisplayErrorContext(error), "messages not handed back; they come back after their visibility timeout");
            }
        }
    }

    /// Of what ended long polls brought (most urgent lane first), the first batch of a
    /// lane still open, to invoke now; every other batch is handed back. An error is
    /// returned only when there is no batch (the lane's next poll reports it again).
    async fn take(&self, ended: Vec<LanePoll>) -> Result<Option<Received>, String> {
        let mut batch = None;
        let mut failure = None;
        for LanePoll { lane, received, at } in ended {
            match received {
                Ok(messages) if messages.is_empty() => {}
                Ok(messages) if batch.is_none() && lane < self.open_lanes() => {
                    batch = Some(self.received(lane, messages, at));
                }
                Ok(messages) => self.hand_back(lane, &messages).await,
                Err(error) => failure = Some(error),
            }
        }
        match (batch, failure) {
            (None, Some(error)) => Err(error),
            (batch, _) => Ok(batch),
        }
    }

    /// Hands back everything ended long polls brought (errors are reported by the lanes'
    /// next polls).
    async fn hand_back_all(&self, ended: Vec<LanePoll>) {
        for LanePoll { lane, received, .. } in ended {
            if let Ok(messages) = received {
                if !messages.is_empty() {
                    self.hand_back(lane, &messages).await;
                }
            }
        }
    }

    /// Invokes the function with a received batch and deletes the successes. The
    /// invocation's deadline is what is left of the messages' visibility timeout: past it
    /// they are back in the queue anyway, and a runtime that died mid-invocation (which
    /// `cargo lambda watch` never reports) holds a slot no longer than that.
    async fn deliver(&self, batch: Received) -> Result<PollOutcome, String> {
        let Received {
            lane, messages, at, ..
        } = &batch;
        let messages = messages.as_slice();
        let queue = self.queue_info(*lane).await?;
        let queue_url = &self.mapping.queue_urls[*lane];
        let region = self
            .sqs
            .config()
            .region()
            .map(|region| region.to_string())
            .unwrap_or_default();
        let event = sqs_event(messages, &queue.arn, &region);
        let message_ids: Vec<&str> = messages.iter().filter_map(Message::message_id).collect();
        let function = &self.mapping.function;
        let mut outcome = PollOutcome {
            received: messages.len(),
            ..PollOutcome::default()
        };
        let deadline = queue
            .visibility_timeout
            .map_or(self.invoker.timeout(), |visibility| {
                visibility.saturating_sub(at.elapsed())
            });
        let to_delete = match self.invoker.invoke_within(function, &event, deadline).await {
            Err(error) => {
                tracing::error!(%function, queue = %queue_url, %error, "sqs batch invocation failed; messages will be retried");
                None
            }
            Ok(result) => {
                let to_delete = records_to_delete(&message_ids, &result);
                if to_delete.is_none() {
                    tracing::error!(%function, %result, "malformed batchItemFailures; the whole batch will be retried");
                }
                to_delete
            }
        };
        let Some(to_delete) = to_delete else {
            outcome.invoke_failed = true;
            return Ok(outcome);
        };
        let entries: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .filter(|message| {
                message
                    .message_id()
                    .is_some_and(|id| to_delete.contains(&id))
            })
            .filter_map(|message| message.receipt_handle())
            .enumerate()
            .filter_map(|(index, receipt_handle)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(receipt_handle)
                    .build()
                    .ok()
            })
            .collect();
        tracing::info!(
            %function,
            queue = %queue_url,
            received = messages.len(),
            deleting = entries.len(),
            retrying = messages.len() - entries.len(),
            "sqs batch processed"
        );
        if entries.is_empty() {
            return Ok(outcome);
        }
        let requested = entries.len();
        let deleted = self
            .sqs
            .delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|error| {
                format!(
                    "DeleteMessageBatch: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(error)
                )
            })?;
        for failure in deleted.failed() {
            tracing::warn!(entry = failure.id(), code = failure.code(), message = ?failure.message(), "message not deleted");
        }
        outcome.deleted = requested - deleted.failed().len();
        // The batch stops counting as in flight only now, once its messages are deleted.
        drop(batch);
        Ok(outcome)
    }

    /// The ARN and visibility timeout of queue `lane`, fetched once.
    async fn queue_info(&self, lane: usize) -> Result<QueueInfo, String> {
        let queue_url = &self.mapping.queue_urls[lane];
        self.queues[lane]
            .get_or_try_init(|| async {
                let attributes = self
                    .sqs
                    .get_queue_attributes()
                    .queue_url(queue_url)
                    .attribute_names(QueueAttributeName::QueueArn)
                    .attribute_names(QueueAttributeName::VisibilityTimeout)
                    .send()
                    .await
                    .map_err(|error| {
                        format!(
                            "GetQueueAttributes: {}",
                            aws_sdk_sqs::error::DisplayErrorContext(error)
                        )
                    })?;
                let attributes = attributes.attributes();
                let attribute =
                    |name: QueueAttributeName| attributes.and_then(|all| all.get(&name)).cloned();
                let arn = attribute(QueueAttributeName::QueueArn)
                    .ok_or_else(|| format!("queue {queue_url} has no QueueArn attribute"))?;
                let visibility_timeout = attribute(QueueAttributeName::VisibilityTimeout)
                    .and_then(|seconds| seconds.parse().ok())
                    .map(Duration::from_secs);
                Ok(QueueInfo {
                    arn,
                    visibility_timeout,
                })
            })
            .await
            .cloned()
    }
}

/// What one long poll of lane `lane` brought, and when it ended.
struct LanePoll {
    lane: usize,
    received: Result<Vec<Message>, String>,
    at: Instant,
}

/// A poller's long polls in progress: at most one ReceiveMessage per lane, all at once.
struct LanePolls<'a> {
    poller: &'a SqsPoller,
    polling: Vec<bool>,
    polls: FuturesUnordered<BoxFuture<'a, LanePoll>>,
}

impl<'a> LanePolls<'a> {
    fn new(poller: &'a SqsPoller) -> Self {
        Self {
            poller,
            polling: vec![false; poller.mapping.queue_urls.len()],
            polls: FuturesUnordered::new(),
        }
    }

    /// The next batch to invoke, for a caller holding a free slot (see [`SqsPoller`]):
    /// short polls, then long polls on every open lane; a lane whose long poll ends empty
    /// is long-polled again, and when a lane's last batch in flight ends (which may open
    /// the lanes after it) the short polls run again.
    async fn next_batch(&mut self) -> Result<Received, String> {
        let poller = self.poller;
        let mut sweep = true;
        loop {
            // Registered before looking, so a lane going idle meanwhile is not missed.
            let idle = poller.load.idle.notified();
            if sweep {
                if let Some(batch) = poller.sweep().await? {
                    return Ok(batch);
                }
            }
            self.long_poll_open_lanes();
            let busy = poller.busy_lane().is_some();
            tokio::select! {
                biased;
                Some(ended) = self.ended() => {
                    if let Some(batch) = self.poller.take(ended).await? {
                        return Ok(batch);
                    }
                    sweep = false;
                }
                () = idle => sweep = true,
                // A lane with a batch in flight is not long-polled (see `long_poll_open_lanes`):
                // its other message groups are looked at by short polls this often.
                () = tokio::time::sleep(BUSY_LANE_POLL), if busy => sweep = true,
            }
        }
    }

    /// One cycle of [`SqsPoller::poll_once`]: short polls, then one long poll on every open
    /// lane; the first batch to invoke, or `None` once every long poll ended with none.
    async fn cycle(&mut self) -> Result<Option<Received>, String> {
        if let Some(batch) = self.poller.sweep().await? {
            return Ok(Some(batch));
        }
        self.long_poll_open_lanes();
        while let Some(ended) = self.ended().await {
            if let Some(batch) = self.poller.take(ended).await? {
                return Ok(Some(batch));
            }
        }
        Ok(None)
    }

    /// Starts a long poll on every open lane that has none in progress, except a lane with a
    /// batch in flight: the emulator's long poll does not see a message whose FIFO group
    /// unblocks when that batch is deleted (a job's next step, sent during its step), and
    /// holds up short polls of its queue until it ends. Such a lane is short-polled when its
    /// batch ends (the idle wake-up) and every [`BUSY_LANE_POLL`] meanwhile.
    fn long_poll_open_lanes(&mut self) {
        let poller = self.poller;
        let busy = poller.busy_lane();
        for lane in 0..poller.open_lanes() {
            if !self.polling[lane] && Some(lane) != busy {
                self.polling[lane] = true;
                self.polls.push(
                    async move {
                        let received = poller.receive(lane, poller.wait_time_seconds).await;
                        LanePoll {
                            lane,
                            received,
                            at: Instant::now(),
                        }
                    }
                    .boxed(),
                );
            }
        }
    }

    /// Waits for a long poll to end and returns every one that has ended by then, most
    /// urgent lane first; `None` when none is in progress. Cancel-safe.
    async fn ended(&mut self) -> Option<Vec<LanePoll>> {
        let mut ended = vec![self.polls.next().await?];
        while let Some(Some(poll)) = self.polls.next().now_or_never() {
            ended.push(poll);
        }
        ended.sort_by_key(|poll| poll.lane);
        for poll in &ended {
            self.polling[poll.lane] = false;
        }
        Some(ended)
    }

    /// Waits for the long polls in progress to end and hands back what they bring.
    async fn finish(&mut self) {
        while let Some(ended) = self.ended().await {
            self.poller.hand_back_all(ended).await;
        }
    }
}
