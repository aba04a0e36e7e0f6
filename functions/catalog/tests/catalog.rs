//! The catalog handler against the emulator: CRUD round trips with their 404/409/422
//! answers, atomic service creation, tenancy, provider secrets, seeds, OpenAPI.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use gateway_test_support::{api_request, python, repo_root, seeds, TestStack, SEEDED_API_KEY};

mod common;
use common::{call, id_of};
use serde_json::{json, Value};

async fn raw_item(stack: &TestStack, pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    stack
        .clients
        .dynamodb
        .get_item()
        .table_name(stack.var("GATEWAY_CATALOG_TABLE"))
        .key("pk", AttributeValue::S(pk.into()))
        .key("sk", AttributeValue::S(sk.into()))
        .send()
        .await
        .unwrap()
        .item
        .expect("item exists")
}

#[tokio::test]
async fn providers_round_trip_with_the_key_encrypted_and_never_returned() {
    let stack = TestStack::start().await;
    let secret = "sk-live-very-secret-123";
    let created = call(
        &stack,
        "POST",
        "/api/v1/providers",
        &[],
        &[],
        Some(json!({
            "name": "Acme", "provider_type": "openai", "api_base_url": "https://llm.acme.test/v1",
            "api_key": secret, "metadata": {"team": "x"}
        })),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["api_key_exists"], true);
    assert_eq!(created.body["security_level"], 1);
    let id = id_of(&created);

    let raw = raw_item(&stack, &format!("PROVIDER#{id}"), "#PROVIDER").await;
    let ciphertext = raw["api_key_ciphertext"].as_s().unwrap();
    assert!(!ciphertext.contains(secret) && !raw.contains_key("api_key"));
    assert!(
        !format!("{raw:?}").contains(secret),
        "only ciphertext at rest"
    );

    let mut seen = vec![created.body.clone()];
    let listed = call(
        &stack,
        "GET",
        "/api/v1/providers",
        &[],
        &[("page_size", "5")],
        None,
    )
    .await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["page_size"], 5);
    assert_eq!(listed.body["total"], 2, "seeded provider + Acme");
    assert_eq!(listed.body["total_pages"], 1);
    seen.push(listed.body.clone());
    let fetched = call(
        &stack,
        "GET",
        "/api/v1/providers/{id}",
        &[("id", &id)],
        &[],
        None,
    )
    .await;
    assert_eq!(fetched.body["name"], "Acme");
    seen.push(fetched.body.clone());

    let duplicate = call(&stack, "POST", "/api/v1/providers", &[], &[], Some(json!({
        "name": "acme", "provider_type": "openai", "api_base_url": "https://x.test", "api_key": "k"
    }))).await;
    assert_eq!(duplicate.status, 409, "{}", duplicate.body);
    assert_eq!(
        duplicate.body["detail"],
        "Provider with name 'acme' already exists"
    );

    let renamed = call(
        &stack,
        "PATCH",
        "/api/v1/providers/{id}",
        &[("id", &id)],
        &[],
        Some(json!({
            "name": "Acme 2", "api_key": "sk-rotated"
        })),
    )
    .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(renamed.body["name"], "Acme 2");
    seen.push(renamed.body.clone());
    // The old name is free again, the new one taken.
    let reuse = call(
        &stack,
        "POST",
        "/api/v1/providers",
        &[],
        &[],
        Some(json!({
            "name": "Acme", "provider_type": "vllm", "api_base_url": "http://10.0.0.1:8000/v1"
        })),
    )
    .await;
    assert_eq!(reuse.status, 201, "{}", reuse.body);
    assert_eq!(reuse.body["api_key_exists"], false);
    for body in &seen {
        let text = body.to_string();
        assert!(
            !text.contains(secret) && !text.contains("sk-rotated") && !text.contains("ciphertext"),
            "{text}"
        );
    }

    for (body, field) in [
        (
            json!({"name": "b", "provider_type": "openai", "api_base_url": "ftp://x", "api_key": "k"}),
            "api_base_url",
        ),
        (
            json!({"name": "b", "provider_type": "gopher", "api_base_url": "https://x.test", "api_key": "k"}),
            "provider_type",
        ),
        (
            json!({"name": "b", "provider_type": "openai", "api_base_url": "https://x.test", "security_level": "high"}),
            "security_level",
        ),
        (
            json!({"provider_type": "openai", "api_base_url": "https://x.test"}),
            "name",
        ),
        (
            json!({"name": "b", "provider_type": "openai", "api_base_url": "https://x.test", "security_level": 7}),
            "security_level",
        ),
    ] {
        let rejected = call(&stack, "POST", "/api/v1/providers", &[], &[], Some(body)).await;
        assert_eq!(rejected.status, 422, "{}", rejected.body);
        assert_eq!(rejected.body["field"], field);
        assert_eq!(rejected.body["detail"][0]["loc"][1], field);
    }
    let not_json = api_request(
        "POST",
        "/api/v1/providers",
        "/api/v1/providers",
        &[],
        &[],
        Some(b"{oops"),
    );
    assert_eq!(catalog::handle(&stack.gateway, not_json).await.status, 422);
    let bad_page = call(
        &stack,
        "GET",
        "/api/v1/providers",
        &[],
        &[("page_size", "500")],
        None,
    )
    .await;
    assert_eq!(
        (bad_page.status, bad_page.body["field"].as_str()),
        (422, Some("page_size"))
    );

    let deleted = call(
        &stack,
        "DELETE",
        "/api/v1/providers/{id}",
        &[("id", &id)],
        &[],
        None,
    )
    .await;
    assert_eq!(deleted.status, 204);
    for method in ["GET", "DELETE"] {
        let gone = call(
            &stack,
            method,
            "/api/v1/providers/{id}",
            &[("id", &id)],
            &[],
            None,
        )
        .await;
        assert_eq!(gone.status, 404);
        assert_eq!(gone.body["detail"], "Provider not found");
    }
    let unknown = call(
        &stack,
        "GET",
        "/api/v1/providers/{id}",
        &[("id", "not-a-uuid")],
        &[],
        None,
    )
    .await;
    assert_eq!(unknown.status, 404);
}

