//! The REST client: base URL, organization, deadline, and the mapping of transport and
//! HTTP failures to [`CliError`]s.

use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder, Response, Url};
use serde_json::Value;

use crate::error::{ApiError, CliError, CliResult};

/// Per-request bound when no `--timeout` is given (API Gateway itself stops at 29 s;
/// downloads of large exports may take longer).
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// Bound on opening a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// When the command must be done by (`--timeout`), if ever.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// `secs` from now, or never.
    pub fn after(secs: Option<u64>) -> Deadline {
        Deadline(secs.map(|secs| Instant::now() + Duration::from_secs(secs)))
    }

    /// Time left; `None` when there is no deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.0
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Whether the deadline has passed.
    pub fn passed(&self) -> bool {
        self.remaining().is_some_and(|left| left.is_zero())
    }
}

/// A file answered by the API (an export).
#[derive(Debug)]
pub struct Download {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// The file name of `Content-Disposition`, if any (not yet sanitised).
    pub file_name: Option<String>,
}

/// The gateway's REST API for one organization.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    org: Option<String>,
    deadline: Deadline,
}

impl ApiClient {
    /// A client of the API at `endpoint` acting for `org`.
    pub fn new(endpoint: &str, org: Option<String>, deadline: Deadline) -> CliResult<ApiClient> {
        let base = endpoint.trim_end_matches('/').to_string();
        let parsed = Url::parse(&base)
            .map_err(|e| CliError::Usage(format!("--endpoint {endpoint:?} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(CliError::Usage(format!(
                "--endpoint {endpoint:?} must be an http:// or https:// URL"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("llmgw/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Usage(format!("cannot build the HTTP client: {e}")))?;
        Ok(ApiClient {
            http,
            base,
            org: org.filter(|org| !org.is_empty()),
            deadline,
        })
    }

    /// The organization requests act for.
    pub fn org(&self) -> Option<&str> {
        self.org.as_deref()
    }

    /// The command's deadline.
    pub fn deadline(&self) -> Deadline {
        self.deadline
    }

    /// `{base}{path}?organization_id=ORG&query...` (empty query values are left out).
    pub fn url(&self, path: &str, query: &[(&str, String)]) -> CliResult<Url> {
        let mut url = Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| CliError::Usage(format!("bad URL for {path}: {e}")))?;
        {
            let mut pairs = url.query_pairs_mut();
            if let Some(org) = &self.org {
                pairs.append_pair("organization_id", org);
            }
            for (name, value) in query.iter().filter(|(_, value)| !value.is_empty()) {
                pairs.append_pair(name, value);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        Ok(url)
    }

    /// A request with the deadline applied.
    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let timeout = self
            .deadline
            .remaining()
            .map_or(DEFAULT_REQUEST_TIMEOUT, |left| {
                left.max(Duration::from_millis(1))
            });
        self.http.request(method, url).timeout(timeout)
    }

    /// Sends, mapping transport failures; an error status becomes [`CliError::Api`].
    async fn send(&self, builder: RequestBuilder, url: &Url) -> CliResult<Response> {
        let response = builder.send().await.map_err(|e| transport_error(url, &e))?;
        let status = response.status();
        if status.is_client_error() || status.is_server_error() {
            let body = response
                .bytes()
                .await
                .map_err(|e| transport_error(url, &e))?;
            return Err(CliError::Api(ApiError::from_body(status.as_u16(), &body)));
        }
        Ok(response)
    }

    /// Calls the API and reads a JSON answer.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> CliResult<Value> {
        let url = self.url(path, query)?;
        let mut builder = self.request(method, url.clone());
        if let Some(body) = body {
            builder = builder.json(body);
        }
        let response = self.send(builder, &url).await?;
        read_json(response, &url).await
    }

    /// `GET path` as JSON.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> CliResult<Value> {
        self.json(Method::GET, path, query, None).await
    }

    /// `GET path`: a JSON answer, or a file.
    pub async fn get_file_or_json(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> CliResult<Result<Value, Download>> {
        let url = self.url(path, query)?;
        let response = self
            .send(self.request(Method::GET, url.clone()), &url)
            .await?;
        let content_type = header(&response, reqwest::header::CONTENT_TYPE);
        if content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("application/json"))
        {
            return read_json(response, &url).await.map(Ok);
        }
        let file_name = header(&response, reqwest::header::CONTENT_DISPOSITION)
            .and_then(|value| crate::files::disposition_file_name(&value));
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error(&url, &e))?;
        Ok(Err(Download {
            bytes: bytes.to_vec(),
            file_name,
        }))
    }

    /// PUTs `bytes` to an absolute URL the API handed out (an upload).
    pub async fn put(&self, location: &str, bytes: Vec<u8>) -> CliResult<()> {
        let url = Url::parse(location)
            .map_err(|e| CliError::Protocol(format!("bad upload URL {location:?}: {e}")))?;
        self.send(self.request(Method::PUT, url.clone()).body(bytes), &url)
            .await?;
        Ok(())
    }

    /// Downloads an absolute URL the API handed out (a presigned result or export), or a
    /// path relative to the API.
    pub async fn download(&self, location: &str) -> CliResult<Vec<u8>> {
        let url = match Url::parse(location) {
            Ok(url) => url,
            Err(_) => Url::parse(&format!("{}{location}", self.base))
                .map_err(|e| CliError::Protocol(format!("bad download URL {location:?}: {e}")))?,
        };
        let response = self
            .send(self.request(Method::GET, url.clone()), &url)
            .await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport_error(&url, &e))?;
        Ok(bytes.to_vec())
    }
}

