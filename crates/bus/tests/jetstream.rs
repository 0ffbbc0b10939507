//! Topology and publishing against a real, private nats-server.

use mlc_bus::{ensure_topology, last_on_subject, ConsumerSpec, Publisher, StreamKind, Topology};
use mlc_proto::v1::{GustoEvent, TraceContext};
use mlc_testkit::NatsServer;
use std::time::Duration;

async fn setup() -> (NatsServer, async_nats::Client, Topology) {
    let server = NatsServer::start();
    let client = mlc_bus::connect_now(&server.config(), "test").await.unwrap();
    let topo = Topology::new(&mlc_testkit::unique("t"), 1).unwrap();
    (server, client, topo)
}

#[tokio::test]
async fn topology_is_idempotent_and_safe_concurrently() {
    let (_server, client, topo) = setup().await;
    let js = async_nats::jetstream::new(client);
    // Eight services starting at once.
    let runs = (0..8).map(|_| {
        let (js, topo) = (js.clone(), topo.clone());
        tokio::spawn(async move { ensure_topology(&js, &topo).await })
    });
    for r in futures::future::join_all(runs).await {
        r.unwrap().unwrap();
    }
    ensure_topology(&js, &topo).await.unwrap();
    for kind in StreamKind::ALL {
        let mut s = js.get_stream(topo.stream(kind)).await.unwrap();
        assert_eq!(s.info().await.unwrap().config.subjects, vec![topo.wildcard(kind)]);
    }
    for spec in ConsumerSpec::ALL {
        let s = js.get_stream(topo.stream(spec.stream)).await.unwrap();
        let c: async_nats::jetstream::consumer::PullConsumer = s.get_consumer(spec.durable).await.unwrap();
        assert_eq!(c.cached_info().config.max_deliver, spec.max_deliver);
    }
}

#[tokio::test]
async fn a_repeated_msg_id_is_stored_once() {
    let (_server, client, topo) = setup().await;
    let js = async_nats::jetstream::new(client.clone());
    ensure_topology(&js, &topo).await.unwrap();
    let publisher = Publisher::new(client, Duration::from_secs(5));
    let ev = GustoEvent { event_uuid: "ev-1".into(), ..Default::default() };
    let subject = topo.gusto_event("c1", "Employee");
    let first = publisher.publish(&subject, "ev-1", &ev).await.unwrap();
    let again = publisher.publish(&subject, "ev-1", &ev).await.unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(again.sequence, first.sequence);
    let mut stream = js.get_stream(topo.stream(StreamKind::GustoEvents)).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
}

#[tokio::test]
async fn a_message_survives_publish_fetch_and_decode_with_its_trace_header() {
    use futures::StreamExt;
    let (_server, client, topo) = setup().await;
    let js = async_nats::jetstream::new(client.clone());
    ensure_topology(&js, &topo).await.unwrap();
    let publisher = Publisher::new(client, Duration::from_secs(5));
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let ev = GustoEvent {
        event_uuid: "ev-2".into(),
        event_type: "employee.updated".into(),
        raw_body: b"{\"x\":1}".to_vec(),
        trace: Some(TraceContext { traceparent: tp.into(), tracestate: String::new() }),
        ..Default::default()
    };
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("traceparent", tp);
    let subject = topo.gusto_event("c1", "Employee");
    publisher
        .publish_raw(&subject, "ev-2", prost::Message::encode_to_vec(&ev).into(), headers)
        .await
        .unwrap();
    let stream = js.get_stream(topo.stream(StreamKind::GustoEvents)).await.unwrap();
    let consumer: async_nats::jetstream::consumer::PullConsumer =
        stream.get_consumer(ConsumerSpec::HYDRATOR.durable).await.unwrap();
    let mut batch = consumer.fetch().max_messages(1).messages().await.unwrap();
    let msg = batch.next().await.unwrap().unwrap();
    let got: GustoEvent = mlc_bus::decode(&msg.subject, &msg.payload).unwrap();
    assert_eq!(got, ev);
    assert_eq!(msg.headers.as_ref().unwrap().get("traceparent").unwrap().as_str(), tp);
    assert_eq!(msg.headers.as_ref().unwrap().get("Nats-Msg-Id").unwrap().as_str(), "ev-2");
    msg.ack().await.unwrap();

    let last: GustoEvent =
        last_on_subject(&js, &topo.stream(StreamKind::GustoEvents), &subject).await.unwrap().unwrap().message;
    assert_eq!(last.event_uuid, "ev-2");
    assert!(last_on_subject::<GustoEvent>(
        &js,
        &topo.stream(StreamKind::GustoEvents),
        &topo.gusto_event("c9", "X")
    )
    .await
    .unwrap()
    .is_none());
}

