//! How a template schema is copied: MariaDB has no `CREATE DATABASE …
//! TEMPLATE`, so the template is read once — every table's `SHOW CREATE
//! TABLE` (columns, indexes, foreign keys, the `AUTO_INCREMENT` counter),
//! which tables hold rows, the routines, views and triggers — and each copy
//! replays that as one script: tables with foreign key checks off, rows by
//! `INSERT … SELECT` from the template, then routines, views (in
//! dependency order) and triggers (after the rows, so they do not fire).

use super::server::Inner;
use super::{ident, lit};
use crate::Result;

/// The statements a copy replays, with the template's schema name where
/// they name it.
#[derive(Debug, Default)]
pub(super) struct Recipe {
    tables: Vec<String>,
    /// `INSERT INTO <copy>.t (cols) SELECT cols FROM <template>.t`, for
    /// tables with rows; without the schema names.
    rows: Vec<(String, String)>,
    /// Routines and triggers, each with the `sql_mode` it was made under.
    bodies_before_views: Vec<(String, String)>,
    views: Vec<String>,
    triggers: Vec<(String, String)>,
}

/// The delimiter for statements with bodies (routines, triggers).
const DELIMITER: &str = "$$testdock$$";

impl Recipe {
    /// Reads the made template `tmpl`.
    pub(super) async fn record(inner: &Inner, tmpl: &str) -> Result<Recipe> {
        let schema = lit(tmpl);
        let mut recipe = Recipe::default();
        let objects = rows(
            &inner
                .sql(&format!(
                    "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES \
                     WHERE TABLE_SCHEMA = {schema} ORDER BY TABLE_NAME"
                ))
                .await?,
        );
        let tables: Vec<&str> = objects
            .iter()
            .filter(|r| r[1] != "VIEW")
            .map(|r| r[0].as_str())
            .collect();
        let views: Vec<&str> = objects
            .iter()
            .filter(|r| r[1] == "VIEW")
            .map(|r| r[0].as_str())
            .collect();
        let q = |name: &str| format!("{}.{}", ident(tmpl), ident(name));
        if !tables.is_empty() {
            let show: Vec<String> = tables
                .iter()
                .map(|t| format!("SHOW CREATE TABLE {}", q(t)))
                .collect();
            for r in rows(&inner.sql(&show.join(";\n")).await?) {
                recipe.tables.push(r[1].clone());
            }
            // Generated columns take no values.
            let columns = rows(
                &inner
                    .sql(&format!(
                        "SET SESSION group_concat_max_len = 1048576; \
                         SELECT TABLE_NAME, GROUP_CONCAT(CONCAT('`', REPLACE(COLUMN_NAME, '`', '``'), '`') \
                         ORDER BY ORDINAL_POSITION SEPARATOR ', ') FROM information_schema.COLUMNS \
                         WHERE TABLE_SCHEMA = {schema} AND EXTRA NOT LIKE '%VIRTUAL GENERATED%' \
                         AND EXTRA NOT LIKE '%STORED GENERATED%' AND EXTRA NOT LIKE '%PERSISTENT%' \
                         GROUP BY TABLE_NAME"
                    ))
                    .await?,
            );
            let exists: Vec<String> = tables
                .iter()
                .map(|t| format!("SELECT {}, EXISTS (SELECT 1 FROM {})", lit(t), q(t)))
                .collect();
            let filled = rows(&inner.sql(&exists.join(" UNION ALL ")).await?);
            for r in filled.iter().filter(|r| r[1] == "1") {
                if let Some(c) = columns.iter().find(|c| c[0] == r[0]) {
                    recipe.rows.push((r[0].clone(), c[1].clone()));
                }
            }
        }
        let routines = rows(
            &inner
                .sql(&format!(
                    "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES \
                     WHERE ROUTINE_SCHEMA = {schema} ORDER BY ROUTINE_NAME"
                ))
                .await?,
        );
        for r in routines {
            let out = rows(
                &inner
                    .sql(&format!("SHOW CREATE {} {}", r[0], q(&r[1])))
                    .await?,
            );
            if let Some(row) = out.first().filter(|row| row.len() > 2) {
                recipe
                    .bodies_before_views
                    .push((row[1].clone(), row[2].clone()));
            }
        }
        let mut defs = Vec::new();
        for v in &views {
            let out = rows(&inner.sql(&format!("SHOW CREATE VIEW {}", q(v))).await?);
            if let Some(row) = out.first() {
                defs.push((v.to_string(), row[1].clone()));
            }
        }
        recipe.views = dependency_order(tmpl, defs);
        let triggers = rows(
            &inner
                .sql(&format!(
                    "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS \
                     WHERE TRIGGER_SCHEMA = {schema} ORDER BY EVENT_OBJECT_TABLE, ACTION_ORDER"
                ))
                .await?,
        );
        for t in triggers {
            let out = rows(
                &inner
                    .sql(&format!("SHOW CREATE TRIGGER {}", q(&t[0])))
                    .await?,
            );
            if let Some(row) = out.first().filter(|row| row.len() > 2) {
                recipe.triggers.push((row[1].clone(), row[2].clone()));
            }
        }
        Ok(recipe)
    }