#[tokio::test]
async fn models_round_trip_with_limits_and_in_use_conflicts() {
    let stack = TestStack::start().await;
    let provider = seeds::PROVIDER_ID.to_string();
    let created = call(&stack, "POST", "/api/v1/providers/{id}/models", &[("id", &provider)], &[], Some(json!({
        "model_name": "Big", "model_identifier": "big-128k", "context_length": 128000,
        "max_generation_length": 4096, "input_price_per_million": 0.5, "output_price_per_million": 1.5
    }))).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["provider_name"], "default");
    assert_eq!(created.body["health_status"], "unknown");
    let id = id_of(&created);
    let limits = call(
        &stack,
        "GET",
        "/api/v1/models/{id}/limits",
        &[("id", &id)],
        &[],
        None,
    )
    .await;
    assert_eq!(limits.body["available_for_input"], 128000 - 4096);
    let duplicate = call(
        &stack,
        "POST",
        "/api/v1/models",
        &[],
        &[],
        Some(json!({
            "provider_id": provider, "model_name": "Other", "model_identifier": "big-128k",
            "context_length": 8000, "max_generation_length": 1000
        })),
    )
    .await;
    assert_eq!(duplicate.status, 409, "{}", duplicate.body);
    let listed = call(
        &stack,
        "GET",
        "/api/v1/models",
        &[],
        &[("provider_id", &provider)],
        None,
    )
    .await;
    assert_eq!(listed.body["total"], 2);
    let bad = call(
        &stack,
        "PATCH",
        "/api/v1/models/{id}",
        &[("id", &id)],
        &[],
        Some(json!({"context_length": 0})),
    )
    .await;
    assert_eq!(
        (bad.status, bad.body["field"].as_str()),
        (422, Some("context_length"))
    );
    let unknown_provider = call(
        &stack,
        "POST",
        "/api/v1/models",
        &[],
        &[],
        Some(json!({
            "provider_id": uuid::Uuid::new_v4(), "model_name": "x", "model_identifier": "x",
            "context_length": 8000, "max_generation_length": 1000
        })),
    )
    .await;
    assert_eq!(unknown_provider.status, 404);

    // Discovery asks the provider (the mock, which requires the decrypted key).
    let discovered = call(
        &stack,
        "GET",
        "/api/v1/providers/{id}/discover-models",
        &[("id", &provider)],
        &[],
        None,
    )
    .await;
    assert_eq!(discovered.status, 200, "{}", discovered.body);
    assert_eq!(discovered.body[0]["model_identifier"], "mock-model");
    assert_eq!(
        discovered.body[0]["context_length"], 4096,
        "unknown family: the default limits"
    );
    stack.mock.require_api_key(Some("another-key"));
    let refused = call(
        &stack,
        "GET",
        "/api/v1/providers/{id}/discover-models",
        &[("id", &provider)],
        &[],
        None,
    )
    .await;
    assert_eq!(refused.status, 502, "{}", refused.body);
    assert!(refused.body["detail"]
        .as_str()
        .unwrap()
        .contains("provider 'default'"));
    assert!(!refused.body.to_string().contains(SEEDED_API_KEY));

    let seeded = seeds::MODEL_ID.to_string();
    let in_use = call(
        &stack,
        "DELETE",
        "/api/v1/models/{id}",
        &[("id", &seeded)],
        &[],
        None,
    )
    .await;
    assert_eq!(
        in_use.status, 409,
        "the seeded flavors use it: {}",
        in_use.body
    );
    let provider_in_use = call(
        &stack,
        "DELETE",
        "/api/v1/providers/{id}",
        &[("id", &provider)],
        &[],
        None,
    )
    .await;
    assert_eq!(provider_in_use.status, 409);
    assert_eq!(
        call(
            &stack,
            "DELETE",
            "/api/v1/models/{id}",
            &[("id", &id)],
            &[],
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        call(
            &stack,
            "GET",
            "/api/v1/models/{id}",
            &[("id", &id)],
            &[],
            None
        )
        .await
        .status,
        404
    );
}

