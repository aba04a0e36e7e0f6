//! Failover and fallback queries of a flavor: its failover chain, the fallback a too-long
//! input could use, and whether a flavor may be a failover target.

use std::collections::HashSet;

use serde_json::{json, Value};
use uuid::Uuid;

use super::entity::{decode, from_json, parse_object, Scope};
use super::flavors::{flavors_of, load_flavor, Names};
use crate::domain::{Flavor, ProcessingMode};
use crate::engine::error::{EngineError, EngineResult, Location};
use crate::engine::Gateway;
use crate::engine::JsonResponse;
use crate::ports::RecordKind;

/// Longest failover chain reported.
const MAX_CHAIN: usize = 10;

/// `GET /flavors/{id}/failover-chain`: `{chain, max_depth, has_cycle}`, following
/// `failover_flavor_id` from the flavor (depth 0), at most 10 items.
pub async fn failover_chain(
    gateway: &Gateway,
    scope: &Scope,
    service_id: Option<Uuid>,
    flavor_id: Uuid,
) -> EngineResult<JsonResponse> {
    let (_, flavor) = load_flavor(gateway, scope, service_id, flavor_id).await?;
    let names = Names::load(gateway).await?;
    let item = |step: &Flavor, depth: usize| {
        json!({
            "id": step.id,
            "name": step.name,
            "service_id": step.service_id,
            "service_name": names.services.get(&step.service_id),
            "model_name": names.models.get(&step.model_id).map(|m| m.model_name.clone()),
            "is_active": step.is_active,
            "depth": depth,
        })
    };
    let mut chain = vec![item(&flavor, 0)];
    let mut seen = HashSet::from([flavor.id]);
    let mut has_cycle = false;
    let mut next = flavor.failover_flavor_id;
    while let Some(id) = next {
        if chain.len() >= MAX_CHAIN {
            break;
        }
        if !seen.insert(id) {
            has_cycle = true;
            break;
        }
        // The catalog was read once by `Names::load`: no read per step.
        let Some(step) = names.flavors.get(&id) else {
            break;
        };
        chain.push(item(step, chain.len()));
        next = step.failover_flavor_id;
    }
    Ok(JsonResponse::new(
        200,
        json!({"chain": chain, "max_depth": flavor.max_failover_depth, "has_cycle": has_cycle}),
    ))
}

/// The flavor a too-long input of `flavor` would fall back to: another active iterative
/// flavor of its service, the most urgent (priority 0 first), then the oldest.
pub fn fallback_for<'a>(flavor: &Flavor, siblings: &'a [Flavor]) -> Option<&'a Flavor> {
    siblings
        .iter()
        .filter(|f| {
            f.id != flavor.id && f.is_active && f.processing_mode == ProcessingMode::Iterative
        })
        .min_by(|a, b| {
            a.priority
                .cmp(&b.priority)
                .then(a.created_at.cmp(&b.created_at))
        })
}

/// `GET /services/{id}/flavors/{flavor_id}/fallback-available`: the service's active
/// iterative flavor (most urgent priority, 0 first, then oldest) a too-long input could
/// fall back to.
pub async fn fallback_available(
    gateway: &Gateway,
    scope: &Scope,
    service_id: Option<Uuid>,
    flavor_id: Uuid,
) -> EngineResult<JsonResponse> {
    let (service, flavor) = load_flavor(gateway, scope, service_id, flavor_id).await?;
    let siblings = flavors_of(gateway, service.id).await?;
    let body = match fallback_for(&flavor, &siblings) {
        Some(fallback) => json!({
            "fallback_available": true,
            "fallback_flavor_id": fallback.id,
            "fallback_flavor_name": fallback.name,
            "reason": Value::Null,
        }),
        None => json!({
            "fallback_available": false,
            "fallback_flavor_id": Value::Null,
            "fallback_flavor_name": Value::Null,
            "reason": "No active iterative flavor in this service",
        }),
    };
    Ok(JsonResponse::new(200, body))
}

/// `POST /services/{id}/flavors/{flavor_id}/validate-failover` `{failover_flavor_id}`:
/// whether pointing the flavor at that failover keeps the chain free of cycles.
pub async fn validate_failover(
    gateway: &Gateway,
    scope: &Scope,
    service_id: Option<Uuid>,
    flavor_id: Uuid,
    body: &[u8],
) -> EngineResult<JsonResponse> {
    let (_, flavor) = load_flavor(gateway, scope, service_id, flavor_id).await?;
    let fields = parse_object(body)?;
    let target: Uuid = from_json(
        fields
            .get("failover_flavor_id")
            .cloned()
            .unwrap_or(Value::Null),
    )
    .map_err(|_| EngineError::validation(Location::Body, "failover_flavor_id", "must be a UUID"))?;
    if target == flavor.id {
        return Ok(JsonResponse::new(
            200,
            json!({"valid": false, "error": "Cannot set failover to self", "chain_depth": 0, "chain_preview": []}),
        ));
    }
    let mut preview = vec![flavor.name.clone()];
    let mut seen = HashSet::from([flavor.id]);
    let mut next = Some(target);
    while let Some(id) = next {
        if preview.len() > MAX_CHAIN {
            break;
        }
        if !seen.insert(id) {
            return Ok(JsonResponse::new(
                200,
                json!({"valid": false, "error": "Cycle detected: flavor chain loops back", "chain_depth": preview.len() - 1, "chain_preview": preview}),
            ));
        }
        let Some(record) = gateway.records.record(RecordKind::Flavor, id).await? else {
            break;
        };
        let step: Flavor = decode(record)?;
        preview.push(step.name.clone());
        next = step.failover_flavor_id;
    }
    Ok(JsonResponse::new(
        200,
        json!({"valid": true, "error": Value::Null, "chain_depth": preview.len() - 1, "chain_preview": preview}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Flavor;

    fn flavor(name: &str, priority: u8, created_at: &str, mode: ProcessingMode) -> Flavor {
        let mut flavor: Flavor = serde_json::from_value(json!({
            "id": Uuid::new_v4(), "service_id": Uuid::nil(), "model_id": Uuid::nil(),
            "name": name, "processing_mode": mode, "prompt_user_content": "{} {}", "temperature": 0.2,
            "created_at": created_at, "updated_at": created_at,
        }))
        .unwrap();
        flavor.priority = priority;
        flavor
    }

    #[test]
    fn the_most_urgent_iterative_flavor_is_the_fallback() {
        let short = flavor("short", 5, "1", ProcessingMode::SinglePass);
        let siblings = vec![
            short.clone(),
            flavor("bulk", 9, "1", ProcessingMode::Iterative),
            flavor("urgent-new", 1, "3", ProcessingMode::Iterative),
            flavor("urgent-old", 1, "2", ProcessingMode::Iterative),
            flavor("single", 0, "1", ProcessingMode::SinglePass),
        ];
        let chosen = fallback_for(&short, &siblings).map(|f| f.name.as_str());
        assert_eq!(chosen, Some("urgent-old"));
        let mut inactive = siblings.clone();
        inactive.iter_mut().for_each(|f| f.is_active = false);
        assert!(fallback_for(&short, &inactive).is_none());
    }
}
