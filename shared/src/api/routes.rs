//! One route table per function: each [`Route`] carries its method, path template, the
//! documentation the OpenAPI document is built from, and its handler. The same table
//! routes requests ([`RouteTable::handle`]) and documents them ([`super::openapi`]).

use futures_util::future::BoxFuture;

use super::request::ApiRequest;
use crate::engine::error::{EngineError, EngineResult};
use crate::engine::{Gateway, JsonResponse};

/// A route's handler: the request (with its path parameters) to a JSON response.
pub type Handler =
    for<'a> fn(&'a Gateway, &'a ApiRequest) -> BoxFuture<'a, EngineResult<JsonResponse>>;

/// HTTP methods the API uses. `PUT` is accepted wherever `PATCH` is (as the reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Patch,
    Delete,
}

impl Method {
    /// The upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    /// Whether a request method is served by a route of this method.
    fn accepts(self, method: &str) -> bool {
        method.eq_ignore_ascii_case(self.as_str())
            || (self == Method::Patch && method.eq_ignore_ascii_case("PUT"))
    }
}

/// How a route is documented in the OpenAPI document.
#[derive(Debug, Clone, Copy)]
pub struct RouteDoc {
    pub summary: &'static str,
    /// Schema of the JSON body, if any (a component name, or `object`).
    pub request: Option<&'static str>,
    /// Success status and its body: `Name`, `page:Name`, `array:Name`, `object`, `file`
    /// (a document as an attachment, or JSON with its URL) or `""`.
    pub status: u16,
    pub response: &'static str,
}

/// One operation of the API.
#[derive(Clone, Copy)]
pub struct Route {
    pub method: Method,
    /// Path template, `{name}` for a parameter.
    pub path: &'static str,
    pub doc: RouteDoc,
    pub handler: Handler,
}

/// A [`Route`] in one line: `route!(Get "/path", "summary", request, status => "response",
/// |gateway, request| body)`, where the body is an async block's contents returning
/// `EngineResult<JsonResponse>`.
macro_rules! route {
    ($method:ident $path:literal, $summary:literal, $request:expr, $status:literal => $response:literal,
     |$gateway:ident, $req:ident| $body:expr) => {
        $crate::api::routes::Route {
            method: $crate::api::routes::Method::$method,
            path: $path,
            doc: $crate::api::routes::RouteDoc {
                summary: $summary,
                request: $request,
                status: $status,
                response: $response,
            },
            handler: |$gateway, $req| futures_util::FutureExt::boxed(async move { $body }),
        }
    };
}
pub(crate) use route;

/// A matched route and its path parameters.
pub type RouteMatch = (&'static Route, Vec<(&'static str, String)>);

/// The routes one function serves.
pub struct RouteTable {
    /// The function (binary) name, also the OpenAPI tag.
    pub function: &'static str,
    pub routes: &'static [Route],
}

impl RouteTable {
    /// Routes and runs one request: 404 for a path no route has, 405 for a method the
    /// path's route does not serve, 415 for a body in a media type the route does not read. The most specific template wins (a literal segment
    /// beats a parameter), as in API Gateway.
    pub async fn handle(&self, gateway: &Gateway, mut request: ApiRequest) -> JsonResponse {
        if let Err(error) = request.check_body_size() {
            return JsonResponse::from(error);
        }
        let found = self.find(&request.method, &request.segments);
        match found {
            Ok((route, params)) => {
                // A route that reads a body reads JSON (or, on a form route, a form).
                if route.doc.request.is_some() {
                    if let Err(error) = request.check_media_type(route.path) {
                        return JsonResponse::from(error);
                    }
                }
                request.params = params;
                tracing::debug!(method = route.method.as_str(), path = route.path, "route");
                (route.handler)(gateway, &request).await.into()
            }
            Err(error) => JsonResponse::from(error),
        }
    }

