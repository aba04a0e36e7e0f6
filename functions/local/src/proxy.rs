//! API Gateway REST proxy integration: HTTP request → proxy event (payload format 1.0)
//! and proxy response → HTTP response.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::routes::{percent_decode, RouteMatch};

/// Stage name put in `requestContext.stage`.
pub const STAGE: &str = "local";

/// What the front door knows about one incoming HTTP request.
#[derive(Clone, Debug)]
pub struct IncomingRequest<'a> {
    /// HTTP method.
    pub method: &'a Method,
    /// Raw URL path (not decoded), e.g. `/api/v1/jobs/abc`.
    pub path: &'a str,
    /// Raw query string without `?`, if any.
    pub query: Option<&'a str>,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Request body bytes (empty when there is none).
    pub body: &'a [u8],
    /// Caller's IP address.
    pub source_ip: &'a str,
    /// Request id put in `requestContext.requestId`.
    pub request_id: &'a str,
}

/// Builds the API Gateway REST proxy event for a request that matched `route`, in the JSON
/// shape of `aws_lambda_events::apigw::ApiGatewayProxyRequest`. Absent query strings and
/// path parameters are `null`, as API Gateway sends them; a body is sent base64-encoded
/// with `isBase64Encoded: true`, as the deployed API does for every body (the template's
/// `BinaryMediaTypes: */*`), so payload limits apply to the encoded size here too.
pub fn proxy_event(request: &IncomingRequest<'_>, route: &RouteMatch) -> Value {
    let (single_headers, multi_headers) = header_maps(request.headers);
    let (single_query, multi_query) = query_maps(request.query.unwrap_or(""));
    let (body, is_base64_encoded) = match request.body {
        [] => (Value::Null, false),
        bytes => (Value::String(BASE64.encode(bytes)), true),
    };
    let path_parameters = if route.path_parameters.is_empty() {
        Value::Null
    } else {
        json!(route.path_parameters)
    };
    let now = chrono::Utc::now();
    let host = request
        .headers
        .get("host")
        .and_then(|host| host.to_str().ok())
        .unwrap_or("127.0.0.1");
    json!({
        "resource": route.route.resource,
        "path": request.path,
        "httpMethod": request.method.as_str(),
        "headers": single_headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": single_query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": path_parameters,
        "stageVariables": Value::Null,
        "requestContext": {
            "accountId": "000000000000",
            "resourceId": "local",
            "stage": STAGE,
            "domainName": host,
            "requestId": request.request_id,
            "extendedRequestId": request.request_id,
            "protocol": "HTTP/1.1",
            "identity": { "sourceIp": request.source_ip, "userAgent": request.headers.get("user-agent").and_then(|agent| agent.to_str().ok()) },
            "resourcePath": route.route.resource,
            "path": format!("/{STAGE}{}", request.path),
            "httpMethod": request.method.as_str(),
            "requestTime": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "requestTimeEpoch": now.timestamp_millis(),
            "apiId": "local",
        },
        "body": body,
        "isBase64Encoded": is_base64_encoded,
    })
}

/// `headers` (last value of each name) and `multiValueHeaders` (all values), or `null`s
/// when there are no headers. Values that are not UTF-8 are converted lossily.
pub(crate) fn header_maps(headers: &HeaderMap) -> (Value, Value) {
    if headers.is_empty() {
        return (Value::Null, Value::Null);
    }
    let mut single = Map::new();
    let mut multi: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        single.insert(name.as_str().to_string(), Value::String(value.clone()));
        multi
            .entry(name.as_str().to_string())
            .or_default()
            .push(Value::String(value));
    }
    (Value::Object(single), json!(multi))
}

/// `queryStringParameters` (last value of each name) and
/// `multiValueQueryStringParameters` (all values in order), or `null`s for an empty query.
/// A name without `=` gets the empty value.
pub(crate) fn query_maps(query: &str) -> (Value, Value) {
    let mut single = Map::new();
    let mut multi: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, value) = (percent_decode(name), percent_decode(value));
        single.insert(name.clone(), Value::String(value.clone()));
        multi.entry(name).or_default().push(Value::String(value));
    }
    if single.is_empty() {
        (Value::Null, Value::Null)
    } else {
        (Value::Object(single), json!(multi))
    }
}

/// A proxy response converted back to HTTP parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpReply {
    /// Status code.
    pub status: StatusCode,
    /// Merged `multiValueHeaders` and `headers`.
    pub headers: HeaderMap,
    /// Body bytes (base64-decoded when `isBase64Encoded`).
    pub body: Vec<u8>,
}