fn header(response: &Response, name: reqwest::header::HeaderName) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
}

async fn read_json(response: Response, url: &Url) -> CliResult<Value> {
    let bytes = response
        .bytes()
        .await
        .map_err(|e| transport_error(url, &e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        CliError::Protocol(format!(
            "{} answered something that is not JSON ({e})",
            without_query(url)
        ))
    })
}

/// The URL without its query, for messages.
fn without_query(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.to_string()
}

/// A transport failure: a timeout, or the gateway unreachable.
fn transport_error(url: &Url, error: &reqwest::Error) -> CliError {
    if error.is_timeout() {
        return CliError::Timeout {
            what: format!("waiting for {}", without_query(url)),
        };
    }
    CliError::Unreachable {
        url: without_query(url),
        reason: root_cause(error),
    }
}

/// The innermost cause of an error chain (e.g. "Connection refused (os error 111)").
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_the_organization_and_non_empty_query_values() {
        let client =
            ApiClient::new("http://h:1/", Some("acme".into()), Deadline::after(None)).unwrap();
        let url = client
            .url(
                "/api/v1/jobs",
                &[("status", "failed".into()), ("cursor", String::new())],
            )
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://h:1/api/v1/jobs?organization_id=acme&status=failed"
        );
        let operator = ApiClient::new("http://h:1", None, Deadline::after(None)).unwrap();
        assert_eq!(
            operator.url("/api/v1/jobs/x", &[]).unwrap().as_str(),
            "http://h:1/api/v1/jobs/x"
        );
        // Values are encoded.
        let client =
            ApiClient::new("http://h:1", Some("a b&c".into()), Deadline::after(None)).unwrap();
        assert_eq!(
            client.url("/p", &[]).unwrap().query(),
            Some("organization_id=a+b%26c")
        );
    }

    #[test]
    fn endpoints_must_be_http_urls() {
        for bad in ["127.0.0.1:8080", "ftp://h", ""] {
            let error = ApiClient::new(bad, None, Deadline::after(None)).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{bad}");
        }
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable_with_the_url() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let client = ApiClient::new(
            &format!("http://127.0.0.1:{port}"),
            Some("o".into()),
            Deadline::after(None),
        )
        .unwrap();
        let error = client.get("/api/v1/services", &[]).await.unwrap_err();
        assert_eq!(error.exit_code(), 4);
        let message = error.to_string();
        assert!(
            message.starts_with(&format!(
                "cannot reach the gateway at http://127.0.0.1:{port}/api/v1/services: "
            )),
            "{message}"
        );
    }
}
