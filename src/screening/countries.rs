//! Country names as written in sanctions lists ("Iran", "Korea, North", "Congo, Democratic
//! Republic of the", "Syrian Arab Republic", "Türkiye") to ISO 3166-1 alpha-2 codes.
//!
//! The table lists every ISO 3166-1 country with its usual English variants, the OFAC
//! "Name, Qualifier" forms and the UN long forms. Lookup folds case, diacritics and
//! punctuation, so `"CÔTE D'IVOIRE"` and `"cote divoire"` both resolve. Historical states that
//! no longer exist map to their successors (see [`codes_for`]).

use std::collections::HashMap;
use std::sync::OnceLock;

/// `(alpha-2, names)`; the first name is the short English name.
const COUNTRIES: &[(&str, &[&str])] = &[
    (
        "AF",
        &[
            "Afghanistan",
            "Islamic Republic of Afghanistan",
            "Islamic Emirate of Afghanistan",
        ],
    ),
    ("AX", &["Aland Islands", "Aland"]),
    ("AL", &["Albania"]),
    ("DZ", &["Algeria"]),
    ("AS", &["American Samoa"]),
    ("AD", &["Andorra"]),
    ("AO", &["Angola"]),
    ("AI", &["Anguilla"]),
    ("AQ", &["Antarctica"]),
    ("AG", &["Antigua and Barbuda", "Antigua"]),
    ("AR", &["Argentina"]),
    ("AM", &["Armenia"]),
    ("AW", &["Aruba"]),
    ("AU", &["Australia"]),
    ("AT", &["Austria"]),
    ("AZ", &["Azerbaijan"]),
    ("BS", &["Bahamas", "The Bahamas", "Bahamas, The"]),
    ("BH", &["Bahrain"]),
    ("BD", &["Bangladesh"]),
    ("BB", &["Barbados"]),
    ("BY", &["Belarus", "Byelorussia", "Belorussia"]),
    ("BE", &["Belgium"]),
    ("BZ", &["Belize"]),
    ("BJ", &["Benin"]),
    ("BM", &["Bermuda"]),
    ("BT", &["Bhutan"]),
    (
        "BO",
        &[
            "Bolivia",
            "Plurinational State of Bolivia",
            "Bolivia (Plurinational State of)",
        ],
    ),
    (
        "BQ",
        &[
            "Bonaire, Sint Eustatius and Saba",
            "Caribbean Netherlands",
            "Bonaire",
        ],
    ),
    (
        "BA",
        &["Bosnia and Herzegovina", "Bosnia-Herzegovina", "Bosnia"],
    ),
    ("BW", &["Botswana"]),
    ("BV", &["Bouvet Island"]),
    ("BR", &["Brazil"]),
    ("IO", &["British Indian Ocean Territory"]),
    (
        "VG",
        &[
            "British Virgin Islands",
            "Virgin Islands, British",
            "Virgin Islands (British)",
        ],
    ),
    ("BN", &["Brunei", "Brunei Darussalam"]),
    ("BG", &["Bulgaria"]),
    ("BF", &["Burkina Faso"]),
    ("BI", &["Burundi"]),
    ("CV", &["Cabo Verde", "Cape Verde"]),
    ("KH", &["Cambodia", "Kampuchea"]),
    ("CM", &["Cameroon"]),
    ("CA", &["Canada"]),
    ("KY", &["Cayman Islands"]),
    ("CF", &["Central African Republic"]),
    ("TD", &["Chad"]),
    ("CL", &["Chile"]),
    (
        "CN",
        &[
            "China",
            "People's Republic of China",
            "China, People's Republic of",
            "PRC",
        ],
    ),
    ("CX", &["Christmas Island"]),
    ("CC", &["Cocos (Keeling) Islands", "Cocos Islands"]),
    ("CO", &["Colombia"]),
    ("KM", &["Comoros", "Comoros Islands"]),
    (
        "CG",
        &[
            "Congo",
            "Republic of the Congo",
            "Congo, Republic of the",
            "Congo-Brazzaville",
            "Congo (Brazzaville)",
        ],
    ),
    (
        "CD",
        &[
            "Democratic Republic of the Congo",
            "Congo, Democratic Republic of the",
            "DR Congo",
            "DRC",
            "Congo-Kinshasa",
            "Congo (Kinshasa)",
            "Zaire",
        ],
    ),
    ("CK", &["Cook Islands"]),
    ("CR", &["Costa Rica"]),
    ("CI", &["Cote d'Ivoire", "Ivory Coast"]),
    ("HR", &["Croatia"]),
    ("CU", &["Cuba"]),
    ("CW", &["Curacao"]),
    ("CY", &["Cyprus"]),
    ("CZ", &["Czechia", "Czech Republic"]),
    ("DK", &["Denmark"]),
    ("DJ", &["Djibouti"]),
    ("DM", &["Dominica"]),
    ("DO", &["Dominican Republic"]),
    ("EC", &["Ecuador"]),
    ("EG", &["Egypt", "Arab Republic of Egypt"]),
    ("SV", &["El Salvador"]),
    ("GQ", &["Equatorial Guinea"]),
    ("ER", &["Eritrea"]),
    ("EE", &["Estonia"]),
    ("SZ", &["Eswatini", "Swaziland"]),
    ("ET", &["Ethiopia"]),
    ("FK", &["Falkland Islands", "Falkland Islands (Malvinas)"]),
    ("FO", &["Faroe Islands"]),
    ("FJ", &["Fiji"]),
    ("FI", &["Finland"]),
    ("FR", &["France"]),
    ("GF", &["French Guiana"]),
    ("PF", &["French Polynesia"]),
    ("TF", &["French Southern Territories"]),
    ("GA", &["Gabon"]),
    ("GM", &["Gambia", "The Gambia", "Gambia, The"]),
    ("GE", &["Georgia"]),
    ("DE", &["Germany", "Federal Republic of Germany"]),
    ("GH", &["Ghana"]),
    ("GI", &["Gibraltar"]),
    ("GR", &["Greece"]),
    ("GL", &["Greenland"]),
    ("GD", &["Grenada"]),
    ("GP", &["Guadeloupe"]),
    ("GU", &["Guam"]),
    ("GT", &["Guatemala"]),
    ("GG", &["Guernsey"]),
    ("GN", &["Guinea"]),
    ("GW", &["Guinea-Bissau", "Guinea Bissau"]),
    ("GY", &["Guyana"]),
    ("HT", &["Haiti"]),
    ("HM", &["Heard Island and McDonald Islands"]),
    ("VA", &["Holy See", "Vatican", "Vatican City"]),
    ("HN", &["Honduras"]),
    ("HK", &["Hong Kong", "Hong Kong SAR", "Hong Kong, China"]),
    ("HU", &["Hungary"]),
    ("IS", &["Iceland"]),
    ("IN", &["India"]),
    ("ID", &["Indonesia"]),
    (
        "IR",
        &[
            "Iran",
            "Islamic Republic of Iran",
            "Iran, Islamic Republic of",
            "Iran (Islamic Republic of)",
            "Persia",
        ],
    ),
    ("IQ", &["Iraq"]),
    ("IE", &["Ireland"]),
    ("IM", &["Isle of Man"]),
    ("IL", &["Israel"]),
    ("IT", &["Italy"]),
    ("JM", &["Jamaica"]),
    ("JP", &["Japan"]),
    ("JE", &["Jersey"]),
    ("JO", &["Jordan"]),
    ("KZ", &["Kazakhstan"]),
    ("KE", &["Kenya"]),
    ("KI", &["Kiribati"]),
    (
        "KP",
        &[
            "North Korea",
            "Korea, North",
            "Democratic People's Republic of Korea",
            "Korea, Democratic People's Republic of",
            "DPRK",
        ],
    ),
    (
        "KR",
        &[
            "South Korea",
            "Korea, South",
            "Republic of Korea",
            "Korea, Republic of",
            "Korea",
        ],
    ),
    ("XK", &["Kosovo"]),
    ("KW", &["Kuwait"]),
    ("KG", &["Kyrgyzstan", "Kyrgyz Republic"]),
    (
        "LA",
        &["Laos", "Lao People's Democratic Republic", "Lao PDR"],
    ),
    ("LV", &["Latvia"]),
    ("LB", &["Lebanon"]),
    ("LS", &["Lesotho"]),
    ("LR", &["Liberia"]),
    ("LY", &["Libya", "Libyan Arab Jamahiriya"]),
    ("LI", &["Liechtenstein"]),
    ("LT", &["Lithuania"]),
    ("LU", &["Luxembourg"]),
    ("MO", &["Macau", "Macao"]),
    ("MG", &["Madagascar"]),
    ("MW", &["Malawi"]),
    ("MY", &["Malaysia"]),
    ("MV", &["Maldives"]),
    ("ML", &["Mali"]),
    ("MT", &["Malta"]),
    ("MH", &["Marshall Islands"]),
    ("MQ", &["Martinique"]),
    ("MR", &["Mauritania"]),
    ("MU", &["Mauritius"]),
    ("YT", &["Mayotte"]),
    ("MX", &["Mexico"]),
    (
        "FM",
        &[
            "Micronesia",
            "Micronesia, Federated States of",
            "Federated States of Micronesia",
            "Micronesia (Federated States of)",
        ],
    ),
    (
        "MD",
        &["Moldova", "Republic of Moldova", "Moldova, Republic of"],
    ),
    ("MC", &["Monaco"]),
    ("MN", &["Mongolia"]),
    ("ME", &["Montenegro"]),
    ("MS", &["Montserrat"]),
    ("MA", &["Morocco"]),
    ("MZ", &["Mozambique"]),
    ("MM", &["Myanmar", "Burma"]),
    ("NA", &["Namibia"]),
    ("NR", &["Nauru"]),
    ("NP", &["Nepal"]),
    ("NL", &["Netherlands", "The Netherlands", "Holland"]),
    ("NC", &["New Caledonia"]),
    ("NZ", &["New Zealand"]),
    ("NI", &["Nicaragua"]),
    ("NE", &["Niger"]),
    ("NG", &["Nigeria"]),
    ("NU", &["Niue"]),
    ("NF", &["Norfolk Island"]),
    (
        "MK",
        &[
            "North Macedonia",
            "Macedonia",
            "The former Yugoslav Republic of Macedonia",
            "Macedonia, The Former Yugoslav Republic of",
        ],
    ),
    ("MP", &["Northern Mariana Islands"]),
    ("NO", &["Norway"]),
    ("OM", &["Oman"]),
    ("PK", &["Pakistan"]),
    ("PW", &["Palau"]),
    (
        "PS",
        &[
            "Palestine",
            "State of Palestine",
            "Palestinian Territories",
            "Palestinian",
            "West Bank",
            "Gaza",
            "Gaza Strip",
            "West Bank and Gaza",
            "Occupied Palestinian Territory",
        ],
    ),
    ("PA", &["Panama"]),
    ("PG", &["Papua New Guinea"]),
    ("PY", &["Paraguay"]),
    ("PE", &["Peru"]),
    ("PH", &["Philippines", "The Philippines"]),
    ("PN", &["Pitcairn", "Pitcairn Islands"]),
    ("PL", &["Poland"]),
    ("PT", &["Portugal"]),
    ("PR", &["Puerto Rico"]),
    ("QA", &["Qatar"]),
    ("RE", &["Reunion"]),
    ("RO", &["Romania"]),
    ("RU", &["Russia", "Russian Federation"]),
    ("RW", &["Rwanda"]),
    ("BL", &["Saint Barthelemy"]),
    (
        "SH",
        &[
            "Saint Helena",
            "Saint Helena, Ascension and Tristan da Cunha",
        ],
    ),
    (
        "KN",
        &[
            "Saint Kitts and Nevis",
            "St. Kitts and Nevis",
            "St Kitts and Nevis",
        ],
    ),
    ("LC", &["Saint Lucia", "St. Lucia", "St Lucia"]),
    ("MF", &["Saint Martin", "Saint Martin (French part)"]),
    ("PM", &["Saint Pierre and Miquelon"]),
    (
        "VC",
        &[
            "Saint Vincent and the Grenadines",
            "St. Vincent and the Grenadines",
            "St Vincent and the Grenadines",
        ],
    ),
    ("WS", &["Samoa"]),
    ("SM", &["San Marino"]),
    ("ST", &["Sao Tome and Principe"]),
    ("SA", &["Saudi Arabia", "Kingdom of Saudi Arabia"]),
    ("SN", &["Senegal"]),
    ("RS", &["Serbia", "Republic of Serbia"]),
    ("SC", &["Seychelles"]),
    ("SL", &["Sierra Leone"]),
    ("SG", &["Singapore"]),
    ("SX", &["Sint Maarten", "Sint Maarten (Dutch part)"]),
    ("SK", &["Slovakia", "Slovak Republic"]),
    ("SI", &["Slovenia"]),
    ("SB", &["Solomon Islands"]),
    ("SO", &["Somalia"]),
    ("ZA", &["South Africa"]),
    ("GS", &["South Georgia and the South Sandwich Islands"]),
    ("SS", &["South Sudan"]),
    ("ES", &["Spain"]),
    ("LK", &["Sri Lanka"]),
    ("SD", &["Sudan"]),
    ("SR", &["Suriname"]),
    ("SJ", &["Svalbard and Jan Mayen"]),
    ("SE", &["Sweden"]),
    ("CH", &["Switzerland"]),
    ("SY", &["Syria", "Syrian Arab Republic"]),
    (
        "TW",
        &["Taiwan", "Taiwan, Province of China", "Chinese Taipei"],
    ),
    ("TJ", &["Tajikistan"]),
    (
        "TZ",
        &[
            "Tanzania",
            "United Republic of Tanzania",
            "Tanzania, United Republic of",
        ],
    ),
    ("TH", &["Thailand"]),
    ("TL", &["Timor-Leste", "East Timor"]),
    ("TG", &["Togo"]),
    ("TK", &["Tokelau"]),
    ("TO", &["Tonga"]),
    ("TT", &["Trinidad and Tobago"]),
    ("TN", &["Tunisia"]),
    ("TR", &["Turkey", "Turkiye"]),
    ("TM", &["Turkmenistan"]),
    ("TC", &["Turks and Caicos Islands"]),
    ("TV", &["Tuvalu"]),
    ("UG", &["Uganda"]),
    ("UA", &["Ukraine"]),
    ("AE", &["United Arab Emirates", "UAE", "U.A.E."]),
    (
        "GB",
        &[
            "United Kingdom",
            "United Kingdom of Great Britain and Northern Ireland",
            "UK",
            "U.K.",
            "Great Britain",
            "Britain",
            "England",
            "Scotland",
            "Wales",
            "Northern Ireland",
        ],
    ),
    (
        "US",
        &[
            "United States",
            "United States of America",
            "USA",
            "U.S.A.",
            "U.S.",
            "America",
        ],
    ),
    ("UM", &["United States Minor Outlying Islands"]),
    ("UY", &["Uruguay"]),
    ("UZ", &["Uzbekistan"]),
    ("VU", &["Vanuatu"]),
    (
        "VE",
        &[
            "Venezuela",
            "Bolivarian Republic of Venezuela",
            "Venezuela (Bolivarian Republic of)",
            "Venezuela, Bolivarian Republic of",
        ],
    ),
    ("VN", &["Vietnam", "Viet Nam"]),
    (
        "VI",
        &[
            "U.S. Virgin Islands",
            "Virgin Islands, U.S.",
            "Virgin Islands (U.S.)",
            "United States Virgin Islands",
        ],
    ),
    ("WF", &["Wallis and Futuna"]),
    ("EH", &["Western Sahara"]),
    ("YE", &["Yemen"]),
    ("ZM", &["Zambia"]),
    ("ZW", &["Zimbabwe"]),
];