    /// The script that makes `copy` from `tmpl`, for one client run.
    pub(super) fn script(&self, tmpl: &str, copy: &str) -> String {
        let (from, to) = (ident(tmpl), ident(copy));
        let qualified = (format!("{from}."), format!("{to}."));
        let mut s = format!(
            "CREATE DATABASE {to};\nUSE {to};\nSET @testdock_fk = @@foreign_key_checks, \
             @testdock_mode = @@sql_mode, foreign_key_checks = 0;\n"
        );
        for t in &self.tables {
            s.push_str(t);
            s.push_str(";\n");
        }
        for (table, cols) in &self.rows {
            let t = ident(table);
            s.push_str(&format!(
                "INSERT INTO {to}.{t} ({cols}) SELECT {cols} FROM {from}.{t};\n"
            ));
        }
        let bodies = |s: &mut String, list: &[(String, String)]| {
            if list.is_empty() {
                return;
            }
            s.push_str(&format!("DELIMITER {DELIMITER}\n"));
            for (mode, body) in list {
                s.push_str(&format!(
                    "SET SESSION sql_mode = {}{DELIMITER}\n",
                    lit(mode)
                ));
                s.push_str(&body.replace(&qualified.0, &qualified.1));
                s.push_str(&format!("{DELIMITER}\n"));
            }
            s.push_str("DELIMITER ;\nSET SESSION sql_mode = @testdock_mode;\n");
        };
        bodies(&mut s, &self.bodies_before_views);
        for v in &self.views {
            s.push_str(&v.replace(&qualified.0, &qualified.1));
            s.push_str(";\n");
        }
        bodies(&mut s, &self.triggers);
        s.push_str("SET foreign_key_checks = @testdock_fk;\nUSE testdock");
        s
    }
}

/// Views so that each comes after those it selects from.
fn dependency_order(tmpl: &str, mut views: Vec<(String, String)>) -> Vec<String> {
    let mut out = Vec::new();
    while !views.is_empty() {
        let pending: Vec<String> = views.iter().map(|(n, _)| n.clone()).collect();
        let i = views
            .iter()
            .position(|(name, def)| {
                !pending.iter().any(|other| {
                    other != name && def.contains(&format!("{}.{}", ident(tmpl), ident(other)))
                })
            })
            // A cycle cannot be made; take the first.
            .unwrap_or(0);
        out.push(views.remove(i).1);
    }
    out
}

/// The client's batch output: rows by line, fields by tab, with its
/// escapes (`\n`, `\t`, `\\`, `\0`) undone.
fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(unescape).collect())
        .collect()
}

fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_output_is_unescaped() {
        let r = rows("t\tCREATE TABLE `t` (\\n  `a` int\\n) COMMENT='x\\\\y'\n");
        assert_eq!(
            r,
            vec![vec![
                "t".to_string(),
                "CREATE TABLE `t` (\n  `a` int\n) COMMENT='x\\y'".into()
            ]]
        );
    }

    #[test]
    fn views_come_after_what_they_select_from() {
        let views = vec![
            (
                "b".to_string(),
                "CREATE VIEW `b` AS select `tmpl_1`.`a`.`x` from `tmpl_1`.`a`".to_string(),
            ),
            (
                "a".to_string(),
                "CREATE VIEW `a` AS select `tmpl_1`.`t`.`x` from `tmpl_1`.`t`".to_string(),
            ),
        ];
        let order = dependency_order("tmpl_1", views);
        assert!(order[0].starts_with("CREATE VIEW `a`"), "{order:?}");
    }

    #[test]
    fn the_script_renames_the_schema_in_views() {
        let r = Recipe {
            tables: vec!["CREATE TABLE `t` (`x` int)".into()],
            rows: vec![("t".into(), "`x`".into())],
            views: vec![
                "CREATE VIEW `v` AS select `tmpl_1`.`t`.`x` AS `x` from `tmpl_1`.`t`".into(),
            ],
            ..Default::default()
        };
        let s = r.script("tmpl_1", "t_copy");
        assert!(
            s.starts_with("CREATE DATABASE `t_copy`;\nUSE `t_copy`;"),
            "{s}"
        );
        assert!(
            s.contains("INSERT INTO `t_copy`.`t` (`x`) SELECT `x` FROM `tmpl_1`.`t`;"),
            "{s}"
        );
        assert!(s.contains("from `t_copy`.`t`;"), "{s}");
        assert!(!s.contains("DELIMITER"), "{s}");
    }
}
