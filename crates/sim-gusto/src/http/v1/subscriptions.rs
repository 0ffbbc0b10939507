//! `/v1/webhook_subscriptions`: create, list, get, update, delete, verify and the
//! verification-token request.

use super::*;

pub(in crate::http) const SUBSCRIPTION_TYPES: &[&str] = &[
    "BankAccount",
    "Company",
    "CompanyBenefit",
    "Contractor",
    "ContractorPayment",
    "Employee",
    "EmployeeBenefit",
    "EmployeeJobCompensation",
    "ExternalPayroll",
    "Form",
    "Location",
    "Notification",
    "Payroll",
    "PayrollSync",
    "PaySchedule",
    "PeopleBatch",
    "Signatory",
];

pub(in crate::http) fn parse_types(body: &serde_json::Map<String, Value>) -> Result<Vec<String>, Response> {
    let invalid = |m: &str| {
        errors(StatusCode::UNPROCESSABLE_ENTITY, "subscription_types", "invalid_attribute_value", m)
    };
    let Some(Value::Array(items)) = body.get("subscription_types") else {
        return Err(invalid("subscription_types is required"));
    };
    let mut out = Vec::new();
    for i in items {
        match i.as_str() {
            Some(t) if SUBSCRIPTION_TYPES.contains(&t) => out.push(t.to_owned()),
            _ => return Err(invalid("subscription_types contains an unknown type")),
        }
    }
    Ok(out)
}

pub(in crate::http) async fn create_subscription(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    body: Bytes,
) -> Response {
    tri!(system_only(&ctx));
    let body = tri!(json_body(&body));
    let Some(url) = body.get("url").and_then(Value::as_str).map(str::to_owned) else {
        return errors(StatusCode::UNPROCESSABLE_ENTITY, "url", "invalid_attribute_value", "url is required");
    };
    let types = tri!(parse_types(&body));
    let sub = {
        let mut st = sim.state();
        let sub = Subscription {
            uuid: new_uuid(&mut st),
            url: url.clone(),
            status: "pending".into(),
            subscription_types: types,
            verification_token: new_uuid(&mut st),
        };
        st.subscriptions.push(sub.clone());
        sub
    };
    tokio::spawn(crate::webhooks::send_verification_token(
        sim.clone(),
        sub.uuid.clone(),
        url,
        sub.verification_token.clone(),
    ));
    (StatusCode::CREATED, Json(sub.to_json())).into_response()
}

pub(in crate::http) async fn list_subscriptions(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
) -> Response {
    tri!(system_only(&ctx));
    let st = sim.state();
    Json(
        st.subscriptions
            .iter()
            .filter(|s| s.status != "removed")
            .map(Subscription::to_json)
            .collect::<Vec<_>>(),
    )
    .into_response()
}

pub(in crate::http) async fn get_subscription(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> Response {
    tri!(system_only(&ctx));
    let st = sim.state();
    match live_subscription(&st, &id) {
        Some(s) => Json(s.to_json()).into_response(),
        None => not_found(),
    }
}

pub(in crate::http) async fn update_subscription(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    tri!(system_only(&ctx));
    let body = tri!(json_body(&body));
    let types = tri!(parse_types(&body));
    let mut st = sim.state();
    match live_subscription_mut(&mut st, &id) {
        Some(s) => {
            s.subscription_types = types;
            Json(s.to_json()).into_response()
        }
        None => not_found(),
    }
}

pub(in crate::http) async fn delete_subscription(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> Response {
    tri!(system_only(&ctx));
    let mut st = sim.state();
    match live_subscription_mut(&mut st, &id) {
        Some(s) => {
            s.status = "removed".into();
            StatusCode::NO_CONTENT.into_response()
        }
        None => not_found(),
    }
}

pub(in crate::http) async fn verify_subscription(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    tri!(system_only(&ctx));
    let body = tri!(json_body(&body));
    let given = body.get("verification_token").and_then(Value::as_str).unwrap_or("");
    let mut st = sim.state();
    let Some(s) = live_subscription_mut(&mut st, &id) else {
        return not_found();
    };
    if s.verification_token != given {
        return errors(
            StatusCode::UNPROCESSABLE_ENTITY,
            "base",
            "invalid_attribute_value",
            "Invalid verification token",
        );
    }
    s.status = "verified".into();
    Json(s.to_json()).into_response()
}

pub(in crate::http) async fn request_verification_token(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> Response {
    tri!(system_only(&ctx));
    let found = {
        let st = sim.state();
        live_subscription(&st, &id).map(|s| (s.url.clone(), s.verification_token.clone()))
    };
    let Some((url, token)) = found else {
        return not_found();
    };
    tokio::spawn(crate::webhooks::send_verification_token(sim.clone(), id, url, token));
    Json(json!({"message": "Success! The subscriber will be notified with the verification token"}))
        .into_response()
}

/// The subscription `id` unless it was removed (Gusto answers 404 for a removed one).
fn live_subscription<'a>(st: &'a State, id: &str) -> Option<&'a Subscription> {
    st.subscriptions.iter().find(|s| s.uuid == id && s.status != "removed")
}

fn live_subscription_mut<'a>(st: &'a mut State, id: &str) -> Option<&'a mut Subscription> {
    st.subscriptions.iter_mut().find(|s| s.uuid == id && s.status != "removed")
}