fn flavor(name: &str, mode: &str, prompt: &str) -> Value {
    json!({
        "name": name, "model_id": seeds::MODEL_ID, "temperature": 0.3, "processing_mode": mode,
        "prompt_user_content": prompt
    })
}

#[tokio::test]
async fn services_with_flavors_are_created_atomically_and_validated() {
    let stack = TestStack::start().await;
    let invalid = call(&stack, "POST", "/api/v1/services", &[], &[], Some(json!({
        "name": "Minutes", "service_type": "summary",
        "flavors": [flavor("fast", "single_pass", "Sum up: {}"), {"name": "hot", "model_id": seeds::MODEL_ID, "temperature": 3.0}]
    }))).await;
    assert_eq!(invalid.status, 422, "{}", invalid.body);
    assert_eq!(invalid.body["field"], "flavors.1.temperature");
    let placeholders = call(&stack, "POST", "/api/v1/services", &[], &[], Some(json!({
        "name": "Minutes", "service_type": "summary", "flavors": [flavor("it", "iterative", "only {}")]
    }))).await;
    assert_eq!(placeholders.status, 400);
    assert_eq!(
        placeholders.body["detail"]["type"],
        "prompt_validation_error"
    );
    assert_eq!(placeholders.body["detail"]["required_placeholders"], 2);
    assert_eq!(placeholders.body["detail"]["actual_placeholders"], 1);
    let services = call(&stack, "GET", "/api/v1/services", &[], &[], None).await;
    assert_eq!(
        services.body["total"], 1,
        "nothing written by rejected requests: {}",
        services.body
    );

    let created = call(&stack, "POST", "/api/v1/services", &[], &[], Some(json!({
        "name": "Meeting Minutes", "service_type": "summary", "description": {"en": "Minutes"},
        "flavors": [
            {"name": "fast", "model_id": seeds::MODEL_ID, "temperature": 0.3, "processing_mode": "single_pass",
             "prompt_user_content": "Sum up: {}", "is_default": true, "priority": 2, "default_ttl_seconds": 3600},
            flavor("long", "iterative", "So far: {} New: {}")
        ]
    }))).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["route"], "meeting-minutes");
    let flavors = created.body["flavors"].as_array().unwrap();
    let names: Vec<&str> = flavors
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["long", "fast"],
        "the reference's order: priority descending"
    );
    assert_eq!(flavors[1]["model"]["provider_name"], "default");
    assert_eq!(flavors[1]["temperature"], 0.3);
    assert_eq!(flavors[0]["top_p"], 0.9, "reference default");
    assert_eq!(flavors[0]["max_failover_depth"], 3);
    let service_id = id_of(&created);
    let long = flavors[0]["id"].as_str().unwrap().to_string();
    let fast = flavors[1]["id"].as_str().unwrap().to_string();

    let clash = call(
        &stack,
        "POST",
        "/api/v1/services",
        &[],
        &[],
        Some(json!({"name": "meeting minutes", "service_type": "summary"})),
    )
    .await;
    assert_eq!(clash.status, 409);
    let dup_flavor = call(
        &stack,
        "POST",
        "/api/v1/services/{id}/flavors",
        &[("id", &service_id)],
        &[],
        Some(flavor("FAST", "single_pass", "{}")),
    )
    .await;
    assert_eq!(dup_flavor.status, 409, "{}", dup_flavor.body);

    // Failover: a chain long -> fast is fine, fast -> long then closes a cycle.
    let to_fast = call(
        &stack,
        "PATCH",
        "/api/v1/flavors/{flavor_id}",
        &[("flavor_id", &long)],
        &[],
        Some(json!({"failover_flavor_id": fast, "failover_enabled": true})),
    )
    .await;
    assert_eq!(to_fast.status, 200, "{}", to_fast.body);
    assert_eq!(to_fast.body["failover_flavor_name"], "fast");
    let cycle = call(
        &stack,
        "PATCH",
        "/api/v1/flavors/{flavor_id}",
        &[("flavor_id", &fast)],
        &[],
        Some(json!({"failover_flavor_id": long})),
    )
    .await;
    assert_eq!(cycle.status, 400, "{}", cycle.body);
    let own = call(
        &stack,
        "PATCH",
        "/api/v1/flavors/{flavor_id}",
        &[("flavor_id", &fast)],
        &[],
        Some(json!({"failover_flavor_id": fast})),
    )
    .await;
    assert_eq!(
        (own.status, own.body["field"].as_str()),
        (422, Some("failover_flavor_id"))
    );
    let chain = call(
        &stack,
        "GET",
        "/api/v1/services/{id}/flavors/{flavor_id}/{action}",
        &[
            ("id", &service_id),
            ("flavor_id", &long),
            ("action", "failover-chain"),
        ],
        &[],
        None,
    )
    .await;
    assert_eq!(chain.status, 200, "{}", chain.body);
    let names: Vec<&str> = chain.body["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["long", "fast"]);
    assert_eq!(chain.body["has_cycle"], false);
    let flavor_action = |flavor: &str, action: &'static str| {
        [
            ("id", service_id.clone()),
            ("flavor_id", flavor.to_string()),
            ("action", action.to_string()),
        ]
    };
    let params = flavor_action(&fast, "validate-failover");
    let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let looped = call(
        &stack,
        "POST",
        "/api/v1/services/{id}/flavors/{flavor_id}/{action}",
        &params,
        &[],
        Some(json!({"failover_flavor_id": long})),
    )
    .await;
    assert_eq!(
        (
            looped.body["valid"].as_bool(),
            looped.body["error"].as_str()
        ),
        (Some(false), Some("Cycle detected: flavor chain loops back")),
        "{}",
        looped.body
    );
    let params = flavor_action(&fast, "fallback-available");
    let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let fallback = call(
        &stack,
        "GET",
        "/api/v1/services/{id}/flavors/{flavor_id}/{action}",
        &params,
        &[],
        None,
    )
    .await;
    assert_eq!(
        fallback.body["fallback_flavor_name"], "long",
        "{}",
        fallback.body
    );

    // Out-of-range values name their field.
    for (patch, field) in [
        (json!({"top_p": 0}), "top_p"),
        (json!({"summary_turns": 21}), "summary_turns"),
        (json!({"max_new_turns": 0}), "max_new_turns"),
        (
            json!({"default_ttl_seconds": 31536001}),
            "default_ttl_seconds",
        ),
        (json!({"priority": 10}), "priority"),
        (json!({"processing_mode": "parallel"}), "processing_mode"),
        // A map_reduce flavor does not fail over (this one has failover on).
        (json!({"processing_mode": "map_reduce"}), "failover_enabled"),
        // Reduce needs a reduce prompt; extraction and categorisation prompts must be usable
        // for their phase (the seeded reduce prompt has one `{}` and no tags marker).
        (json!({"reduce_summary": true}), "reduce_prompt_id"),
        (
            json!({"placeholder_extraction_prompt_id": "0b0d3f3e-0000-4000-8000-000000000401"}),
            "placeholder_extraction_prompt_id",
        ),
        (
            json!({"categorization_prompt_id": "0b0d3f3e-0000-4000-8000-000000000401"}),
            "categorization_prompt_id",
        ),
    ] {
        let rejected = call(
            &stack,
            "PATCH",
            "/api/v1/flavors/{flavor_id}",
            &[("flavor_id", &long)],
            &[],
            Some(patch),
        )
        .await;
        assert_eq!(
            (rejected.status, rejected.body["field"].as_str()),
            (422, Some(field)),
            "{}",
            rejected.body
        );
    }

    // Default handling: one default, moved by set-default; the default cannot be deleted.
    let moved = call(
        &stack,
        "POST",
        "/api/v1/flavors/{flavor_id}/{action}",
        &[("flavor_id", &long), ("action", "set-default")],
        &[],
        None,
    )
    .await;
    assert_eq!(moved.body["message"], "Flavor set as default successfully");
    let listed = call(
        &stack,
        "GET",
        "/api/v1/services/{id}/flavors",
        &[("id", &service_id)],
        &[],
        None,
    )
    .await;
    let defaults: Vec<&str> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["is_default"] == true)
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(defaults, ["long"]);
    let refused = call(
        &stack,
        "DELETE",
        "/api/v1/flavors/{flavor_id}",
        &[("flavor_id", &long)],
        &[],
        None,
    )
    .await;
    assert_eq!(refused.status, 400);

    // The new service runs jobs: the default flavor is now "long" (iterative).
    let job = gateway_core::engine::execute::submit(
        &stack.gateway,
        service_id.parse().unwrap(),
        gateway_core::engine::execute::ExecuteRequest {
            input: gateway_test_support::transcript(30),
            flavor_id: None,
            ..Default::default()
        },
    )
    .await
    .expect("job submitted");
    assert_eq!(job.flavor_name, "long");
    assert!(stack.run_worker_steps(50).await > 0);
    let done = stack.gateway.jobs.get(job.id).await.unwrap().unwrap();
    assert_eq!(
        done.status,
        gateway_core::domain::JobStatus::Completed,
        "{:?}",
        done.error
    );
    let requests = stack.mock.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.api_key.as_deref() == Some(SEEDED_API_KEY)),
        "the worker sends the decrypted key"
    );

    // Deleting the service removes its flavors.
    assert_eq!(
        call(
            &stack,
            "DELETE",
            "/api/v1/services/{id}",
            &[("id", &service_id)],
            &[],
            None
        )
        .await
        .status,
        204
    );
    assert_eq!(
        call(
            &stack,
            "GET",
            "/api/v1/flavors/{flavor_id}",
            &[("flavor_id", &fast)],
            &[],
            None
        )
        .await
        .status,
        404
    );
}

