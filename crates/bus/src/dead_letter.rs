//! The one dead-letter writer. Every stage keeps what it cannot process in DEAD_LETTERS
//! (`dlq.<stage>.<company>`) with the original payload and the reason, for `mlc dlq`.
//!
//! `Nats-Msg-Id` is `dlq:<stage>:<original id>`, plus `:<stream sequence>` for a consumed
//! message: a retried publish of the same letter is stored once, while the same message
//! failing again after `mlc dlq retry` (published anew, so a new sequence) is a new letter
//! instead of a duplicate dropped inside the window.

use crate::{BusError, Published, Publisher, Topology};
use async_nats::jetstream::Message;
use mlc_proto::v1::{DeadLetter, TraceContext};

/// One letter, before it is sent.
#[derive(Debug, Clone)]
pub struct Letter {
    pub stage: &'static str,
    /// The company's uuid; empty when not known (the subject then says `unknown`).
    pub company: String,
    /// The message's own id: its `Nats-Msg-Id` (the Gusto event uuid, the command's id),
    /// or what identifies a body that never became a message.
    pub original_id: String,
    /// The stream sequence of a consumed message.
    pub sequence: Option<u64>,
    pub subject: String,
    pub payload: Vec<u8>,
    pub reason: String,
    pub attempts: u32,
    pub trace: Option<TraceContext>,
}

impl Letter {
    /// A letter for a consumed message: its id (`Nats-Msg-Id`, else `<subject>:<seq>`),
    /// sequence, subject, payload and delivery count.
    pub fn of(stage: &'static str, msg: &Message, reason: impl Into<String>) -> Letter {
        let info = msg.info().ok();
        let sequence = info.as_ref().map(|i| i.stream_sequence);
        let original_id = msg
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_string())
            .unwrap_or_else(|| format!("{}:{}", msg.subject, sequence.unwrap_or(0)));
        Letter {
            stage,
            company: String::new(),
            original_id,
            sequence,
            subject: msg.subject.to_string(),
            payload: msg.payload.to_vec(),
            reason: reason.into(),
            attempts: info.as_ref().map_or(1, |i| i.delivered.max(1) as u32),
            trace: None,
        }
    }

    /// The letter's `Nats-Msg-Id` (see the module docs).
    pub fn msg_id(&self) -> String {
        match self.sequence {
            Some(seq) => format!("dlq:{}:{}:{seq}", self.stage, self.original_id),
            None => format!("dlq:{}:{}", self.stage, self.original_id),
        }
    }
}

/// Publishes letters to DEAD_LETTERS.
#[derive(Clone)]
pub struct DeadLetters {
    publisher: Publisher,
    topology: Topology,
}

impl DeadLetters {
    pub fn new(publisher: Publisher, topology: Topology) -> Self {
        Self { publisher, topology }
    }

    /// Stores `letter` (awaiting the stream's ack).
    pub async fn send(&self, letter: &Letter) -> Result<Published, BusError> {
        let company = if letter.company.is_empty() { "unknown" } else { letter.company.as_str() };
        let message = DeadLetter {
            stage: letter.stage.to_string(),
            original_id: letter.original_id.clone(),
            original_subject: letter.subject.clone(),
            original_payload: letter.payload.clone(),
            reason: letter.reason.clone(),
            attempts: letter.attempts.max(1),
            failed_at_ms: crate::now_ms(),
            trace: letter.trace.clone(),
            company_uuid: letter.company.clone(),
        };
        let subject = self.topology.dead_letter(letter.stage, company);
        self.publisher.publish(&subject, &letter.msg_id(), &message).await
    }
}
