//! Map (`EMPLOYEE_STATE` -> `VISMA_COMMANDS`): the newest snapshot of an employee plus the
//! company's mapping file gives a command, emitted only when it differs from the
//! employee's last one. The live consumer, `mlc replay` and its dry run share
//! [`Projector::map_snapshot`].

use crate::{Held, MapOutcome, Projector, ProjectorError, ProjectorMetrics, REPLAY_CHUNK};
use async_nats::jetstream::Message;
use futures::future::join_all;
use mlc_bus::delivery::{Disposition, Settled};
use mlc_bus::replay::{Replay, Start};
use mlc_bus::{ConsumerSpec, StreamKind};
use mlc_proto::v1::{EmployeeSnapshot, VismaCommand};
use mlc_store::{AuditEntry, AuditKind};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tracing::Instrument;

impl Projector {
    pub(crate) async fn map_loop(
        self: Arc<Self>,
        stop: tokio::sync::watch::Receiver<bool>,
        held: Held,
    ) -> Result<(), ProjectorError> {
        let this = &self;
        let linger = mlc_bus::consume::Linger::fixed(self.settings.linger);
        self.consume(
            ConsumerSpec::MAPPER,
            linger,
            held,
            stop,
            |batch| async move { this.map_batch(&batch).await },
        )
        .await
    }

    /// Employees are independent, so a batch is mapped in parallel across them; one
    /// employee's snapshots stay in order because only its newest snapshot is ever mapped.
    async fn map_batch(&self, batch: &[Message]) {
        let mut by_subject: BTreeMap<&str, Vec<&Message>> = BTreeMap::new();
        for m in batch {
            by_subject.entry(m.subject.as_str()).or_default().push(m);
        }
        let sem = Semaphore::new(32);
        join_all(by_subject.into_values().map(|msgs| async {
            let _p = sem.acquire().await;
            for m in msgs {
                self.map_message(m).await;
            }
        }))
        .await;
    }

    async fn map_message(&self, msg: &Message) {
        let span = tracing::info_span!("map", otel.kind = "consumer", subject = %msg.subject);
        mlc_bus::extract_trace_context(msg.headers.as_ref(), &span);
        let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
        async {
            let disposition = match self.map_snapshot(&msg.subject, seq, &msg.payload, false).await {
                Ok(_) => Disposition::Ack,
                Err(d) => d,
            };
            let company = self
                .settings
                .topology
                .split_subject(StreamKind::EmployeeState, &msg.subject)
                .map_or("", |(c, _)| c);
            if let Settled::DeadLettered { .. } = self.map_settle.settle(msg, company, disposition).await {
                self.metrics.dead_letters.inc();
            }
        }
        .instrument(span)
        .await
    }

    /// Maps the snapshot stored at `seq` on `subject`: the one code path of the live
    /// consumer, `mlc replay` and its `--dry-run` (which publishes nothing and returns
    /// the command that would have been emitted).
    pub async fn map_snapshot(
        &self,
        subject: &str,
        seq: u64,
        payload: &[u8],
        dry_run: bool,
    ) -> Result<MapOutcome, Disposition> {
        self.map_knowing(subject, seq, payload, dry_run, None).await
    }

