//! First connect: which Gusto employee is which employee Visma already holds.
//!
//! A firm that adopts the connector usually keeps its people in Visma by hand. Creating every
//! Gusto employee again would give each person two Visma records, so the first sync links the
//! ones that exist instead. Gusto's partner guidance for such matching asks for at least two
//! independent criteria and a human review; this module does the proposing, the operator
//! decides (`mlc match`), and only approved links are written.
//!
//! Criteria, each independent of the others:
//!
//! * **email**: Visma's contact email equals Gusto's work email or personal email;
//! * **name**: first (or preferred first) and last name equal after [`fold`]ing case,
//!   diacritics and punctuation ("Møller" equals "Moller");
//! * **number**: Visma's `employeeCd` is Gusto's `employee_code` (bare or with the mapping's
//!   prefix), or the number the connector itself would derive, i.e. the firm already
//!   recorded the number on both sides;
//! * **similar name** (weak): not equal, but a normalised Damerau-Levenshtein similarity
//!   high enough for a typo ("Hansen" / "Hasnen"). It never counts towards the two criteria,
//!   but it lets a person with a changed email *and* a typo still be proposed, for review.
//!
//! A pair becomes a [`Suggestion::Link`] only with two strong criteria and no competitor as
//! strong for either side (two people with the same name and address are not guessed
//! between). Everything weaker is a [`Suggestion::Review`]. Gusto employees without a partner
//! are created by the writer later ([`Suggestion::Create`]); Visma employees without one are
//! reported and never touched ([`Suggestion::Keep`]).

use std::collections::HashMap;
use std::fmt;
use unicode_normalization::UnicodeNormalization;

mod review;
pub use review::{
    read_review, validate, write_review, ApplyContext, ApprovedLink, LineError, ReviewFileError, ReviewRow,
};

/// Full-name similarity from which two different spellings are proposed as one person.
pub const FUZZY_FULL_NAME: f64 = 0.8;
/// Similarity of the differing name part when the other part is equal.
pub const FUZZY_NAME_PART: f64 = 0.7;

/// A Gusto employee as the matcher sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GustoPerson {
    pub uuid: String,
    pub first_name: String,
    pub preferred_first_name: Option<String>,
    pub last_name: String,
    pub email: Option<String>,
    pub work_email: Option<String>,
    pub employee_code: Option<String>,
    /// The `employeeCd` the connector would create this employee with (mapping rule).
    pub derived_cd: Option<String>,
}

impl GustoPerson {
    pub fn from_api(e: &gusto::Employee, derived_cd: Option<String>) -> Self {
        Self {
            uuid: e.uuid.clone(),
            first_name: e.first_name.clone(),
            preferred_first_name: e.preferred_first_name.clone(),
            last_name: e.last_name.clone(),
            email: e.email.clone(),
            work_email: e.work_email.clone(),
            employee_code: e.employee_code.clone(),
            derived_cd,
        }
    }

    pub fn name(&self) -> String {
        format!("{} {}", self.first_name.trim(), self.last_name.trim())
    }
}

/// A Visma employee as the matcher sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VismaPerson {
    pub employee_cd: String,
    pub first_name: String,
    pub last_name: String,
    pub email: Option<String>,
}

impl VismaPerson {
    /// `None` for a record without a number (nothing could be linked to it).
    pub fn from_api(e: &visma::dto::EmployeeDto) -> Option<Self> {
        let cd = e.employee_number.clone().filter(|c| !c.trim().is_empty())?;
        let contact = e.contact.as_ref();
        let mut first = contact.and_then(|c| c.first_name.clone()).unwrap_or_default();
        let mut last = contact.and_then(|c| c.last_name.clone()).unwrap_or_default();
        if first.is_empty() && last.is_empty() {
            // Only the display name: "First Last".
            let name = e.employee_name.clone().unwrap_or_default();
            match name.trim().rsplit_once(' ') {
                Some((f, l)) => (first, last) = (f.to_string(), l.to_string()),
                None => last = name,
            }
        }
        Some(Self {
            employee_cd: cd,
            first_name: first,
            last_name: last,
            email: contact.and_then(|c| c.email.clone()),
        })
    }

    pub fn name(&self) -> String {
        format!("{} {}", self.first_name.trim(), self.last_name.trim()).trim().to_string()
    }
}

