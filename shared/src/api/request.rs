//! A REST request as the route handlers see it: method, decoded path segments and
//! parameters, query, content type and body. Built from any `http::Request` whose body is
//! bytes, so the Lambda functions and tests share one decoding; the body is kept as the
//! runtime delivered it (an execute input of megabytes is never copied).

use uuid::Uuid;

use crate::engine::catalog::validate::validate_organization_id;
use crate::engine::catalog::{PageRequest, Scope};
use crate::engine::error::{BodyProblem, EngineError, EngineResult, Location, Resource};
use crate::engine::MAX_REQUEST_BODY_BYTES;

/// Routes that also read a form body (`application/x-www-form-urlencoded` or
/// `multipart/form-data`) besides JSON.
pub const FORM_ROUTES: &[&str] = &[
    "/api/v1/flavor-presets/{id}/apply",
    "/api/v1/document-templates",
    "/api/v1/document-templates/{id}",
    "/api/v1/services/{id}/run",
];

/// A request body as delivered (for Lambda, `lambda_http::Body`).
type Body = Box<dyn AsRef<[u8]> + Send + Sync>;

/// One REST request.
pub struct ApiRequest {
    /// Upper-case HTTP method.
    pub method: String,
    /// The path's segments, percent-decoded (no stage prefix).
    pub segments: Vec<String>,
    /// Path parameters, set by the router from the route's template.
    pub params: Vec<(&'static str, String)>,
    /// Query parameters, decoded, in order.
    pub query: Vec<(String, String)>,
    pub content_type: Option<String>,
    body: Body,
}

impl std::fmt::Debug for ApiRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiRequest")
            .field("method", &self.method)
            .field("segments", &self.segments)
            .field("params", &self.params)
            .field("query", &self.query)
            .field("content_type", &self.content_type)
            .field("body_bytes", &self.body().len())
            .finish()
    }
}