#[tokio::test]
async fn prompts_round_trip_and_are_protected_while_used() {
    let stack = TestStack::start().await;
    let created = call(
        &stack,
        "POST",
        "/api/v1/prompts",
        &[],
        &[],
        Some(json!({
            "name": "mt-user-summary", "content": "Context: {}\nNew: {}", "service_type": "summary",
            "prompt_category": "user", "description": {"en": "x", "fr": "y"}
        })),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["placeholder_count"], 2);
    assert_eq!(created.body["prompt_type"]["code"], "standard");
    assert_eq!(created.body["prompt_type"]["is_system"], true);
    let id = id_of(&created);
    let unknown_type = call(
        &stack,
        "POST",
        "/api/v1/prompts",
        &[],
        &[],
        Some(json!({
            "name": "p2", "content": "{}", "service_type": "poetry", "prompt_category": "user"
        })),
    )
    .await;
    assert_eq!(unknown_type.status, 400);
    let bad_category = call(
        &stack,
        "POST",
        "/api/v1/prompts",
        &[],
        &[],
        Some(json!({
            "name": "p2", "content": "{}", "service_type": "summary", "prompt_category": "assistant"
        })),
    )
    .await;
    assert_eq!(
        (bad_category.status, bad_category.body["field"].as_str()),
        (422, Some("prompt_category"))
    );
    let duplicate = call(&stack, "POST", "/api/v1/prompts", &[], &[], Some(json!({
        "name": "MT-user-summary", "content": "{}", "service_type": "summary", "prompt_category": "user"
    }))).await;
    assert_eq!(duplicate.status, 409);
    let filtered = call(
        &stack,
        "GET",
        "/api/v1/prompts",
        &[],
        &[("name", "user-sum")],
        None,
    )
    .await;
    assert_eq!(filtered.body["total"], 1);

    // A flavor built from the template copies its content; the prompt is then in use.
    let service = call(
        &stack,
        "GET",
        "/api/v1/services/{id}",
        &[("id", &seeds::SUMMARIZE_SERVICE_ID.to_string())],
        &[],
        None,
    )
    .await;
    assert_eq!(service.status, 200);
    let templated = call(&stack, "POST", "/api/v1/services/{id}/flavors", &[("id", &seeds::SUMMARIZE_SERVICE_ID.to_string())], &[], Some(json!({
        "name": "templated", "model_id": seeds::MODEL_ID, "temperature": 0.1, "user_prompt_template_id": id
    }))).await;
    assert_eq!(templated.status, 201, "{}", templated.body);
    assert_eq!(
        templated.body["prompt_user_content"],
        "Context: {}\nNew: {}"
    );
    assert_eq!(
        templated.body["user_prompt_template_name"],
        "mt-user-summary"
    );
    let in_use = call(
        &stack,
        "DELETE",
        "/api/v1/prompts/{id}",
        &[("id", &id)],
        &[],
        None,
    )
    .await;
    assert_eq!(in_use.status, 409);
    let edited = call(
        &stack,
        "PATCH",
        "/api/v1/prompts/{id}",
        &[("id", &id)],
        &[],
        Some(json!({"content": "One {}"})),
    )
    .await;
    assert_eq!(
        (edited.status, edited.body["placeholder_count"].as_u64()),
        (200, Some(1))
    );
}

