//! `/v1/companies/{id}/locations` and `/v1/locations/{id}` (get, put with version check).

use super::*;

pub(in crate::http) async fn list_locations(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(company): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    tri!(company_ok(&ctx, &company));
    let st = sim.state();
    let Some(c) = st.companies.iter().find(|c| c.uuid == company) else {
        return not_found();
    };
    let items = c.locations.iter().filter_map(|l| st.locations.get(l)).map(Location::to_json).collect();
    match paginate(items, &q, false) {
        Ok(r) | Err(r) => r,
    }
}

pub(in crate::http) async fn get_location(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> Response {
    let st = sim.state();
    let Some(l) = st.locations.get(&id) else {
        return not_found();
    };
    tri!(company_ok(&ctx, &l.company_uuid));
    Json(l.to_json()).into_response()
}

pub(in crate::http) async fn put_location(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let body = tri!(json_body(&body));
    let mut st = sim.state();
    let Some(l) = st.locations.get(&id).cloned() else {
        return not_found();
    };
    tri!(company_ok(&ctx, &l.company_uuid));
    tri!(version_matches(&body, &l.version()));
    let mut next = l.clone();
    let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    if let Some(v) = s("street_1") {
        next.street_1 = v;
    }
    if body.contains_key("street_2") {
        next.street_2 = s("street_2");
    }
    if let Some(v) = s("city") {
        next.city = v;
    }
    if let Some(v) = s("state") {
        next.state = v;
    }
    if let Some(v) = s("zip") {
        next.zip = v;
    }
    if let Some(v) = s("country") {
        next.country = v;
    }
    if let Some(v) = s("phone_number") {
        next.phone_number = v;
    }
    if let Some(v) = body.get("mailing_address").and_then(Value::as_bool) {
        next.mailing_address = v;
    }
    if let Some(v) = body.get("filing_address").and_then(Value::as_bool) {
        next.filing_address = v;
    }
    if next.version() != l.version() {
        next.updated_at = st.now().format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string();
        st.locations.insert(id.clone(), next.clone());
        st.emit(&l.company_uuid, "location.updated", "Location", &id);
    }
    Json(next.to_json()).into_response()
}
