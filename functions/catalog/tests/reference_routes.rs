//! The reference's remaining catalog routes against the emulator: prompt templates,
//! duplicates and save-as-template, service type configs, flavor tests and model
//! verification against the mock LLM.

use gateway_test_support::{seeds, TestStack, SEEDED_API_KEY};
use serde_json::{json, Value};

mod common;
use common::{call, id_of};

async fn create_prompt(stack: &TestStack, name: &str, query: &[(&str, &str)]) -> Value {
    let created = call(
        stack,
        "POST",
        "/api/v1/prompts",
        &[],
        query,
        Some(json!({
            "name": name, "content": "Summarise: {}", "service_type": "summary",
            "prompt_category": "user", "description": {"en": "source"}
        })),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    created.body
}

#[tokio::test]
async fn prompts_are_duplicated_and_saved_as_templates() {
    let stack = TestStack::start().await;
    let source = create_prompt(&stack, "rr-source", &[("organization_id", "org-a")]).await;
    let id = source["id"].as_str().unwrap().to_string();
    let org = [("organization_id", "org-a")];

    let copy = call(
        &stack,
        "POST",
        "/api/v1/prompts/{id}/duplicate",
        &[("id", &id)],
        &org,
        Some(json!({"new_name": "rr-copy", "content": "ignored"})),
    )
    .await;
    assert_eq!(copy.status, 201, "{}", copy.body);
    assert_eq!(copy.body["name"], "rr-copy");
    assert_eq!(
        copy.body["content"], "Summarise: {}",
        "only the name changes"
    );
    assert_eq!(copy.body["organization_id"], "org-a");
    assert_eq!(copy.body["prompt_type"]["code"], "standard");
    assert_ne!(id_of(&copy), id);

    let taken = call(
        &stack,
        "POST",
        "/api/v1/prompts/{id}/duplicate",
        &[("id", &id)],
        &org,
        Some(json!({"new_name": "RR-copy"})),
    )
    .await;
    assert_eq!(taken.status, 409, "{}", taken.body);
    let unnamed = call(
        &stack,
        "POST",
        "/api/v1/prompts/{id}/duplicate",
        &[("id", &id)],
        &org,
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (unnamed.status, unnamed.body["field"].as_str()),
        (422, Some("new_name"))
    );
    let hidden = call(
        &stack,
        "POST",
        "/api/v1/prompts/{id}/duplicate",
        &[("id", &id)],
        &[("organization_id", "org-b")],
        Some(json!({"new_name": "stolen"})),
    )
    .await;
    assert_eq!(
        hidden.status, 404,
        "another organization's prompt is invisible"
    );

    let template = call(
        &stack,
        "POST",
        "/api/v1/prompts/{id}/save-as-template",
        &[("id", &id)],
        &org,
        Some(
            json!({"template_name": "rr-template", "category": "system", "prompt_type": "reduce",
                    "description": {"en": "reusable"}}),
        ),
    )
    .await;
    assert_eq!(template.status, 201, "{}", template.body);
    assert_eq!(template.body["parent_template_id"], json!(id));
    assert_eq!(template.body["prompt_category"], "system");
    assert_eq!(template.body["prompt_type"]["code"], "reduce");
    assert_eq!(template.body["description"], json!({"en": "reusable"}));
    for (body, status, field) in [
        (json!({"category": "user"}), 422, "template_name"),
        (
            json!({"template_name": "t", "category": "assistant"}),
            422,
            "category",
        ),
        (
            json!({"template_name": "t", "category": "user", "description": "text"}),
            422,
            "description",
        ),
    ] {
        let refused = call(
            &stack,
            "POST",
            "/api/v1/prompts/{id}/save-as-template",
            &[("id", &id)],
            &org,
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            (refused.status, refused.body["field"].as_str()),
            (status, Some(field)),
            "{body}: {}",
            refused.body
        );
    }
    let unknown_type = call(
        &stack,
        "POST",
        "/api/v1/prompts/{id}/save-as-template",
        &[("id", &id)],
        &org,
        Some(json!({"template_name": "t2", "category": "user", "prompt_type": "poetry"})),
    )
    .await;
    assert_eq!(unknown_type.status, 400, "{}", unknown_type.body);

    // Templates: every prompt, filtered like the reference (category is prompt_category).
    let templates = call(
        &stack,
        "GET",
        "/api/v1/prompts/templates",
        &[],
        &[
            ("organization_id", "org-a"),
            ("category", "system"),
            ("name", "rr-"),
        ],
        None,
    )
    .await;
    assert_eq!(templates.status, 200, "{}", templates.body);
    assert_eq!(templates.body["total"], 1, "{}", templates.body);
    assert_eq!(templates.body["items"][0]["name"], "rr-template");
    assert_eq!(templates.body["page_size"], 50);
}

#[tokio::test]
async fn service_type_configs_list_their_prompt_fields() {
    let stack = TestStack::start().await;
    let summary = call(
        &stack,
        "GET",
        "/api/v1/service-types/config/{code}",
        &[("code", "summary")],
        &[],
        None,
    )
    .await;
    assert_eq!(summary.status, 200, "{}", summary.body);
    assert_eq!(summary.body["type"], "summary");
    assert_eq!(summary.body["name_en"], "Summary");
    assert_eq!(summary.body["name_fr"], "Résumé");
    assert_eq!(summary.body["supports_reduce"], true);
    assert_eq!(summary.body["default_processing_mode"], "iterative");
    let prompts = &summary.body["prompts"];
    assert_eq!(prompts["user_prompt"]["required"], true);
    assert_eq!(prompts["system_prompt"]["prompt_category"], "system");
    assert_eq!(prompts["reduce_prompt"]["prompt_type"], "reduce");
    assert!(prompts["reduce_prompt"]["description_fr"]
        .as_str()
        .is_some_and(|d| !d.is_empty()));

    let translation = call(
        &stack,
        "GET",
        "/api/v1/service-types/config/{code}",
        &[("code", "translation")],
        &[],
        None,
    )
    .await;
    assert!(
        translation.body["prompts"].get("reduce_prompt").is_none(),
        "no reduce without supports_reduce"
    );
    let chat = call(
        &stack,
        "GET",
        "/api/v1/service-types/config/{code}",
        &[("code", "chat")],
        &[],
        None,
    )
    .await;
    assert_eq!(
        chat.body["prompts"].as_object().unwrap().len(),
        1,
        "{}",
        chat.body
    );
    assert_eq!(chat.body["prompts"]["system_prompt"]["required"], true);

    let created = call(&stack, "POST", "/api/v1/service-types", &[], &[], Some(json!({
        "code": "minutes", "name": {"en": "Minutes", "fr": "Compte rendu"},
        "default_processing_mode": "map_reduce",
        "prompts": {"user_prompt": {"required": true, "prompt_category": "user", "prompt_type": "standard",
                                    "description": {"en": "Minutes of a meeting"}}}
    }))).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let minutes = call(
        &stack,
        "GET",
        "/api/v1/service-types/config/{code}",
        &[("code", "minutes")],
        &[],
        None,
    )
    .await;
    assert_eq!(
        minutes.body["prompts"]["user_prompt"]["description_en"],
        "Minutes of a meeting"
    );
    assert_eq!(minutes.body["prompts"]["user_prompt"]["description_fr"], "");
    assert_eq!(minutes.body["default_processing_mode"], "map_reduce");
    let bad = call(
        &stack,
        "POST",
        "/api/v1/service-types",
        &[],
        &[],
        Some(json!({
            "code": "bad_prompts", "name": {"en": "Bad"},
            "prompts": {"user_prompt": {"prompt_category": "assistant"}}
        })),
    )
    .await;
    assert_eq!(
        (bad.status, bad.body["field"].as_str()),
        (422, Some("prompts.prompt_category")),
        "{}",
        bad.body
    );
    let unknown = call(
        &stack,
        "GET",
        "/api/v1/service-types/config/{code}",
        &[("code", "poetry")],
        &[],
        None,
    )
    .await;
    assert_eq!(unknown.status, 404);
}

#[tokio::test]
async fn a_flavor_test_calls_the_provider_and_models_are_verified_against_its_list() {
    let stack = TestStack::start().await;
    let flavor = seeds::SINGLE_PASS_FLAVOR_ID.to_string();
    let tested = call(
        &stack,
        "POST",
        "/api/v1/flavors/{flavor_id}/test",
        &[("flavor_id", &flavor)],
        &[],
        Some(json!({"prompt": "Hello there, mock", "max_tokens": 64})),
    )
    .await;
    assert_eq!(tested.status, 200, "{}", tested.body);
    assert!(!tested.body["response"]["content"]
        .as_str()
        .unwrap()
        .is_empty());
    assert_eq!(tested.body["response"]["finish_reason"], "stop");
    assert_eq!(tested.body["request"]["max_tokens"], 64);
    let requests = stack.mock.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].prompt, "Hello there, mock");
    assert_eq!(requests[0].api_key.as_deref(), Some(SEEDED_API_KEY));
    assert_eq!(
        tested.body["metadata"]["input_tokens"],
        requests[0].prompt_tokens.unwrap()
    );
    assert!(!tested.body.to_string().contains(SEEDED_API_KEY));

    // Under the service too; a flavor of another service is not found there.
    let service = seeds::SUMMARIZE_SERVICE_ID.to_string();
    let nested = call(
        &stack,
        "POST",
        "/api/v1/services/{id}/flavors/{flavor_id}/test",
        &[("id", &service), ("flavor_id", &flavor)],
        &[],
        Some(json!({"prompt": "x"})),
    )
    .await;
    assert_eq!(nested.status, 200, "{}", nested.body);
    let elsewhere = call(
        &stack,
        "POST",
        "/api/v1/services/{id}/flavors/{flavor_id}/test",
        &[
            ("id", &uuid::Uuid::new_v4().to_string()),
            ("flavor_id", &flavor),
        ],
        &[],
        Some(json!({"prompt": "x"})),
    )
    .await;
    assert_eq!(elsewhere.status, 404);

    // The provider fails: 502 naming it, after one retry.
    stack.mock.push_fault(
        serde_json::from_value(json!({"kind": "status", "status": 500, "times": 2})).unwrap(),
    );
    let failed = call(
        &stack,
        "POST",
        "/api/v1/flavors/{flavor_id}/test",
        &[("flavor_id", &flavor)],
        &[],
        Some(json!({"prompt": "x"})),
    )
    .await;
    assert_eq!(failed.status, 502, "{}", failed.body);
    assert!(
        failed.body["detail"].as_str().unwrap().contains("default"),
        "{}",
        failed.body
    );

    // Verification: the mock lists `mock-model`, the seeded model's identifier.
    let model = seeds::MODEL_ID.to_string();
    let verified = call(
        &stack,
        "POST",
        "/api/v1/models/{id}/verify",
        &[("id", &model)],
        &[],
        None,
    )
    .await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    assert_eq!(verified.body["health_status"], "available");
    let provider = seeds::PROVIDER_ID.to_string();
    let withdrawn = call(&stack, "POST", "/api/v1/providers/{id}/models", &[("id", &provider)], &[], Some(json!({
        "model_name": "Gone", "model_identifier": "gone-model", "context_length": 8000, "max_generation_length": 1000
    }))).await;
    assert_eq!(withdrawn.status, 201, "{}", withdrawn.body);
    let all = call(
        &stack,
        "POST",
        "/api/v1/providers/{id}/models/verify",
        &[("id", &provider)],
        &[],
        None,
    )
    .await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(
        (
            all.body["total_models"].as_u64(),
            all.body["failed_count"].as_u64()
        ),
        (Some(2), Some(1))
    );
    let gone = call(
        &stack,
        "GET",
        "/api/v1/models/{id}",
        &[("id", &id_of(&withdrawn))],
        &[],
        None,
    )
    .await;
    assert_eq!(
        (
            gone.body["is_active"].as_bool(),
            gone.body["health_status"].as_str()
        ),
        (Some(false), Some("unavailable"))
    );
    let seeded = call(
        &stack,
        "GET",
        "/api/v1/models/{id}",
        &[("id", &model)],
        &[],
        None,
    )
    .await;
    assert_eq!(seeded.body["is_active"], true);
}