#[tokio::test]
async fn organizations_see_their_objects_and_global_ones_only() {
    let stack = TestStack::start().await;
    let org_a = [("organization_id", "org-a")];
    let org_b = [("organization_id", "org-b")];
    let prompt = call(
        &stack,
        "POST",
        "/api/v1/prompts",
        &[],
        &org_a,
        Some(json!({
            "name": "private", "content": "{}", "service_type": "summary", "prompt_category": "user"
        })),
    )
    .await;
    assert_eq!(
        (prompt.status, prompt.body["organization_id"].as_str()),
        (201, Some("org-a"))
    );
    let service = call(&stack, "POST", "/api/v1/services", &[], &org_a, Some(json!({
        "name": "private", "service_type": "summary", "flavors": [flavor("only", "single_pass", "{}")]
    }))).await;
    assert_eq!(service.status, 201, "{}", service.body);
    let (prompt_id, service_id) = (id_of(&prompt), id_of(&service));
    let flavor_id = service.body["flavors"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The same names are free in another organization.
    let same_name = call(
        &stack,
        "POST",
        "/api/v1/prompts",
        &[],
        &org_b,
        Some(json!({
            "name": "private", "content": "{}", "service_type": "summary", "prompt_category": "user"
        })),
    )
    .await;
    assert_eq!(same_name.status, 201);

    for (resource, params) in [
        ("/api/v1/prompts/{id}", vec![("id", prompt_id.as_str())]),
        ("/api/v1/services/{id}", vec![("id", service_id.as_str())]),
        (
            "/api/v1/flavors/{flavor_id}",
            vec![("flavor_id", flavor_id.as_str())],
        ),
    ] {
        for (method, body) in [
            ("GET", None),
            ("PATCH", Some(json!({"description": {"en": "mine"}}))),
            ("DELETE", None),
        ] {
            let answer = call(&stack, method, resource, &params, &org_b, body).await;
            assert_eq!(
                answer.status, 404,
                "{method} {resource} as org-b: {}",
                answer.body
            );
        }
        assert_eq!(
            call(&stack, "GET", resource, &params, &org_a, None)
                .await
                .status,
            200
        );
    }
    let borrowing = call(&stack, "POST", "/api/v1/services", &[], &org_b, Some(json!({
        "name": "borrower", "service_type": "summary",
        "flavors": [{"name": "f", "model_id": seeds::MODEL_ID, "temperature": 0.2, "failover_flavor_id": flavor_id}]
    }))).await;
    assert_eq!(
        (borrowing.status, borrowing.body["field"].as_str()),
        (422, Some("flavors.0.failover_flavor_id")),
        "another organization's flavor is not a failover target: {}",
        borrowing.body
    );
    let listed_b = call(&stack, "GET", "/api/v1/services", &[], &org_b, None).await;
    let names: Vec<&str> = listed_b.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["summarize"], "org-b sees only the global service");
    let listed_a = call(&stack, "GET", "/api/v1/services", &[], &org_a, None).await;
    assert_eq!(
        listed_a.body["total"], 2,
        "org-a sees its own and the global one"
    );
    // A tenant cannot change global objects; the operator (no organization) can.
    let global = seeds::SUMMARIZE_SERVICE_ID.to_string();
    let forbidden = call(
        &stack,
        "PATCH",
        "/api/v1/services/{id}",
        &[("id", &global)],
        &org_a,
        Some(json!({"is_active": false})),
    )
    .await;
    assert_eq!(forbidden.status, 403);
    let execute_b = gateway_core::engine::execute::submit(
        &stack.gateway,
        service_id.parse().unwrap(),
        gateway_core::engine::execute::ExecuteRequest {
            input: "A: hi".into(),
            flavor_id: None,
            flavor_name: None,
            organization_id: Some("org-b".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        execute_b.unwrap_err().status(),
        404,
        "org-b cannot run org-a's service"
    );
}

#[tokio::test]
async fn seeds_are_loaded_once_and_edits_survive_a_reload() {
    let stack = TestStack::start().await;
    let types = call(&stack, "GET", "/api/v1/service-types", &[], &[], None).await;
    let codes: Vec<&str> = types
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "summary",
            "translation",
            "categorization",
            "diarization_correction",
            "speaker_correction",
            "chat",
            "generic"
        ]
    );
    let prompt_types = call(&stack, "GET", "/api/v1/prompt-types", &[], &[], None).await;
    assert_eq!(prompt_types.body.as_array().unwrap().len(), 4);
    let system = call(
        &stack,
        "DELETE",
        "/api/v1/service-types/{id}",
        &[("id", "summary")],
        &[],
        None,
    )
    .await;
    assert_eq!(system.status, 403);
    let presets = call(&stack, "GET", "/api/v1/flavor-presets", &[], &[], None).await;
    let preset = presets
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "iterative")
        .expect("seeded preset")
        .clone();
    assert_eq!(preset["is_system"], true);

    let prompts = call(
        &stack,
        "GET",
        "/api/v1/prompts",
        &[],
        &[("name", "meeting-minutes")],
        None,
    )
    .await;
    let prompt_id = prompts.body["items"][0]["id"]
        .as_str()
        .expect("seeded prompt")
        .to_string();
    let edited = call(
        &stack,
        "PATCH",
        "/api/v1/prompts/{id}",
        &[("id", &prompt_id)],
        &[],
        Some(json!({"content": "Edited {}"})),
    )
    .await;
    assert_eq!(edited.status, 200, "{}", edited.body);
    // Loading the seeds again keeps the edit and adds nothing.
    let output = std::process::Command::new(python())
        .arg(repo_root().join("localstack/load_seeds.py"))
        .args([
            "--endpoint",
            &std::env::var("AWS_ENDPOINT_URL").unwrap(),
            "--prefix",
            stack.var("GATEWAY_PREFIX"),
            "--seeds",
        ])
        .arg(repo_root().join("seeds"))
        .env("LLM_BASE_URL", stack.mock.base_url())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("wrote nothing"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let again = call(
        &stack,
        "GET",
        "/api/v1/prompts/{id}",
        &[("id", &prompt_id)],
        &[],
        None,
    )
    .await;
    assert_eq!(again.body["content"], "Edited {}");

    // Applying a preset makes a flavor with its settings.
    let preset_id = preset["id"].as_str().unwrap().to_string();
    let applied = call(&stack, "POST", "/api/v1/flavor-presets/{id}/apply", &[("id", &preset_id)], &[], Some(json!({
        "service_id": seeds::SUMMARIZE_SERVICE_ID, "model_id": seeds::MODEL_ID, "flavor_name": "from-preset"
    }))).await;
    assert_eq!(applied.status, 201, "{}", applied.body);
    assert_eq!(applied.body["max_new_turns"], 12);
    assert_eq!(applied.body["processing_mode"], "iterative");
    let system_preset = call(
        &stack,
        "DELETE",
        "/api/v1/flavor-presets/{id}",
        &[("id", &preset_id)],
        &[],
        None,
    )
    .await;
    assert_eq!(system_preset.status, 400);
}

