//! The SQL front-end: PostgreSQL-dialect text -> sqlparser AST -> bound IR.
//!
//! Supported: SELECT with joins (inner, left), WHERE, GROUP BY, HAVING, ORDER BY, LIMIT/OFFSET;
//! INSERT ... VALUES [ON CONFLICT]; UPDATE; DELETE; parameters `$1..$n`. Everything else is
//! refused with [`CoreError::Unsupported`] naming the construct.

mod bind;
mod depth;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::{Parser, ParserError};

use crate::catalog::Catalog;
use crate::error::{CoreError, Position};
use crate::ir::BoundQuery;

/// Parses `sql` and binds it against `catalog` with the JSON parameter values `params`.
pub fn bind(
    sql: &str,
    params: &[serde_json::Value],
    catalog: &Catalog,
) -> Result<BoundQuery, CoreError> {
    depth::with_stack_for(sql, || {
        let statements = Parser::new(&PostgreSqlDialect {})
            .with_recursion_limit(PARSER_RECURSION_LIMIT)
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_statements())
            .map_err(syntax_error)?;
        bind_parsed(statements, sql, params, catalog)
    })
}

fn bind_parsed(
    mut statements: Vec<sqlparser::ast::Statement>,
    sql: &str,
    params: &[serde_json::Value],
    catalog: &Catalog,
) -> Result<BoundQuery, CoreError> {
    match statements.len() {
        0 => Err(CoreError::Syntax {
            message: "empty statement".to_owned(),
            position: Some(Position { line: 1, column: 1 }),
        }),
        1 => {
            let mut statement = statements.pop().ok_or_else(|| CoreError::Syntax {
                message: "empty statement".to_owned(),
                position: None,
            })?;
            depth::check(&mut statement, catalog.max_expr_depth)?;
            bind::Binder::new(catalog, params).bind_statement(statement, sql)
        }
        _ => Err(CoreError::Unsupported {
            construct: "more than one statement per request".to_owned(),
            position: None,
        }),
    }
}

/// sqlparser's recursion limit (its default): how deep parentheses, function calls and casts
/// may nest while parsing; deeper is [`CoreError::TooNested`] (`QUERY_TOO_LARGE`).
const PARSER_RECURSION_LIMIT: usize = 50;

/// Turns a sqlparser error into [`CoreError::Syntax`], lifting `at Line: L, Column: C` into a
/// position; the recursion limit is [`CoreError::TooNested`].
fn syntax_error(err: ParserError) -> CoreError {
    let text = match err {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
        ParserError::RecursionLimitExceeded => {
            return CoreError::TooNested {
                limit: PARSER_RECURSION_LIMIT,
            };
        }
    };
    let (message, position) = match text.rfind(" at Line: ") {
        Some(at) => {
            let tail = &text[at + " at Line: ".len()..];
            let mut parts = tail.split(", Column: ");
            let line = parts.next().and_then(|l| l.trim().parse().ok());
            let column = parts.next().and_then(|c| c.trim().parse().ok());
            let position = line
                .zip(column)
                .map(|(line, column)| Position { line, column });
            (text[..at].to_owned(), position)
        }
        None => (text, None),
    };
    let message = message
        .strip_prefix("sql parser error: ")
        .unwrap_or(&message)
        .to_owned();
    CoreError::Syntax { message, position }
}

#[cfg(test)]
mod tests;