    /// [`Projector::map_snapshot`], asking the streams only what `known` (a replay's) does
    /// not already say.
    async fn map_knowing(
        &self,
        subject: &str,
        seq: u64,
        payload: &[u8],
        dry_run: bool,
        known: Option<Known<'_>>,
    ) -> Result<MapOutcome, Disposition> {
        let topo = &self.settings.topology;
        let snapshot: EmployeeSnapshot =
            mlc_bus::decode(subject, payload).map_err(|e| Disposition::dead("undecodable", e.to_string()))?;
        if known.as_ref().is_none_or(|k| k.state_moved) {
            let state_stream = topo.stream(StreamKind::EmployeeState);
            let latest = mlc_bus::last_on_subject::<EmployeeSnapshot>(&self.js, &state_stream, subject)
                .await
                .map_err(|e| Disposition::retry("nats", e))?;
            if latest.is_some_and(|l| l.sequence > seq) {
                ProjectorMetrics::inc(&self.metrics.commands, "superseded");
                return Ok(MapOutcome::Superseded);
            }
        }
        let company = match self.directory.company(&self.store, &snapshot.company_uuid).await {
            Ok(Some(c)) => c,
            Ok(None) => return Err(Disposition::dead("unknown_company", "unknown company")),
            Err(e) => return Err(Disposition::retry("store", e)),
        };
        let mapping = self
            .directory
            .mapping(&self.settings.mappings_dir, &company)
            .map_err(|reason| Disposition::dead("mapping", reason))?;
        let mut command = mlc_domain::build_command(&snapshot, seq, &mapping, &company.visma_tenant);
        command.webhook_received_at_ms = snapshot.webhook_received_at_ms;
        command.trace = Some(mlc_bus::trace::current().unwrap_or_default());

        let subject = topo.visma_command(&company.company_uuid, &snapshot.employee_uuid);
        let same = |last: &LastCommand| {
            last.content_hash == command.content_hash && last.parked_reason == command.parked_reason
        };
        let unchanged = match &known {
            Some(k) => k.last_commands.get(&subject).is_some_and(same),
            None => mlc_bus::last_on_subject::<VismaCommand>(
                &self.js,
                &topo.stream(StreamKind::VismaCommands),
                &subject,
            )
            .await
            .map_err(|e| Disposition::retry("nats", e))?
            .is_some_and(|l| same(&LastCommand::of(&l.message))),
        };
        if unchanged {
            ProjectorMetrics::inc(&self.metrics.commands, "unchanged");
            return Ok(MapOutcome::Unchanged);
        }
        if dry_run {
            return Ok(MapOutcome::Emitted(Box::new(command)));
        }
        let published = self
            .publisher
            .publish(&subject, &mlc_domain::command_msg_id(&command), &command)
            .await
            .map_err(|e| Disposition::retry("nats", e))?;
        ProjectorMetrics::inc(
            &self.metrics.commands,
            if command.parked_reason.is_empty() { "emitted" } else { "parked" },
        );
        self.audit(
            AuditEntry::new(format!("command:{}", command.command_id), AuditKind::CommandEmitted)
                .for_company(&company.company_uuid)
                .for_employee(&snapshot.employee_uuid)
                .with_detail(serde_json::json!({
                    "command_id": command.command_id,
                    "seq": published.sequence,
                    "kind": command.kind().as_str_name(),
                    "mapping_revision": command.mapping_revision,
                    "parked_reason": command.parked_reason,
                    "employee_cd": command.fields.as_ref().map(|f| f.employee_cd.clone()).unwrap_or_default(),
                }))
                .with_trace_id(mlc_bus::trace::trace_id(&command.trace)),
        )
        .await;
        Ok(MapOutcome::Emitted(Box::new(command)))
    }

    /// Re-reads `EMPLOYEE_STATE` from `start` through [`Projector::map_snapshot`]:
    /// `mlc replay employee-state`. Returns what each snapshot produced.
    ///
    /// A replay from the start reads only the newest snapshot of each employee (the older
    /// ones are superseded by it) and compares with the last commands read in one pass
    /// over `VISMA_COMMANDS`, so it asks the streams nothing per employee; it maps in
    /// parallel. Should `EMPLOYEE_STATE` grow meanwhile, each snapshot of the chunk being
    /// mapped is checked against its subject's newest again, as the live consumer does.
    pub async fn replay_state(
        &self,
        start: mlc_bus::replay::Start,
        company: Option<&str>,
        employee: Option<&str>,
        dry_run: bool,
    ) -> Result<Vec<(u64, Result<MapOutcome, Disposition>)>, ProjectorError> {
        let topo = &self.settings.topology;
        let filter = match (company, employee) {
            (Some(c), Some(e)) => topo.employee_state(c, e),
            (c, _) => topo.company_filter(StreamKind::EmployeeState, c),
        };
        if matches!(start, Start::Sequence(s) if s <= 1) || matches!(start, Start::NewestPerSubject) {
            return self.replay_newest(&filter, company, dry_run).await;
        }
        let mut results = Vec::new();
        let mut replay =
            mlc_bus::replay::Replay::open(&self.js, &topo.stream(StreamKind::EmployeeState), &filter, start)
                .await?;
        // Mapping is a few round trips per snapshot; chunks of snapshots are mapped
        // concurrently, one employee's snapshots still one after the other and in order.
        loop {
            let chunk = replay.next_chunk(REPLAY_CHUNK).await?;
            if chunk.is_empty() {
                break;
            }
            let mut by_subject: BTreeMap<String, Vec<mlc_bus::replay::Replayed>> = BTreeMap::new();
            for m in chunk {
                by_subject.entry(m.subject.clone()).or_default().push(m);
            }
            let sem = Semaphore::new(64);
            let done_chunk = join_all(by_subject.into_values().map(|msgs| async {
                let _permit = sem.acquire().await;
                let mut out = Vec::with_capacity(msgs.len());
                let last = msgs.len() - 1;
                for (i, m) in msgs.into_iter().enumerate() {
                    // A later snapshot of this employee is in the same chunk: this one
                    // is superseded without asking the stream.
                    if i < last {
                        ProjectorMetrics::inc(&self.metrics.commands, "superseded");
                        out.push((m.sequence, Ok(MapOutcome::Superseded)));
                        continue;
                    }
                    out.push((
                        m.sequence,
                        self.map_snapshot(&m.subject, m.sequence, &m.payload, dry_run).await,
                    ));
                }
                out
            }))
            .await;
            results.extend(done_chunk.into_iter().flatten());
        }
        results.sort_by_key(|(seq, _)| *seq);
        Ok(results)
    }