#[tokio::test]
async fn stored_tokenizers_are_listed_named_by_flavors_and_deleted() {
    let stack = TestStack::start().await;
    let fixture = std::fs::read(
        gateway_test_support::repo_root().join("tests/fixtures/tokenizer-word-level.json"),
    )
    .unwrap();
    let service = seeds::SUMMARIZE_SERVICE_ID.to_string();
    let flavor = json!({
        "name": "word-counted", "model_id": seeds::MODEL_ID, "temperature": 0.2,
        "processing_mode": "single_pass", "prompt_user_content": "Summarise: {}",
        "tokenizer_override": "e2e-owner/word-level",
    });
    let refused = call(
        &stack,
        "POST",
        "/api/v1/services/{id}/flavors",
        &[("id", &service)],
        &[],
        Some(flavor.clone()),
    )
    .await;
    assert_eq!(
        (refused.status, refused.body["field"].as_str()),
        (422, Some("tokenizer_override")),
        "{}",
        refused.body
    );

    // What infra/tokenizer.sh does: the file in the bucket, under tokenizers/.
    stack
        .gateway
        .blobs
        .put(
            "tokenizers/e2e-owner--word-level/tokenizer.json",
            fixture.clone(),
            "application/json",
        )
        .await
        .unwrap();
    let listed = call(&stack, "GET", "/api/v1/tokenizers", &[], &[], None).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let stored: Vec<&Value> = listed.body["tokenizers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["type"] == "huggingface")
        .collect();
    assert_eq!(stored.len(), 1, "{}", listed.body);
    assert_eq!(stored[0]["source_repo"], "e2e-owner/word-level");
    assert_eq!(stored[0]["size_bytes"], fixture.len());

    let created = call(
        &stack,
        "POST",
        "/api/v1/services/{id}/flavors",
        &[("id", &service)],
        &[],
        Some(flavor),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let in_use = call(
        &stack,
        "DELETE",
        "/api/v1/tokenizers/{id}",
        &[("id", "e2e-owner--word-level")],
        &[],
        None,
    )
    .await;
    assert_eq!(in_use.status, 409, "{}", in_use.body);
    let flavor_id = id_of(&created);
    let removed = call(
        &stack,
        "DELETE",
        "/api/v1/flavors/{flavor_id}",
        &[("flavor_id", &flavor_id)],
        &[],
        None,
    )
    .await;
    assert_eq!(removed.status, 204, "{}", removed.body);
    let deleted = call(
        &stack,
        "DELETE",
        "/api/v1/tokenizers/{id}",
        &[("id", "e2e-owner--word-level")],
        &[],
        None,
    )
    .await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(deleted.body["freed_bytes"], fixture.len());
    let listed = call(&stack, "GET", "/api/v1/tokenizers", &[], &[], None).await;
    assert_eq!(listed.body["total_size_bytes"], 0);
}
