//! The gateway against a real nats-server, over real HTTP.

use mlc_bus::{ensure_topology, Publisher, StreamKind, Topology};
use mlc_gateway::{Gateway, Settings};
use mlc_testkit::NatsServer;
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "6590f590-3dba-495e-9bea-c361e1e2efc0";
const OLD_TOKEN: &str = "old-token-still-valid-during-rotation";

struct App {
    nats: NatsServer,
    url: String,
    /// The ops listener: health, readiness, metrics.
    ops: String,
    js: async_nats::jetstream::Context,
    topo: Topology,
    gw: Arc<Gateway>,
    http: reqwest::Client,
}

async fn start() -> App {
    let nats = NatsServer::start();
    let client = mlc_bus::connect(&nats.config(), "gateway-test").await.unwrap();
    let topo = Topology::new(&mlc_testkit::unique("g"), 1).unwrap();
    let js = async_nats::jetstream::new(client.clone());
    ensure_topology(&js, &topo).await.unwrap();
    let settings = Settings::with_tokens(vec![TOKEN.as_bytes().to_vec(), OLD_TOKEN.as_bytes().to_vec()]);
    let gw =
        Gateway::new(Publisher::new(client.clone(), Duration::from_millis(1500)), topo.clone(), &settings);
    tokio::spawn(gw.clone().watch_readiness(client));
    tokio::spawn(gw.clone().watch_keys(js.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(mlc_gateway::serve(listener, gw.clone(), settings.limits, std::future::pending()));
    let ops_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ops = format!("http://{}", ops_listener.local_addr().unwrap());
    tokio::spawn(mlc_gateway::serve_ops(ops_listener, gw.clone(), std::future::pending()));
    App { nats, url, ops, js, topo, gw, http: reqwest::Client::new() }
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
    let metrics = reqwest::get(format!("{}/metrics", app.ops)).await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(r#"mlc_gateway_webhooks_refused_total{reason="wrong_signature"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"reason="too_large""#));
    // Metrics and health are not on the public port (finding 11).
    for path in ["/metrics", "/healthz", "/readyz"] {
        let status = reqwest::get(format!("{}{path}", app.url)).await.unwrap().status().as_u16();
        assert_eq!(status, 404, "{path} on the webhook port");
    }
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
async fn the_verification_handshake_is_passed_on_and_trusts_nothing_by_itself() {
    let app = start().await;
    let fresh = "fresh-subscription-token";
    assert_eq!(app.post(&format!(r#"{{"verification_token": "{fresh}"}}"#), None).await, 200);
    assert_eq!(app.count(StreamKind::GustoEvents).await, 0, "the handshake is not an event");
    let mut hs = app.js.get_stream(app.topo.handshakes_stream()).await.unwrap();
    assert_eq!(hs.info().await.unwrap().state.messages, 1);
    let m = hs.get_raw_message(1).await.unwrap();
    assert_eq!(m.payload.as_ref(), fresh.as_bytes());
    assert_eq!(m.subject.as_str(), app.topo.handshake_subject());

    // A token that arrived unsigned signs nothing until it is in WEBHOOK_KEYS.
    let body = event_body("after-handshake");
    let sig = gusto::webhook::sign(fresh.as_bytes(), body.as_bytes());
    assert_eq!(app.post(&body, Some(&sig)).await, 401, "an unverified token is not trusted");
    let kv = app.js.get_key_value(app.topo.webhook_keys_bucket()).await.unwrap();
    kv.put("sub-1", fresh.as_bytes().to_vec().into()).await.unwrap();
    let mut status = 0;
    for _ in 0..50 {
        status = app.post(&body, Some(&sig)).await;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "a token from the bucket signs");
    kv.delete("sub-1").await.unwrap();
    let body2 = event_body("after-removal");
    let sig2 = gusto::webhook::sign(fresh.as_bytes(), body2.as_bytes());
    for _ in 0..50 {
        status = app.post(&body2, Some(&sig2)).await;
        if status == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 401, "a token removed from the bucket no longer signs");
}

#[tokio::test]
async fn handshakes_are_rate_bounded_and_odd_ones_refused() {
    let app = start().await;
    let mut codes = std::collections::BTreeMap::new();
    for i in 0..60 {
        let code = app.post(&format!(r#"{{"verification_token":"junk-{i}"}}"#), None).await;
        *codes.entry(code).or_insert(0) += 1;
    }
    // The default bound: 30 per minute, bursts of 30.
    assert_eq!(codes.get(&200), Some(&30), "{codes:?}");
    assert_eq!(codes.get(&429), Some(&30), "{codes:?}");
    let mut hs = app.js.get_stream(app.topo.handshakes_stream()).await.unwrap();
    assert_eq!(hs.info().await.unwrap().state.messages, 30);
    let long = "x".repeat(300);
    assert_eq!(app.post(&format!(r#"{{"verification_token":"{long}"}}"#), None).await, 401);
    assert_eq!(app.post(r#"{"verification_token":"with space"}"#, None).await, 401);
}

#[tokio::test]
async fn a_signed_event_with_cr_lf_in_its_uuid_is_answered_and_dead_lettered() {
    let app = start().await;
    for (i, bad) in [r"evil\nNats-Expected-Stream: X", r"evil\r\nx", "a.b", "*"].iter().enumerate() {
        let body = event_body(bad);
        assert_eq!(app.post_signed(&body).await, 200, "case {i}: answered, not a dropped connection");
    }
    let body = event_body("ok-1").replace(r#""entity_type":"Employee""#, r#""entity_type":"Emp\r\nloyee""#);
    assert_eq!(app.post_signed(&body).await, 200);
    assert_eq!(app.count(StreamKind::GustoEvents).await, 0);
    assert_eq!(app.count(StreamKind::DeadLetters).await, 5);
    // The gateway still serves.
    assert_eq!(app.post_signed(&event_body("fine-after")).await, 200);
    assert_eq!(app.count(StreamKind::GustoEvents).await, 1);
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
    let ready = reqwest::get(format!("{}/readyz", app.ops)).await.unwrap().status().as_u16();
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
    assert_eq!(reqwest::get(format!("{}/healthz", app.ops)).await.unwrap().status().as_u16(), 200);
    let mut ready = 0;
    for _ in 0..40 {
        ready = reqwest::get(format!("{}/readyz", app.ops)).await.unwrap().status().as_u16();
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
                    prop_assert!(matches!(status, 200 | 400 | 401 | 413 | 429), "status {status}");
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
