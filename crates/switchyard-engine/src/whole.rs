//! Whole-statement pushdown: when every table a statement reads lives in one PostgreSQL store,
//! that store runs the statement as the client wrote it (so its answer is PostgreSQL's by
//! construction), each logical table replaced by a derived table over its physical table that
//! renames the physical columns to the logical names, and every output column cast to text so
//! the router reads any PostgreSQL type back into the column's logical type.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, Query, SetExpr, Statement, TableFactor, Visit, VisitMut, Visitor, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::pushdown::quote_ident;

/// A logical table's physical table in the store that runs the statement.
#[derive(Debug, Clone)]
pub struct PhysicalTable {
    /// Physical table name (resolved by the store's search path).
    pub name: String,
    /// `(physical column, logical column)`, in the logical table's order.
    pub columns: Vec<(String, String)>,
}

/// The statement in PostgreSQL's SQL over the physical tables, its `width` output columns cast
/// to text; `None` when a table cannot be replaced safely (a CTE that shadows a table name, a
/// table function, a qualified name).
pub(crate) fn postgres_statement(
    statement: &Statement,
    tables: &HashMap<String, PhysicalTable>,
    timestamps: &[bool],
) -> Option<String> {
    let width = timestamps.len();
    let mut ctes = CteNames::default();
    let _ = statement.visit(&mut ctes);
    if ctes.names.iter().any(|n| tables.contains_key(n)) {
        return None;
    }
    let mut rewritten = statement.clone();
    let mut replacer = Replacer {
        tables,
        ctes: &ctes.names,
        failed: false,
    };
    let _ = VisitMut::visit(&mut rewritten, &mut replacer);
    if replacer.failed {
        return None;
    }
    let columns: Vec<String> = (0..width).map(|i| format!("c{i}")).collect();
    // Instants as UTC wall-clock text, whatever the session's time zone.
    let select: Vec<String> = columns
        .iter()
        .zip(timestamps)
        .map(|(c, ts)| {
            if *ts {
                format!(
                    "to_char(q.{c}::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
                )
            } else {
                format!("q.{c}::text")
            }
        })
        .collect();
    Some(format!(
        "SELECT {} FROM ({rewritten}) AS q({})",
        if select.is_empty() {
            "1".to_owned()
        } else {
            select.join(", ")
        },
        columns.join(", ")
    ))
}

#[derive(Default)]
struct CteNames {
    names: HashSet<String>,
}

impl Visitor for CteNames {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.names.insert(cte.alias.name.value.to_lowercase());
            }
        }
        ControlFlow::Continue(())
    }
}

struct Replacer<'a> {
    tables: &'a HashMap<String, PhysicalTable>,
    ctes: &'a HashSet<String>,
    failed: bool,
}

impl VisitorMut for Replacer<'_> {
    type Break = ();

    fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table {
            name, alias, args, ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let parts: Vec<&ast::Ident> = name.0.iter().filter_map(|p| p.as_ident()).collect();
        let logical = match parts.as_slice() {
            [one] if one.quote_style.is_some() => one.value.clone(),
            [one] => one.value.to_lowercase(),
            _ => {
                self.failed = true;
                return ControlFlow::Break(());
            }
        };
        let Some(physical) = self.tables.get(&logical) else {
            if self.ctes.contains(&logical) {
                return ControlFlow::Continue(());
            }
            // A table the plan does not read (optimized away): not routed, so not pushed.
            self.failed = true;
            return ControlFlow::Break(());
        };
        if args.is_some() {
            self.failed = true;
            return ControlFlow::Break(());
        }
        match derived(physical, &logical) {
            Some(mut replacement) => {
                if let (Some(original), TableFactor::Derived { alias: new, .. }) =
                    (alias.take(), &mut replacement)
                {
                    *new = Some(original);
                }
                *factor = replacement;
                ControlFlow::Continue(())
            }
            None => {
                self.failed = true;
                ControlFlow::Break(())
            }
        }
    }
}

/// `(SELECT "physical" AS "logical", … FROM "table") AS "logical_table"` as a table factor.
fn derived(table: &PhysicalTable, logical: &str) -> Option<TableFactor> {
    let columns: Vec<String> = table
        .columns
        .iter()
        .map(|(p, l)| format!("{} AS {}", quote_ident(p), quote_ident(l)))
        .collect();
    let sql = format!(
        "SELECT * FROM (SELECT {} FROM {}) AS {}",
        columns.join(", "),
        quote_ident(&table.name),
        quote_ident(logical)
    );
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, &sql).ok()?;
    let Some(Statement::Query(query)) = statements.pop() else {
        return None;
    };
    let SetExpr::Select(select) = *query.body else {
        return None;
    };
    select.from.into_iter().next().map(|t| t.relation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(sql: &str) -> Option<String> {
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parse")
            .remove(0);
        let mut tables = HashMap::new();
        tables.insert(
            "products".to_owned(),
            PhysicalTable {
                name: "catalog_items".to_owned(),
                columns: vec![
                    ("_id".to_owned(), "product_id".to_owned()),
                    ("name".to_owned(), "name".to_owned()),
                ],
            },
        );
        postgres_statement(&statement, &tables, &[false, false])
    }

    #[test]
    fn tables_become_renaming_derived_tables_and_outputs_text() {
        assert_eq!(
            rewrite("SELECT p.product_id, name FROM products p WHERE p.name ILIKE 'a%'").as_deref(),
            Some(
                "SELECT q.c0::text, q.c1::text FROM (SELECT p.product_id, name FROM (SELECT \"_id\" AS \"product_id\", \"name\" AS \"name\" FROM \"catalog_items\") p WHERE p.name ILIKE 'a%') AS q(c0, c1)"
            )
        );
        // Unaliased: the derived table keeps the table's name, so `products.name` resolves.
        let unaliased = rewrite("SELECT products.name FROM products").expect("rewrites");
        assert!(unaliased.contains(") AS \"products\""), "{unaliased}");
    }

    #[test]
    fn a_cte_that_shadows_a_table_or_a_qualified_name_is_not_pushed() {
        assert!(rewrite("WITH products AS (SELECT 1 AS x) SELECT x FROM products").is_none());
        assert!(rewrite("SELECT * FROM public.products").is_none());
        assert!(rewrite("SELECT name FROM customers").is_none());
        let cte = rewrite("WITH p AS (SELECT name FROM products) SELECT name, 1 FROM p")
            .expect("a CTE of its own name is fine");
        assert!(cte.contains("FROM \"catalog_items\""), "{cte}");
    }
}
