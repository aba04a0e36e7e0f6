//! The catalog driven over HTTP the way the reference's own load-test client
//! (`scripts/massive_test.py` of linto-ai/llm-gateway) drives it: list providers and
//! models, create prompts, a service and its flavors, execute, then clean up — with the
//! reference's request and response shapes, through the real function binaries.

use std::time::{Duration, Instant};

use gateway_e2e::LocalRun;
use gateway_test_support::{transcript, TestStack, SEEDED_API_KEY};
use serde_json::{json, Value};

async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("front door answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_reference_load_test_client_flow_works_unchanged() {
    let stack = TestStack::start().await;
    let run = LocalRun::start(&stack, 30);
    let client = reqwest::Client::new();
    let api = format!("{}/api/v1", run.api);
    use reqwest::Method;

    // setup: list providers, then the models of the chosen provider.
    let (status, providers) = send(&client, Method::GET, format!("{api}/providers"), None).await;
    assert_eq!(status, 200, "{providers}");
    let provider = &providers["items"][0];
    assert_eq!(provider["api_key_exists"], true);
    assert!(!providers.to_string().contains(SEEDED_API_KEY));
    let provider_id = provider["id"].as_str().unwrap();
    let (status, models) = send(
        &client,
        Method::GET,
        format!("{api}/models?provider_id={provider_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let model_id = models["items"][0]["id"].as_str().unwrap().to_string();

    // create: prompts, a service, flavors from templates.
    let (status, prompt) = send(&client, Method::POST, format!("{api}/prompts"), Some(json!({
        "name": "mt-system-summarizer-en",
        "content": "You are an expert conversation analyst and summarizer.",
        "language": "en",
        "service_type": "summary",
        "prompt_category": "system",
        "description": {"en": "System prompt for English conversation summarization", "fr": "Prompt systeme"}
    }))).await;
    assert_eq!(status, 201, "{prompt}");
    let (status, service) = send(&client, Method::POST, format!("{api}/services"), Some(json!({
        "name": "mt-summary-en", "route": "mt-summary-en", "service_type": "summary", "is_active": true,
        "description": {"en": "English conversation summarization service", "fr": "Service de synthese"},
        "metadata": {"test_service": true, "language": "en"}
    }))).await;
    assert_eq!(status, 201, "{service}");
    let service_id = service["id"].as_str().unwrap().to_string();
    let mut flavor_ids = Vec::new();
    for (name, mode, is_default, prompt) in [
        (
            "mt-default",
            "iterative",
            true,
            "Previous context:\n{}\n\nNew content to process:\n{}\n",
        ),
        ("mt-single", "single_pass", false, "Summarize:\n{}\n"),
    ] {
        let (status, flavor) = send(&client, Method::POST, format!("{api}/services/{service_id}/flavors"), Some(json!({
            "name": name, "model_id": model_id, "temperature": 0.7, "top_p": 0.9,
            "processing_mode": mode, "is_default": is_default,
            "prompt_system_content": "You are a helpful assistant that processes text accurately and efficiently.\n",
            "prompt_user_content": prompt
        }))).await;
        assert_eq!(status, 201, "{flavor}");
        assert_eq!(flavor["model"]["id"], model_id.as_str());
        flavor_ids.push(flavor["id"].as_str().unwrap().to_string());
    }

    // run: list services and their flavors (the client's list_flavors), execute.
    let (status, services) = send(&client, Method::GET, format!("{api}/services"), None).await;
    assert_eq!(status, 200);
    let listed = services["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == service_id.as_str())
        .expect("listed");
    assert_eq!(listed["flavors"].as_array().unwrap().len(), 2);
    let (status, accepted) = send(
        &client,
        Method::POST,
        format!("{api}/services/{service_id}/execute"),
        Some(json!({
            "input": transcript(40), "flavor_id": flavor_ids[0]
        })),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let job_url = format!("{api}/jobs/{}", accepted["job_id"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = loop {
        let (_, job) = send(&client, Method::GET, job_url.clone(), None).await;
        if matches!(job["status"].as_str(), Some("completed" | "failed")) {
            break job;
        }
        assert!(
            Instant::now() < deadline,
            "job did not finish: {job}; logs in {}",
            run.logs().display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(job["status"], "completed", "{job}");
    assert!(!stack.mock.answered_prompts().is_empty());
    assert!(stack
        .mock
        .requests()
        .iter()
        .all(|r| r.api_key.as_deref() == Some(SEEDED_API_KEY)));

    // cleanup: flavors (the default last), the service, the prompt.
    for flavor_id in flavor_ids.iter().rev() {
        let (status, body) = send(
            &client,
            Method::DELETE,
            format!("{api}/services/{service_id}/flavors/{flavor_id}"),
            None,
        )
        .await;
        assert_eq!(status, 204, "{body}");
    }
    let (status, _) = send(
        &client,
        Method::DELETE,
        format!("{api}/services/{service_id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = send(
        &client,
        Method::DELETE,
        format!("{api}/prompts/{}", prompt["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = send(
        &client,
        Method::GET,
        format!("{api}/services/{service_id}"),
        None,
    )
    .await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (404, Some("Service not found"))
    );

    // The OpenAPI document is served at the API root.
    let (status, document) = send(
        &client,
        Method::GET,
        format!("{}/openapi.json", run.api),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(document["paths"]["/api/v1/providers"]["post"].is_object());
}
