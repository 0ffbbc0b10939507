//! `/dimension`: dimensions, their segments and segment values (update by row operation).

use super::*;

pub(super) async fn list_dimensions(
    State(sim): State<Shared>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let mut st = sim.lock();
    with_tenant(&mut st, &caller, |t, _| {
        Json(t.dimensions.keys().cloned().collect::<Vec<_>>()).into_response()
    })
}

pub(super) async fn get_dimension(
    State(sim): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let mut st = sim.lock();
    with_tenant(&mut st, &caller, |t, _| match t.dimensions.get(&id) {
        Some(d) => Json(d.to_dto()).into_response(),
        None => not_found(&format!("Dimension '{id}'")),
    })
}

pub(super) async fn get_segment(
    State(sim): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((id, segment)): Path<(String, String)>,
) -> Response {
    let Ok(segment_id) = segment.parse::<i32>() else {
        return errors::message(
            StatusCode::BAD_REQUEST,
            &format!("Error: '{segment}' is not a valid segment id."),
        );
    };
    let mut st = sim.lock();
    with_tenant(&mut st, &caller, |t, _| {
        match t.dimensions.get(&id).and_then(|d| d.segments.get(&segment_id)) {
            Some(s) => Json(s.to_dto()).into_response(),
            None => not_found(&format!("Segment {segment_id} of dimension '{id}'")),
        }
    })
}

pub(super) async fn update_segment(
    State(sim): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path((id, segment)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Ok(segment_id) = segment.parse::<i32>() else {
        return errors::message(
            StatusCode::BAD_REQUEST,
            &format!("Error: '{segment}' is not a valid segment id."),
        );
    };
    let dto: SegmentWrite = match parse_body(&body, "segment") {
        Ok(d) => d,
        Err(r) => return r,
    };
    let mut st = sim.lock();
    with_tenant(&mut st, &caller, |t, now| match t.update_segment(&id, segment_id, &dto, now) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => rule_error(e),
    })
}
