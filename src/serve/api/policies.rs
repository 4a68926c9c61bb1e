//! `/meshes/{mesh}/policies[/{name}]`: a mesh's policies with their
//! problems, and one policy with its secret references resolved to data.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::{
    authorize, caller, error, json_response, mesh_scope, path_params, policy_name, ApiState, Denied,
};
use crate::index::Index;
use crate::policy::{DataSource, Policy};
use crate::scope::{Scope, SecretId};

fn policy_json(index: &Index, policy: &Policy, resolve: bool) -> Value {
    let problems: Vec<String> = index
        .policy_problems(policy)
        .map(|p| p.message.clone())
        .collect();
    let mut v = json!({
        "type": policy.kind.as_str(),
        "mesh": policy.mesh,
        "name": policy.name,
        "valid": problems.is_empty(),
        "problems": problems,
    });
    if resolve {
        // Builtin CA backends use their secrets by naming convention.
        let builtin: Vec<(String, DataSource)> = policy
            .builtin_cas()
            .flat_map(|ca| {
                [
                    (
                        format!("{}.cert", ca.field()),
                        DataSource::Secret(ca.cert.clone()),
                    ),
                    (format!("{}.key", ca.field()), DataSource::Secret(ca.key)),
                ]
            })
            .collect();
        let sources: Vec<Value> = policy
            .sources
            .iter()
            .map(|s| (s.field.clone(), s.source.clone()))
            .chain(builtin)
            .map(|(field, source)| match &source {
                DataSource::Secret(name) => {
                    let id = SecretId {
                        scope: Scope::Mesh(policy.mesh.clone()),
                        name: name.clone(),
                    };
                    let mut v = json!({ "field": field, "secret": name });
                    match index.get(&id) {
                        Some(secret) => v["data"] = json!(secret.doc.data.to_base64().as_str()),
                        None => v["error"] = json!(format!("could not load data: resource not found: {}", id.kuma_ref())),
                    }
                    v
                }
                DataSource::Inline(bytes) => json!({
                    "field": field,
                    "inline": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes),
                }),
                DataSource::InlineString(text) => json!({ "field": field, "inlineString": text }),
                DataSource::File(path) => json!({ "field": field, "file": path }),
            })
            .collect();
        v["sources"] = json!(sources);
    }
    v
}

pub(super) async fn list_policies(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, Denied> {
    let who = caller(&state, &headers)?;
    let mesh = path_params(path)?;
    authorize(who, &mesh_scope(&mesh)?)?;
    let index = state.index.load();
    let items: Vec<Value> = index
        .policies(&mesh)
        .map(|p| policy_json(&index, p, false))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "total": items.len(), "items": items, "next": Value::Null }),
    ))
}

pub(super) async fn get_policy(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, Denied> {
    let who = caller(&state, &headers)?;
    let (mesh, name) = path_params(path)?;
    let scope = mesh_scope(&mesh)?;
    policy_name(&name)?;
    authorize(who, &scope)?;
    let index = state.index.load();
    let found = index.policies(&mesh).find(|p| p.name == name);
    Ok(match found {
        Some(p) => json_response(StatusCode::OK, &policy_json(&index, p, true)),
        None => error(
            StatusCode::NOT_FOUND,
            "Not Found",
            &format!("resource not found: name=\"{name}\" mesh=\"{mesh}\""),
        ),
    })
}
