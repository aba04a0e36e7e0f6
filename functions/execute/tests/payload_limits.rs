//! The request body cap against the events API Gateway really sends: every body is
//! base64-encoded (the template's `BinaryMediaTypes: */*`), so the largest body the
//! handler accepts must still fit Lambda's request payload once encoded, and a larger one
//! must get our JSON 413, never a Lambda or API Gateway failure.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use gateway_core::engine::MAX_REQUEST_BODY_BYTES;
use gateway_test_support::{seeds, transcript, TestStack};
use serde_json::{json, Value};

/// Lambda's synchronous request payload limit.
const LAMBDA_REQUEST_PAYLOAD_BYTES: usize = 6_291_556;

/// An execute request body of exactly `size` bytes for the iterative flavor.
fn body_of_size(size: usize) -> Vec<u8> {
    let head = format!(
        r#"{{"flavor_id": "{}", "input": ""#,
        seeds::ITERATIVE_FLAVOR_ID
    );
    let tail = r#""}"#;
    let lines = transcript(40).replace('\n', "\\n");
    let mut input = String::with_capacity(size);
    while input.len() + lines.len() + 2 < size - head.len() - tail.len() {
        input.push_str(&lines);
        input.push_str("\\n");
    }
    while input.len() < size - head.len() - tail.len() {
        input.push('x');
    }
    let body = format!("{head}{input}{tail}").into_bytes();
    assert_eq!(body.len(), size);
    body
}

/// The proxy event API Gateway sends for `body`, with the headers a real client and
/// CloudFront add.
fn gateway_event(body: &[u8], base64: bool) -> String {
    let service = seeds::SUMMARIZE_SERVICE_ID.to_string();
    let path = format!("/api/v1/services/{service}/execute");
    let headers = json!({
        "accept": "application/json", "accept-encoding": "gzip, deflate, br",
        "content-type": "application/json", "host": "abc123.execute-api.eu-west-1.amazonaws.com",
        "user-agent": "reference-client/2.1 python-httpx/0.27",
        "cloudfront-forwarded-proto": "https", "cloudfront-is-desktop-viewer": "true",
        "cloudfront-viewer-country": "FR", "via": "2.0 0123456789abcdef.cloudfront.net (CloudFront)",
        "x-amz-cf-id": "Fh2Xb8oXcGx8lK4m9Vz2hY3y9pQ0Yw7aT1rN5sU6vW8xZ9aB0cD1eF==",
        "x-amzn-trace-id": "Root=1-67891233-abcdef012345678912345678",
        "x-forwarded-for": "203.0.113.7, 130.176.0.1", "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    });
    let multi: serde_json::Map<String, Value> = headers
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, value)| (name.clone(), json!([value])))
        .collect();
    let body = if base64 {
        BASE64.encode(body)
    } else {
        String::from_utf8(body.to_vec()).unwrap()
    };
    json!({
        "resource": "/api/v1/services/{id}/execute",
        "path": path,
        "httpMethod": "POST",
        "headers": headers,
        "multiValueHeaders": multi,
        "queryStringParameters": null,
        "multiValueQueryStringParameters": null,
        "pathParameters": {"id": service},
        "stageVariables": null,
        "requestContext": {
            "resourceId": "a1b2c3", "resourcePath": "/api/v1/services/{id}/execute",
            "httpMethod": "POST", "extendedRequestId": "Ab1CdEfGhIjKlMn=",
            "requestTime": "01/Dec/2026:20:10:30 +0000", "path": format!("/v1{path}"),
            "accountId": "123456789012", "protocol": "HTTP/1.1", "stage": "v1",
            "domainPrefix": "abc123", "requestTimeEpoch": 1_796_155_830_000_u64,
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "reference-client/2.1 python-httpx/0.27"},
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com", "apiId": "abc123",
        },
        "body": body,
        "isBase64Encoded": base64,
    })
    .to_string()
}

async fn send(stack: &TestStack, event: &str) -> gateway_core::engine::JsonResponse {
    let request = lambda_http::request::from_str(event).expect("a valid API Gateway event");
    execute::handle(&stack.gateway, request).await
}

#[tokio::test]
async fn the_largest_accepted_body_fits_lambdas_payload_once_base64_encoded() {
    let stack = TestStack::start().await;
    let largest = body_of_size(MAX_REQUEST_BODY_BYTES);
    for base64 in [true, false] {
        let event = gateway_event(&largest, base64);
        assert!(
            event.len() < LAMBDA_REQUEST_PAYLOAD_BYTES,
            "base64 {base64}: the event is {} bytes",
            event.len()
        );
        let accepted = send(&stack, &event).await;
        assert_eq!(accepted.status, 202, "base64 {base64}: {}", accepted.body);
        assert!(accepted.body["input_tokens"].as_u64().unwrap() > 500_000);
    }
}

#[tokio::test]
async fn a_body_over_the_cap_that_still_reaches_lambda_gets_our_json_413() {
    let stack = TestStack::start().await;
    // Over the cap, but its encoded event still fits Lambda: the handler answers.
    let over = body_of_size(MAX_REQUEST_BODY_BYTES + 100_000);
    for base64 in [true, false] {
        let event = gateway_event(&over, base64);
        assert!(event.len() < LAMBDA_REQUEST_PAYLOAD_BYTES);
        let refused = send(&stack, &event).await;
        assert_eq!(refused.status, 413, "{}", refused.body);
        assert_eq!(refused.body["error_code"], "INPUT_TOO_LARGE");
        assert_eq!(refused.body["field"], "body");
        assert!(refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("POST /api/v1/uploads"));
    }
    // A non-UTF-8 body reaches the handler only base64-encoded, and is named as such.
    let mut latin1 = br#"{"input": "caf"#.to_vec();
    latin1.extend([0xe9, b'"', b'}']);
    let refused = send(&stack, &gateway_event(&latin1, true)).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(refused.body["error_code"], "INVALID_ENCODING");
}