/// One reason to believe two records are the same person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Criterion {
    WorkEmail,
    PersonalEmail,
    Name,
    Number,
    SimilarName,
}

impl Criterion {
    /// Strong criteria count towards the two the guidance asks for.
    pub fn is_strong(self) -> bool {
        !matches!(self, Criterion::SimilarName)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Criterion::WorkEmail => "work_email",
            Criterion::PersonalEmail => "personal_email",
            Criterion::Name => "name",
            Criterion::Number => "number",
            Criterion::SimilarName => "similar_name",
        }
    }
}

/// What the matcher suggests for one row of the review file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suggestion {
    /// Two strong criteria, no competitor: link after the operator's yes.
    Link,
    /// A weaker or ambiguous proposal: the operator decides.
    Review,
    /// A Gusto employee without a partner: the writer creates it.
    Create,
    /// A Visma employee without a partner: left untouched.
    Keep,
}

impl Suggestion {
    pub fn as_str(self) -> &'static str {
        match self {
            Suggestion::Link => "link",
            Suggestion::Review => "review",
            Suggestion::Create => "create",
            Suggestion::Keep => "keep",
        }
    }
}

impl fmt::Display for Suggestion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the proposal: a pair, or one side alone.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub suggestion: Suggestion,
    pub gusto: Option<GustoPerson>,
    pub visma: Option<VismaPerson>,
    pub criteria: Vec<Criterion>,
    /// 0 to 1; see [`confidence`].
    pub confidence: f64,
    pub reason: String,
}

impl Proposal {
    pub fn criteria_text(&self) -> String {
        self.criteria.iter().map(|c| c.as_str()).collect::<Vec<_>>().join("+")
    }
}

