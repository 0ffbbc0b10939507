//! The first-connect story of `mlc demo` and the end-to-end tests: a Visma company that
//! already holds most of the firm's people, entered by hand over the years.
//!
//! Hand-kept records drift from HR's: some carry an old email, some a surname typo, some
//! both; about half use the Gusto employee code as their number (the firm copied it over),
//! the others the firm's own numbering. A few records are people Gusto never had (a
//! contractor, a retired founder): strangers the connector must leave alone.
//!
//! [`pre_existing`] is pure and deterministic in its input, so the demo and the tests see
//! the same story, and [`Scenario::truth`] says who is who for the tests to check against.

use serde_json::Value;

/// How the Visma company differs from Gusto.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScenarioSpec {
    /// Gusto employees (the first ones by uuid) that Visma already holds.
    pub existing: usize,
    /// Of those, recorded with an old email.
    pub changed_email: usize,
    /// Of those, recorded with a typo in the surname.
    pub changed_surname: usize,
    /// Of those, recorded with an old email and a surname typo.
    pub changed_both: usize,
    /// Visma employees who are not in Gusto.
    pub strangers: usize,
}

/// How a pre-existing record differs from the Gusto employee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drift {
    None,
    Email,
    Surname,
    Both,
}

/// One pre-existing Visma record of a Gusto employee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub gusto_uuid: String,
    pub visma_cd: String,
    pub drift: Drift,
    /// The record's number is the Gusto employee code (the number criterion holds).
    pub number_recorded: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Scenario {
    /// `EmployeeCreateDTO` bodies for the Visma seed (`Seed.employees`).
    pub visma_employees: Vec<Value>,
    pub truth: Vec<Known>,
    /// Numbers of the Visma employees that are not in Gusto.
    pub strangers: Vec<String>,
}

impl Scenario {
    /// Employees whose record has two strong criteria by construction (email or number,
    /// plus name or number): those a matcher must propose as links unless ambiguous.
    pub fn two_criteria(&self) -> impl Iterator<Item = &Known> {
        self.truth.iter().filter(|k| {
            let email = matches!(k.drift, Drift::None | Drift::Surname);
            let name = matches!(k.drift, Drift::None | Drift::Email);
            usize::from(email) + usize::from(name) + usize::from(k.number_recorded) >= 2
        })
    }
}

const STRANGERS: &[(&str, &str)] = &[
    ("Tove", "Ditlevsen"),
    ("Halldór", "Laxness"),
    ("Edvard", "Grieg"),
    ("Selma", "Lagerlöf"),
    ("Tove", "Jansson"),
    ("Karen", "Blixen"),
];

/// A one-letter slip that folding does not undo: two inner letters swapped, or the last one
/// doubled in a short name.
pub fn typo(surname: &str) -> String {
    let mut c: Vec<char> = surname.chars().collect();
    if c.len() >= 5 {
        c.swap(2, 3);
        if c[2] == c[3] {
            c.remove(2);
        }
    } else if let Some(&last) = c.last() {
        c.push(last);
    }
    c.into_iter().collect()
}

/// The Visma records of the story. `employees` is Gusto's list of the company; department,
/// branch, class and calendar are the given ids (hand-kept records are coarse: the first sync
/// after linking corrects them from Gusto).
pub fn pre_existing(employees: &[gusto::Employee], spec: &ScenarioSpec, ids: &SeedIds<'_>) -> Scenario {
    let mut people: Vec<&gusto::Employee> = employees.iter().collect();
    people.sort_by(|a, b| a.uuid.cmp(&b.uuid));
    let mut s = Scenario::default();
    let existing = spec.existing.min(people.len());
    for (i, e) in people.iter().take(existing).enumerate() {
        let drift = if i < spec.changed_email {
            Drift::Email
        } else if i < spec.changed_email + spec.changed_surname {
            Drift::Surname
        } else if i < spec.changed_email + spec.changed_surname + spec.changed_both {
            Drift::Both
        } else {
            Drift::None
        };
        let code = e.employee_code.clone().unwrap_or_default().to_uppercase();
        let number_recorded = i % 2 == 0 && !code.is_empty();
        let cd = if number_recorded { code } else { format!("E{:04}", 1001 + i) };
        // Some records hold the personal address, as people gave it at hiring.
        let current =
            if i % 3 == 0 { e.email.clone().or(e.work_email.clone()) } else { e.work_email.clone() };
        let current = current.unwrap_or_default();
        let email = match drift {
            Drift::Email | Drift::Both => {
                let local = current.split('@').next().unwrap_or("someone");
                format!("{local}{}@oldmail.example", 70 + i % 29)
            }
            _ => current,
        };
        let last = match drift {
            Drift::Surname | Drift::Both => typo(&e.last_name),
            _ => e.last_name.clone(),
        };
        s.visma_employees.push(body(&cd, &e.first_name, &last, &email, ids));
        s.truth.push(Known { gusto_uuid: e.uuid.clone(), visma_cd: cd, drift, number_recorded });
    }
    for (i, (first, last)) in STRANGERS.iter().cycle().take(spec.strangers).enumerate() {
        let cd = format!("E{:04}", 9001 + i);
        let email =
            format!("{}.{}@partners.example", crate::matching::fold(first), crate::matching::fold(last))
                .replace(' ', "");
        s.visma_employees.push(body(&cd, first, last, &email, ids));
        s.strangers.push(cd);
    }
    s
}

/// Ids the seeded Visma company has, for the hand-kept records.
#[derive(Debug, Clone, Copy)]
pub struct SeedIds<'a> {
    pub department: &'a str,
    pub employee_class: &'a str,
    pub branch: &'a str,
    pub calendar: &'a str,
}

fn body(cd: &str, first: &str, last: &str, email: &str, ids: &SeedIds<'_>) -> Value {
    let mut dto = visma::EmployeeCreateDto::new(
        cd,
        ids.department,
        ids.employee_class,
        ids.branch,
        ids.calendar,
        last,
        email,
    );
    dto.contact.first_name = Some(visma::dto::v(first));
    serde_json::to_value(&dto).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_survive_folding() {
        for name in ["Hansen", "Berg", "Lund", "Jónsdóttir", "Nyström", "Dahl", "Olsen"] {
            let t = typo(name);
            assert_ne!(crate::matching::fold(&t), crate::matching::fold(name), "{name} -> {t}");
        }
    }
}
