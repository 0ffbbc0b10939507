//! `/branch`: list and read.

use super::*;

pub(super) async fn list_branches(
    State(sim): State<Shared>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let filter = match modified_filter(&q) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let mut st = sim.lock();
    with_tenant(&mut st, &caller, |t, _| {
        let items: Vec<Value> = t
            .branches
            .values()
            .filter(|b| filter.as_ref().is_none_or(|f| f(b.last_modified)))
            .map(|b| b.to_dto())
            .collect();
        Json(items).into_response()
    })
}

pub(super) async fn get_branch(
    State(sim): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(number): Path<String>,
) -> Response {
    let mut st = sim.lock();
    with_tenant(&mut st, &caller, |t, _| match t.branches.get(&number) {
        Some(b) => Json(b.to_dto()).into_response(),
        None => not_found(&format!("Branch '{number}'")),
    })
}
