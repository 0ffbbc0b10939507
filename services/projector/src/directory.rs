//! What the projector knows about companies between messages: their records (a 2 s
//! cache), their mapping files (re-read when the file changes), their Gusto locations,
//! and their last full employee list.

use gusto::{GrantId, GustoClient, GustoError};
use mlc_domain::Mapping;
use mlc_store::{Company, Store};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Semaphore;

/// A company's employees from one list read, and where the streams stood when it began.
///
/// The marks are stream sequences, not clocks: an event stored in `GUSTO_EVENTS` at or
/// below `events_seq` was received, so committed in Gusto, before the first page was
/// asked for, and the list reflects it (or something newer). A list read can take
/// seconds (pages, 429s, a token refresh), so "read at" would be the wrong mark.
pub(crate) struct ListRead {
    pub(crate) employees: HashMap<String, gusto::Employee>,
    pub(crate) events_seq: u64,
    /// `EMPLOYEE_STATE`'s last sequence then: an employee whose newest snapshot is above
    /// it was fetched while or after the list was read, so the list may be the older.
    pub(crate) state_seq: u64,
    began: Instant,
}

impl ListRead {
    pub(crate) fn new(
        employees: Vec<gusto::Employee>,
        events_seq: u64,
        state_seq: u64,
        began: Instant,
    ) -> Self {
        let employees = employees.into_iter().map(|e| (e.uuid.clone(), e)).collect();
        ListRead { employees, events_seq, state_seq, began }
    }
}

pub(crate) type Listed = Arc<ListRead>;

/// A company's locations by uuid.
pub(crate) type Locations = Arc<HashMap<String, gusto::Location>>;

/// How long a list read serves later batches of events stored before it began.
const RECENT_LIST_TTL: Duration = Duration::from_secs(30);

/// How long a company record is served from memory.
const COMPANY_TTL: Duration = Duration::from_secs(2);

#[derive(Default)]
pub(crate) struct CompanyDirectory {
    companies: Mutex<HashMap<String, (Instant, Company)>>,
    mappings: Mutex<HashMap<PathBuf, (SystemTime, Arc<Mapping>)>>,
    locations: Mutex<HashMap<String, Locations>>,
    /// The last full list read per company: a later batch whose events were all stored
    /// before that read began is served from it (a backfill or a burst arriving in
    /// several batches costs one list read, not one per batch).
    recent_lists: Mutex<HashMap<String, Listed>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl CompanyDirectory {
    /// The company record, read from the store at most every two seconds: mapping runs
    /// per snapshot, and a replay maps thousands a second. Pausing or re-mapping a
    /// company therefore takes effect within two seconds.
    pub(crate) async fn company(
        &self,
        store: &Store,
        uuid: &str,
    ) -> Result<Option<Company>, mlc_store::StoreError> {
        let now = Instant::now();
        if let Some((at, c)) = lock(&self.companies).get(uuid) {
            if now.duration_since(*at) < COMPANY_TTL {
                return Ok(Some(c.clone()));
            }
        }
        let found = store.company(uuid).await?;
        if let Some(c) = &found {
            lock(&self.companies).insert(uuid.to_string(), (now, c.clone()));
        }
        Ok(found)
    }

    /// The company's mapping, re-read when its file changes. Relative paths are resolved
    /// under `mappings_dir`.
    pub(crate) fn mapping(&self, mappings_dir: &Path, company: &Company) -> Result<Arc<Mapping>, String> {
        let path = {
            let p = PathBuf::from(&company.mapping_path);
            if p.is_absolute() {
                p
            } else {
                mappings_dir.join(p)
            }
        };
        let mtime = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .map_err(|e| format!("mapping file {}: {e}", path.display()))?;
        if let Some((t, m)) = lock(&self.mappings).get(&path) {
            if *t == mtime {
                return Ok(m.clone());
            }
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("mapping file {}: {e}", path.display()))?;
        let mapping =
            Arc::new(Mapping::from_toml_str(&text, &path.display().to_string()).map_err(|e| e.to_string())?);
        lock(&self.mappings).insert(path, (mtime, mapping.clone()));
        Ok(mapping)
    }

    /// The company's locations, read from Gusto once and kept until a location event.
    pub(crate) async fn locations(
        &self,
        gusto: &GustoClient,
        grant: &GrantId,
        company: &str,
        sem: &Semaphore,
        on_call: impl FnOnce(),
    ) -> Result<Locations, GustoError> {
        if let Some(l) = lock(&self.locations).get(company) {
            return Ok(l.clone());
        }
        let _permit = sem.acquire().await;
        on_call();
        let list = gusto.list_locations(grant, company).await?;
        let map = Arc::new(list.into_iter().map(|l| (l.uuid.clone(), l)).collect::<HashMap<_, _>>());
        lock(&self.locations).insert(company.to_string(), map.clone());
        Ok(map)
    }

    /// A location changed: the next batch reads them again.
    pub(crate) fn forget_locations(&self, company: &str) {
        lock(&self.locations).remove(company);
    }

    /// The company's last list read, if it is recent and began after every event of the
    /// batch was stored (`newest_event_seq`: the highest `GUSTO_EVENTS` sequence among
    /// them), so it already reflects them.
    pub(crate) fn recent_list(&self, company: &str, newest_event_seq: u64) -> Option<Listed> {
        let lists = lock(&self.recent_lists);
        let list = lists.get(company)?;
        (list.began.elapsed() < RECENT_LIST_TTL
            && newest_event_seq > 0
            && newest_event_seq <= list.events_seq)
            .then(|| list.clone())
    }

    /// Keeps a list just read, for [`CompanyDirectory::recent_list`].
    pub(crate) fn remember_list(&self, company: &str, list: Listed) {
        lock(&self.recent_lists).insert(company.to_string(), list);
    }
}