    /// The route for a method and path, with the path parameters.
    pub fn find(&self, method: &str, segments: &[String]) -> Result<RouteMatch, EngineError> {
        let mut best: Option<(Vec<bool>, &'static str)> = None;
        for route in self.routes {
            if let Some(shape) = template_shape(route.path, segments) {
                if best.as_ref().is_none_or(|(current, _)| shape > *current) {
                    best = Some((shape, route.path));
                }
            }
        }
        let Some((_, path)) = best else {
            return Err(EngineError::NoRoute(format!("/{}", segments.join("/"))));
        };
        let route = self
            .routes
            .iter()
            .find(|route| route.path == path && route.method.accepts(method))
            .ok_or_else(|| EngineError::MethodNotAllowed(method.to_string()))?;
        Ok((route, path_parameters(route.path, segments)))
    }
}

/// Per segment, whether the template has a literal there (`None` when it does not
/// match). Compared lexicographically, a literal earlier in the path wins.
fn template_shape(template: &str, segments: &[String]) -> Option<Vec<bool>> {
    let parts: Vec<&str> = template_segments(template).collect();
    if parts.len() != segments.len() {
        return None;
    }
    parts
        .iter()
        .zip(segments)
        .map(|(part, segment)| match parameter_name(part) {
            Some(_) => (!segment.is_empty()).then_some(false),
            None => (part == segment).then_some(true),
        })
        .collect()
}

fn path_parameters(template: &'static str, segments: &[String]) -> Vec<(&'static str, String)> {
    template_segments(template)
        .zip(segments)
        .filter_map(|(part, segment)| parameter_name(part).map(|name| (name, segment.clone())))
        .collect()
}

/// The segments of a path template (`/a/{b}` → `a`, `{b}`).
pub fn template_segments(template: &str) -> impl Iterator<Item = &str> {
    template.trim_start_matches('/').split('/')
}

/// The name of a `{name}` (or `{name+}`) template segment.
pub fn parameter_name(segment: &str) -> Option<&str> {
    segment
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .map(|name| name.trim_end_matches('+'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::request::split_path;

    fn ok<'a>(_: &'a Gateway, _: &'a ApiRequest) -> BoxFuture<'a, EngineResult<JsonResponse>> {
        Box::pin(async { Ok(JsonResponse::new(200, serde_json::Value::Null)) })
    }

    const DOC: RouteDoc = RouteDoc {
        summary: "",
        request: None,
        status: 200,
        response: "object",
    };

    static ROUTES: &[Route] = &[
        Route {
            method: Method::Get,
            path: "/flavors/{flavor_id}",
            doc: DOC,
            handler: ok,
        },
        Route {
            method: Method::Patch,
            path: "/flavors/{flavor_id}",
            doc: DOC,
            handler: ok,
        },
        Route {
            method: Method::Post,
            path: "/flavors/validate-prompt",
            doc: DOC,
            handler: ok,
        },
        Route {
            method: Method::Post,
            path: "/flavors/{flavor_id}/set-default",
            doc: DOC,
            handler: ok,
        },
    ];
    static TABLE: RouteTable = RouteTable {
        function: "test",
        routes: ROUTES,
    };

    type Found = (&'static str, Vec<(&'static str, String)>);

    fn find(method: &str, path: &str) -> Result<Found, String> {
        TABLE
            .find(method, &split_path(path))
            .map(|(route, params)| (route.path, params))
            .map_err(|error| error.code().to_string())
    }

    #[test]
    fn literal_segments_win_and_parameters_are_named() {
        assert_eq!(
            find("POST", "/flavors/validate-prompt"),
            Ok(("/flavors/validate-prompt", vec![]))
        );
        assert_eq!(
            find("GET", "/flavors/f%201"),
            Ok((
                "/flavors/{flavor_id}",
                vec![("flavor_id", "f 1".to_string())]
            ))
        );
        assert_eq!(
            find("PUT", "/flavors/f1"),
            Ok((
                "/flavors/{flavor_id}",
                vec![("flavor_id", "f1".to_string())]
            ))
        );
        assert_eq!(
            find("POST", "/flavors/f1/set-default/"),
            Ok((
                "/flavors/{flavor_id}/set-default",
                vec![("flavor_id", "f1".to_string())]
            ))
        );
    }

    #[test]
    fn unknown_paths_are_404_and_other_methods_405() {
        assert_eq!(
            find("GET", "/flavors/validate-prompt"),
            Err("METHOD_NOT_ALLOWED".into())
        );
        assert_eq!(
            find("DELETE", "/flavors/f1/set-default"),
            Err("METHOD_NOT_ALLOWED".into())
        );
        for path in [
            "/flavors/f1/unknown",
            "/flavors//set-default",
            "/other",
            "/",
        ] {
            assert_eq!(find("GET", path), Err("NOT_FOUND".into()), "{path}");
        }
    }
}
