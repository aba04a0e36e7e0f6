//! Helpers of the catalog handler tests.

use gateway_core::engine::JsonResponse;
use gateway_test_support::{api_request, TestStack};
use serde_json::Value;

/// Calls the catalog handler like API Gateway would.
pub async fn call(
    stack: &TestStack,
    method: &str,
    resource: &str,
    params: &[(&str, &str)],
    query: &[(&str, &str)],
    body: Option<Value>,
) -> JsonResponse {
    let mut path = resource.to_string();
    for (name, value) in params {
        path = path.replace(&format!("{{{name}}}"), value);
    }
    let body = body.map(|b| b.to_string());
    let request = api_request(
        method,
        resource,
        &path,
        params,
        query,
        body.as_deref().map(str::as_bytes),
    );
    catalog::handle(&stack.gateway, request).await
}

pub fn id_of(response: &JsonResponse) -> String {
    response.body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {}", response.body))
        .to_string()
}