/// Former states, mapped to every successor: a nationality recorded as one of these agrees
/// with any successor (we cannot tell which one the person holds now).
const HISTORICAL: &[(&str, &[&str])] = &[
    ("Serbia and Montenegro", &["RS", "ME", "XK"]),
    ("Yugoslavia", &["RS", "ME", "XK", "BA", "HR", "SI", "MK"]),
    ("Federal Republic of Yugoslavia", &["RS", "ME", "XK"]),
    (
        "Soviet Union",
        &[
            "RU", "UA", "BY", "KZ", "UZ", "TJ", "KG", "TM", "AZ", "AM", "GE", "MD", "LT", "LV",
            "EE",
        ],
    ),
    (
        "USSR",
        &[
            "RU", "UA", "BY", "KZ", "UZ", "TJ", "KG", "TM", "AZ", "AM", "GE", "MD", "LT", "LV",
            "EE",
        ],
    ),
    (
        "former Soviet Union",
        &[
            "RU", "UA", "BY", "KZ", "UZ", "TJ", "KG", "TM", "AZ", "AM", "GE", "MD", "LT", "LV",
            "EE",
        ],
    ),
    ("Czechoslovakia", &["CZ", "SK"]),
    ("Netherlands Antilles", &["CW", "SX", "BQ"]),
];

