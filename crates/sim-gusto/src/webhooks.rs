//! Webhook delivery: thin payload, `X-Gusto-Signature` = lowercase hex
//! HMAC-SHA256(key = verification token, msg = exact body), retries with exponential
//! back-off on non-2xx or timeout, optional duplicates and reordering.

use std::sync::{Arc, Weak};
use std::time::Duration;

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::model::{Delivery, Event};
use crate::Sim;

pub(crate) fn sign(key: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Receives emitted events and starts one delivery task per (subscription, copy).
pub(crate) async fn dispatcher(sim: Weak<Sim>, mut rx: mpsc::UnboundedReceiver<Event>) {
    while let Some(event) = rx.recv().await {
        let Some(sim) = sim.upgrade() else { return };
        let mut plans = Vec::new();
        {
            let mut st = sim.state();
            let targets: Vec<(String, String, String)> = st
                .subscriptions
                .iter()
                .filter(|s| {
                    s.status == "verified"
                        // "always fired, regardless of whether your application has a
                        // subscription to the Company entity type" (§1.4).
                        && (s.wants(&event.entity_type) || event.event_type == "company.provisioned")
                })
                .map(|s| (s.uuid.clone(), s.url.clone(), s.verification_token.clone()))
                .collect();
            if targets.is_empty() {
                continue;
            }
            if st.drop_next_webhooks > 0 {
                st.drop_next_webhooks -= 1;
                for (sub, _, _) in targets {
                    st.deliveries.push(Delivery {
                        subscription_uuid: sub,
                        event_uuid: Some(event.uuid.clone()),
                        attempt: 0,
                        status: None,
                        dropped_on_purpose: true,
                        ack_lost: false,
                    });
                }
                continue;
            }
            let cfg = st.webhook_cfg.clone();
            for (sub, url, key) in targets {
                let copies = if st.rng.random_bool(cfg.duplicate_rate.clamp(0.0, 1.0)) { 2 } else { 1 };
                for _ in 0..copies {
                    let max = cfg.reorder_max_delay.as_millis() as u64;
                    let delay = if max > 0 {
                        Duration::from_millis(st.rng.random_range(0..=max))
                    } else {
                        Duration::ZERO
                    };
                    plans.push((sub.clone(), url.clone(), key.clone(), delay));
                }
            }
        }
        // Exact bytes that are signed and sent.
        let body = match serde_json::to_vec(&event) {
            Ok(b) => b,
            Err(_) => continue,
        };
        for (sub, url, key, delay) in plans {
            tokio::spawn(deliver(
                Arc::downgrade(&sim),
                sub,
                url,
                key,
                event.uuid.clone(),
                body.clone(),
                delay,
            ));
        }
    }
}

async fn deliver(
    sim: Weak<Sim>,
    sub: String,
    url: String,
    key: String,
    event_uuid: String,
    body: Vec<u8>,
    delay: Duration,
) {
    tokio::time::sleep(delay).await;
    let signature = sign(&key, &body);
    let mut attempt = 0u32;
    loop {
        let Some(s) = sim.upgrade() else { return };
        let cfg = s.state().webhook_cfg.clone();
        let result = s
            .http
            .post(&url)
            .header("Content-Type", "application/json")
            .header("X-Gusto-Signature", &signature)
            .timeout(cfg.timeout)
            .body(body.clone())
            .send()
            .await;
        let status = result.as_ref().ok().map(|r| r.status().as_u16());
        let accepted = status.is_some_and(|c| (200..300).contains(&c));
        let ack_lost = {
            let mut st = s.state();
            let lost =
                accepted && cfg.lost_ack_rate > 0.0 && st.rng.random_bool(cfg.lost_ack_rate.clamp(0.0, 1.0));
            st.deliveries.push(Delivery {
                subscription_uuid: sub.clone(),
                event_uuid: Some(event_uuid.clone()),
                attempt,
                status,
                dropped_on_purpose: false,
                ack_lost: lost,
            });
            lost
        };
        if accepted && !ack_lost {
            return;
        }
        if attempt >= cfg.max_retries {
            tracing::warn!(%url, %event_uuid, "webhook delivery abandoned after retries");
            let mut st = s.state();
            if let Some(subscription) = st.subscriptions.iter_mut().find(|x| x.uuid == sub) {
                subscription.status = "unreachable".into();
            }
            return;
        }
        let backoff = cfg.retry_base.saturating_mul(1u32 << attempt.min(20)).min(cfg.retry_max);
        drop(s);
        attempt += 1;
        tokio::time::sleep(backoff).await;
    }
}

/// POSTs `{"verification_token": ...}` UNSIGNED to a new subscription's URL.
pub(crate) async fn send_verification_token(sim: Arc<Sim>, sub: String, url: String, token: String) {
    let body = serde_json::json!({ "verification_token": token }).to_string();
    let result = sim.http.post(&url).header("Content-Type", "application/json").body(body).send().await;
    let status = result.as_ref().ok().map(|r| r.status().as_u16());
    sim.state().deliveries.push(Delivery {
        subscription_uuid: sub,
        event_uuid: None,
        attempt: 0,
        status,
        dropped_on_purpose: false,
        ack_lost: false,
    });
}

#[cfg(test)]
mod tests {
    use crate::model::Subscription;
    use crate::{EmployeePatch, SimConfig, WebhookConfig};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// A receiver that answers 200 to every POST and counts them.
    async fn receiver() -> (String, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let h = h.clone();
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (url, hits)
    }

    #[tokio::test]
    async fn a_lost_ack_makes_gusto_retry_an_accepted_delivery() {
        let (url, hits) = receiver().await;
        let sim = crate::start(SimConfig {
            webhooks: WebhookConfig {
                retry_base: Duration::from_millis(5),
                max_retries: 3,
                lost_ack_rate: 1.0,
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .unwrap();
        let company = sim.seed_company(2);
        sim.state().subscriptions.push(Subscription {
            uuid: "sub-1".into(),
            url,
            status: "verified".into(),
            subscription_types: vec!["Employee".into()],
            verification_token: "token".into(),
        });
        let employee = &company.employee_uuids[0];
        let patch = EmployeePatch { first_name: Some("Ingrid".into()), ..Default::default() };
        sim.update_employee(employee, patch.clone()).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while sim.deliveries().len() < 4 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Every answer was 200, every one was treated as lost: the first attempt and
        // three retries, then the subscription counts as unreachable (Gusto saw no 2xx).
        let d = sim.deliveries();
        assert_eq!(d.len(), 4, "{d:?}");
        assert!(d.iter().all(|x| x.status == Some(200) && x.ack_lost), "{d:?}");
        assert_eq!(d.iter().map(|x| x.attempt).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        assert_eq!(hits.load(Ordering::SeqCst), 4);
        assert_eq!(sim.state().subscriptions[0].status, "unreachable");

        // Rate 0: one 2xx ends the delivery.
        sim.state().subscriptions[0].status = "verified".into();
        sim.set_lost_ack_rate(0.0);
        sim.update_employee(employee, EmployeePatch { first_name: Some("Sigrid".into()), ..patch }).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while sim.deliveries().len() < 5 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let d = sim.deliveries();
        assert_eq!(d.len(), 5, "{d:?}");
        assert!(!d[4].ack_lost && d[4].status == Some(200) && d[4].attempt == 0);
    }
}
