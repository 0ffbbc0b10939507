//! One webhook, one trace: the three real services export OTLP/HTTP to an in-process
//! receiver, and the spans of one webhook form one tree rooted at the gateway's
//! `webhook` span, through the projector (hydrate, the Gusto call, map) to the writer
//! (the command and its Visma calls), the context carried in NATS headers.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use mlc_e2e::{Stack, StackOptions};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;

const SERVICES: [&str; 3] = ["gateway", "projector", "writer"];

/// One exported span, flattened.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    kind: i32,
    attrs: HashMap<String, String>,
    start: u64,
    end: u64,
}

impl Span {
    fn attr(&self, key: &str) -> &str {
        self.attrs.get(key).map_or("", String::as_str)
    }
}

/// `POST /v1/traces` on 127.0.0.1:0, decoding OTLP/HTTP protobuf bodies.
struct OtlpReceiver {
    url: String,
    spans: Arc<Mutex<Vec<Span>>>,
    /// Content types of the export requests, to check what the exporter speaks.
    content_types: Arc<Mutex<BTreeSet<String>>>,
}

#[derive(Clone)]
struct ReceiverState {
    spans: Arc<Mutex<Vec<Span>>>,
    content_types: Arc<Mutex<BTreeSet<String>>>,
}

impl OtlpReceiver {
    async fn start() -> OtlpReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the OTLP receiver");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let state = ReceiverState { spans: Arc::default(), content_types: Arc::default() };
        let app =
            axum::Router::new().route("/v1/traces", axum::routing::post(export)).with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        OtlpReceiver { url, spans: state.spans, content_types: state.content_types }
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

async fn export(
    axum::extract::State(st): axum::extract::State<ReceiverState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let content_type =
        headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    st.content_types.lock().unwrap_or_else(|p| p.into_inner()).insert(content_type.clone());
    if content_type != "application/x-protobuf" {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, HeaderMap::new(), Vec::new());
    }
    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, HeaderMap::new(), Vec::new());
    };
    let mut out = Vec::new();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
            .map(|a| text(a.value.as_ref()))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(Span {
                    service: service.clone(),
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent: hex(&s.parent_span_id),
                    name: s.name,
                    kind: s.kind,
                    attrs: s.attributes.iter().map(|a| (a.key.clone(), text(a.value.as_ref()))).collect(),
                    start: s.start_time_unix_nano,
                    end: s.end_time_unix_nano,
                });
            }
        }
    }
    st.spans.lock().unwrap_or_else(|p| p.into_inner()).extend(out);
    let mut h = HeaderMap::new();
    h.insert("content-type", "application/x-protobuf".parse().expect("header"));
    (StatusCode::OK, h, ExportTraceServiceResponse::default().encode_to_vec())
}