/// Folds a country name for lookup: ASCII, lower case, letters and digits only, words
/// separated by one space, a leading "the" dropped.
fn fold(name: &str) -> String {
    let ascii = deunicode::deunicode(name).to_lowercase();
    let mut out = String::with_capacity(ascii.len());
    for c in ascii.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if c == '\'' || c == '.' {
            // "Cote d'Ivoire", "U.S.A." fold to one word.
        } else if !out.ends_with(' ') && !out.is_empty() {
            out.push(' ');
        }
    }
    let out = out.trim_end().to_string();
    match out.strip_prefix("the ") {
        Some(rest) => rest.to_string(),
        None => out,
    }
}

fn table() -> &'static HashMap<String, Vec<&'static str>> {
    static TABLE: OnceLock<HashMap<String, Vec<&'static str>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut m: HashMap<String, Vec<&'static str>> = HashMap::new();
        for (code, names) in COUNTRIES {
            m.insert(code.to_lowercase(), vec![code]);
            for n in *names {
                m.insert(fold(n), vec![code]);
            }
        }
        for (name, codes) in HISTORICAL {
            m.insert(fold(name), codes.to_vec());
        }
        m
    })
}

/// Every alpha-2 code a country name stands for: one for a current country, several for a
/// former state (`"Serbia and Montenegro"` gives RS, ME and XK), none when unknown.
///
/// Accepts alpha-2 codes in any case, OFAC's `"Korea, North"` form and its reversed
/// reading, and names with a trailing parenthesis (`"Iran (Islamic Republic of)"`).
pub fn codes_for(name: &str) -> Vec<&'static str> {
    let t = table();
    let folded = fold(name);
    if folded.is_empty() {
        return Vec::new();
    }
    if let Some(c) = t.get(&folded) {
        return c.clone();
    }
    // "Congo, Democratic Republic of the" -> "Democratic Republic of the Congo".
    if let Some((head, tail)) = name.split_once(',') {
        let swapped = fold(&format!("{} {}", tail.trim(), head.trim()));
        if let Some(c) = t.get(&swapped) {
            return c.clone();
        }
    }
    // "Iran (Islamic Republic of)" when not listed verbatim: try the part before "(".
    if let Some((head, _)) = name.split_once('(')
        && let Some(c) = t.get(&fold(head))
    {
        return c.clone();
    }
    Vec::new()
}

