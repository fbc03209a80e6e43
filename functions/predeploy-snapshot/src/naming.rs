//! Deterministic snapshot identifiers within RDS's rules, so a repeated trigger finds the snapshot
//! it already made instead of making another.

/// RDS allows 255 characters for instance snapshots but 63 for cluster snapshots: one limit
/// for both keeps the name of a database's snapshots independent of its kind.
pub const MAX_LEN: usize = 63;

/// `{prefix}-{database}-{deployment}`, lowercased, with every run of other characters turned into
/// one hyphen; it starts with a letter and does not end with a hyphen. A name too long is cut and
/// given a hash of the whole, so two long names that share a beginning stay different.
pub fn snapshot_identifier(prefix: &str, database: &str, deployment: &str) -> String {
    let raw = format!("{prefix}-{database}-{deployment}");
    let mut id = sanitise(&raw);
    if !id.starts_with(|c: char| c.is_ascii_lowercase()) {
        id = format!("s-{id}");
        id = sanitise(&id);
    }
    if id.len() > MAX_LEN {
        let hash = format!("{:016x}", fnv1a(raw.as_bytes()));
        let keep = MAX_LEN - hash.len() - 1;
        id = format!("{}-{hash}", id[..keep].trim_end_matches('-'));
    }
    id
}

/// Lowercase letters and digits kept, everything else collapsed into single hyphens, none at
/// either end.
fn sanitise(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_owned()
}

/// FNV-1a, 64 bit: stable across Rust versions and platforms, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Whether `id` meets RDS's rules for a snapshot identifier (within [`MAX_LEN`]).
    fn is_valid(id: &str) -> bool {
        (1..=MAX_LEN).contains(&id.len())
            && id.starts_with(|c: char| c.is_ascii_lowercase())
            && !id.ends_with('-')
            && !id.contains("--")
            && id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    }

    #[test]
    fn a_plain_name_reads_as_written() {
        assert_eq!(
            snapshot_identifier("safeship", "checkout-db", "d-ABCDEF123"),
            "safeship-checkout-db-d-abcdef123"
        );
    }

    #[test]
    fn odd_characters_collapse_and_a_leading_digit_gets_a_letter() {
        assert_eq!(
            snapshot_identifier("", "__Checkout DB__", "d--1"),
            "checkout-db-d-1"
        );
        assert_eq!(snapshot_identifier("42", "db", "d-1"), "s-42-db-d-1");
    }

    #[test]
    fn long_names_are_cut_with_a_hash_that_keeps_them_apart() {
        let a = snapshot_identifier("safeship", &"x".repeat(80), "d-AAAAAAAAA");
        let b = snapshot_identifier("safeship", &"x".repeat(80), "d-BBBBBBBBB");
        assert_eq!(a.len(), MAX_LEN);
        assert_ne!(a, b);
        assert!(is_valid(&a) && is_valid(&b));
    }

    proptest! {
        #[test]
        fn every_identifier_meets_the_rules(prefix in ".{0,40}", database in ".{0,80}", deployment in ".{0,40}") {
            let id = snapshot_identifier(&prefix, &database, &deployment);
            prop_assert!(is_valid(&id), "{id:?}");
        }

        #[test]
        fn different_deployments_get_different_snapshots(
            database in "[a-z][a-z0-9-]{0,60}",
            a in "d-[A-Z0-9]{9}",
            b in "d-[A-Z0-9]{9}",
        ) {
            prop_assume!(a != b);
            prop_assert_ne!(
                snapshot_identifier("safeship", &database, &a),
                snapshot_identifier("safeship", &database, &b)
            );
        }
    }
}