#[tokio::test]
async fn openapi_document_covers_every_route_and_validates() {
    let stack = TestStack::start().await;
    let response = call(&stack, "GET", "/openapi.json", &[], &[], None).await;
    assert_eq!(response.status, 200);
    let paths = response.body["paths"].as_object().unwrap();
    // Every API Gateway resource serves at least one documented path.
    let mut covered = std::collections::HashSet::new();
    for path in paths.keys() {
        let concrete: Vec<String> = path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "x".to_string()
                } else {
                    segment.to_string()
                }
            })
            .collect();
        let matched = local::routes::match_route(local::routes::ROUTES, &concrete.join("/"))
            .unwrap_or_else(|| panic!("documented path {path} is not routed"));
        covered.insert(matched.route.resource);
    }
    for route in local::routes::ROUTES {
        assert!(
            covered.contains(route.resource),
            "{} missing from /openapi.json",
            route.resource
        );
    }
    let document = std::env::temp_dir().join(format!("openapi-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&document, response.body.to_string()).unwrap();
    let output = std::process::Command::new(python())
        .args(["-c", "import sys, json; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1]))); print('valid')"])
        .arg(&document)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&document);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn every_sample_event_is_answered_by_its_route() {
    let stack = TestStack::start().await;
    let expected: &[(&str, u16)] = &[
        ("catalog-providers-list", 200),
        ("catalog-providers-create", 201),
        ("catalog-provider-get", 200),
        ("catalog-provider-models", 200),
        ("catalog-provider-discover-models", 404),
        ("catalog-models-list", 200),
        ("catalog-model-update", 200),
        ("catalog-model-limits", 200),
        ("catalog-prompts-create", 201),
        ("catalog-prompt-get", 404),
        ("catalog-prompt-types-list", 200),
        ("catalog-prompt-type-get", 200),
        ("catalog-service-types-list", 200),
        ("catalog-service-type-get", 200),
        ("catalog-presets-list", 200),
        ("catalog-preset-get", 404),
        ("catalog-preset-apply", 404),
        ("catalog-services-list", 200),
        ("catalog-services-create", 201),
        ("catalog-service-get", 200),
        ("catalog-service-flavors", 200),
        ("catalog-service-flavor-get", 200),
        ("catalog-service-flavor-failover-chain", 200),
        ("catalog-flavors-validate-prompt", 200),
        ("catalog-flavor-update", 200),
        ("catalog-flavor-set-default", 200),
        ("catalog-openapi", 200),
        ("catalog-provider-models-verify", 404),
        ("catalog-model-verify", 404),
        ("catalog-prompt-templates", 200),
        ("catalog-prompt-duplicate", 404),
        ("catalog-prompt-save-as-template", 404),
        ("catalog-service-type-config", 200),
        ("catalog-flavor-test", 404),
        ("catalog-tokenizers-list", 200),
        ("catalog-tokenizer-preload", 200),
        ("catalog-tokenizer-delete", 404),
        ("catalog-service-stats", 200),
        ("catalog-service-flavor-stats", 200),
        ("catalog-flavor-stats", 200),
        ("catalog-flavor-usage-history", 200),
        ("catalog-analytics-dashboard", 200),
    ];
    let on_disk = std::fs::read_dir(repo_root().join("events"))
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("catalog-"))
        .count();
    assert_eq!(
        on_disk,
        expected.len(),
        "every catalog event has an expectation"
    );
    let mut resources = std::collections::HashSet::new();
    for (name, status) in expected {
        let text =
            std::fs::read_to_string(repo_root().join(format!("events/{name}.json"))).unwrap();
        let event: Value = serde_json::from_str(&text).unwrap();
        resources.insert(event["resource"].as_str().unwrap().to_string());
        let request =
            lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let response = catalog::handle(&stack.gateway, request).await;
        assert_eq!(response.status, *status, "{name}: {}", response.body);
    }
    for route in local::routes::ROUTES
        .iter()
        .filter(|route| route.function == "catalog")
    {
        assert!(
            resources.contains(route.resource),
            "no sample event for {}",
            route.resource
        );
    }
}

