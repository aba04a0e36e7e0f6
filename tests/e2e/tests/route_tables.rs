//! The route tables in `gateway_core::api` are the one source of the REST API: the
//! deployment template, the local front door and the OpenAPI document must agree with
//! them. Pure file checks, no emulator needed.

use std::collections::BTreeSet;

use gateway_core::api::routes::{parameter_name, template_segments};
use gateway_core::api::TABLES;
use gateway_test_support::repo_root;

/// (function binary, API Gateway resource) pairs of the template's `Type: Api` events.
fn template_resources() -> BTreeSet<(String, String)> {
    let template = std::fs::read_to_string(repo_root().join("infra/template.yaml")).unwrap();
    let mut binary = String::new();
    let mut resources = BTreeSet::new();
    for line in template.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("Binary:") {
            binary = name.trim().to_string();
        }
        if line.contains("RestApiId") {
            let path = line
                .split("Path:")
                .nth(1)
                .and_then(|rest| rest.split(',').next())
                .map(|path| path.trim().trim_matches('"').to_string())
                .expect("an Api event names its Path");
            resources.insert((binary.clone(), path));
        }
    }
    assert!(
        resources.len() > 20,
        "template Api events found: {resources:?}"
    );
    resources
}

/// Whether an API Gateway resource (with `{x}` and `{x+}` segments) serves a route's path.
fn serves(resource: &str, route: &str) -> bool {
    let resource: Vec<&str> = template_segments(resource).collect();
    let route: Vec<&str> = template_segments(route).collect();
    for (index, part) in resource.iter().enumerate() {
        if part.ends_with("+}") {
            return route.len() > index;
        }
        // A parameter takes any segment; a literal only the same literal.
        let matches = match (parameter_name(part), route.get(index)) {
            (_, None) => false,
            (Some(_), Some(_)) => true,
            (None, Some(segment)) => part == segment,
        };
        if !matches {
            return false;
        }
    }
    resource.len() == route.len()
}

#[test]
fn every_route_is_deployed_and_every_deployed_resource_is_routed() {
    let template = template_resources();
    let rest_functions: BTreeSet<&str> = TABLES.iter().map(|table| table.function).collect();
    for table in TABLES {
        for route in table.routes {
            let resource = template
                .iter()
                .filter(|(binary, _)| binary == table.function)
                .find(|(_, resource)| serves(resource, route.path));
            assert!(
                resource.is_some(),
                "{} {} of {} has no API Gateway resource in the template",
                route.method.as_str(),
                route.path,
                table.function
            );
        }
    }
    for (binary, resource) in &template {
        assert!(
            rest_functions.contains(binary.as_str()),
            "{binary} serves {resource} but has no route table"
        );
        let table = TABLES
            .iter()
            .find(|table| table.function == binary)
            .unwrap();
        assert!(
            table
                .routes
                .iter()
                .any(|route| serves(resource, route.path)),
            "the template routes {resource} to {binary}, which serves nothing there"
        );
    }
}

#[test]
fn the_local_front_door_has_the_template_resources() {
    let local: BTreeSet<(String, String)> = local::routes::ROUTES
        .iter()
        .map(|route| (route.function.to_string(), route.resource.to_string()))
        .collect();
    assert_eq!(local, template_resources());
}

#[test]
fn the_openapi_document_is_the_route_tables() {
    let document = gateway_core::api::openapi::document();
    let documented: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let routed: BTreeSet<(String, String)> = TABLES
        .iter()
        .flat_map(|table| table.routes)
        .map(|route| (route.method.as_str().to_string(), route.path.to_string()))
        .collect();
    assert_eq!(documented, routed);
    for path in [
        "/api/v1/flavors/{flavor_id}/fallback-available",
        "/api/v1/flavors/{flavor_id}/validate-failover",
    ] {
        assert!(document["paths"][path].is_object(), "{path}");
    }
}

#[test]
fn serves_matches_parameters_and_greedy_tails() {
    assert!(serves(
        "/api/v1/jobs/{id}/{proxy+}",
        "/api/v1/jobs/{id}/cancel"
    ));
    assert!(serves(
        "/api/v1/flavors/{flavor_id}/{action}",
        "/api/v1/flavors/{flavor_id}/set-default"
    ));
    assert!(serves(
        "/api/v1/flavors/validate-prompt",
        "/api/v1/flavors/validate-prompt"
    ));
    assert!(!serves(
        "/api/v1/flavors/validate-prompt",
        "/api/v1/flavors/{flavor_id}"
    ));
    assert!(!serves("/api/v1/jobs/{id}", "/api/v1/jobs/{id}/cancel"));
    assert!(!serves("/api/v1/jobs/{id}/{proxy+}", "/api/v1/jobs/{id}"));
}
