//! Google-style `types` for a GeoNames feature: the table that maps a
//! feature class and code (<https://www.geonames.org/export/codes.html>) to
//! the place types of Google's legacy Nearby Search, as the `offline`
//! provider answers them from a GeoNames file (`places.geonames_file`).
//!
//! A code listed in [`BY_CODE`] gets its types there; any other code gets
//! the default of its class ([`by_class`]). docs/places.md shows the same
//! table for operators; a test keeps every listed code valid.

/// Types of the feature codes that have a more precise Google type than
/// their class, `(class, code, types)`.
pub const BY_CODE: &[(u8, &str, &[&str])] = &[
    // A: countries, states, regions.
    (b'A', "PCLI", &["country", "political"]),
    (b'A', "PCL", &["country", "political"]),
    (b'A', "PCLD", &["country", "political"]),
    (b'A', "PCLF", &["country", "political"]),
    (b'A', "PCLIX", &["country", "political"]),
    (b'A', "PCLS", &["country", "political"]),
    (b'A', "ADM1", &["administrative_area_level_1", "political"]),
    (b'A', "ADM2", &["administrative_area_level_2", "political"]),
    (b'A', "ADM3", &["administrative_area_level_3", "political"]),
    (b'A', "ADM4", &["administrative_area_level_4", "political"]),
    (b'A', "ADM5", &["administrative_area_level_5", "political"]),
    // P: populated places.
    (b'P', "PPLX", &["neighborhood", "political"]),
    // L: parks, areas.
    (b'L', "PRK", &["park", "point_of_interest", "establishment"]),
    (
        b'L',
        "AMUS",
        &["amusement_park", "point_of_interest", "establishment"],
    ),
    (b'L', "CMN", &["park", "point_of_interest", "establishment"]),
    (b'L', "RGN", &["colloquial_area", "political"]),
    (b'L', "AREA", &["colloquial_area", "political"]),
    (b'L', "LCTY", &["colloquial_area", "political"]),
    // R: roads, railroads, trails.
    (b'R', "TRL", &["route"]),
    // S: spots and buildings.
    (
        b'S',
        "AIRP",
        &["airport", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "AIRF",
        &["airport", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "AIRH",
        &["airport", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "HTL",
        &["lodging", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "HSTS",
        &["tourist_attraction", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "MTL",
        &["lodging", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "RSRT",
        &["lodging", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "HUT",
        &["lodging", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "SCH",
        &["school", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "SCHA",
        &["school", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "SCHC",
        &["university", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "SCHT",
        &["school", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "UNIV",
        &["university", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "HSP",
        &["hospital", "health", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "HSPC",
        &["doctor", "health", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "HSPD",
        &["doctor", "health", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "HSPL",
        &["hospital", "health", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "CH",
        &[
            "church",
            "place_of_worship",
            "point_of_interest",
            "establishment",
        ],
    ),
    (
        b'S',
        "CTHL",
        &[
            "church",
            "place_of_worship",
            "point_of_interest",
            "establishment",
        ],
    ),
    (
        b'S',
        "MSQE",
        &[
            "mosque",
            "place_of_worship",
            "point_of_interest",
            "establishment",
        ],
    ),
    (
        b'S',
        "SYG",
        &[
            "synagogue",
            "place_of_worship",
            "point_of_interest",
            "establishment",
        ],
    ),
    (
        b'S',
        "TMPL",
        &["place_of_worship", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "SHRN",
        &["place_of_worship", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "MSTY",
        &["place_of_worship", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "CMTY",
        &["cemetery", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "MUS",
        &["museum", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "LIBR",
        &["library", "point_of_interest", "establishment"],
    ),
    (b'S', "ZOO", &["zoo", "point_of_interest", "establishment"]),
    (
        b'S',
        "STDM",
        &["stadium", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "PO",
        &["post_office", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "PP",
        &["police", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "PPQ",
        &["police", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "FIRE",
        &["fire_station", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "BANK",
        &["bank", "finance", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "REST",
        &["restaurant", "food", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "CAFE",
        &["cafe", "food", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "MALL",
        &["shopping_mall", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "MKT",
        &["store", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "PKLT",
        &["parking", "point_of_interest", "establishment"],
    ),
    (b'S', "GDN", &["park", "point_of_interest", "establishment"]),
    (
        b'S',
        "EMB",
        &["embassy", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "CTHSE",
        &["courthouse", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "ADMF",
        &[
            "local_government_office",
            "point_of_interest",
            "establishment",
        ],
    ),
    (
        b'S',
        "CSNO",
        &["casino", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "THTR",
        &["tourist_attraction", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "LTHSE",
        &["tourist_attraction", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "MNMT",
        &["tourist_attraction", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "CSTL",
        &["tourist_attraction", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "RUIN",
        &["tourist_attraction", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "PAL",
        &["tourist_attraction", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "OBPT",
        &["tourist_attraction", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "RSTN",
        &[
            "train_station",
            "transit_station",
            "point_of_interest",
            "establishment",
        ],
    ),
    (
        b'S',
        "RSTP",
        &[
            "train_station",
            "transit_station",
            "point_of_interest",
            "establishment",
        ],
    ),
    (
        b'S',
        "MTRO",
        &[
            "subway_station",
            "transit_station",
            "point_of_interest",
            "establishment",
        ],
    ),
    (
        b'S',
        "BUSTN",
        &[
            "bus_station",
            "transit_station",
            "point_of_interest",
            "establishment",
        ],
    ),
    (
        b'S',
        "BUSTP",
        &[
            "bus_station",
            "transit_station",
            "point_of_interest",
            "establishment",
        ],
    ),
    (
        b'S',
        "CMPQ",
        &["campground", "point_of_interest", "establishment"],
    ),
    (
        b'S',
        "CMP",
        &["campground", "point_of_interest", "establishment"],
    ),
    (b'S', "RECG", &["point_of_interest", "establishment"]),
    (
        b'S',
        "GHSE",
        &["lodging", "point_of_interest", "establishment"],
    ),
];

/// The default types of a feature class (`0` when the row has none).
pub fn by_class(class: u8) -> &'static [&'static str] {
    match class {
        b'A' => &["political"],
        b'P' => &["locality", "political"],
        // Streams and lakes; islands, mountains, capes; undersea features;
        // forests and heaths.
        b'H' | b'T' | b'U' | b'V' => &["natural_feature", "establishment"],
        b'L' => &["point_of_interest", "establishment"],
        b'R' => &["route"],
        b'S' => &["point_of_interest", "establishment"],
        _ => &["point_of_interest"],
    }
}

/// The types of feature `class`.`code`.
pub fn types_for(class: u8, code: &str) -> &'static [&'static str] {
    BY_CODE
        .iter()
        .find(|(c, k, _)| *c == class && *k == code)
        .map_or_else(|| by_class(class), |(_, _, types)| types)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_get_their_own_types_and_others_their_class() {
        assert_eq!(types_for(b'S', "AIRP")[0], "airport");
        assert_eq!(types_for(b'T', "ISL"), ["natural_feature", "establishment"]);
        assert_eq!(types_for(b'P', "PPLA2"), ["locality", "political"]);
        assert_eq!(types_for(b'A', "ADM1")[0], "administrative_area_level_1");
        assert_eq!(types_for(0, ""), ["point_of_interest"]);
    }

    #[test]
    fn the_table_lists_each_code_once_under_a_real_class() {
        for (i, (class, code, types)) in BY_CODE.iter().enumerate() {
            assert!(b"AHLPRSTUV".contains(class), "{code}");
            assert!(!types.is_empty(), "{code}");
            assert!(
                BY_CODE[i + 1..]
                    .iter()
                    .all(|(c, k, _)| (c, k) != (class, code)),
                "{code} twice"
            );
        }
    }
}
