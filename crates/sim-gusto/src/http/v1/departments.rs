//! `/v1/companies/{uuid}/departments` and `/v1/departments/{uuid}`.

use super::*;

pub(in crate::http) async fn list_departments(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(company): Path<String>,
) -> Response {
    tri!(company_ok(&ctx, &company));
    let st = sim.state();
    let Some(c) = st.companies.iter().find(|c| c.uuid == company) else {
        return not_found();
    };
    let items: Vec<Value> =
        c.departments.iter().filter_map(|d| st.departments.get(d)).map(|d| st.department_json(d)).collect();
    Json(items).into_response()
}

pub(in crate::http) async fn get_department(
    AxState(sim): AxState<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> Response {
    let st = sim.state();
    let Some(d) = st.departments.get(&id) else {
        return not_found();
    };
    tri!(company_ok(&ctx, &d.company_uuid));
    Json(st.department_json(d)).into_response()
}
