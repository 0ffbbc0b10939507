//! Deterministic generator of plausible Nordic companies.

use chrono::NaiveDate;
use rand::Rng;

use crate::model::*;
use crate::State;

const FIRST: &[&str] = &[
    "Astrid", "Bjørn", "Ingrid", "Lars", "Sigrid", "Erik", "Freja", "Magnus", "Liv", "Olav", "Sanna",
    "Mikko", "Aino", "Jussi", "Katla", "Gunnar", "Helga", "Nils", "Elin", "Oskar", "Saga", "Emil", "Maja",
    "Anders", "Karin", "Henrik", "Sofie", "Rasmus", "Ida", "Jonas", "Guðrún", "Einar",
];
const LAST: &[&str] = &[
    "Hansen",
    "Johansson",
    "Nielsen",
    "Virtanen",
    "Jónsdóttir",
    "Andersson",
    "Larsen",
    "Korhonen",
    "Karlsson",
    "Pedersen",
    "Nieminen",
    "Sigurðsson",
    "Olsen",
    "Lindqvist",
    "Berg",
    "Mäkinen",
    "Dahl",
    "Halvorsen",
    "Eriksson",
    "Kristensen",
    "Lund",
    "Hákonarson",
    "Nyström",
    "Solberg",
];
pub const DEPARTMENTS: &[&str] = &["Consulting", "Engineering", "Finance", "Sales", "People", "Operations"];
const TITLES: &[(&str, &[&str])] = &[
    ("Consulting", &["Consultant", "Senior Consultant", "Principal Consultant"]),
    ("Engineering", &["Software Engineer", "Senior Software Engineer", "Engineering Manager"]),
    ("Finance", &["Accountant", "Financial Controller"]),
    ("Sales", &["Account Executive", "Sales Manager"]),
    ("People", &["HR Partner", "Recruiter"]),
    ("Operations", &["Office Manager", "Operations Analyst"]),
];
/// (city, street, zip, region/state, country, phone)
pub const OFFICES: &[(&str, &str, &str, &str, &str, &str)] = &[
    ("Oslo", "Karl Johans gate 12", "0154", "Oslo", "NOR", "4722334455"),
    ("Stockholm", "Drottninggatan 45", "111 21", "Stockholm", "SWE", "46812345678"),
    ("Copenhagen", "Strøget 20", "1160", "Capital Region", "DNK", "4533123456"),
    ("Helsinki", "Mannerheimintie 8", "00100", "Uusimaa", "FIN", "358912345678"),
    ("Reykjavik", "Laugavegur 77", "101", "Capital Region", "ISL", "3545123456"),
];

pub(crate) fn new_uuid(st: &mut State) -> String {
    uuid::Builder::from_random_bytes(st.rng.random()).into_uuid().to_string()
}

pub(crate) fn new_code(st: &mut State) -> String {
    const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..6).map(|_| ALPHA[st.rng.random_range(0..ALPHA.len())] as char).collect()
}

fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'ø' => 'o',
            'æ' => 'a',
            'å' | 'ä' => 'a',
            'ö' => 'o',
            'ð' => 'd',
            'ó' => 'o',
            'ú' => 'u',
            'í' => 'i',
            'á' => 'a',
            c => c,
        })
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_lowercase()
}

pub(crate) fn random_name(st: &mut State) -> (String, String) {
    let f = FIRST[st.rng.random_range(0..FIRST.len())];
    let l = LAST[st.rng.random_range(0..LAST.len())];
    (f.to_owned(), l.to_owned())
}

pub(crate) fn title_for(st: &mut State, department: &str) -> String {
    let titles = TITLES.iter().find(|(d, _)| *d == department).map_or(&["Specialist"][..], |(_, t)| t);
    titles[st.rng.random_range(0..titles.len())].to_owned()
}

