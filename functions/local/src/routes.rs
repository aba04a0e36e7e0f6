//! The REST API's resource table and API Gateway style path matching.

use std::collections::BTreeMap;

/// One API Gateway resource: a path template and the function that serves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Resource template as API Gateway writes it, e.g. `/api/v1/jobs/{id}/{proxy+}`.
    pub resource: &'static str,
    /// Lambda function (binary) name invoked for this resource.
    pub function: &'static str,
}

/// The gateway's REST resources (method-agnostic: each handler checks the method itself).
pub const ROUTES: &[Route] = &[
    Route {
        resource: "/api/v1/services/{id}/execute",
        function: "execute",
    },
    Route {
        resource: "/api/v1/services/{id}/validate-execution",
        function: "execute",
    },
    Route {
        resource: "/api/v1/uploads",
        function: "execute",
    },
    Route {
        resource: "/api/v1/services/{id}/run",
        function: "execute",
    },
    Route {
        resource: "/healthcheck",
        function: "jobs",
    },
    Route {
        resource: "/api/v1/jobs",
        function: "jobs",
    },
    Route {
        resource: "/api/v1/jobs/{id}",
        function: "jobs",
    },
    // Before the jobs function's greedy resource: API Gateway prefers the specific one.
    Route {
        resource: "/api/v1/jobs/{id}/export/{format}",
        function: "export",
    },
    Route {
        resource: "/api/v1/jobs/{id}/export-preview",
        function: "export",
    },
    Route {
        resource: "/api/v1/jobs/{id}/{proxy+}",
        function: "jobs",
    },
    Route {
        resource: "/api/v1/document-templates",
        function: "export",
    },
    Route {
        resource: "/api/v1/document-templates/{id}",
        function: "export",
    },
    Route {
        resource: "/api/v1/document-templates/{id}/{proxy+}",
        function: "export",
    },
    // Static segments before their variable siblings: the first match wins.
    Route {
        resource: "/api/v1/providers",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/providers/{id}",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/providers/{id}/models",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/providers/{id}/discover-models",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/providers/{id}/models/verify",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/models",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/models/{id}",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/models/{id}/limits",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/models/{id}/verify",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/prompts",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/prompts/templates",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/prompts/{id}",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/prompts/{id}/duplicate",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/prompts/{id}/save-as-template",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/prompt-types",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/prompt-types/{id}",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/service-types",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/service-types/{id}",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/service-types/config/{code}",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/flavor-presets",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/flavor-presets/{id}",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/flavor-presets/{id}/apply",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/services",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/services/{id}",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/services/{id}/flavors",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/services/{id}/stats",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/services/{id}/flavor-stats",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/services/{id}/flavors/{flavor_id}",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/services/{id}/flavors/{flavor_id}/{action}",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/flavors/validate-prompt",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/flavors/{flavor_id}",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/flavors/{flavor_id}/{action}",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/tokenizers",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/tokenizers/preload/{model_id}",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/tokenizers/{id}",
        function: "catalog",
    },
    Route {
        resource: "/api/v1/analytics/dashboard",
        function: "catalog",
    },
    Route {
        resource: "/openapi.json",
        function: "catalog",
    },
    // Answered as a stream (the function's response streaming, passed on as it arrives).
    Route {
        resource: "/api/v1/chat/completions",
        function: "chat",
    },
];

/// A request path matched to a route, with its path parameters (percent-decoded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteMatch {
    /// The matched route.
    pub route: Route,
    /// Values of the template's `{name}` / `{name+}` segments.
    pub path_parameters: BTreeMap<String, String>,
}

/// Finds the first route in `routes` whose template matches `path` (the raw URL path,
/// without query string). A single trailing slash is ignored; empty segments never match
/// a parameter.
pub fn match_route(routes: &[Route], path: &str) -> Option<RouteMatch> {
    let trimmed = path
        .strip_suffix('/')
        .filter(|rest| !rest.is_empty())
        .unwrap_or(path);
    let segments: Vec<&str> = trimmed.strip_prefix('/')?.split('/').collect();
    routes.iter().find_map(|route| {
        match_template(route.resource, &segments).map(|path_parameters| RouteMatch {
            route: *route,
            path_parameters,
        })
    })
}

fn match_template(template: &str, segments: &[&str]) -> Option<BTreeMap<String, String>> {
    let template_segments: Vec<&str> = template.trim_start_matches('/').split('/').collect();
    let mut parameters = BTreeMap::new();
    for (index, template_segment) in template_segments.iter().enumerate() {
        let parameter = template_segment
            .strip_prefix('{')
            .and_then(|rest| rest.strip_suffix('}'));
        match parameter {
            Some(greedy) if greedy.ends_with('+') => {
                let rest = segments.get(index..).filter(|rest| !rest.is_empty())?;
                if rest.iter().any(|segment| segment.is_empty()) {
                    return None;
                }
                let name = greedy.trim_end_matches('+');
                parameters.insert(name.to_string(), percent_decode(&rest.join("/")));
                return Some(parameters);
            }
            Some(name) => {
                let segment = segments.get(index).filter(|segment| !segment.is_empty())?;
                parameters.insert(name.to_string(), percent_decode(segment));
            }
            None => {
                if segments.get(index) != Some(template_segment) {
                    return None;
                }
            }
        }
    }
    (segments.len() == template_segments.len()).then_some(parameters)
}

