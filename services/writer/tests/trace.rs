//! One trace per webhook: the writer's span continues the trace in the command's headers,
//! its Visma calls are client spans of it, and the outcome carries it on.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mlc_bus::StreamKind;
use mlc_proto::v1::{CommandKind, SyncOutcome, VismaCommand, VismaEmployeeFields, VismaStatus};
use mlc_testkit::TestDb;
use mlc_writer::WriterSettings;
use opentelemetry::trace::{SpanKind, TracerProvider as _};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanProcessor};
use prost::Message as _;
use sim_visma::{SimConfig, DEFAULT_TENANT};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Keeps every finished span.
#[derive(Debug, Clone, Default)]
struct Collect(Arc<Mutex<Vec<SpanData>>>);

impl SpanProcessor for Collect {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}
    fn on_end(&self, span: SpanData) {
        self.0.lock().unwrap().push(span);
    }
    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test]
async fn the_webhook_trace_continues_through_the_writer() {
    let spans = Collect::default();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let provider = SdkTracerProvider::builder().with_span_processor(spans.clone()).build();
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
        .try_init()
        .unwrap();

    let bus = mlc_testkit::Bus::start("t").await;
    let (client, js, topo) = (bus.client.clone(), bus.js.clone(), bus.topo.clone());
    let sim = sim_visma::start(SimConfig::default()).await.unwrap();
    sim.seed(DEFAULT_TENANT, &sim_visma::demo_seed()).unwrap();
    let db = TestDb::sqlite();
    let store = Arc::new(db.store().await);
    mlc_testkit::company(&store, "c1", "main", std::path::Path::new("")).await;

    let fields = VismaEmployeeFields {
        employee_cd: "G1".into(),
        last_name: "Lovelace".into(),
        email: "ada@example.com".into(),
        department_id: "ENG".into(),
        employee_class: "EMPSTD".into(),
        branch: "1".into(),
        calendar: "MAIN".into(),
        status: VismaStatus::Active as i32,
        ..VismaEmployeeFields::default()
    };
    let cmd = VismaCommand {
        command_id: "1-r".into(),
        company_uuid: "c1".into(),
        employee_uuid: "e1".into(),
        kind: CommandKind::Upsert as i32,
        content_hash: mlc_domain::command_hash(CommandKind::Upsert, &fields),
        fields: Some(fields),
        ..VismaCommand::default()
    };
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01").as_str());
    bus.publisher
        .publish_raw(&topo.visma_command("c1", "e1"), "1-r", cmd.encode_to_vec().into(), headers)
        .await
        .unwrap();

    let visma = visma::VismaClient::new(
        visma::VismaConfig::new(
            DEFAULT_TENANT,
            sim_visma::DEFAULT_CLIENT_ID,
            sim_visma::DEFAULT_CLIENT_SECRET,
        )
        .with_endpoints(sim.base_url(), sim.token_url()),
    )
    .unwrap();
    let settings = WriterSettings::new(topo.clone(), [("main".to_string(), Arc::new(visma))].into());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(mlc_writer::run(client, store.clone(), settings, async {
        let _ = stopped.await;
    }));

    let outcomes = js.get_stream(topo.stream(StreamKind::SyncOutcomes)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let outcome = loop {
        if let Ok(m) = outcomes.get_raw_message(1).await {
            break SyncOutcome::decode(m.payload.as_ref()).unwrap();
        }
        assert!(Instant::now() < deadline, "no outcome");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = stop.send(());
    writer.await.unwrap().unwrap();

    // The outcome continues the webhook's trace, in its message field (and headers).
    let traceparent = outcome.trace.unwrap().traceparent;
    assert!(traceparent.contains(TRACE_ID), "{traceparent}");
    let audit = store.audit(&Default::default()).await.unwrap();
    assert_eq!(audit[0].trace_id.as_deref(), Some(TRACE_ID));

    // The command span is in the trace; the Visma calls are client spans beneath it.
    let _ = provider.force_flush();
    let spans = spans.0.lock().unwrap().clone();
    let command = spans.iter().find(|s| s.name == "visma.command").expect("command span");
    assert_eq!(command.span_context.trace_id().to_string(), TRACE_ID);
    let calls: Vec<_> = spans.iter().filter(|s| s.name == "visma.request").collect();
    // An employee never linked is created first: the POST, without a GET before it.
    assert!(!calls.is_empty(), "the POST: {calls:?}");
    for call in calls {
        assert_eq!(call.span_kind, SpanKind::Client);
        assert_eq!(call.span_context.trace_id().to_string(), TRACE_ID);
        assert_eq!(call.parent_span_id, command.span_context.span_id());
    }
}
