//! Country names and codes from Gusto to Visma's ISO 3166-1 alpha-2 `countryId`.
//!
//! Gusto writes US locations as `"USA"`; companies that keep foreign offices in Gusto type
//! whatever the form lets them. Visma wants alpha-2. We accept alpha-2 as is (upper-cased),
//! the alpha-3 codes and English or native names of the countries a Nordic/European/US
//! company meets, and report anything else instead of guessing.

/// `(alpha-2, alpha-3, names...)`; names are compared case-insensitively.
const COUNTRIES: &[(&str, &str, &[&str])] = &[
    ("US", "USA", &["United States", "United States of America", "America"]),
    ("NO", "NOR", &["Norway", "Norge", "Noreg"]),
    ("SE", "SWE", &["Sweden", "Sverige"]),
    ("DK", "DNK", &["Denmark", "Danmark"]),
    ("FI", "FIN", &["Finland", "Suomi"]),
    ("IS", "ISL", &["Iceland", "Ísland", "Island"]),
    ("FO", "FRO", &["Faroe Islands", "Føroyar", "Færøerne"]),
    ("GL", "GRL", &["Greenland", "Kalaallit Nunaat", "Grønland"]),
    ("AX", "ALA", &["Åland", "Aland", "Åland Islands"]),
    ("EE", "EST", &["Estonia", "Eesti"]),
    ("LV", "LVA", &["Latvia"]),
    ("LT", "LTU", &["Lithuania"]),
    ("GB", "GBR", &["United Kingdom", "UK", "Great Britain", "England", "Scotland"]),
    ("IE", "IRL", &["Ireland"]),
    ("DE", "DEU", &["Germany", "Deutschland"]),
    ("NL", "NLD", &["Netherlands", "The Netherlands", "Holland"]),
    ("BE", "BEL", &["Belgium"]),
    ("LU", "LUX", &["Luxembourg"]),
    ("FR", "FRA", &["France"]),
    ("ES", "ESP", &["Spain", "España"]),
    ("PT", "PRT", &["Portugal"]),
    ("IT", "ITA", &["Italy", "Italia"]),
    ("CH", "CHE", &["Switzerland"]),
    ("AT", "AUT", &["Austria", "Österreich"]),
    ("PL", "POL", &["Poland", "Polska"]),
    ("CZ", "CZE", &["Czechia", "Czech Republic"]),
    ("CA", "CAN", &["Canada"]),
    ("MX", "MEX", &["Mexico"]),
    ("AU", "AUS", &["Australia"]),
    ("IN", "IND", &["India"]),
];

/// Visma's alpha-2 code for a Gusto country, `Ok("")` for an empty one (no address country).
///
/// # Errors
/// The trimmed input when it is neither a two-letter code nor a known alpha-3 code or name.
pub fn iso_alpha2(country: &str) -> Result<String, UnknownCountry> {
    let country = country.trim();
    if country.is_empty() {
        return Ok(String::new());
    }
    let upper = country.to_uppercase();
    for (alpha2, alpha3, names) in COUNTRIES {
        if upper == *alpha2 || upper == *alpha3 || names.iter().any(|n| n.to_uppercase() == upper) {
            return Ok((*alpha2).to_owned());
        }
    }
    // Any other two ASCII letters are taken to be an alpha-2 code already.
    if upper.len() == 2 && upper.bytes().all(|b| b.is_ascii_uppercase()) {
        return Ok(upper);
    }
    Err(UnknownCountry(country.to_owned()))
}

/// A country the connector cannot translate to an alpha-2 code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("work location country {0:?} is not a recognised ISO 3166 alpha-2/alpha-3 code or country name")]
pub struct UnknownCountry(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_codes_and_names() {
        for (input, expected) in [
            ("USA", "US"),
            ("us", "US"),
            ("NO", "NO"),
            ("Norway", "NO"),
            ("norge", "NO"),
            ("SE", "SE"),
            ("SWE", "SE"),
            ("Danmark", "DK"),
            ("FI", "FI"),
            ("Suomi", "FI"),
            ("IS", "IS"),
            ("Ísland", "IS"),
            (" United Kingdom ", "GB"),
            ("JP", "JP"),
            ("", ""),
        ] {
            assert_eq!(iso_alpha2(input).as_deref(), Ok(expected), "{input}");
        }
    }

    #[test]
    fn rejects_unknown_names() {
        assert_eq!(iso_alpha2("Atlantis"), Err(UnknownCountry("Atlantis".to_owned())));
        assert!(iso_alpha2("XYZ").is_err());
    }
}
