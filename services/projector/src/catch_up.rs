//! Catch-up: Gusto keeps 30 days of events behind `GET /v1/events`. After an outage (of
//! the gateway, or of Gusto's deliveries) the projector reads what came after the last
//! event it saw and puts it on GUSTO_EVENTS like a webhook would. Events already
//! delivered by webhook dedupe on their uuid inside the duplicate window; later ones
//! re-hydrate an employee whose state has not changed, which appends nothing.

use gusto::{EventQuery, GustoClient};
use mlc_bus::Publisher;
use mlc_proto::v1::{EventSource, GustoEvent};
use mlc_store::Store;
use std::sync::Arc;

/// What one pass did for one company.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CatchUp {
    pub fetched: usize,
    pub published: usize,
}

/// Reads the company's events after its cursor and publishes them; moves the cursor.
/// With no cursor yet, it only sets one at the newest event: history is what backfill
/// is for. A company without any event yet gets the empty cursor, "from the start".
pub async fn catch_up_company(
    gusto: &GustoClient,
    publisher: &Publisher,
    topology: &mlc_bus::Topology,
    store: &Store,
    company: &str,
    cursor: Option<String>,
) -> Result<CatchUp, String> {
    let mut out = CatchUp::default();
    let Some(mut cursor) = cursor else {
        let newest = gusto
            .list_events(&EventQuery {
                resource_uuid: Some(company.to_string()),
                limit: Some(1),
                descending: true,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let at = newest.first().map(|e| e.uuid.as_str()).unwrap_or("");
        store.set_last_event_uuid(company, at).await.map_err(|e| e.to_string())?;
        return Ok(out);
    };
    loop {
        let page = gusto
            .list_events(&EventQuery {
                resource_uuid: Some(company.to_string()),
                starting_after_uuid: (!cursor.is_empty()).then(|| cursor.clone()),
                limit: Some(100),
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        out.fetched += page.len();
        for e in &page {
            let entity_type = e.entity_type.clone().unwrap_or_else(|| "Unknown".into());
            let ev = GustoEvent {
                event_uuid: e.uuid.clone(),
                event_type: e.event_type.clone(),
                company_uuid: company.to_string(),
                entity_type: entity_type.clone(),
                entity_uuid: e.entity_uuid.clone().unwrap_or_default(),
                timestamp: e.timestamp.unwrap_or_default(),
                raw_body: serde_json::to_vec(e).unwrap_or_default(),
                received_at_ms: mlc_bus::now_ms(),
                trace: None,
                source: EventSource::CatchUp as i32,
            };
            let p = publisher
                .publish(&topology.gusto_event(company, &entity_type), &ev.event_uuid, &ev)
                .await
                .map_err(|e| e.to_string())?;
            if !p.duplicate {
                out.published += 1;
            }
            cursor = e.uuid.clone();
        }
        if let Some(last) = page.last() {
            store.set_last_event_uuid(company, &last.uuid).await.map_err(|e| e.to_string())?;
        }
        if page.len() < 100 {
            return Ok(out);
        }
    }
}

/// Runs [`catch_up_company`] for every active company now and then every `every`.
pub async fn run(
    gusto: Arc<GustoClient>,
    publisher: Publisher,
    topology: mlc_bus::Topology,
    store: Arc<Store>,
    every: std::time::Duration,
) {
    loop {
        match store.companies().await {
            Ok(companies) => {
                for c in companies.into_iter().filter(|c| !c.paused) {
                    match catch_up_company(
                        &gusto,
                        &publisher,
                        &topology,
                        &store,
                        &c.company_uuid,
                        c.last_event_uuid,
                    )
                    .await
                    {
                        Ok(r) if r.published > 0 => {
                            tracing::info!(company = %c.company_uuid, fetched = r.fetched, published = r.published,
                                "catch-up found events the webhooks had not delivered")
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(company = %c.company_uuid, error = %e, "catch-up failed; next pass retries")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "catch-up cannot read companies"),
        }
        tokio::time::sleep(every).await;
    }
}