#[tokio::test]
async fn types_and_presets_round_trip() {
    let stack = TestStack::start().await;
    for (collection, item) in [
        ("/api/v1/service-types", "/api/v1/service-types/{id}"),
        ("/api/v1/prompt-types", "/api/v1/prompt-types/{id}"),
    ] {
        let created = call(&stack, "POST", collection, &[], &[], Some(json!({
            "code": "legal_review", "name": {"en": "Legal review", "fr": "Revue juridique"}, "display_order": 9
        }))).await;
        assert_eq!(created.status, 201, "{collection}: {}", created.body);
        assert_eq!(created.body["is_system"], false);
        let duplicate = call(
            &stack,
            "POST",
            collection,
            &[],
            &[],
            Some(json!({"code": "legal_review", "name": {"en": "x"}})),
        )
        .await;
        assert_eq!(duplicate.status, 409);
        let bad_code = call(
            &stack,
            "POST",
            collection,
            &[],
            &[],
            Some(json!({"code": "Legal-Review", "name": {"en": "x"}})),
        )
        .await;
        assert_eq!(
            (bad_code.status, bad_code.body["field"].as_str()),
            (422, Some("code"))
        );
        let id = id_of(&created);
        let renamed = call(
            &stack,
            "PATCH",
            item,
            &[("id", &id)],
            &[],
            Some(json!({"name": {"en": "Contracts"}, "code": "ignored"})),
        )
        .await;
        assert_eq!(
            (
                renamed.body["name"]["en"].as_str(),
                renamed.body["code"].as_str()
            ),
            (Some("Contracts"), Some("legal_review"))
        );
        assert_eq!(
            call(&stack, "DELETE", item, &[("id", &id)], &[], None)
                .await
                .status,
            204
        );
        assert_eq!(
            call(&stack, "GET", item, &[("id", &id)], &[], None)
                .await
                .status,
            404
        );
    }
    let created = call(
        &stack,
        "POST",
        "/api/v1/flavor-presets",
        &[],
        &[],
        Some(json!({
            "name": "careful", "config": {"temperature": 0.1, "processing_mode": "single_pass"}
        })),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["service_type"], "summary");
    let invalid = call(
        &stack,
        "POST",
        "/api/v1/flavor-presets",
        &[],
        &[],
        Some(json!({
            "name": "hot", "config": {"temperature": 5}
        })),
    )
    .await;
    assert_eq!(invalid.status, 400, "{}", invalid.body);
    assert!(invalid.body["detail"]["errors"][0]
        .as_str()
        .unwrap()
        .contains("temperature"));
    let id = id_of(&created);
    let updated = call(
        &stack,
        "PATCH",
        "/api/v1/flavor-presets/{id}",
        &[("id", &id)],
        &[],
        Some(json!({"is_active": false})),
    )
    .await;
    assert_eq!(updated.body["is_active"], false);
    let active = call(
        &stack,
        "GET",
        "/api/v1/flavor-presets",
        &[],
        &[("active_only", "true")],
        None,
    )
    .await;
    assert!(active
        .body
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["name"] != "careful"));
    assert_eq!(
        call(
            &stack,
            "DELETE",
            "/api/v1/flavor-presets/{id}",
            &[("id", &id)],
            &[],
            None
        )
        .await
        .status,
        204
    );
}

