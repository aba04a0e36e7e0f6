use serde_json::json;

use super::*;
use crate::llm::LlmError;
use crate::memory::MemoryGateway;

async fn seeded_with_sampling() -> (MemoryGateway, crate::memory::Seeded) {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let mut flavor = seeded.single_pass.clone();
    flavor.frequency_penalty = 0.5;
    flavor.presence_penalty = 0.25;
    flavor.stop_sequences = vec!["###".into()];
    flavor.custom_params = json!({"seed": 7});
    flavor.prompt_system_content = Some("You are terse.".into());
    let old = seeded.single_pass.clone();
    commit(
        memory.catalog.as_ref(),
        update_writes(&old, &flavor).unwrap(),
        &[],
    )
    .await
    .unwrap();
    (memory, seeded)
}

fn body(value: serde_json::Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

#[tokio::test]
async fn a_flavor_test_sends_the_flavors_settings_and_answers_the_reference_shape() {
    let (memory, seeded) = seeded_with_sampling().await;
    let flavor_id = seeded.single_pass.id;
    let answer = test_flavor(
        &memory.gateway,
        &Scope::default(),
        None,
        flavor_id,
        &body(json!({"prompt": "Say hello", "max_tokens": 50})),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200);
    let calls = memory.llm.calls();
    assert_eq!(calls.len(), 1);
    let sent = serde_json::to_value(&calls[0].request).unwrap();
    assert_eq!(sent["model"], "memory-model");
    assert_eq!(sent["max_tokens"], 50);
    assert_eq!(sent["frequency_penalty"], 0.5);
    assert_eq!(sent["presence_penalty"], 0.25);
    assert_eq!(sent["stop"], json!(["###"]));
    assert_eq!(sent["seed"], 7, "custom params merged: {sent}");
    assert_eq!(sent["messages"][0]["content"], "You are terse.");
    assert_eq!(sent["messages"][1]["content"], "Say hello");
    assert_eq!(
        calls[0].endpoint.api_key.as_deref(),
        Some(crate::memory::SEEDED_API_KEY),
        "the key is decrypted for the call"
    );

    let body = &answer.body;
    assert_eq!(body["flavor_id"], json!(flavor_id));
    assert_eq!(body["model"]["model_identifier"], "memory-model");
    assert_eq!(body["model"]["provider_name"], "memory");
    assert_eq!(body["request"]["stop_sequences"], json!(["###"]));
    assert_eq!(body["request"]["max_tokens"], 50);
    assert!(body["response"]["content"]
        .as_str()
        .unwrap()
        .contains("Say hello"));
    assert_eq!(body["response"]["finish_reason"], "stop");
    let metadata = &body["metadata"];
    let (input, output) = (
        metadata["input_tokens"].as_u64().unwrap(),
        metadata["output_tokens"].as_u64().unwrap(),
    );
    assert_eq!(metadata["total_tokens"], input + output);
    // The model's prices: 1 and 2 per million.
    let cost = metadata["estimated_cost"].as_f64().unwrap();
    assert!((cost - (input as f64 + 2.0 * output as f64) / 1e6).abs() < 1e-6);
    assert!(
        !body.to_string().contains(crate::memory::SEEDED_API_KEY),
        "the key is never answered"
    );
}

#[tokio::test]
async fn a_flavor_test_refuses_bad_input_before_calling() {
    let (memory, seeded) = seeded_with_sampling().await;
    let flavor = seeded.single_pass.id;
    let cases = [
        (json!({}), 422, "prompt"),
        (json!({"prompt": ""}), 422, "prompt"),
        (json!({"prompt": "x", "max_tokens": 0}), 422, "max_tokens"),
        (
            json!({"prompt": "x", "max_tokens": "ten"}),
            422,
            "max_tokens",
        ),
        (
            json!({"prompt": "x", "max_tokens": 5000}),
            422,
            "max_tokens",
        ),
        (json!({"prompt": "word ".repeat(8000)}), 422, "prompt"),
    ];
    for (request, status, field) in cases {
        let error = test_flavor(
            &memory.gateway,
            &Scope::default(),
            None,
            flavor,
            &body(request.clone()),
        )
        .await
        .unwrap_err();
        assert_eq!(
            (error.status(), error.field()),
            (status, Some(field)),
            "{request}: {error}"
        );
    }
    let unknown = test_flavor(
        &memory.gateway,
        &Scope::default(),
        None,
        Uuid::new_v4(),
        &body(json!({"prompt": "x"})),
    )
    .await
    .unwrap_err();
    assert_eq!(unknown.status(), 404);
    // The seeded service is global, so an organization may test its flavors; an inactive
    // one is refused.
    let mut inactive = seeded.iterative.clone();
    inactive.is_active = false;
    commit(
        memory.catalog.as_ref(),
        update_writes(&seeded.iterative, &inactive).unwrap(),
        &[],
    )
    .await
    .unwrap();
    let refused = test_flavor(
        &memory.gateway,
        &Scope::new(Some("org-a")),
        None,
        inactive.id,
        &body(json!({"prompt": "x"})),
    )
    .await
    .unwrap_err();
    assert_eq!((refused.status(), refused.code()), (400, "FLAVOR_INACTIVE"));
    assert_eq!(memory.llm.call_count(), 0, "nothing was sent");
}

#[tokio::test]
async fn a_flavor_test_retries_once_then_answers_502_naming_the_provider() {
    let (memory, seeded) = seeded_with_sampling().await;
    let unavailable = LlmError::Status {
        status: 503,
        message: "overloaded".into(),
        retry_after: None,
    };
    memory.llm.fail_next(1, unavailable.clone());
    let recovered = test_flavor(
        &memory.gateway,
        &Scope::default(),
        None,
        seeded.single_pass.id,
        &body(json!({"prompt": "x"})),
    )
    .await
    .unwrap();
    assert_eq!(recovered.status, 200, "a transient failure is retried");

    memory.llm.fail_next(2, unavailable);
    let failed = test_flavor(
        &memory.gateway,
        &Scope::default(),
        None,
        seeded.single_pass.id,
        &body(json!({"prompt": "x"})),
    )
    .await
    .unwrap_err();
    assert_eq!(failed.status(), 502);
    let message = failed.to_string();
    assert!(
        message.contains("memory") && message.contains("overloaded"),
        "{message}"
    );
    assert_eq!(memory.llm.call_count(), 4);
}

#[tokio::test]
async fn verifying_records_health_and_a_provider_wide_verify_deactivates_unlisted_models() {
    let memory = MemoryGateway::new();
    let seeded = memory.seed().await;
    let mut withdrawn = seeded.model.clone();
    withdrawn.id = Uuid::new_v4();
    withdrawn.model_identifier = "withdrawn-model".into();
    withdrawn.model_name = "Withdrawn".into();
    memory.insert(&withdrawn).await.unwrap();
    memory
        .llm
        .set_models(vec![json!({"id": "memory-model"}), json!({"id": "other"})]);

    let one = verify_model(&memory.gateway, &Scope::default(), withdrawn.id)
        .await
        .unwrap();
    assert_eq!(one.body["health_status"], "unavailable");
    assert_eq!(one.body["error"], NOT_LISTED);
    let stored: Model = load(memory.catalog.as_ref(), withdrawn.id, &Scope::default())
        .await
        .unwrap();
    assert_eq!(stored.health_status, "unavailable");
    assert!(stored.is_active, "a single verify leaves is_active alone");
    assert!(stored.health_checked_at.is_some());

    let all = verify_provider_models(&memory.gateway, &Scope::default(), seeded.provider.id)
        .await
        .unwrap();
    assert_eq!(all.body["total_models"], 2);
    assert_eq!(all.body["verified_count"], 1);
    assert_eq!(all.body["failed_count"], 1);
    let stored: Model = load(memory.catalog.as_ref(), withdrawn.id, &Scope::default())
        .await
        .unwrap();
    assert!(!stored.is_active, "unlisted: deactivated");
    let kept: Model = load(memory.catalog.as_ref(), seeded.model.id, &Scope::default())
        .await
        .unwrap();
    assert!(kept.is_active);
    assert_eq!(kept.health_status, "available");

    // The model comes back: a provider-wide verify reactivates it.
    memory.llm.set_models(vec![
        json!({"id": "memory-model"}),
        json!({"id": "withdrawn-model"}),
    ]);
    let again = verify_provider_models(&memory.gateway, &Scope::default(), seeded.provider.id)
        .await
        .unwrap();
    assert_eq!(again.body["failed_count"], 0);
    let stored: Model = load(memory.catalog.as_ref(), withdrawn.id, &Scope::default())
        .await
        .unwrap();
    assert!(stored.is_active && stored.health_error.is_none());

    // A global provider cannot be verified by an organization (it would change it).
    let forbidden = verify_provider_models(
        &memory.gateway,
        &Scope::new(Some("org-a")),
        seeded.provider.id,
    )
    .await
    .unwrap_err();
    assert_eq!(forbidden.status(), 403);
}