/// Converts a function's proxy response (`statusCode`, `headers`, `multiValueHeaders`,
/// `body`, `isBase64Encoded`) to HTTP. Headers from both maps are merged as API Gateway
/// does (a name/value pair present in both appears once). Anything malformed is an error,
/// which API Gateway answers with 502.
pub fn proxy_response_to_http(response: &Value) -> Result<HttpReply, String> {
    let object = response
        .as_object()
        .ok_or("the proxy response is not a JSON object")?;
    let status = object
        .get("statusCode")
        .and_then(|code| {
            code.as_u64()
                .or_else(|| code.as_str().and_then(|text| text.parse().ok()))
        })
        .and_then(|code| u16::try_from(code).ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or("the proxy response has no valid statusCode")?;
    let mut headers = HeaderMap::new();
    let mut add_header = |name: &str, value: &Value| -> Result<(), String> {
        let text = match value {
            Value::String(text) => text.clone(),
            Value::Null => return Ok(()),
            other => other.to_string(),
        };
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name {name:?}"))?;
        let value =
            HeaderValue::from_str(&text).map_err(|_| format!("invalid value for header {name}"))?;
        if !headers
            .get_all(&name)
            .iter()
            .any(|existing| *existing == value)
        {
            headers.append(name, value);
        }
        Ok(())
    };
    if let Some(multi) = object.get("multiValueHeaders").and_then(Value::as_object) {
        for (name, values) in multi {
            match values {
                Value::Array(values) => values
                    .iter()
                    .try_for_each(|value| add_header(name, value))?,
                single => add_header(name, single)?,
            }
        }
    }
    if let Some(single) = object.get("headers").and_then(Value::as_object) {
        for (name, value) in single {
            add_header(name, value)?;
        }
    }
    let is_base64_encoded = object
        .get("isBase64Encoded")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let body = match object.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) if is_base64_encoded => BASE64
            .decode(text)
            .map_err(|error| format!("the base64 body does not decode: {error}"))?,
        Some(Value::String(text)) => text.clone().into_bytes(),
        Some(_) => return Err("the proxy response body is not a string".to_string()),
    };
    Ok(HttpReply {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::{match_route, ROUTES};
    use aws_lambda_events::apigw::ApiGatewayProxyRequest;

    fn event_for(
        method: Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Value {
        let route = match_route(ROUTES, path).expect("test path matches a route");
        let request = IncomingRequest {
            method: &method,
            path,
            query,
            headers,
            body,
            source_ip: "127.0.0.1",
            request_id: "req-1",
        };
        proxy_event(&request, &route)
    }

    #[test]
    fn event_has_the_rest_proxy_shape_and_parses_as_api_gateway_request() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.append("x-tag", HeaderValue::from_static("a"));
        headers.append("x-tag", HeaderValue::from_static("b"));
        let event = event_for(
            Method::POST,
            "/api/v1/jobs/j1/results/2",
            Some("organization_id=org%201&tag=a&tag=b&flag"),
            &headers,
            br#"{"text":"hi"}"#,
        );
        assert_eq!(event["resource"], "/api/v1/jobs/{id}/{proxy+}");
        assert_eq!(event["path"], "/api/v1/jobs/j1/results/2");
        assert_eq!(event["httpMethod"], "POST");
        assert_eq!(
            event["pathParameters"],
            json!({"id": "j1", "proxy": "results/2"})
        );
        assert_eq!(
            event["queryStringParameters"],
            json!({"organization_id": "org 1", "tag": "b", "flag": ""})
        );
        assert_eq!(
            event["multiValueQueryStringParameters"],
            json!({"organization_id": ["org 1"], "tag": ["a", "b"], "flag": [""]})
        );
        assert_eq!(event["headers"]["x-tag"], "b");
        assert_eq!(event["multiValueHeaders"]["x-tag"], json!(["a", "b"]));
        assert_eq!(event["requestContext"]["stage"], "local");
        assert_eq!(event["requestContext"]["requestId"], "req-1");
        assert_eq!(
            event["requestContext"]["resourcePath"],
            "/api/v1/jobs/{id}/{proxy+}"
        );
        assert_eq!(event["requestContext"]["httpMethod"], "POST");
        assert_eq!(event["requestContext"]["identity"]["sourceIp"], "127.0.0.1");
        assert_eq!(event["isBase64Encoded"], true);
        let body = BASE64.decode(event["body"].as_str().unwrap()).unwrap();
        assert_eq!(body, br#"{"text":"hi"}"#);

        let parsed: ApiGatewayProxyRequest =
            serde_json::from_value(event).expect("lambda_http can read the event");
        assert_eq!(parsed.http_method, Method::POST);
        assert_eq!(
            parsed.path_parameters.get("id").map(String::as_str),
            Some("j1")
        );
        assert_eq!(
            parsed.multi_value_query_string_parameters.all("tag"),
            Some(vec!["a", "b"])
        );
        assert_eq!(
            parsed.query_string_parameters.first("organization_id"),
            Some("org 1")
        );
        assert_eq!(
            parsed.request_context.identity.source_ip.as_deref(),
            Some("127.0.0.1")
        );
    }

    #[test]
    fn lambda_http_reads_the_event_like_the_handlers_do() {
        use lambda_http::{Body, RequestExt};
        let event = event_for(
            Method::GET,
            "/api/v1/services/7d0c8a4e-1b2c-4d3e-8f90-123456789abc/validate-execution",
            Some("organization_id=org-1&page_size=5"),
            &HeaderMap::new(),
            b"\xff\x00",
        );
        let request = lambda_http::request::from_str(&event.to_string())
            .expect("lambda_http parses the event");
        assert_eq!(request.method(), Method::GET);
        // lambda_http puts the stage in front of the path, as it does on AWS.
        assert_eq!(
            request.uri().path(),
            "/local/api/v1/services/7d0c8a4e-1b2c-4d3e-8f90-123456789abc/validate-execution"
        );
        assert_eq!(
            request
                .path_parameters_ref()
                .and_then(|params| params.first("id")),
            Some("7d0c8a4e-1b2c-4d3e-8f90-123456789abc")
        );
        assert_eq!(
            request.query_string_parameters().first("organization_id"),
            Some("org-1")
        );
        assert_eq!(
            request.query_string_parameters().first("page_size"),
            Some("5")
        );
        assert!(matches!(request.body(), Body::Binary(bytes) if bytes == &[0xff, 0x00]));
    }

    #[test]
    fn empty_parts_are_null_like_api_gateway_sends_them() {
        let event = event_for(Method::GET, "/api/v1/jobs", None, &HeaderMap::new(), b"");
        assert_eq!(event["pathParameters"], Value::Null);
        assert_eq!(event["queryStringParameters"], Value::Null);
        assert_eq!(event["multiValueQueryStringParameters"], Value::Null);
        assert_eq!(event["body"], Value::Null);
        assert_eq!(event["isBase64Encoded"], false);
        let parsed: ApiGatewayProxyRequest =
            serde_json::from_value(event).expect("lambda_http can read the event");
        assert!(parsed.path_parameters.is_empty());
        assert!(parsed.body.is_none());
    }

    #[test]
    fn non_utf8_body_is_sent_base64() {
        let bytes = [0xff, 0xfe, 0x00, 0x41];
        let event = event_for(
            Method::POST,
            "/api/v1/services/s1/execute",
            None,
            &HeaderMap::new(),
            &bytes,
        );
        assert_eq!(event["isBase64Encoded"], true);
        let sent = event["body"].as_str().expect("body is a string");
        assert_eq!(BASE64.decode(sent).expect("valid base64"), bytes);
    }

    #[test]
    fn response_headers_are_merged_and_body_decoded() {
        let reply = proxy_response_to_http(&json!({
            "statusCode": 202,
            "headers": {"content-type": "application/json", "x-one": "1"},
            "multiValueHeaders": {"content-type": ["application/json"], "set-cookie": ["a=1", "b=2"]},
            "body": "{\"ok\":true}",
            "isBase64Encoded": false,
        }))
        .expect("valid response");
        assert_eq!(reply.status, StatusCode::ACCEPTED);
        assert_eq!(reply.headers.get_all("content-type").iter().count(), 1);
        assert_eq!(reply.headers.get_all("set-cookie").iter().count(), 2);
        assert_eq!(
            reply.headers.get("x-one").map(HeaderValue::as_bytes),
            Some(&b"1"[..])
        );
        assert_eq!(reply.body, br#"{"ok":true}"#);

        let binary = proxy_response_to_http(
            &json!({"statusCode": 200, "body": "AAEC", "isBase64Encoded": true}),
        )
        .expect("valid response");
        assert_eq!(binary.body, vec![0, 1, 2]);
        let empty = proxy_response_to_http(&json!({"statusCode": 204})).expect("valid response");
        assert!(empty.body.is_empty() && empty.headers.is_empty());
    }

    #[test]
    fn malformed_responses_are_errors() {
        for response in [
            json!("text"),
            json!({"body": "x"}),
            json!({"statusCode": 99}),
            json!({"statusCode": 200, "body": {"not": "a string"}}),
            json!({"statusCode": 200, "body": "***", "isBase64Encoded": true}),
            json!({"statusCode": 200, "headers": {"bad name": "x"}}),
            json!({"errorMessage": "boom", "errorType": "Panic"}),
        ] {
            assert!(proxy_response_to_http(&response).is_err(), "{response}");
        }
    }
}
