//! Tests of the domain types: costs, lanes, statuses, timestamps.

use super::*;
use uuid::Uuid;

#[test]
fn cost_uses_model_prices_then_the_flavor_rate() {
    let mut settings: JobSettings = serde_json::from_value(serde_json::json!({
        "provider_id": Uuid::nil(), "provider_name": "p", "model_identifier": "m",
        "context_length": 8192, "max_generation_length": 2048, "tokenizer": "cl100k_base",
        "temperature": 0.2, "top_p": 0.9, "prompt_user_content": "{}",
        "create_new_turn_after": 500, "summary_turns": 3, "max_new_turns": 10,
        "prompt_tokens": 5, "estimated_cost_per_1k_tokens": 0.002
    }))
    .unwrap();
    assert_eq!(settings.cost_of(0, 0), None);
    assert_eq!(
        settings.cost_of(1500, 500),
        Some(0.004),
        "flat rate on 2,000 tokens"
    );
    settings.input_price_per_million = Some(2.5);
    settings.output_price_per_million = Some(10.0);
    assert_eq!(settings.cost_of(1_000_000, 100_000), Some(3.5));
    settings.estimated_cost_per_1k_tokens = None;
    settings.output_price_per_million = None;
    assert_eq!(
        settings.cost_of(10, 10),
        None,
        "half a price list is no price"
    );
}

#[test]
fn priorities_map_to_lanes_zero_most_urgent() {
    let lanes: Vec<QueueLane> = (0..=10).map(QueueLane::for_priority).collect();
    use QueueLane::*;
    assert_eq!(
        lanes,
        [Urgent, Urgent, Urgent, Standard, Standard, Standard, Standard, Bulk, Bulk, Bulk, Bulk]
    );
    assert_eq!(QueueLane::for_priority(DEFAULT_PRIORITY), Standard);
}

#[test]
fn status_round_trip_and_terminal() {
    for status in [
        JobStatus::Queued,
        JobStatus::Processing,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ] {
        assert_eq!(JobStatus::parse(status.as_str()), Some(status));
        assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
    }
    assert!(JobStatus::Failed.is_terminal() && !JobStatus::Processing.is_terminal());
    assert!(JobStatus::Cancelled.is_terminal());
    assert_eq!(JobStatus::parse("canceled"), None);
    for lane in QueueLane::ALL {
        assert_eq!(serde_json::to_value(lane).unwrap(), lane.as_str());
    }
}

#[test]
fn timestamps_are_fixed_width() {
    let a = now_timestamp();
    assert_eq!(a.len(), "2026-01-01T00:00:00.000000Z".len());
    assert!(a.ends_with('Z'));
}
