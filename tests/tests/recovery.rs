//! Recovery in seconds (issue 22): a writer killed with SIGKILL in the middle of a batch
//! and started again resumes the commands it held within 5 s of its restart, not after a
//! long ack wait, and draws no 429 from Visma for repeating a failing request.
//!
//! A company gets 24 hires (commands for employees the writer never linked: creates) and
//! 24 renames (linked ones: reads and updates) at once while every Visma call takes 0.5 s.
//! Once every command is on VISMA_COMMANDS and the first is decided, the writer holds the
//! rest (its pulls take up to 128) and is killed. Nothing is left for a new writer but
//! what the dead one held, so the next APPLIED outcome after the restart is a command
//! that came back. The figures printed: how many the dead writer held, how long after the
//! restart the next APPLIED outcome came, and how long until every command was decided.
//!
//! ```text
//! cargo build -p mlc && cargo nextest run -p mlc-e2e --test recovery --no-capture
//! ```

use futures::StreamExt;
use mlc_bus::{ConsumerSpec, StreamKind};
use mlc_e2e::{FleetOptions, Stack};
use mlc_proto::v1::{Outcome, SyncOutcome};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// The next message of `sub` within `within`, or `None`.
async fn next_within(sub: &mut async_nats::Subscriber, within: Duration) -> Option<async_nats::Message> {
    tokio::time::timeout(within, sub.next()).await.ok().flatten()
}

const HIRES: usize = 24;
const RENAMES: usize = 24;

fn outcome_of(m: &async_nats::Message) -> SyncOutcome {
    mlc_bus::decode(&m.subject, &m.payload).expect("a SyncOutcome")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_killed_mid_batch_resumes_within_seconds_of_its_restart() {
    let mut stack = Stack::start_fleet(FleetOptions {
        companies: 1,
        employees_per_company: RENAMES,
        ..Default::default()
    })
    .await;
    let company = stack.companies[0].clone();
    stack.mlc_ok(&["backfill", "--company", &company.info.company_uuid]).await;
    stack.settle().await;

    let outcomes_subject = stack.topo.wildcard(StreamKind::SyncOutcomes);
    let mut outcomes = stack.js.client().subscribe(outcomes_subject).await.expect("subscribe to outcomes");
    // Every Visma call takes a while, so the writer holds commands when it dies.
    stack.visma.set_fault("*", sim_visma::FaultSpec { latency_ms: 500, ..Default::default() });
    let throttled_429 =
        |stack: &Stack| stack.visma_proxy.as_ref().expect("a Visma proxy").count(|s| s == 429);
    let throttled_before = throttled_429(&stack);

    let sim = stack.gusto.sim();
    let mut hired = Vec::new();
    for i in 0..HIRES {
        let req = sim_gusto::HireRequest {
            first_name: Some("Kari".into()),
            last_name: Some(format!("Recovery-{i}")),
            department_uuid: company.info.department_uuids.first().cloned(),
            location_uuid: company.info.location_uuids.first().cloned(),
            ..Default::default()
        };
        hired.push(sim.hire(&company.info.company_uuid, req).expect("hire"));
    }
    for e in &company.info.employee_uuids {
        let patch = sim_gusto::EmployeePatch { first_name: Some("Renamed".into()), ..Default::default() };
        sim.update_employee(e, patch).expect("rename");
    }
    let expected: HashSet<String> = hired.iter().chain(&company.info.employee_uuids).cloned().collect();
    let commands_before = stack.stream_len(StreamKind::VismaCommands).await;

    // The first decision: the writer is in the middle of its batch now.
    let first = loop {
        let m = next_within(&mut outcomes, Duration::from_secs(60))
            .await
            .unwrap_or_else(|| panic!("no outcome within 60 s of the workload{}", stack.logs()));
        let o = outcome_of(&m);
        if expected.contains(&o.employee_uuid) {
            break o;
        }
    };
    let mut decided: HashSet<String> = HashSet::from([first.employee_uuid.clone()]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while stack.stream_len(StreamKind::VismaCommands).await < commands_before + expected.len() as u64 {
        assert!(
            Instant::now() < deadline,
            "the projector did not emit the {} commands within 60 s",
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let writer_consumer = async {
        let stream = stack.js.get_stream(stack.topo.stream(StreamKind::VismaCommands)).await.expect("stream");
        stream.consumer_info(stack.topo.durable(&ConsumerSpec::WRITER, 0)).await.expect("consumer info")
    };
    let held_at_kill = writer_consumer.await.num_ack_pending;
    stack.kill_service("writer");
    let killed = Instant::now();
    // Outcomes published just before the kill.
    while let Some(m) = next_within(&mut outcomes, Duration::from_millis(300)).await {
        decided.insert(outcome_of(&m).employee_uuid);
    }
    let decided_before_restart = decided.len();
    assert!(
        decided_before_restart < expected.len(),
        "the writer had decided everything before it was killed; nothing left to resume"
    );
    stack.start_service("writer");
    let restarted = Instant::now();

    let mut next_applied = None;
    let deadline = restarted + Duration::from_secs(60);
    while decided.len() < expected.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(m) = next_within(&mut outcomes, left).await else {
            panic!(
                "{} of {} commands decided 60 s after the restart{}",
                decided.len(),
                expected.len(),
                stack.logs()
            );
        };
        let o = outcome_of(&m);
        if !expected.contains(&o.employee_uuid) {
            continue;
        }
        if next_applied.is_none() && o.outcome() == Outcome::Applied {
            next_applied = Some(restarted.elapsed());
        }
        decided.insert(o.employee_uuid);
    }
    let all_decided = restarted.elapsed();
    let next_applied = next_applied.expect("an APPLIED outcome after the restart");
    let throttled = throttled_429(&stack) - throttled_before;

    println!(
        "writer killed mid-batch: {} of {} commands decided before the kill, {held_at_kill} held by the \
         killed writer; down {} ms; next APPLIED {:.2} s after the restart; all decided {:.2} s after the \
         restart; Visma 429s {throttled}",
        decided_before_restart,
        expected.len(),
        restarted.duration_since(killed).as_millis(),
        next_applied.as_secs_f64(),
        all_decided.as_secs_f64(),
    );
    assert!(
        next_applied < Duration::from_secs(5),
        "the next APPLIED outcome came {next_applied:?} after the restart (bound 5 s){}",
        stack.logs()
    );
    assert_eq!(throttled, 0, "the restarted writer drew 429s from Visma");

    // And the result is right: every hire exists once, every rename arrived.
    stack.visma.clear_faults();
    stack.settle().await;
    let in_visma = stack.visma.employees(&company.tenant_id);
    let recovered: Vec<_> = in_visma
        .iter()
        .filter(|e| e.contact.last_name.as_deref().is_some_and(|l| l.starts_with("Recovery-")))
        .collect();
    assert_eq!(recovered.len(), HIRES, "each hire in Visma exactly once");
    let renamed = in_visma.iter().filter(|e| e.contact.first_name.as_deref() == Some("Renamed")).count();
    assert_eq!(renamed, RENAMES, "every rename in Visma");
}