#[tokio::test]
async fn a_service_default_template_must_be_a_template_it_can_use() {
    let stack = TestStack::start().await;
    let service = seeds::SUMMARIZE_SERVICE_ID.to_string();
    let update = |template: String| {
        let stack = &stack;
        let service = service.clone();
        async move {
            call(
                stack,
                "PATCH",
                "/api/v1/services/{id}",
                &[("id", &service)],
                &[],
                Some(json!({ "default_template_id": template })),
            )
            .await
        }
    };
    let unknown = update(uuid::Uuid::new_v4().to_string()).await;
    assert_eq!(unknown.status, 422, "{}", unknown.body);
    assert_eq!(unknown.body["detail"][0]["loc"][1], "default_template_id");
    // The seeded built-in report is a system template: any service may use it.
    let seeded = update("0b0d3f3e-0000-4000-8000-000000000501".into()).await;
    assert_eq!(seeded.status, 200, "{}", seeded.body);
    assert_eq!(
        seeded.body["default_template_id"],
        "0b0d3f3e-0000-4000-8000-000000000501"
    );
}

#[tokio::test]
async fn free_form_json_round_trips_whatever_its_keys_and_depth() {
    let stack = TestStack::start().await;
    let org = "org-free-form";
    // Keys that are DynamoDB type tags, and nesting deeper than DynamoDB's 32 levels.
    let mut deep = json!("bottom");
    for _ in 0..40 {
        deep = json!({ "L": [deep] });
    }
    let metadata = json!({"M": {}, "S": {"N": {"BOOL": null}}, "deep": deep});
    let created = call(
        &stack,
        "POST",
        "/api/v1/services",
        &[],
        &[("organization_id", org)],
        Some(json!({"name": "free-form", "service_type": "summary", "metadata": metadata})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let listed = call(
        &stack,
        "GET",
        "/api/v1/services",
        &[],
        &[("organization_id", org)],
        None,
    )
    .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let service = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "free-form")
        .expect("listed");
    assert_eq!(
        service["metadata"], metadata,
        "stored and read back unchanged"
    );

    let huge = json!({"blob": "x".repeat(400_000)});
    let refused = call(
        &stack,
        "POST",
        "/api/v1/services",
        &[],
        &[("organization_id", org)],
        Some(json!({"name": "huge", "service_type": "summary", "metadata": huge})),
    )
    .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
}