impl ApiRequest {
    /// The request at `path` (the URL path without any API Gateway stage prefix).
    pub fn from_http<B>(path: &str, request: http::Request<B>) -> Self
    where
        B: AsRef<[u8]> + Send + Sync + 'static,
    {
        let (parts, body) = request.into_parts();
        let query = parts
            .uri
            .query()
            .map(|query| {
                form_urlencoded::parse(query.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        ApiRequest {
            method: parts.method.as_str().to_ascii_uppercase(),
            segments: split_path(path),
            params: Vec::new(),
            query,
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .map(str::to_string),
            body: Box::new(body),
        }
    }

    /// The body's bytes.
    pub fn body(&self) -> &[u8] {
        (*self.body).as_ref()
    }

    /// The first value of a query parameter.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// A path parameter (empty when the route has none of that name).
    pub fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(key, _)| *key == name)
            .map_or("", |(_, value)| value.as_str())
    }

    /// A path parameter that must be the UUID of `what` (404 otherwise, as an unknown id).
    pub fn id(&self, name: &str, what: Resource) -> EngineResult<Uuid> {
        let raw = self.param(name);
        Uuid::parse_str(raw).map_err(|_| EngineError::not_found(what, raw))
    }

    /// The validated `organization_id` query parameter.
    pub fn organization_id(&self) -> EngineResult<Option<&str>> {
        let organization_id = self.query("organization_id");
        if let Some(organization_id) = organization_id {
            validate_organization_id(organization_id)
                .map_err(|problem| EngineError::invalid_field("organization_id", problem))?;
        }
        Ok(organization_id)
    }

    /// The catalog scope of the caller (`organization_id`, or the operator).
    pub fn scope(&self) -> EngineResult<Scope> {
        Ok(Scope::new(self.organization_id()?))
    }

    /// The `page` / `page_size` of a catalog listing.
    pub fn page(&self, default_size: usize) -> EngineResult<PageRequest> {
        PageRequest::parse(self.query("page"), self.query("page_size"), default_size)
    }

    /// A boolean query parameter (`true`/`false`; 422 otherwise).
    pub fn flag(&self, name: &str) -> EngineResult<Option<bool>> {
        match self.query(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(EngineError::validation(
                Location::Query,
                name,
                "must be true or false",
            )),
        }
    }

    /// 413 naming `body` when it is over [`MAX_REQUEST_BODY_BYTES`] (the largest body
    /// whose base64-encoded API Gateway event fits Lambda's payload).
    pub fn check_body_size(&self) -> EngineResult<()> {
        let size = self.body().len();
        if size <= MAX_REQUEST_BODY_BYTES {
            return Ok(());
        }
        Err(EngineError::InvalidBody(BodyProblem::TooLarge {
            field: "body",
            size,
            limit: MAX_REQUEST_BODY_BYTES,
        }))
    }

    /// An integer query parameter within `range` (`default` when absent; 422 naming it
    /// otherwise).
    pub fn number(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<usize>,
        default: usize,
    ) -> EngineResult<usize> {
        let Some(raw) = self.query(name) else {
            return Ok(default);
        };
        raw.parse::<usize>()
            .ok()
            .filter(|value| range.contains(value))
            .ok_or_else(|| {
                EngineError::validation(
                    Location::Query,
                    name,
                    format!(
                        "must be an integer from {} to {}",
                        range.start(),
                        range.end()
                    ),
                )
            })
    }

    /// The declared media type of the body (`Content-Type` without parameters, lower
    /// case), if there is a non-blank one.
    pub fn media_type(&self) -> Option<String> {
        let declared = self.content_type.as_deref()?;
        let media_type = declared.split(';').next().unwrap_or("").trim();
        (!media_type.is_empty()).then(|| media_type.to_ascii_lowercase())
    }

    /// 415 `UNSUPPORTED_MEDIA_TYPE` naming the header unless the body's declared media type
    /// is one the route at `template` reads: JSON (`application/json`, any `+json`) or, on
    /// [`FORM_ROUTES`], a form. Without a `Content-Type` the body is read as JSON.
    pub fn check_media_type(&self, template: &str) -> EngineResult<()> {
        let Some(media_type) = self.media_type() else {
            return Ok(());
        };
        let json = media_type == "application/json" || media_type.ends_with("+json");
        let form = matches!(
            media_type.as_str(),
            "application/x-www-form-urlencoded" | "multipart/form-data"
        );
        if json || (form && FORM_ROUTES.contains(&template)) {
            return Ok(());
        }
        Err(EngineError::UnsupportedMediaType(
            self.content_type.clone().unwrap_or_default(),
        ))
    }

    /// Whether the body is a form (`application/x-www-form-urlencoded`).
    pub fn is_form(&self) -> bool {
        self.content_type
            .as_deref()
            .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"))
    }
}

/// Splits a URL path into percent-decoded segments; a single trailing slash is ignored.
/// Invalid escapes are kept as written, invalid UTF-8 is replaced, and `+` stays `+`, as
/// API Gateway leaves it in paths.
pub fn split_path(path: &str) -> Vec<String> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    trimmed
        .split('/')
        .map(|segment| {
            percent_encoding::percent_decode_str(segment)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_decoded_segments() {
        assert_eq!(split_path("/api/v1/jobs/"), ["api", "v1", "jobs"]);
        assert_eq!(split_path("/a%20b%2Fc/x"), ["a b/c", "x"]);
        assert_eq!(split_path("/100%"), ["100%"]);
        assert_eq!(split_path("/%zz+%41"), ["%zz+A"]);
    }

    #[test]
    fn requests_keep_query_content_type_and_body() {
        let http = http::Request::builder()
            .method("post")
            .uri("https://x/v1/api/v1/models?provider_id=a%20b&page=2&page=3")
            .header("content-type", "application/json")
            .body(b"{}".to_vec())
            .unwrap();
        let request = ApiRequest::from_http("/api/v1/models", http);
        assert_eq!(request.method, "POST");
        assert_eq!(request.segments, ["api", "v1", "models"]);
        assert_eq!(request.query("provider_id"), Some("a b"));
        assert_eq!(request.query("page"), Some("2"));
        assert_eq!(request.content_type.as_deref(), Some("application/json"));
        assert_eq!(request.body(), b"{}");
        assert!(!request.is_form());
    }

    fn with_content_type(content_type: Option<&str>) -> ApiRequest {
        let mut http = http::Request::builder().method("POST").uri("/x");
        if let Some(content_type) = content_type {
            http = http.header("content-type", content_type);
        }
        ApiRequest::from_http("/x", http.body(b"{}".to_vec()).unwrap())
    }

    #[test]
    fn json_routes_refuse_other_media_types_with_415_naming_the_header() {
        let json_route = "/api/v1/services/{id}/execute";
        let form_route = FORM_ROUTES[0];
        for accepted in [
            None,
            Some(""),
            Some("application/json"),
            Some("Application/JSON; charset=utf-8"),
            Some("application/merge-patch+json"),
        ] {
            assert!(
                with_content_type(accepted)
                    .check_media_type(json_route)
                    .is_ok(),
                "{accepted:?}"
            );
        }
        for refused in [
            "text/plain",
            "application/xml",
            "text/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            let error = with_content_type(Some(refused))
                .check_media_type(json_route)
                .unwrap_err();
            assert_eq!(
                (error.status(), error.code(), error.field()),
                (415, "UNSUPPORTED_MEDIA_TYPE", Some("content-type")),
                "{refused}"
            );
            assert!(error.to_string().contains(refused), "{error}");
        }
        for form in [
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded; charset=utf-8",
            "multipart/form-data; boundary=x",
            "application/json",
        ] {
            assert!(
                with_content_type(Some(form))
                    .check_media_type(form_route)
                    .is_ok(),
                "{form}"
            );
        }
        assert_eq!(
            with_content_type(Some("text/plain"))
                .check_media_type(form_route)
                .unwrap_err()
                .status(),
            415
        );
    }
}