/// Lower case, diacritics removed (also the letters Unicode does not decompose: ø, æ, ð, þ,
/// ß, ł), everything but letters and digits turned into single spaces.
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.nfkd() {
        if unicode_normalization::char::is_combining_mark(c) {
            continue;
        }
        for l in c.to_lowercase() {
            match l {
                'ø' => out.push('o'),
                'æ' => out.push_str("ae"),
                'œ' => out.push_str("oe"),
                'ð' | 'đ' => out.push('d'),
                'þ' => out.push_str("th"),
                'ß' => out.push_str("ss"),
                'ł' => out.push('l'),
                l if l.is_alphanumeric() => out.push(l),
                _ => out.push(' '),
            }
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn norm_email(e: Option<&str>) -> Option<String> {
    e.map(|e| e.trim().to_lowercase()).filter(|e| e.contains('@'))
}

/// Normalised Damerau-Levenshtein similarity of two folded strings, 0 to 1.
pub fn similarity(a: &str, b: &str) -> f64 {
    strsim::normalized_damerau_levenshtein(a, b)
}

/// How similar the names are: 1 when equal after folding, else the best typo-tolerant score,
/// 0 when not similar enough to propose.
fn name_score(g: &GustoPerson, v: &VismaPerson) -> f64 {
    let (vf, vl) = (fold(&v.first_name), fold(&v.last_name));
    if vl.is_empty() {
        return 0.0;
    }
    let gl = fold(&g.last_name);
    let firsts: Vec<String> = std::iter::once(g.first_name.as_str())
        .chain(g.preferred_first_name.as_deref())
        .map(fold)
        .filter(|f| !f.is_empty())
        .collect();
    let mut best: f64 = 0.0;
    for gf in &firsts {
        if *gf == vf && gl == vl {
            return 1.0;
        }
        let full = similarity(&format!("{gf} {gl}"), &format!("{vf} {vl}"));
        let by_part = if *gf == vf {
            similarity(&gl, &vl)
        } else if gl == vl {
            similarity(gf, &vf)
        } else {
            0.0
        };
        if full >= FUZZY_FULL_NAME || by_part >= FUZZY_NAME_PART {
            best = best.max(full.max(by_part));
        }
    }
    best.min(0.99)
}

fn number_matches(g: &GustoPerson, v: &VismaPerson, prefix: &str) -> bool {
    let cd = v.employee_cd.trim().to_uppercase();
    if g.derived_cd.as_deref().is_some_and(|d| d.eq_ignore_ascii_case(&cd)) {
        return true;
    }
    let Some(code) = g.employee_code.as_deref().map(|c| c.trim().to_uppercase()).filter(|c| !c.is_empty())
    else {
        return false;
    };
    cd == code || cd.strip_prefix(&prefix.to_uppercase()).is_some_and(|body| body == code)
}

/// Noisy-OR of the criteria's reliabilities: an email or a number alone is good evidence, a
/// name alone weaker (names repeat in a firm of a hundred people), a similar name weaker
/// still. Halved when another pair is as strong, since then the evidence does not decide.
pub fn confidence(criteria: &[Criterion], name_similarity: f64, ambiguous: bool) -> f64 {
    let mut doubt = 1.0;
    for c in criteria {
        doubt *= 1.0
            - match c {
                Criterion::Number => 0.85,
                Criterion::WorkEmail | Criterion::PersonalEmail => 0.8,
                Criterion::Name => 0.6,
                Criterion::SimilarName => 0.5 * name_similarity,
            };
    }
    let c = 1.0 - doubt;
    if ambiguous {
        c / 2.0
    } else {
        c
    }
}

struct Pair {
    g: usize,
    v: usize,
    criteria: Vec<Criterion>,
    strong: usize,
    name: f64,
}

fn evaluate(g: &GustoPerson, v: &VismaPerson, prefix: &str) -> Option<Pair> {
    let mut criteria = Vec::new();
    let ve = norm_email(v.email.as_deref());
    if ve.is_some() && ve == norm_email(g.work_email.as_deref()) {
        criteria.push(Criterion::WorkEmail);
    } else if ve.is_some() && ve == norm_email(g.email.as_deref()) {
        criteria.push(Criterion::PersonalEmail);
    }
    let name = name_score(g, v);
    if name >= 1.0 {
        criteria.push(Criterion::Name);
    } else if name > 0.0 {
        criteria.push(Criterion::SimilarName);
    }
    if number_matches(g, v, prefix) {
        criteria.push(Criterion::Number);
    }
    if criteria.is_empty() {
        return None;
    }
    criteria.sort();
    let strong = criteria.iter().filter(|c| c.is_strong()).count();
    Some(Pair { g: 0, v: 0, criteria, strong, name })
}

/// Proposes one row per Gusto employee and one per Visma employee left over.
///
/// `prefix` is the mapping's employee number prefix (for the number criterion). Pairs are
/// taken strongest first (strong criteria, then name similarity), each person at most once.
/// The result is ordered: links, reviews, creates, keeps; by name within each.
pub fn propose(gusto: &[GustoPerson], visma: &[VismaPerson], prefix: &str) -> Vec<Proposal> {
    let mut pairs = Vec::new();
    for (gi, g) in gusto.iter().enumerate() {
        for (vi, v) in visma.iter().enumerate() {
            if let Some(mut p) = evaluate(g, v, prefix) {
                (p.g, p.v) = (gi, vi);
                pairs.push(p);
            }
        }
    }
    // Strongest first; ties broken by name similarity, then input order (deterministic).
    pairs.sort_by(|a, b| {
        b.strong.cmp(&a.strong).then(b.name.total_cmp(&a.name)).then(a.g.cmp(&b.g)).then(a.v.cmp(&b.v))
    });
    let mut by_g: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut by_v: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, p) in pairs.iter().enumerate() {
        by_g.entry(p.g).or_default().push(i);
        by_v.entry(p.v).or_default().push(i);
    }
    // Person -> strong criteria of the pair that took it.
    let (mut g_taken, mut v_taken) = (HashMap::new(), HashMap::new());
    let mut out = Vec::new();
    for (i, p) in pairs.iter().enumerate() {
        if g_taken.contains_key(&p.g) || v_taken.contains_key(&p.v) {
            continue;
        }
        // Competitors: other pairs of either person at least as strong, unless their other
        // person already went to a stronger pair (that question is settled).
        let settled = |r: &Pair| {
            let other = if r.g != p.g { g_taken.get(&r.g) } else { v_taken.get(&r.v) };
            other.is_some_and(|&s| s > r.strong)
        };
        let rivals: Vec<&Pair> = by_g[&p.g]
            .iter()
            .chain(&by_v[&p.v])
            .filter(|&&j| j != i)
            .map(|&j| &pairs[j])
            .filter(|r| r.strong >= p.strong && (p.strong >= 2 || r.name >= p.name) && !settled(r))
            .collect();
        g_taken.insert(p.g, p.strong);
        v_taken.insert(p.v, p.strong);
        let ambiguous = !rivals.is_empty();
        let criteria_text = p.criteria.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ");
        let rival_names = rivals
            .iter()
            .take(3)
            .map(|r| {
                if r.g != p.g {
                    format!("Gusto {}", gusto[r.g].name())
                } else {
                    format!("Visma {}", visma[r.v].employee_cd)
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let (suggestion, reason) = if p.strong >= 2 && !ambiguous {
            (Suggestion::Link, format!("{} criteria agree: {criteria_text}", p.strong))
        } else if p.strong >= 2 {
            (Suggestion::Review, format!("ambiguous: {criteria_text} agree, but as well for {rival_names}"))
        } else {
            let base = if p.strong == 1 {
                format!("one criterion only: {criteria_text}")
            } else {
                format!("similar name only ({:.0}%)", p.name * 100.0)
            };
            let also = if ambiguous { format!("; as close: {rival_names}") } else { String::new() };
            (Suggestion::Review, format!("{base}{also}"))
        };
        out.push(Proposal {
            suggestion,
            gusto: Some(gusto[p.g].clone()),
            visma: Some(visma[p.v].clone()),
            confidence: confidence(&p.criteria, p.name, ambiguous),
            criteria: p.criteria.clone(),
            reason,
        });
    }
    for (gi, g) in gusto.iter().enumerate() {
        if !g_taken.contains_key(&gi) {
            let reason = if by_g.contains_key(&gi) {
                "its candidates went to stronger matches; the writer creates it".to_string()
            } else {
                "no Visma employee matches; the writer creates it".to_string()
            };
            out.push(Proposal {
                suggestion: Suggestion::Create,
                gusto: Some(g.clone()),
                visma: None,
                criteria: Vec::new(),
                confidence: 0.0,
                reason,
            });
        }
    }
    for (vi, v) in visma.iter().enumerate() {
        if !v_taken.contains_key(&vi) {
            out.push(Proposal {
                suggestion: Suggestion::Keep,
                gusto: None,
                visma: Some(v.clone()),
                criteria: Vec::new(),
                confidence: 0.0,
                reason: "no Gusto employee matches; left untouched".into(),
            });
        }
    }
    let rank = |s: Suggestion| match s {
        Suggestion::Link => 0,
        Suggestion::Review => 1,
        Suggestion::Create => 2,
        Suggestion::Keep => 3,
    };
    let key = |p: &Proposal| {
        p.gusto.as_ref().map(|g| fold(&g.name())).or_else(|| p.visma.as_ref().map(|v| fold(&v.name())))
    };
    out.sort_by(|a, b| rank(a.suggestion).cmp(&rank(b.suggestion)).then_with(|| key(a).cmp(&key(b))));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(uuid: &str, first: &str, last: &str, work: &str, code: &str) -> GustoPerson {
        GustoPerson {
            uuid: uuid.into(),
            first_name: first.into(),
            last_name: last.into(),
            work_email: Some(work.into()),
            employee_code: Some(code.into()),
            ..Default::default()
        }
    }

    fn v(cd: &str, first: &str, last: &str, email: &str) -> VismaPerson {
        VismaPerson {
            employee_cd: cd.into(),
            first_name: first.into(),
            last_name: last.into(),
            email: Some(email.into()),
        }
    }

    #[test]
    fn folding_removes_case_diacritics_and_punctuation() {
        assert_eq!(fold("Møller"), "moller");
        assert_eq!(fold("  Guðrún  Jónsdóttir-Berg "), "gudrun jonsdottir berg");
        assert_eq!(fold("ÆSIR Straße"), "aesir strasse");
    }

    #[test]
    fn two_criteria_link_one_criterion_reviews() {
        let gusto = [
            g("g1", "Freja", "Møller", "freja.moller@x.example", "aaaaaa"),
            g("g2", "Lars", "Hansen", "lars.hansen@x.example", "bbbbbb"),
            g("g3", "Ida", "Berg", "ida.berg@x.example", "cccccc"),
            g("g4", "Nils", "Lindqvist", "nils.lindqvist@x.example", "dddddd"),
        ];
        let visma = [
            // email + name (diacritics folded)
            v("E1", "Freja", "Moller", "FREJA.MOLLER@x.example"),
            // old email, typo in the surname, number recorded: number + similar name
            v("BBBBBB", "Lars", "Hasnen", "lars@old.example"),
            // old email only: name alone
            v("E3", "Ida", "Berg", "ida@old.example"),
            // old email and typo: similar name only
            v("E4", "Nils", "Lindqvst", "nils@old.example"),
            // a stranger
            v("E9", "Tove", "Ditlevsen", "tove@x.example"),
        ];
        let p = propose(&gusto, &visma, "G");
        let find = |uuid: &str| p.iter().find(|p| p.gusto.as_ref().is_some_and(|g| g.uuid == uuid)).unwrap();
        assert_eq!(find("g1").suggestion, Suggestion::Link);
        assert_eq!(find("g1").criteria, vec![Criterion::WorkEmail, Criterion::Name]);
        assert_eq!(find("g2").suggestion, Suggestion::Review);
        assert_eq!(find("g2").visma.as_ref().unwrap().employee_cd, "BBBBBB");
        assert_eq!(find("g3").suggestion, Suggestion::Review);
        assert_eq!(find("g4").suggestion, Suggestion::Review);
        assert_eq!(find("g4").criteria, vec![Criterion::SimilarName]);
        let keep: Vec<_> = p.iter().filter(|p| p.suggestion == Suggestion::Keep).collect();
        assert_eq!(keep.len(), 1);
        assert_eq!(keep[0].visma.as_ref().unwrap().employee_cd, "E9");
    }

    #[test]
    fn the_same_name_and_address_twice_is_not_guessed() {
        let gusto = [
            g("g1", "Lars", "Hansen", "lars.hansen@x.example", "aaaaaa"),
            g("g2", "Lars", "Hansen", "lars.hansen@x.example", "bbbbbb"),
        ];
        let p = propose(&gusto, &[v("E1", "Lars", "Hansen", "lars.hansen@x.example")], "");
        assert_eq!(p[0].suggestion, Suggestion::Review);
        assert!(p[0].reason.contains("ambiguous"), "{}", p[0].reason);
        assert_eq!(p[1].suggestion, Suggestion::Create);
        // The number decides between them.
        let p = propose(&gusto, &[v("BBBBBB", "Lars", "Hansen", "lars.hansen@x.example")], "");
        assert_eq!(p[0].suggestion, Suggestion::Link);
        assert_eq!(p[0].gusto.as_ref().unwrap().uuid, "g2");
    }

    fn ctx() -> ApplyContext {
        ApplyContext {
            company: "c1".into(),
            gusto_uuids: ["g1", "g2", "g3", "g4"].map(String::from).into(),
            visma_cds: ["E1", "E2", "E3"].map(String::from).into(),
            links: [("g3".to_string(), "E3".to_string())].into(),
        }
    }

    fn row(approve: &str, g: &str, cd: &str) -> ReviewRow {
        ReviewRow {
            approve: approve.into(),
            gusto_uuid: g.into(),
            visma_cd: cd.into(),
            company: "c1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn validation_names_every_bad_line() {
        let rows = vec![
            (2, row("yes", "g1", "E1")),
            (3, row("maybe", "g2", "E2")),
            (4, row("yes", "g1", "E2")),
            (5, row("yes", "g2", "E1")),
            (6, row("yes", "g4", "E3")),
            (7, row("yes", "gx", "E2")),
            (8, row("yes", "g2", "")),
            (9, row("", "g2", "E2")),
            (10, row("yes", "g3", "E3")),
        ];
        let Err(ReviewFileError::Invalid { errors, .. }) = validate("f.csv", &rows, &ctx()) else {
            panic!("expected errors")
        };
        let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7, 8, 10]);
        assert!(errors[1].message.contains("approved twice (also on line 2)"), "{}", errors[1]);
        assert!(errors[3].message.contains("already linked to Gusto employee g3"), "{}", errors[3]);
    }

    #[test]
    fn the_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("review.csv");
        let mut r = row("", "g1", "E1");
        r.gusto_name = "Hansen, Lars \"Lasse\"".into();
        write_review(&path, &[r.clone(), row("yes", "g2", "E2")]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let rows = read_review("review.csv", &text).unwrap();
        assert_eq!(rows[0], (2, r));
        assert_eq!(rows[1].0, 3);
        let ok = validate("review.csv", &rows, &ctx()).unwrap();
        assert_eq!(
            ok,
            vec![ApprovedLink { line: 3, gusto_uuid: "g2".into(), visma_cd: "E2".into(), existing: false }]
        );
    }
}
