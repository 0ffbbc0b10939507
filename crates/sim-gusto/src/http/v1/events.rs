//! `/v1/events`: the event feed, paged by `starting_after_uuid`.

use super::*;

pub(in crate::http) async fn list_events(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    tri!(system_only(&ctx));
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 25,
        Some(Ok(l)) if (1..=100).contains(&l) => l,
        _ => {
            return errors(
                StatusCode::UNPROCESSABLE_ENTITY,
                "limit",
                "invalid_parameter",
                "limit must be between 1 and 100",
            )
        }
    };
    let desc = match q.get("sort_order").map(String::as_str) {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => {
            return errors(
                StatusCode::UNPROCESSABLE_ENTITY,
                "sort_order",
                "invalid_parameter",
                "sort_order must be asc or desc",
            )
        }
    };
    let st = sim.state();
    let since = st.now().timestamp() - 30 * 24 * 3600;
    let mut events: Vec<&Event> = st
        .events
        .iter()
        .filter(|e| e.timestamp >= since)
        .filter(|e| q.get("resource_uuid").is_none_or(|r| &e.resource_uuid == r))
        .filter(|e| q.get("event_type").is_none_or(|t| glob_match(t, &e.event_type)))
        .collect();
    // Stable sort keeps emission order for equal timestamps.
    events.sort_by_key(|e| e.timestamp);
    if desc {
        events.reverse();
    }
    if let Some(after) = q.get("starting_after_uuid") {
        match events.iter().position(|e| &e.uuid == after) {
            Some(pos) => events = events.split_off(pos + 1),
            None => events.clear(),
        }
    }
    events.truncate(limit);
    Json(events).into_response()
}
