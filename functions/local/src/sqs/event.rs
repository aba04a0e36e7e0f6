//! The Lambda SQS event of a received batch, and which of its records to delete after the
//! invocation (`batchItemFailures`), exactly as Lambda's event source mapping does.

use std::collections::{BTreeMap, HashSet};

use aws_sdk_sqs::types::Message;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Map, Value};

/// Builds the Lambda SQS event for `messages` received from the queue `queue_arn`,
/// exactly as Lambda's event source mapping shapes it (`{"Records": [...]}` with
/// `messageId`, `receiptHandle`, `body`, `attributes`, `messageAttributes`, `md5OfBody`,
/// `eventSource`, `eventSourceARN`, `awsRegion`).
pub fn sqs_event(messages: &[Message], queue_arn: &str, region: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|message| sqs_record(message, queue_arn, region))
        .collect();
    json!({ "Records": records })
}

fn sqs_record(message: &Message, queue_arn: &str, region: &str) -> Value {
    let attributes: BTreeMap<&str, &str> = message
        .attributes()
        .map(|attributes| {
            attributes
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect()
        })
        .unwrap_or_default();
    let mut message_attributes = Map::new();
    for (name, attribute) in message.message_attributes().into_iter().flatten() {
        let encode =
            |blob: &aws_sdk_sqs::primitives::Blob| Value::String(BASE64.encode(blob.as_ref()));
        message_attributes.insert(
            name.clone(),
            json!({
                "stringValue": attribute.string_value(),
                "binaryValue": attribute.binary_value().map(encode),
                "stringListValues": attribute.string_list_values(),
                "binaryListValues": attribute.binary_list_values().iter().map(encode).collect::<Vec<_>>(),
                "dataType": attribute.data_type(),
            }),
        );
    }
    let mut record = json!({
        "messageId": message.message_id(),
        "receiptHandle": message.receipt_handle(),
        "body": message.body(),
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.md5_of_body(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    });
    if let (Some(digest), Some(fields)) =
        (message.md5_of_message_attributes(), record.as_object_mut())
    {
        fields.insert(
            "md5OfMessageAttributes".to_string(),
            Value::String(digest.to_string()),
        );
    }
    record
}

/// Which records of a batch to delete after a successful invocation, given the
/// function's result. `None` means the whole batch failed (Lambda's rule when a
/// `batchItemFailures` entry is malformed or names no record of the batch).
pub fn records_to_delete<'a>(message_ids: &[&'a str], result: &Value) -> Option<Vec<&'a str>> {
    let failures = match result.get("batchItemFailures") {
        None | Some(Value::Null) => return Some(message_ids.to_vec()),
        Some(Value::Array(failures)) => failures,
        Some(_) => return None,
    };
    let mut failed = HashSet::new();
    for failure in failures {
        let identifier = failure
            .get("itemIdentifier")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())?;
        if !message_ids.contains(&identifier) {
            return None;
        }
        failed.insert(identifier);
    }
    Some(
        message_ids
            .iter()
            .copied()
            .filter(|id| !failed.contains(id))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::sqs::SqsEvent;
    use aws_sdk_sqs::primitives::Blob;
    use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};

    fn message(id: &str) -> Message {
        Message::builder()
            .message_id(id)
            .receipt_handle(format!("handle-{id}"))
            .body(format!("body-{id}"))
            .md5_of_body("d41d8cd98f00b204e9800998ecf8427e")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "2")
            .attributes(MessageSystemAttributeName::MessageGroupId, "job-1")
            .attributes(
                MessageSystemAttributeName::MessageDeduplicationId,
                "job-1:0",
            )
            .attributes(MessageSystemAttributeName::SentTimestamp, "1700000000000")
            .attributes(
                MessageSystemAttributeName::SequenceNumber,
                "18849496460467696128",
            )
            .message_attributes(
                "kind",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("step")
                    .build()
                    .expect("valid"),
            )
            .message_attributes(
                "raw",
                MessageAttributeValue::builder()
                    .data_type("Binary")
                    .binary_value(Blob::new(vec![1, 2, 3]))
                    .build()
                    .expect("valid"),
            )
            .build()
    }

    #[test]
    fn event_has_lambda_shape_and_parses_as_sqs_event() {
        let arn = "arn:aws:sqs:us-east-1:123456789012:llmgw-jobs.fifo";
        let event = sqs_event(&[message("m1"), message("m2")], arn, "us-east-1");
        let record = &event["Records"][0];
        assert_eq!(record["messageId"], "m1");
        assert_eq!(record["receiptHandle"], "handle-m1");
        assert_eq!(record["body"], "body-m1");
        assert_eq!(record["eventSource"], "aws:sqs");
        assert_eq!(record["eventSourceARN"], arn);
        assert_eq!(record["awsRegion"], "us-east-1");
        assert_eq!(record["attributes"]["ApproximateReceiveCount"], "2");
        assert_eq!(record["attributes"]["MessageGroupId"], "job-1");
        assert_eq!(record["attributes"]["MessageDeduplicationId"], "job-1:0");
        assert_eq!(
            record["attributes"]["SequenceNumber"],
            "18849496460467696128"
        );
        assert_eq!(record["messageAttributes"]["kind"]["stringValue"], "step");
        assert_eq!(record["messageAttributes"]["kind"]["dataType"], "String");
        assert_eq!(record["messageAttributes"]["raw"]["binaryValue"], "AQID");

        let parsed: SqsEvent =
            serde_json::from_value(event).expect("the runtime can read the event");
        assert_eq!(parsed.records.len(), 2);
        assert_eq!(parsed.records[1].message_id.as_deref(), Some("m2"));
        assert_eq!(
            parsed.records[0]
                .attributes
                .get("MessageGroupId")
                .map(String::as_str),
            Some("job-1")
        );
        assert_eq!(parsed.records[0].event_source_arn.as_deref(), Some(arn));
    }

    #[test]
    fn deletes_all_but_reported_failures() {
        let ids = ["a", "b", "c"];
        assert_eq!(
            records_to_delete(&ids, &Value::Null),
            Some(vec!["a", "b", "c"])
        );
        assert_eq!(
            records_to_delete(&ids, &json!({"batchItemFailures": []})),
            Some(vec!["a", "b", "c"])
        );
        assert_eq!(
            records_to_delete(
                &ids,
                &json!({"batchItemFailures": [{"itemIdentifier": "b"}]})
            ),
            Some(vec!["a", "c"])
        );
    }

    #[test]
    fn malformed_failures_fail_the_whole_batch() {
        let ids = ["a", "b"];
        assert_eq!(
            records_to_delete(
                &ids,
                &json!({"batchItemFailures": [{"itemIdentifier": "zzz"}]})
            ),
            None
        );
        assert_eq!(
            records_to_delete(
                &ids,
                &json!({"batchItemFailures": [{"itemIdentifier": ""}]})
            ),
            None
        );
        assert_eq!(
            records_to_delete(&ids, &json!({"batchItemFailures": [{}]})),
            None
        );
        assert_eq!(
            records_to_delete(&ids, &json!({"batchItemFailures": "b"})),
            None
        );
    }
}
