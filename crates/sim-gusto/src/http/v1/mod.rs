//! The `/v1` resources Gusto serves, one module each.

mod departments;
mod employees;
mod events;
mod locations;
mod subscriptions;

use super::*;

pub(super) use departments::*;
pub(super) use employees::*;
pub(super) use events::*;
pub(super) use locations::*;
pub(super) use subscriptions::*;

pub(in crate::http) async fn token_info(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
) -> Response {
    let st = sim.state();
    match &ctx.company {
        Some(c) => {
            let admin = st.companies.iter().find(|x| &x.uuid == c).map(|x| x.admin_uuid.clone());
            Json(json!({
                "scope": "companies:read departments:read employees:read employments:read jobs:read public",
                "resource": {"type": "Company", "uuid": c},
                "resource_owner": {"type": "CompanyAdmin", "uuid": admin},
            }))
            .into_response()
        }
        None => Json(json!({
            "scope": "events:read webhook_subscriptions:read webhook_subscriptions:write public",
            "resource": {"type": "Oauth::Application", "uuid": uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, sim.cfg.client_id.as_bytes()).to_string()},
            "resource_owner": null,
        }))
        .into_response(),
    }
}
