//! Bounds on what the parser hands the binder: how deep expressions nest, and a stack big enough
//! for the parsed tree whatever its shape.
//!
//! sqlparser builds chains of infix and postfix operators (`1 + 1 + ...`, `a OR b OR ...`,
//! `x::int::int`) in a loop, so a statement of `n` bytes can nest about `n / 2` levels deep
//! without tripping its recursion limit. [`check`] bounds that before anything else recurses
//! over the tree: chains of one `AND`/`OR` (which applications do write long: generated
//! filters) are rebuilt as balanced trees, so a chain of `n` terms nests `log2 n` deep, and a
//! statement whose expressions still nest deeper than `execution.max_expr_depth` is refused
//! with `QUERY_TOO_LARGE`. So every later pass over the tree or the bound IR (binding, routing,
//! rendering, translation, evaluation) recurses a bounded number of levels. A refused tree can
//! still be arbitrarily deep: parsing, checking and dropping run on a stack sized for the
//! statement's length ([`with_stack_for`]).

use std::ops::ControlFlow;

use sqlparser::ast::{self, BinaryOperator, Spanned, VisitMut, VisitorMut};
use sqlparser::tokenizer::Span;

use crate::error::{CoreError, Position};

/// Statements up to this many bytes are handled on the caller's stack: they nest at most about
/// 500 levels deep, which dropping and visiting (sqlparser grows the stack for its visitor)
/// fit in a runtime thread's stack (2 MiB) even in debug builds.
const INLINE_MAX_BYTES: usize = 1024;

/// Stack reserved per byte of a longer statement: a byte adds at most half a level, and
/// dropping a level of the tree takes well under 256 bytes of stack even in debug builds
/// (`tests::deep_statements_drop_on_their_stack` drops 1 MiB statements).
const STACK_PER_BYTE: usize = 256;

/// Extra stack above the raw tree's needs (the binder and planner after the check).
const STACK_BASE: usize = 4 * 1024 * 1024;

/// Runs `f` on a stack that holds any parsed form of `sql`: the caller's for short statements,
/// a fresh one sized for the text otherwise (mapped lazily: only the depth really used is
/// touched).
pub(crate) fn with_stack_for<R>(sql: &str, f: impl FnOnce() -> R) -> R {
    if sql.len() <= INLINE_MAX_BYTES {
        f()
    } else {
        let size = sql
            .len()
            .saturating_mul(STACK_PER_BYTE)
            .saturating_add(STACK_BASE);
        stacker::grow(size, f)
    }
}

/// Rebuilds `AND`/`OR` chains of `statement` as balanced trees, then refuses it when an
/// expression nests deeper than `limit` levels.
pub(crate) fn check(statement: &mut ast::Statement, limit: usize) -> Result<(), CoreError> {
    let mut v = DepthVisitor {
        limit,
        frames: Vec::new(),
    };
    match statement.visit(&mut v) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(position) => Err(CoreError::TooDeep { limit, position }),
    }
}

/// The operator of an `AND`/`OR` chain link.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ChainOp {
    And,
    Or,
}

impl ChainOp {
    fn of(e: &ast::Expr) -> Option<Self> {
        match e {
            ast::Expr::BinaryOp { op, .. } => Self::of_operator(op),
            _ => None,
        }
    }

    fn of_operator(op: &BinaryOperator) -> Option<Self> {
        match op {
            BinaryOperator::And => Some(Self::And),
            BinaryOperator::Or => Some(Self::Or),
            _ => None,
        }
    }

    fn operator(self) -> BinaryOperator {
        match self {
            Self::And => BinaryOperator::And,
            Self::Or => BinaryOperator::Or,
        }
    }
}

/// Replaces the chain headed by `e` (`t1 OP t2 OP ...`, nested down the left as parsed) by a
/// balanced tree of its terms, without recursing along it.
fn rebalance(e: &mut ast::Expr, op: ChainOp) {
    let placeholder = || ast::Expr::Value(ast::Value::Null.with_empty_span());
    let mut terms = Vec::new();
    let mut cur = std::mem::replace(e, placeholder());
    loop {
        match cur {
            ast::Expr::BinaryOp { left, op: o, right } if ChainOp::of_operator(&o) == Some(op) => {
                terms.push(*right);
                cur = *left;
            }
            other => {
                terms.push(other);
                break;
            }
        }
    }
    terms.reverse();
    *e = balanced(op, terms);
}