#[tokio::test]
async fn publishing_while_the_broker_is_down_fails_and_recovers() {
    let (mut server, client, topo) = setup().await;
    let js = async_nats::jetstream::new(client.clone());
    ensure_topology(&js, &topo).await.unwrap();
    let publisher = Publisher::new(client, Duration::from_millis(800));
    let subject = topo.gusto_event("c1", "Employee");
    server.stop();
    let err = publisher.publish(&subject, "down-1", &GustoEvent::default()).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    server.start_again();
    // The client reconnects on its own; the same id can be retried safely.
    let mut ok = None;
    for _ in 0..50 {
        if let Ok(p) = publisher.publish(&subject, "down-1", &GustoEvent::default()).await {
            ok = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok.is_some(), "publish did not recover after the broker came back");
}

/// A consumer waiting for work when nats-server restarts gets the next message within
/// seconds: the restarted server has forgotten the waiting pull request, and async-nats
/// would only give up on it 5 s past its expiry (8.9 s from the restart, measured before
/// `consume` bounded the wait itself).
#[tokio::test]
async fn a_consumer_waiting_through_a_broker_restart_gets_the_next_message_within_seconds() {
    let (mut server, client, topo) = setup().await;
    let js = async_nats::jetstream::new(client.clone());
    ensure_topology(&js, &topo).await.unwrap();
    let spec = ConsumerSpec::HYDRATOR;
    let consumer = mlc_bus::consume::open_partition(&js, &topo, &spec, 0).await.unwrap();
    let waiting = tokio::spawn({
        let topo = topo.clone();
        async move {
            let subjects = mlc_bus::consume::Subjects { topology: &topo, kind: StreamKind::GustoEvents };
            let linger = mlc_bus::consume::Linger::fixed(Duration::ZERO);
            let batch = mlc_bus::consume::next_batch(&consumer, 10, linger, subjects).await;
            (std::time::Instant::now(), batch.len())
        }
    });
    // The pull request is at the server when it goes down.
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.stop();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.start_again();
    let restarted = std::time::Instant::now();
    let publisher = Publisher::new(client, Duration::from_millis(800));
    let subject = topo.gusto_event("c1", "Employee");
    while publisher.publish(&subject, "after-restart", &GustoEvent::default()).await.is_err() {
        assert!(restarted.elapsed() < Duration::from_secs(10), "no publish after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (at, n) = tokio::time::timeout(Duration::from_secs(15), waiting)
        .await
        .expect("the consumer never woke")
        .unwrap();
    assert_eq!(n, 1);
    let took = at - restarted;
    assert!(took < Duration::from_secs(4), "the message waited {took:?} after the restart");
}

/// A publish the server took but never acknowledged (a stream leader that stalls, an ack
/// lost on the way) ends as `AckTimeout` after the publisher's ack timeout, not later and
/// not as another error, so callers retry it with the same id. Here the subject belongs
/// to no stream: a plain subscriber takes the request and never answers.
#[tokio::test]
async fn a_publish_nobody_acknowledges_ends_as_an_ack_timeout() {
    use futures::StreamExt;
    let (_server, client, _topo) = setup().await;
    let mut taker = client.subscribe("silent.events").await.unwrap();
    client.flush().await.unwrap();
    let publisher = Publisher::new(client.clone(), Duration::from_millis(300));
    let started = std::time::Instant::now();
    let err = publisher.publish("silent.events", "silent-1", &GustoEvent::default()).await.unwrap_err();
    let took = started.elapsed();
    match &err {
        mlc_bus::BusError::AckTimeout { subject, timeout } => {
            assert_eq!(subject, "silent.events");
            assert_eq!(*timeout, Duration::from_millis(300));
        }
        other => panic!("expected an ack timeout, got {other:?}"),
    }
    assert!(err.is_transient(), "an ack timeout may pass: {err}");
    assert!(err.to_string().contains("not acknowledged within 300ms"), "{err}");
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "took {took:?}");
    // The request did reach the server and its subscriber, with the id to retry it by.
    let got = tokio::time::timeout(Duration::from_secs(2), taker.next()).await.unwrap().unwrap();
    assert_eq!(got.headers.unwrap().get("Nats-Msg-Id").map(|v| v.as_str()), Some("silent-1"));
}

/// A service's start-up (`ensure_topology`) creates what is missing and changes nothing
/// that exists (its NATS user may not, ops/nats/auth.conf); the admin's
/// `apply_topology` brings an existing stream and consumer back to the configuration.
#[tokio::test]
async fn services_create_a_missing_topology_but_only_the_admin_changes_one() {
    let (_server, client, topo) = setup().await;
    let js = async_nats::jetstream::new(client);
    ensure_topology(&js, &topo).await.unwrap();
    let name = topo.stream(StreamKind::SyncOutcomes);
    let mut changed = topo.stream_config(StreamKind::SyncOutcomes);
    changed.max_age = Duration::from_secs(3600);
    js.update_stream(changed).await.unwrap();
    let max_age = |js: async_nats::jetstream::Context| {
        let name = name.clone();
        async move { js.get_stream(name).await.unwrap().info().await.unwrap().config.max_age }
    };
    ensure_topology(&js, &topo).await.unwrap();
    assert_eq!(max_age(js.clone()).await, Duration::from_secs(3600), "a service start changed a stream");
    mlc_bus::apply_topology(&js, &topo).await.unwrap();
    assert_eq!(max_age(js.clone()).await, topo.stream_config(StreamKind::SyncOutcomes).max_age);

    // A consumer made by an older release (60 s ack wait, before progress acknowledgements)
    // keeps it through service starts; the admin's apply brings it to today's, so a message
    // held by a killed process comes back after seconds, not a minute.
    let stream = js.get_stream(topo.stream(StreamKind::VismaCommands)).await.unwrap();
    let mut old = topo.consumer_config(&ConsumerSpec::WRITER, 0);
    old.ack_wait = Duration::from_secs(60);
    stream.delete_consumer(ConsumerSpec::WRITER.durable).await.unwrap();
    stream.create_consumer(old).await.unwrap();
    let ack_wait = || async {
        js.get_stream(topo.stream(StreamKind::VismaCommands))
            .await
            .unwrap()
            .consumer_info(ConsumerSpec::WRITER.durable)
            .await
            .unwrap()
            .config
            .ack_wait
    };
    ensure_topology(&js, &topo).await.unwrap();
    assert_eq!(ack_wait().await, Duration::from_secs(60), "a service start changed a consumer");
    mlc_bus::apply_topology(&js, &topo).await.unwrap();
    assert_eq!(ack_wait().await, topo.consumer_config(&ConsumerSpec::WRITER, 0).ack_wait);

    // A deleted consumer counts as missing: the next start recreates it.
    stream.delete_consumer(ConsumerSpec::WRITER.durable).await.unwrap();
    ensure_topology(&js, &topo).await.unwrap();
    assert!(stream.consumer_info(ConsumerSpec::WRITER.durable).await.is_ok());
}

/// A read-only command must not bring up an installation by looking at it: against a
/// prefix with no streams, `verify_topology` creates nothing and names the prefix.
#[tokio::test]
async fn verify_topology_creates_nothing_and_names_the_prefix() {
    let server = mlc_testkit::NatsServer::start();
    let client = mlc_bus::connect_now(&server.config(), "verify-test").await.unwrap();
    let js = async_nats::jetstream::new(client);
    let prefix = mlc_testkit::unique("v");
    let topo = mlc_bus::Topology::new(&prefix, 1).unwrap();

    let err = mlc_bus::verify_topology(&js, &topo).await.expect_err("nothing exists yet");
    assert!(err.to_string().contains(&prefix), "{err}");
    assert!(js.get_stream(topo.stream(mlc_bus::StreamKind::GustoEvents)).await.is_err(), "created a stream");

    mlc_bus::ensure_topology(&js, &topo).await.unwrap();
    mlc_bus::verify_topology(&js, &topo).await.expect("every stream and consumer exists");
}