    /// The replay from the start: see [`Projector::replay_state`].
    async fn replay_newest(
        &self,
        filter: &str,
        company: Option<&str>,
        dry_run: bool,
    ) -> Result<Vec<(u64, Result<MapOutcome, Disposition>)>, ProjectorError> {
        let topo = &self.settings.topology;
        let state_stream = topo.stream(StreamKind::EmployeeState);
        let last_commands = self.last_commands(company).await?;
        let mut replay = Replay::open(&self.js, &state_stream, filter, Start::NewestPerSubject).await?;
        let began_at = replay.stream_last_sequence();
        let sem = Semaphore::new(64);
        let mut results = Vec::new();
        loop {
            let chunk = replay.next_chunk(REPLAY_CHUNK).await?;
            if chunk.is_empty() {
                break;
            }
            let state_moved = match self.js.get_stream(&state_stream).await {
                Ok(mut s) => s.info().await.map_or(true, |i| i.state.last_sequence > began_at),
                Err(_) => true,
            };
            let mapped = join_all(chunk.into_iter().map(|m| {
                let (sem, last_commands) = (&sem, &last_commands);
                async move {
                    let _permit = sem.acquire().await;
                    let known = Known { last_commands, state_moved };
                    let outcome =
                        self.map_knowing(&m.subject, m.sequence, &m.payload, dry_run, Some(known)).await;
                    (m.sequence, outcome)
                }
            }))
            .await;
            results.extend(mapped);
        }
        results.sort_by_key(|(seq, _)| *seq);
        Ok(results)
    }

    /// The last command of every employee (of `company`), by subject, in one pass over
    /// `VISMA_COMMANDS`'s newest message per subject.
    async fn last_commands(
        &self,
        company: Option<&str>,
    ) -> Result<HashMap<String, LastCommand>, ProjectorError> {
        let topo = &self.settings.topology;
        let filter = topo.company_filter(StreamKind::VismaCommands, company);
        let mut replay =
            Replay::open(&self.js, &topo.stream(StreamKind::VismaCommands), &filter, Start::NewestPerSubject)
                .await?;
        let mut out = HashMap::new();
        while let Some(m) = replay.next().await.transpose()? {
            if let Ok(c) = mlc_bus::decode::<VismaCommand>(&m.subject, &m.payload) {
                out.insert(m.subject, LastCommand::of(&c));
            }
        }
        Ok(out)
    }
}

/// What decides whether a new command differs from an employee's last one.
struct LastCommand {
    content_hash: String,
    parked_reason: String,
}

impl LastCommand {
    fn of(c: &VismaCommand) -> Self {
        Self { content_hash: c.content_hash.clone(), parked_reason: c.parked_reason.clone() }
    }
}

/// What a replay from the start already knows when it maps a snapshot.
struct Known<'a> {
    /// The employees' last commands, by `VISMA_COMMANDS` subject.
    last_commands: &'a HashMap<String, LastCommand>,
    /// `EMPLOYEE_STATE` grew since the replay began: a newer snapshot may exist.
    state_moved: bool,
}
