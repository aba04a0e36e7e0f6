//! Catalog services: listing, and resolving `--service` (an id, a name or a route).

use serde_json::Value;
use uuid::Uuid;

use crate::client::ApiClient;
use crate::error::{CliError, CliResult};
use crate::table;

/// Largest catalog page the API serves.
const PAGE_SIZE: u64 = 100;
/// Pages read at most when looking a service up (10,000 services).
const MAX_PAGES: u64 = 100;

/// Every service visible to the client's organization (all pages), and the raw pages.
pub async fn all(client: &ApiClient) -> CliResult<(Vec<Value>, Vec<Value>)> {
    let mut items = Vec::new();
    let mut pages = Vec::new();
    for page in 1..=MAX_PAGES {
        let answer = client
            .get(
                "/api/v1/services",
                &[
                    ("page", page.to_string()),
                    ("page_size", PAGE_SIZE.to_string()),
                ],
            )
            .await?;
        let page_items = answer
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| CliError::Protocol("the service list has no `items`".into()))?;
        let total_pages = answer
            .get("total_pages")
            .and_then(Value::as_u64)
            .unwrap_or(page);
        let empty = page_items.is_empty();
        items.extend(page_items);
        pages.push(answer);
        if empty || page >= total_pages {
            break;
        }
    }
    Ok((items, pages))
}

/// The service id for `--service`: an id is used as given (the API checks it); a name or
/// route is looked up in the service list.
pub async fn resolve(client: &ApiClient, name_or_id: &str) -> CliResult<String> {
    if let Ok(id) = Uuid::parse_str(name_or_id.trim()) {
        return Ok(id.to_string());
    }
    let (items, _) = all(client).await?;
    find(&items, name_or_id, client.org()).ok_or_else(|| {
        CliError::NotFound(format!(
            "SERVICE_NOT_FOUND: no service named {name_or_id:?}{} (see `llmgw services list`)",
            client
                .org()
                .map(|org| format!(" for organization {org}"))
                .unwrap_or_default()
        ))
    })
}

/// The id of the service whose name or route is `wanted` (exact, else ignoring case); the
/// organization's own service wins over a global one of the same name.
pub fn find(items: &[Value], wanted: &str, org: Option<&str>) -> Option<String> {
    let wanted = wanted.trim();
    let field =
        |item: &Value, name: &str| item.get(name).and_then(Value::as_str).map(str::to_string);
    let matches = |exact: bool| {
        items
            .iter()
            .filter(|item| {
                ["name", "route"].iter().any(|key| {
                    field(item, key).is_some_and(|value| {
                        if exact {
                            value == wanted
                        } else {
                            value.eq_ignore_ascii_case(wanted)
                        }
                    })
                })
            })
            .collect::<Vec<_>>()
    };
    let mut candidates = matches(true);
    if candidates.is_empty() {
        candidates = matches(false);
    }
    candidates.sort_by_key(|item| {
        let owner = item.get("organization_id").and_then(Value::as_str);
        // Own organization first, then global ones.
        u8::from(!(owner.is_some() && owner == org))
    });
    candidates.first().and_then(|item| field(item, "id"))
}

/// The service list as a table.
pub fn render(items: &[Value]) -> String {
    let rows = items
        .iter()
        .map(|item| {
            let text = |key: &str| {
                item.get(key)
                    .and_then(Value::as_str)
                    .unwrap_or("-")
                    .to_string()
            };
            let flavors = item
                .get("flavors")
                .and_then(Value::as_array)
                .map(|flavors| {
                    flavors
                        .iter()
                        .filter_map(|f| {
                            let name = f.get("name").and_then(Value::as_str)?;
                            let default =
                                f.get("is_default").and_then(Value::as_bool) == Some(true);
                            Some(if default {
                                format!("{name}*")
                            } else {
                                name.to_string()
                            })
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let active = match item.get("is_active").and_then(Value::as_bool) {
                Some(false) => "no",
                _ => "yes",
            };
            vec![
                text("id"),
                text("name"),
                text("route"),
                text("service_type"),
                active.to_string(),
                flavors,
            ]
        })
        .collect::<Vec<_>>();
    table::render(
        &[
            "ID",
            "NAME",
            "ROUTE",
            "TYPE",
            "ACTIVE",
            "FLAVORS (* default)",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn services() -> Vec<Value> {
        vec![
            json!({"id": "g-sum", "name": "summarize", "route": "summarize", "organization_id": null}),
            json!({"id": "acme-sum", "name": "summarize", "route": "summarize-acme", "organization_id": "acme"}),
            json!({"id": "min", "name": "Meeting minutes", "route": "minutes", "organization_id": null}),
        ]
    }

    #[test]
    fn names_and_routes_resolve_to_ids() {
        assert_eq!(find(&services(), "minutes", None).as_deref(), Some("min"));
        assert_eq!(
            find(&services(), "Meeting minutes", None).as_deref(),
            Some("min")
        );
        assert_eq!(
            find(&services(), "meeting MINUTES", None).as_deref(),
            Some("min")
        );
        assert_eq!(find(&services(), "nope", None), None);
    }

    #[test]
    fn the_organizations_own_service_wins() {
        assert_eq!(
            find(&services(), "summarize", Some("acme")).as_deref(),
            Some("acme-sum")
        );
        assert_eq!(
            find(&services(), "summarize", Some("other")).as_deref(),
            Some("g-sum")
        );
        assert_eq!(
            find(&services(), "summarize", None).as_deref(),
            Some("g-sum")
        );
    }

    #[tokio::test]
    async fn an_id_is_used_without_a_lookup() {
        // Nothing listens on port 9: a lookup would fail as unreachable.
        let client = ApiClient::new(
            "http://127.0.0.1:9",
            None,
            crate::client::Deadline::after(None),
        )
        .unwrap();
        let id = "0b0d3f3e-0000-4000-8000-000000000201";
        assert_eq!(resolve(&client, id).await.unwrap(), id);
        assert_eq!(
            resolve(&client, "summarize").await.unwrap_err().exit_code(),
            4
        );
    }

    #[test]
    fn the_list_renders_flavors_with_the_default_marked() {
        let text = render(&[json!({
            "id": "s1", "name": "summarize", "route": "summarize", "service_type": "summary",
            "is_active": true,
            "flavors": [{"name": "iterative", "is_default": true}, {"name": "single-pass"}]
        })]);
        let lines: Vec<_> = text.lines().collect();
        assert!(lines[0].starts_with("ID"));
        assert!(lines[1].contains("summarize") && lines[1].ends_with("iterative*, single-pass"));
    }
}