/// `terms` joined by `op` as a balanced tree (left-leaning: up to three terms it is the
/// parser's left-deep shape).
fn balanced(op: ChainOp, mut terms: Vec<ast::Expr>) -> ast::Expr {
    if terms.len() <= 1 {
        return terms.pop().unwrap_or(ast::Expr::Value(
            ast::Value::Boolean(op == ChainOp::And).with_empty_span(),
        ));
    }
    let right = terms.split_off(terms.len().div_ceil(2));
    ast::Expr::BinaryOp {
        left: Box::new(balanced(op, terms)),
        op: op.operator(),
        right: Box::new(balanced(op, right)),
    }
}

struct DepthVisitor {
    limit: usize,
    /// The chain operator of each expression being visited, outermost first.
    frames: Vec<Option<ChainOp>>,
}

impl VisitorMut for DepthVisitor {
    type Break = Option<Position>;

    fn pre_visit_expr(&mut self, e: &mut ast::Expr) -> ControlFlow<Self::Break> {
        let op = ChainOp::of(e);
        // The head of a chain (not a link of its parent's, already rebuilt) is rebuilt before
        // the visitor descends into it.
        if let Some(op) = op
            && self.frames.last().copied().flatten() != Some(op)
        {
            rebalance(e, op);
        }
        self.frames.push(op);
        if self.frames.len() > self.limit {
            return ControlFlow::Break(Position::from_span(start_span(e)));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _e: &mut ast::Expr) -> ControlFlow<Self::Break> {
        self.frames.pop();
        ControlFlow::Continue(())
    }
}

/// A span that starts where `e` starts, found without walking `e`'s subtree (sqlparser's
/// `span()` unions every child's span, recursing as deep as the tree, and error positions only
/// need the start): down the operand that comes first through operators, to a leaf. Empty
/// (no position) for the rare forms that start with a keyword and have no token of their own.
pub(crate) fn start_span(mut e: &ast::Expr) -> Span {
    use ast::Expr as E;
    loop {
        e = match e {
            E::BinaryOp { left, .. }
            | E::AnyOp { left, .. }
            | E::AllOp { left, .. }
            | E::IsDistinctFrom(left, _)
            | E::IsNotDistinctFrom(left, _) => left,
            E::IsFalse(x)
            | E::IsNotFalse(x)
            | E::IsTrue(x)
            | E::IsNotTrue(x)
            | E::IsNull(x)
            | E::IsNotNull(x)
            | E::IsUnknown(x)
            | E::IsNotUnknown(x)
            | E::Nested(x)
            | E::UnaryOp { expr: x, .. }
            | E::IsJson { expr: x, .. }
            | E::IsNormalized { expr: x, .. }
            | E::InList { expr: x, .. }
            | E::InSubquery { expr: x, .. }
            | E::InUnnest { expr: x, .. }
            | E::Between { expr: x, .. }
            | E::Like { expr: x, .. }
            | E::ILike { expr: x, .. }
            | E::SimilarTo { expr: x, .. }
            | E::RLike { expr: x, .. }
            | E::Cast { expr: x, .. }
            | E::Collate { expr: x, .. }
            | E::AtTimeZone { timestamp: x, .. }
            | E::JsonAccess { value: x, .. }
            | E::CompoundFieldAccess { root: x, .. } => x,
            E::Identifier(ident) => return ident.span,
            E::CompoundIdentifier(parts) => {
                return parts.first().map(|p| p.span).unwrap_or(Span::empty());
            }
            E::Value(v) => return v.span,
            E::Function(f) => return f.name.span(),
            E::Case { case_token, .. } => return case_token.0.span,
            E::Wildcard(token) => return token.0.span,
            E::QualifiedWildcard(name, _) => return name.span(),
            _ => return Span::empty(),
        };
    }
}
