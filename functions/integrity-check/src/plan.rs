//! What to count, decided from the policy and the database's catalog alone: which tables, which
//! columns' NULLs, exact or estimated, and the one query per table that counts it all. Rules that
//! name a table or column the catalog does not have become configuration errors, not failures.

use std::collections::{BTreeMap, BTreeSet};

use safeship::policy::{IntegrityPolicy, TableRules};

/// A table as the catalog describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableInfo {
    pub schema: String,
    pub name: String,
    /// The planner's row estimate; negative when the table was never vacuumed or analysed.
    pub reltuples: f64,
    pub columns: Vec<String>,
}

impl TableInfo {
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ScanMode {
    Exact,
    /// Rows from `reltuples`; null rates from a `TABLESAMPLE SYSTEM (percent)` sample.
    Estimate {
        reltuples: f64,
        sample_percent: f64,
    },
}

/// One table's count: a single pass over it.
#[derive(Debug, Clone, PartialEq)]
pub struct TableScan {
    pub schema: String,
    pub name: String,
    /// Columns whose NULLs are counted in the same pass.
    pub columns: Vec<String>,
    pub mode: ScanMode,
    /// For ordering: biggest first, so the longest scans start early.
    pub size_hint: f64,
}

impl TableScan {
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// `SELECT count(*), count(*) FILTER (WHERE "c" IS NULL), … FROM "s"."t" [TABLESAMPLE …]`.
    pub fn sql(&self) -> String {
        let mut sql = String::from("SELECT count(*)");
        for c in &self.columns {
            sql.push_str(&format!(
                ", count(*) FILTER (WHERE {} IS NULL)",
                quote_ident(c)
            ));
        }
        sql.push_str(&format!(
            " FROM {}.{}",
            quote_ident(&self.schema),
            quote_ident(&self.name)
        ));
        if let ScanMode::Estimate { sample_percent, .. } = self.mode {
            sql.push_str(&format!(" TABLESAMPLE SYSTEM ({sample_percent})"));
        }
        sql
    }
}

/// `"name"` with embedded quotes doubled: identifiers from the policy and catalog are never
/// pasted into SQL unquoted.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `schema.table`, or a bare table name in `public`.
pub fn split_qualified(name: &str) -> (String, String) {
    match name.split_once('.') {
        Some((schema, table)) => (schema.to_owned(), table.to_owned()),
        None => ("public".to_owned(), name.to_owned()),
    }
}

/// The names the policy lists explicitly, qualified.
pub fn explicit_tables(policy: &IntegrityPolicy) -> Vec<String> {
    policy
        .tables
        .keys()
        .map(|t| {
            let (s, n) = split_qualified(t);
            format!("{s}.{n}")
        })
        .collect()
}

/// The scans for this run and the configuration errors found on the way.
pub fn plan(policy: &IntegrityPolicy, catalog: &[TableInfo]) -> (Vec<TableScan>, Vec<String>) {
    let by_name: BTreeMap<String, &TableInfo> =
        catalog.iter().map(|t| (t.qualified(), t)).collect();
    let excluded: BTreeSet<String> = policy
        .exclude
        .iter()
        .map(|t| {
            let (s, n) = split_qualified(t);
            format!("{s}.{n}")
        })
        .collect();
    let mut errors = Vec::new();
    let mut rules: BTreeMap<String, &TableRules> = BTreeMap::new();
    for (key, r) in &policy.tables {
        let (s, n) = split_qualified(key);
        let qualified = format!("{s}.{n}");
        if by_name.contains_key(&qualified) {
            rules.insert(qualified, r);
        } else {
            errors.push(format!(
                "tables.{key}: no table {qualified} in the database (or no right to see it)"
            ));
        }
    }
    let mut scans = Vec::new();
    for (qualified, info) in &by_name {
        let explicit = rules.get(qualified).copied();
        let swept = policy.schemas.contains(&info.schema) && !excluded.contains(qualified);
        if explicit.is_none() && !swept {
            continue;
        }
        let mut columns = Vec::new();
        let mut exact = false;
        if let Some(r) = explicit {
            exact = r.exact;
            let wanted = r
                .not_null
                .iter()
                .map(|c| (c, "not-null"))
                .chain(r.max_null_rate.keys().map(|c| (c, "max-null-rate")));
            for (column, rule) in wanted {
                if !info.columns.contains(column) {
                    errors.push(format!(
                        "tables.{qualified}.{rule}: no column {column:?} in {qualified}"
                    ));
                } else if !columns.contains(column) {
                    columns.push(column.clone());
                }
            }
        }
        let mode = if !exact
            && info.reltuples >= 0.0
            && info.reltuples > policy.estimate_above_rows as f64
        {
            ScanMode::Estimate {
                reltuples: info.reltuples,
                sample_percent: sample_percent(policy.sample_rows, info.reltuples),
            }
        } else {
            ScanMode::Exact
        };
        scans.push(TableScan {
            schema: info.schema.clone(),
            name: info.name.clone(),
            columns,
            mode,
            size_hint: info.reltuples,
        });
    }
    scans.sort_by(|a, b| b.size_hint.total_cmp(&a.size_hint));
    (scans, errors)
}

/// The share of a table's pages to sample so that about `sample_rows` rows are read.
fn sample_percent(sample_rows: u64, reltuples: f64) -> f64 {
    let percent = sample_rows as f64 / reltuples * 100.0;
    // Rounded so the SQL text stays short; never zero, never over the whole table.
    (percent.clamp(0.0001, 100.0) * 10_000.0).ceil() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use safeship::policy::Policy;

    fn policy(tables: &str) -> IntegrityPolicy {
        let doc = format!(
            "version: 1\ndatabases:\n  db:\n    kind: instance\n    identifier: db\n    environment: prod\n    integrity:\n      connection: {{secret-arn: arn:s, sslmode: disable}}\n      estimate-above-rows: 1000000\n{tables}"
        );
        Policy::parse(&doc, "test")
            .unwrap()
            .databases
            .remove("db")
            .unwrap()
            .integrity
            .unwrap()
    }

    fn table(schema: &str, name: &str, rows: f64, columns: &[&str]) -> TableInfo {
        TableInfo {
            schema: schema.into(),
            name: name.into(),
            reltuples: rows,
            columns: columns.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn one_query_per_table_counts_rows_and_every_ruled_column() {
        let p = policy(
            "      tables:\n        orders: {not-null: [customer_id, total], max-null-rate: {shipped_at: 0.5}}\n",
        );
        let catalog = [table(
            "public",
            "orders",
            10.0,
            &["id", "customer_id", "total", "shipped_at"],
        )];
        let (scans, errors) = plan(&p, &catalog);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            scans[0].sql(),
            "SELECT count(*), count(*) FILTER (WHERE \"customer_id\" IS NULL), count(*) FILTER (WHERE \"total\" IS NULL), count(*) FILTER (WHERE \"shipped_at\" IS NULL) FROM \"public\".\"orders\""
        );
    }

    #[test]
    fn schemas_are_swept_with_excludes_and_biggest_tables_first() {
        let p = policy("      schemas: [app]\n      exclude: [app.schema_migrations]\n");
        let catalog = [
            table("app", "small", 10.0, &["id"]),
            table("app", "schema_migrations", 5.0, &["v"]),
            table("app", "big", 900.0, &["id"]),
            table("other", "elsewhere", 1e6, &["id"]),
        ];
        let (scans, errors) = plan(&p, &catalog);
        assert!(errors.is_empty());
        let names: Vec<_> = scans.iter().map(TableScan::qualified).collect();
        assert_eq!(names, ["app.big", "app.small"]);
        assert_eq!(scans[0].sql(), "SELECT count(*) FROM \"app\".\"big\"");
    }

    #[test]
    fn unknown_tables_and_columns_are_configuration_errors_and_the_rest_still_runs() {
        let p = policy(
            "      tables:\n        orders: {not-null: [customer_id, nope]}\n        ghosts: {}\n",
        );
        let catalog = [table("public", "orders", 10.0, &["id", "customer_id"])];
        let (scans, errors) = plan(&p, &catalog);
        assert_eq!(scans.len(), 1);
        assert_eq!(scans[0].columns, ["customer_id"]);
        assert_eq!(
            errors,
            [
                "tables.ghosts: no table public.ghosts in the database (or no right to see it)",
                "tables.public.orders.not-null: no column \"nope\" in public.orders"
            ]
        );
    }

    #[test]
    fn large_tables_are_estimated_from_a_sample_unless_exact_is_asked() {
        let p = policy(
            "      sample-rows: 100000\n      tables:\n        events: {not-null: [kind]}\n        ledger: {exact: true}\n        fresh: {}\n",
        );
        let catalog = [
            table("public", "events", 10_000_000.0, &["kind"]),
            table("public", "ledger", 10_000_000.0, &["id"]),
            // never analysed: reltuples is -1, so it is counted
            table("public", "fresh", -1.0, &["id"]),
        ];
        let (scans, _) = plan(&p, &catalog);
        let events = scans.iter().find(|s| s.name == "events").unwrap();
        assert_eq!(
            events.mode,
            ScanMode::Estimate {
                reltuples: 10_000_000.0,
                sample_percent: 1.0
            }
        );
        assert!(
            events.sql().ends_with(" TABLESAMPLE SYSTEM (1)"),
            "{}",
            events.sql()
        );
        assert_eq!(
            scans.iter().find(|s| s.name == "ledger").unwrap().mode,
            ScanMode::Exact
        );
        assert_eq!(
            scans.iter().find(|s| s.name == "fresh").unwrap().mode,
            ScanMode::Exact
        );
        assert_eq!(sample_percent(100_000, 1e12), 0.0001);
        assert_eq!(sample_percent(100_000, 50_000.0), 100.0);
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(
            split_qualified("orders"),
            ("public".into(), "orders".into())
        );
        assert_eq!(
            split_qualified("app.orders"),
            ("app".into(), "orders".into())
        );
    }
}
