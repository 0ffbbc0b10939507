//! The gateway against a real nats-server, over real HTTP.

use mlc_bus::{ensure_topology, Publisher, StreamKind, Topology};
use mlc_gateway::Gateway;
use mlc_testkit::{NatsServer, TestDb};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "6590f590-3dba-495e-9bea-c361e1e2efc0";
const OLD_TOKEN: &str = "old-token-still-valid-during-rotation";

struct App {
    nats: NatsServer,
    url: String,
    js: async_nats::jetstream::Context,
    topo: Topology,
    gw: Arc<Gateway>,
    _db: TestDb,
    store: Arc<mlc_store::Store>,
    http: reqwest::Client,
}

async fn start() -> App {
    let nats = NatsServer::start();
    let client = mlc_bus::connect(&nats.config(), "gateway-test").await.unwrap();
    let topo = Topology::new(&mlc_testkit::unique("g"), 1).unwrap();
    let js = async_nats::jetstream::new(client.clone());
    ensure_topology(&js, &topo).await.unwrap();
    let db = TestDb::sqlite();
    let store = Arc::new(db.store().await);
    let gw = Gateway::new(
        Publisher::new(client.clone(), Duration::from_millis(1500)),
        topo.clone(),
        vec![TOKEN.as_bytes().to_vec(), OLD_TOKEN.as_bytes().to_vec()],
        64 * 1024,
        Some(store.clone()),
    );
    tokio::spawn(gw.clone().watch_readiness(client));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(mlc_gateway::serve(listener, gw.clone(), std::future::pending()));
    App { nats, url, js, topo, gw, _db: db, store, http: reqwest::Client::new() }
}

fn event_body(uuid: &str) -> String {
    format!(
        r#"{{"uuid":"{uuid}","event_type":"employee.updated","resource_type":"Company","resource_uuid":"5df911a0-e8e9-412d-8aaf-a46ad193dd96","entity_type":"Employee","entity_uuid":"bcfc9744-0ab3-4ef3-ab0d-e728255d659c","timestamp":1671058841}}"#
    )
}

impl App {
    async fn post(&self, body: &str, signature: Option<&str>) -> u16 {
        let mut req = self.http.post(format!("{}/webhooks/gusto", self.url)).body(body.to_string());
        if let Some(s) = signature {
            req = req.header("X-Gusto-Signature", s);
        }
        req.send().await.unwrap().status().as_u16()
    }

    async fn post_signed(&self, body: &str) -> u16 {
        self.post(body, Some(&gusto::webhook::sign(TOKEN.as_bytes(), body.as_bytes()))).await
    }

    async fn count(&self, kind: StreamKind) -> u64 {
        let mut s = self.js.get_stream(self.topo.stream(kind)).await.unwrap();
        s.info().await.unwrap().state.messages
    }
}

#[tokio::test]
async fn a_webhook_delivered_three_times_is_stored_once() {
    let app = start().await;
    let body = event_body("03ffbf0c-48a9-4f1c-932a-546413a26ad1");
    for _ in 0..3 {
        assert_eq!(app.post_signed(&body).await, 200);
    }
    assert_eq!(app.count(StreamKind::GustoEvents).await, 1);
    // The stored message is the protobuf event, keyed by Gusto's uuid.
    let raw = app
        .js
        .get_stream(app.topo.stream(StreamKind::GustoEvents))
        .await
        .unwrap()
        .get_raw_message(1)
        .await
        .unwrap();
    let ev: mlc_proto::v1::GustoEvent = mlc_bus::decode(&raw.subject, &raw.payload).unwrap();
    assert_eq!(ev.event_uuid, "03ffbf0c-48a9-4f1c-932a-546413a26ad1");
    assert_eq!(ev.company_uuid, "5df911a0-e8e9-412d-8aaf-a46ad193dd96");
    assert_eq!(ev.entity_type, "Employee");
    assert_eq!(ev.raw_body, body.as_bytes());
    assert_eq!(
        raw.subject.as_str(),
        app.topo.gusto_event("5df911a0-e8e9-412d-8aaf-a46ad193dd96", "Employee")
    );
    assert_eq!(raw.headers.get("Nats-Msg-Id").unwrap().as_str(), ev.event_uuid);
}