/// The single alpha-2 code of a current country, or `None` when the name is unknown or a
/// former state with several successors.
pub fn to_alpha2(name: &str) -> Option<&'static str> {
    let codes = codes_for(name);
    if codes.len() == 1 {
        Some(codes[0])
    } else {
        None
    }
}

/// Finds the last country named in free text such as a place of birth
/// (`"Cartagena del Chaira, Caqueta, Colombia"`): tries the text after each comma, from
/// the end, then the whole text.
pub fn country_in_place(place: &str) -> Vec<&'static str> {
    let parts: Vec<&str> = place.split(',').collect();
    for i in (0..parts.len()).rev() {
        let tail = parts[i..].join(",");
        let codes = codes_for(&tail);
        if !codes.is_empty() {
            return codes;
        }
        let codes = codes_for(parts[i]);
        if !codes.is_empty() {
            return codes;
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usual_list_spellings_resolve() {
        assert_eq!(to_alpha2("Iran"), Some("IR"));
        assert_eq!(to_alpha2("Russia"), Some("RU"));
        assert_eq!(to_alpha2("Russian Federation"), Some("RU"));
        assert_eq!(to_alpha2("Korea, North"), Some("KP"));
        assert_eq!(
            to_alpha2("Democratic People's Republic of Korea"),
            Some("KP")
        );
        assert_eq!(to_alpha2("Syrian Arab Republic"), Some("SY"));
        assert_eq!(to_alpha2("Congo, Democratic Republic of the"), Some("CD"));
        assert_eq!(to_alpha2("Democratic Republic of the Congo"), Some("CD"));
        assert_eq!(to_alpha2("Iran (Islamic Republic of)"), Some("IR"));
        assert_eq!(to_alpha2("Türkiye"), Some("TR"));
        assert_eq!(to_alpha2("CÔTE D'IVOIRE"), Some("CI"));
        assert_eq!(
            to_alpha2("United Kingdom of Great Britain and Northern Ireland"),
            Some("GB")
        );
        assert_eq!(to_alpha2("us"), Some("US"));
        assert_eq!(to_alpha2("undetermined"), None);
        assert_eq!(codes_for("Serbia and Montenegro"), vec!["RS", "ME", "XK"]);
    }

    #[test]
    fn place_of_birth_takes_the_country_part() {
        assert_eq!(
            country_in_place("Cartagena del Chaira, Caqueta, Colombia"),
            vec!["CO"]
        );
        assert_eq!(country_in_place("Pyongyang, Korea, North"), vec!["KP"]);
        assert!(country_in_place("Shati").is_empty());
    }
}