/// Creates a company with 5 offices, 6 departments and `n_employees` onboarded people.
pub(crate) fn seed_company(st: &mut State, name: &str, n_employees: usize) -> String {
    let company_uuid = new_uuid(st);
    let admin_uuid = new_uuid(st);
    let now = st.now().format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string();
    let mut locations = Vec::new();
    for (i, (city, street, zip, region, country, phone)) in OFFICES.iter().enumerate() {
        let uuid = new_uuid(st);
        st.locations.insert(
            uuid.clone(),
            Location {
                uuid: uuid.clone(),
                company_uuid: company_uuid.clone(),
                phone_number: (*phone).into(),
                street_1: (*street).into(),
                street_2: None,
                city: (*city).into(),
                state: (*region).into(),
                zip: (*zip).into(),
                country: (*country).into(),
                mailing_address: i == 0,
                filing_address: i == 0,
                active: true,
                created_at: now.clone(),
                updated_at: now.clone(),
            },
        );
        locations.push(uuid);
    }
    let mut departments = Vec::new();
    for title in DEPARTMENTS {
        let uuid = new_uuid(st);
        st.departments.insert(
            uuid.clone(),
            Department { uuid: uuid.clone(), company_uuid: company_uuid.clone(), title: (*title).into() },
        );
        departments.push(uuid);
    }
    st.companies.push(Company {
        uuid: company_uuid.clone(),
        name: name.to_owned(),
        admin_uuid,
        employees: Vec::new(),
        locations: locations.clone(),
        departments: departments.clone(),
    });
    let domain = format!("{}.example", ascii(name));
    for _ in 0..n_employees {
        let (first, last) = random_name(st);
        let dept_idx = st.rng.random_range(0..departments.len());
        let loc = locations[st.rng.random_range(0..locations.len())].clone();
        let title = title_for(st, DEPARTMENTS[dept_idx]);
        let hire = NaiveDate::from_ymd_opt(
            2015 + st.rng.random_range(0..10),
            st.rng.random_range(1..=12),
            st.rng.random_range(1..=28),
        )
        .unwrap_or_default();
        let dob = NaiveDate::from_ymd_opt(
            1960 + st.rng.random_range(0..40),
            st.rng.random_range(1..=12),
            st.rng.random_range(1..=28),
        );
        let uuid = new_employee(
            st,
            &company_uuid,
            &first,
            &last,
            &title,
            Some(departments[dept_idx].clone()),
            &loc,
            hire,
            &domain,
        );
        if let Some(e) = st.employees.get_mut(&uuid) {
            e.onboarded = true;
            e.onboarding_status = "onboarding_completed".into();
            e.date_of_birth = dob;
            // Some people have no personal email: integrators hit this.
            if e.uuid.ends_with('7') {
                e.email = None;
            }
        }
    }
    company_uuid
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn new_employee(
    st: &mut State,
    company_uuid: &str,
    first: &str,
    last: &str,
    title: &str,
    department_uuid: Option<String>,
    location_uuid: &str,
    hire_date: NaiveDate,
    domain: &str,
) -> String {
    let uuid = new_uuid(st);
    let job_uuid = new_uuid(st);
    let comp_uuid = new_uuid(st);
    let wa_uuid = new_uuid(st);
    let code = new_code(st);
    // Namesakes happen (the name pool is small) but mailboxes are unique, as in any firm:
    // the second Ingrid Pedersen gets ingrid.pedersen2@.
    let local = format!("{}.{}", ascii(first), ascii(last));
    let taken = st
        .employees
        .values()
        .filter(|e| e.company_uuid == company_uuid && e.first_name == first && e.last_name == last)
        .count();
    let local = if taken == 0 { local } else { format!("{local}{}", taken + 1) };
    let rate = format!("{}.00", st.rng.random_range(50..120) * 1000);
    let phone = format!("47{:08}", st.rng.random_range(0..100_000_000u32));
    let e = Employee {
        uuid: uuid.clone(),
        company_uuid: company_uuid.to_owned(),
        first_name: first.to_owned(),
        middle_initial: None,
        last_name: last.to_owned(),
        preferred_first_name: None,
        email: Some(format!("{local}@mail.example")),
        work_email: Some(format!("{local}@{domain}")),
        phone: Some(phone),
        date_of_birth: None,
        employee_code: code,
        manager_uuid: None,
        department_uuid,
        onboarded: false,
        onboarding_status: "admin_onboarding_incomplete".into(),
        terminated: false,
        current_employment_status: "full_time".into(),
        jobs: vec![Job {
            uuid: job_uuid,
            title: title.to_owned(),
            location_uuid: location_uuid.to_owned(),
            primary: true,
            hire_date,
            rate,
            payment_unit: "Year".into(),
            compensation_uuid: comp_uuid,
        }],
        terminations: Vec::new(),
        work_addresses: vec![WorkAddress {
            uuid: wa_uuid,
            location_uuid: location_uuid.to_owned(),
            effective_date: hire_date,
        }],
        rehire: None,
    };
    st.employees.insert(uuid.clone(), e);
    if let Some(c) = st.companies.iter_mut().find(|c| c.uuid == company_uuid) {
        c.employees.push(uuid.clone());
    }
    uuid
}