/// Decodes `%XX` escapes (invalid escapes are kept as written; invalid UTF-8 is replaced).
/// `+` stays `+`, as API Gateway leaves it.
pub fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (resource, function, path parameters) of the route matching `path`.
    type Matched = (&'static str, &'static str, Vec<(String, String)>);

    fn matched(path: &str) -> Option<Matched> {
        match_route(ROUTES, path).map(|found| {
            (
                found.route.resource,
                found.route.function,
                found.path_parameters.into_iter().collect(),
            )
        })
    }

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn exports_go_to_the_export_function_before_the_jobs_greedy_resource() {
        assert_eq!(
            matched("/api/v1/jobs/j1/export/pdf"),
            Some((
                "/api/v1/jobs/{id}/export/{format}",
                "export",
                params(&[("format", "pdf"), ("id", "j1")])
            ))
        );
        assert_eq!(
            matched("/api/v1/jobs/j1/export-preview").map(|m| m.1),
            Some("export")
        );
        assert_eq!(
            matched("/api/v1/jobs/j1/export/pdf/x").map(|m| m.1),
            Some("jobs")
        );
        assert_eq!(
            matched("/api/v1/document-templates/t1/set-default").map(|m| m.1),
            Some("export")
        );
    }

    #[test]
    fn execute_routes_carry_the_service_id() {
        assert_eq!(
            matched("/api/v1/services/abc/execute"),
            Some((
                "/api/v1/services/{id}/execute",
                "execute",
                params(&[("id", "abc")])
            ))
        );
        assert_eq!(
            matched("/api/v1/services/abc/validate-execution"),
            Some((
                "/api/v1/services/{id}/validate-execution",
                "execute",
                params(&[("id", "abc")])
            ))
        );
    }

    #[test]
    fn job_routes_match_collection_item_and_greedy_proxy() {
        assert_eq!(
            matched("/api/v1/jobs"),
            Some(("/api/v1/jobs", "jobs", vec![]))
        );
        assert_eq!(
            matched("/api/v1/jobs/"),
            Some(("/api/v1/jobs", "jobs", vec![]))
        );
        assert_eq!(
            matched("/api/v1/jobs/j1"),
            Some(("/api/v1/jobs/{id}", "jobs", params(&[("id", "j1")])))
        );
        assert_eq!(
            matched("/api/v1/jobs/j1/results/versions/2"),
            Some((
                "/api/v1/jobs/{id}/{proxy+}",
                "jobs",
                params(&[("id", "j1"), ("proxy", "results/versions/2")])
            ))
        );
    }

    #[test]
    fn catalog_routes_prefer_static_segments() {
        assert_eq!(
            matched("/api/v1/flavors/validate-prompt"),
            Some(("/api/v1/flavors/validate-prompt", "catalog", vec![]))
        );
        assert_eq!(
            matched("/api/v1/flavors/f1/set-default"),
            Some((
                "/api/v1/flavors/{flavor_id}/{action}",
                "catalog",
                params(&[("action", "set-default"), ("flavor_id", "f1")])
            ))
        );
        assert_eq!(
            matched("/api/v1/services/s1/flavors"),
            Some((
                "/api/v1/services/{id}/flavors",
                "catalog",
                params(&[("id", "s1")])
            ))
        );
        assert_eq!(
            matched("/openapi.json"),
            Some(("/openapi.json", "catalog", vec![]))
        );
    }

    #[test]
    fn path_parameters_are_percent_decoded() {
        assert_eq!(
            matched("/api/v1/services/a%20b%2Fc/execute"),
            Some((
                "/api/v1/services/{id}/execute",
                "execute",
                params(&[("id", "a b/c")])
            ))
        );
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz+%41"), "%zz+A");
    }

    #[test]
    fn unknown_or_malformed_paths_do_not_match() {
        for path in [
            "/",
            "",
            "/x",
            "/api/v1",
            "/api/v1/unknown",
            "/api/v1/services/abc/unknown",
            "/api/v1/services//execute",
            "/api/v1/services/abc/execute/more",
            "/api/v1/jobs//cancel",
            "/api/v1/jobs/j1/a//b",
            "api/v1/jobs",
        ] {
            assert_eq!(matched(path), None, "{path}");
        }
    }
}