#[tokio::test]
async fn the_documented_signature_vector_is_accepted() {
    let app = start().await;
    let body = r#"{"uuid":"03ffbf0c-48a9-4f1c-932a-546413a26ad1","event_type":"employee.created","resource_type":"Company","resource_uuid":"5df911a0-e8e9-412d-8aaf-a46ad193dd96","entity_type":"Employee","entity_uuid":"bcfc9744-0ab3-4ef3-ab0d-e728255d659c","timestamp":1671058841}"#;
    let sig = "c6e35d71a6cbfad6c26002a4e208e9982cc38010c118c7d3f20537356e117845";
    assert_eq!(app.post(body, Some(sig)).await, 200);
    // A token being rotated out still verifies.
    let b2 = event_body("rot-1");
    assert_eq!(app.post(&b2, Some(&gusto::webhook::sign(OLD_TOKEN.as_bytes(), b2.as_bytes()))).await, 200);
    assert_eq!(app.count(StreamKind::GustoEvents).await, 2);
}

#[tokio::test]
async fn unverified_requests_never_publish() {
    let app = start().await;
    let body = event_body("e-bad");
    let wrong = gusto::webhook::sign(b"not-the-token", body.as_bytes());
    assert_eq!(app.post(&body, None).await, 401, "missing header");
    assert_eq!(app.post(&body, Some(&wrong)).await, 401, "wrong token");
    assert_eq!(app.post(&body, Some(&wrong.to_uppercase())).await, 401, "not lowercase hex");
    assert_eq!(app.post(&body, Some("sha256=abc")).await, 401, "garbage header");
    let tampered = body.replace("employee.updated", "employee.deleted");
    assert_eq!(
        app.post(&tampered, Some(&gusto::webhook::sign(TOKEN.as_bytes(), body.as_bytes()))).await,
        401
    );
    assert_eq!(app.post("\u{0}\u{1}garbage", None).await, 401, "garbage unsigned body");
    let huge = "x".repeat(70 * 1024);
    assert_eq!(app.post(&huge, Some(&gusto::webhook::sign(TOKEN.as_bytes(), huge.as_bytes()))).await, 413);
    // A handshake with anything extra is not a handshake.
    assert_eq!(app.post(r#"{"verification_token":"t","uuid":"x"}"#, None).await, 401);
    assert_eq!(app.count(StreamKind::GustoEvents).await, 0);
    assert_eq!(app.count(StreamKind::DeadLetters).await, 0);
    let metrics = reqwest::get(format!("{}/metrics", app.url)).await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(r#"mlc_gateway_webhooks_refused_total{reason="wrong_signature"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"reason="too_large""#));
    // Refusals are audited, without the body.
    let rows = app.store.audit(&Default::default()).await.unwrap();
    assert_eq!(rows.iter().filter(|r| r.kind == "webhook.refused").count(), 8);
    assert!(rows.iter().all(|r| !r.detail.to_string().contains("e-bad")));
}

#[tokio::test]
async fn a_signed_body_that_is_not_an_event_is_kept_in_dead_letters() {
    let app = start().await;
    for body in ["not json at all", r#"{"event_type":"employee.updated"}"#, "[1,2,3]"] {
        assert_eq!(app.post_signed(body).await, 200, "{body}");
    }
    assert_eq!(app.post_signed("not json at all").await, 200, "a retry of the same bad body");
    assert_eq!(app.count(StreamKind::GustoEvents).await, 0);
    assert_eq!(app.count(StreamKind::DeadLetters).await, 3, "one letter per distinct body");
}

#[tokio::test]
async fn the_verification_handshake_is_stored_for_mlc_subscribe() {
    let app = start().await;
    assert_eq!(
        app.post(r#"{"verification_token": "6590f590-3dba-495e-9bea-c361e1e2efc0"}"#, None).await,
        200
    );
    let (_, tok, _) = app.store.latest_verification_token().await.unwrap().unwrap();
    assert_eq!(tok, TOKEN);
    assert_eq!(app.count(StreamKind::GustoEvents).await, 0, "the handshake is not an event");

    // A token that arrived unsigned signs nothing until Gusto confirmed it.
    let fresh = "fresh-subscription-token";
    assert_eq!(app.post(&format!(r#"{{"verification_token":"{fresh}"}}"#), None).await, 200);
    let body = event_body("after-handshake");
    let sig = gusto::webhook::sign(fresh.as_bytes(), body.as_bytes());
    app.gw.refresh_tokens().await;
    assert_eq!(app.post(&body, Some(&sig)).await, 401, "unverified token is not trusted");
    let (id, tok, _) = app.store.latest_verification_token().await.unwrap().unwrap();
    assert_eq!(tok, fresh);
    app.store.mark_verification_token_verified(id).await.unwrap();
    app.gw.refresh_tokens().await;
    assert_eq!(app.post(&body, Some(&sig)).await, 200, "verified token signs");
}

#[tokio::test]
async fn with_nats_down_the_gateway_answers_503_and_loses_nothing_after() {
    let mut app = start().await;
    let mut accepted = std::collections::BTreeSet::new();
    for i in 0..5 {
        let id = format!("before-{i}");
        assert_eq!(app.post_signed(&event_body(&id)).await, 200);
        accepted.insert(id);
    }
    app.nats.stop();
    let mut refused = Vec::new();
    for i in 0..5 {
        let id = format!("during-{i}");
        let status = app.post_signed(&event_body(&id)).await;
        assert_eq!(status, 503, "no ack, no 2xx");
        refused.push(id);
    }
    let ready = reqwest::get(format!("{}/readyz", app.url)).await.unwrap().status().as_u16();
    assert_eq!(ready, 503);
    app.nats.start_again();
    // Gusto retries what got 503; the gateway accepts again once NATS is back.
    for id in refused {
        let mut ok = false;
        for _ in 0..60 {
            if app.post_signed(&event_body(&id)).await == 200 {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ok, "gateway did not recover");
        accepted.insert(id);
    }
    assert_eq!(app.count(StreamKind::GustoEvents).await, accepted.len() as u64, "count in = count in stream");
    assert_eq!(app.gw.metrics().accepted_total(), accepted.len() as u64);
}

#[tokio::test]
async fn health_and_readiness() {
    let app = start().await;
    assert_eq!(reqwest::get(format!("{}/healthz", app.url)).await.unwrap().status().as_u16(), 200);
    let mut ready = 0;
    for _ in 0..40 {
        ready = reqwest::get(format!("{}/readyz", app.url)).await.unwrap().status().as_u16();
        if ready == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready, 200);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]
        /// Whatever arrives unsigned or mis-signed, nothing is published and nothing panics.
        #[test]
        fn arbitrary_requests_never_publish_unless_verified(
            body in proptest::collection::vec(any::<u8>(), 0..2048),
            sig in proptest::option::of("[ -~]{0,80}"),
            extra in proptest::collection::vec(("[a-zA-Z-]{1,20}", "[ -~]{0,40}"), 0..4),
        ) {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let app = shared_app().await;
                let before = app.count(StreamKind::GustoEvents).await;
                let mut req = app.http.post(format!("{}/webhooks/gusto", app.url)).body(body.clone());
                if let Some(s) = &sig { req = req.header("X-Gusto-Signature", s.as_str()); }
                for (k, v) in &extra { req = req.header(k.as_str(), v.as_str()); }
                if let Ok(resp) = req.send().await {
                    let status = resp.status().as_u16();
                    prop_assert!(status != 500, "server error on fuzzed input");
                    prop_assert!(matches!(status, 200 | 400 | 401 | 413), "status {status}");
                }
                let after = app.count(StreamKind::GustoEvents).await;
                prop_assert_eq!(before, after);
                Ok(())
            })?;
        }
    }

    /// One gateway for all cases, on its own runtime thread so cases can block on it.
    async fn shared_app() -> &'static App {
        static APP: std::sync::OnceLock<&'static App> = std::sync::OnceLock::new();
        if let Some(a) = APP.get() {
            return a;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let app: &'static App = Box::leak(Box::new(start().await));
                tx.send(app).unwrap();
                std::future::pending::<()>().await;
            });
        });
        let app = rx.recv().unwrap();
        APP.get_or_init(|| app)
    }
}