fn text(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether `ancestor` is on the parent chain of `span` (within `by_id`).
fn descends_from(by_id: &HashMap<&str, &Span>, span: &Span, ancestor: &Span) -> bool {
    let mut cur = span;
    for _ in 0..64 {
        if cur.parent == ancestor.span_id {
            return true;
        }
        match by_id.get(cur.parent.as_str()) {
            Some(p) => cur = p,
            None => return false,
        }
    }
    false
}

fn describe(spans: &[&Span]) -> String {
    let mut s = String::new();
    for sp in spans {
        s.push_str(&format!(
            "  {} {} span={} parent={} kind={} {:?}\n",
            sp.service, sp.name, sp.span_id, sp.parent, sp.kind, sp.attrs
        ));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_webhook_is_one_trace_across_gateway_projector_and_writer() {
    let receiver = OtlpReceiver::start().await;
    let mut stack = Stack::start(StackOptions { employees: 3, ..Default::default() }).await;

    // Point the three services at the receiver through their configuration.
    for s in SERVICES {
        stack.stop_service(s, Duration::from_secs(20)).await;
    }
    stack.edit_config(|c| {
        c.telemetry.otlp_endpoint = Some(receiver.url.clone());
        // Traces do not depend on how much is logged.
        c.telemetry.log_filter = "warn".into();
    });
    for s in SERVICES {
        stack.start_service(s);
    }
    for s in SERVICES {
        stack.wait_ready(s).await;
    }

    // One change in Gusto: one `employee.updated` webhook.
    let employee = stack.company.employee_uuids[0].clone();
    let sim = stack.gusto.sim();
    let before = sim.events().len();
    sim.update_employee(
        &employee,
        sim_gusto::EmployeePatch { last_name: Some("Traceby".into()), ..Default::default() },
    )
    .expect("update the employee");
    let event = sim.events()[before..]
        .iter()
        .find(|e| e.entity_uuid == employee)
        .expect("the simulator recorded the event")
        .uuid
        .clone();
    // Wait for the outcome in Visma, then for the pipeline to be idle.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stack.visma_employees().iter().any(|e| e.contact.last_name.as_deref() == Some("Traceby")) {
        assert!(Instant::now() < deadline, "the change never reached Visma{}", stack.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.settle().await;

    // A graceful stop flushes the exporters' batches.
    for s in SERVICES {
        assert!(
            stack.stop_service(s, Duration::from_secs(20)).await,
            "{s} did not stop cleanly{}",
            stack.logs()
        );
    }

    // The webhook's root span, then everything of its trace.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (root, trace) = loop {
        let spans = receiver.spans();
        let root = spans
            .iter()
            .find(|s| s.service == "mlc-gateway" && s.name == "webhook" && s.attr("event_uuid") == event)
            .cloned();
        if let Some(root) = root {
            let trace: Vec<Span> = spans.iter().filter(|s| s.trace_id == root.trace_id).cloned().collect();
            let services: BTreeSet<&str> = trace.iter().map(|s| s.service.as_str()).collect();
            if services.len() == 3 || Instant::now() > deadline {
                break (root, trace);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no webhook span for event {event}; received {} spans, content types {:?}{}",
            spans.len(),
            receiver.content_types.lock().unwrap(),
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        *receiver.content_types.lock().unwrap(),
        BTreeSet::from(["application/x-protobuf".to_string()]),
        "the exporter speaks OTLP/HTTP protobuf"
    );
    let all: Vec<&Span> = trace.iter().collect();
    let by_id: HashMap<&str, &Span> = trace.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let dump = describe(&all);

    // One tree: the gateway's webhook span is the root, every other span's parent is in it.
    assert!(root.parent.is_empty(), "the webhook span is a root:\n{dump}");
    assert_eq!(root.kind, SpanKind::Server as i32, "the webhook span is a server span");
    for s in &trace {
        if s.span_id != root.span_id {
            assert!(
                by_id.contains_key(s.parent.as_str()),
                "{} ({}) has its parent outside the trace:\n{dump}",
                s.name,
                s.service
            );
            assert!(
                descends_from(&by_id, s, &root),
                "{} does not descend from the webhook span:\n{dump}",
                s.name
            );
        }
    }
    let services: BTreeSet<&str> = trace.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(services, BTreeSet::from(["mlc-gateway", "mlc-projector", "mlc-writer"]), "{dump}");

    let one = |service: &str, name: &str| -> &Span {
        let found: Vec<&Span> = trace.iter().filter(|s| s.service == service && s.name == name).collect();
        assert!(!found.is_empty(), "no {name} span from {service} in the trace:\n{dump}");
        found[0]
    };
    // Projector: hydrate (the employee of the event), its Gusto GET, then map.
    let hydrate = one("mlc-projector", "hydrate");
    assert_eq!(hydrate.attr("employee"), employee, "{dump}");
    assert_eq!(hydrate.kind, SpanKind::Consumer as i32);
    let gusto_get = trace
        .iter()
        .find(|s| {
            s.service == "mlc-projector"
                && s.name == "gusto.request"
                && s.attr("http.request.method") == "GET"
                && s.attr("url.path") == format!("/v1/employees/{employee}")
        })
        .unwrap_or_else(|| panic!("no Gusto GET /v1/employees/{employee} span:\n{dump}"));
    assert_eq!(gusto_get.kind, SpanKind::Client as i32, "the Gusto call is a client span");
    assert_eq!(gusto_get.attr("http.response.status_code"), "200", "{dump}");
    assert!(descends_from(&by_id, gusto_get, hydrate), "the Gusto call is inside hydrate:\n{dump}");
    for s in trace.iter().filter(|s| s.name == "gusto.request") {
        for (k, v) in &s.attrs {
            assert!(!v.to_ascii_lowercase().contains("bearer"), "a token in span field {k}: {v}");
        }
    }
    let map = one("mlc-projector", "map");
    assert!(
        descends_from(&by_id, map, hydrate),
        "map follows hydrate through the snapshot's headers:\n{dump}"
    );
    assert!(map.start >= gusto_get.end, "map starts after the Gusto call returned:\n{dump}");

    // Writer: the command, below map, and its Visma calls below it.
    let command = one("mlc-writer", "visma.command");
    assert_eq!(command.attr("employee"), employee, "{dump}");
    assert!(descends_from(&by_id, command, map), "the writer's command descends from map:\n{dump}");
    let visma: Vec<&Span> = trace.iter().filter(|s| s.name == "visma.request").collect();
    assert!(!visma.is_empty(), "no Visma client spans:\n{dump}");
    for v in &visma {
        assert_eq!(v.service, "mlc-writer");
        assert_eq!(v.kind, SpanKind::Client as i32);
        assert!(descends_from(&by_id, v, command), "a Visma call outside the command span:\n{dump}");
    }
    assert!(
        visma.iter().any(|v| v.attr("http.request.method") != "GET"),
        "the change was written to Visma:\n{dump}"
    );

    // No other trace claims this webhook's employee: every hydrate and command span of
    // the employee is in this trace.
    let elsewhere: Vec<Span> = receiver
        .spans()
        .into_iter()
        .filter(|s| s.trace_id != root.trace_id)
        .filter(|s| (s.name == "hydrate" || s.name == "visma.command") && s.attr("employee") == employee)
        .collect();
    assert!(
        elsewhere.is_empty(),
        "spans of the employee in another trace:\n{}",
        describe(&elsewhere.iter().collect::<Vec<_>>())
    );
}
