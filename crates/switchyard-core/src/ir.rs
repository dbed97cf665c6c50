//! The bound logical IR: statements whose names are resolved against the catalog and whose
//! expressions carry logical types. Backends render it to their native language.

use crate::{LogicalType, Value};

/// A statement bound to the catalog, with its parameter values converted to their types.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundQuery {
    /// The statement.
    pub statement: Statement,
    /// Parameter values by index (`$1` is index 0), already of the type the statement needs.
    pub params: Vec<Value>,
}

/// The kind of a statement, a closed set usable as a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatementKind {
    /// SELECT.
    Select,
    /// INSERT.
    Insert,
    /// UPDATE.
    Update,
    /// DELETE.
    Delete,
}

impl StatementKind {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Select => "select",
            Self::Insert => "insert",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }
}

/// A bound statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// SELECT.
    Select(Select),
    /// INSERT.
    Insert(Insert),
    /// UPDATE.
    Update(Update),
    /// DELETE.
    Delete(Delete),
}

impl Statement {
    /// The kind of statement.
    pub fn kind(&self) -> StatementKind {
        match self {
            Self::Select(_) => StatementKind::Select,
            Self::Insert(_) => StatementKind::Insert,
            Self::Update(_) => StatementKind::Update,
            Self::Delete(_) => StatementKind::Delete,
        }
    }

    /// Logical names of the tables the statement touches, in order, without duplicates.
    pub fn tables(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        let names: Vec<&str> = match self {
            Self::Select(s) => s.from.iter().map(|t| t.table.as_str()).collect(),
            Self::Insert(i) => vec![i.table.as_str()],
            Self::Update(u) => vec![u.table.as_str()],
            Self::Delete(d) => vec![d.table.as_str()],
        };
        for n in names {
            if !out.contains(&n) {
                out.push(n);
            }
        }
        out
    }

    /// Logical table names per table reference (FROM order; the target of a write), with
    /// repeats for self-joins.
    pub fn access_tables(&self) -> Vec<&str> {
        match self {
            Self::Select(s) => s.from.iter().map(|t| t.table.as_str()).collect(),
            Self::Insert(i) => vec![i.table.as_str()],
            Self::Update(u) => vec![u.table.as_str()],
            Self::Delete(d) => vec![d.table.as_str()],
        }
    }

    /// The typed columns of the statement's answer (empty for writes).
    pub fn result_columns(&self) -> Vec<crate::result::ResultColumn> {
        self.output()
            .iter()
            .map(|c| crate::result::ResultColumn {
                name: c.name.clone(),
                ty: c.expr.ty,
            })
            .collect()
    }

    /// The output columns (empty for writes).
    pub fn output(&self) -> &[OutputColumn] {
        match self {
            Self::Select(s) => &s.projection,
            _ => &[],
        }
    }
}

/// A table in FROM with its alias (the table name when none was given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    /// Logical table name.
    pub table: String,
    /// Alias used to qualify columns.
    pub alias: String,
}

/// How a table joins the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// INNER JOIN.
    Inner,
    /// LEFT [OUTER] JOIN.
    Left,
}

/// `from[i + 1]` joined to the tables before it.
#[derive(Debug, Clone, PartialEq)]
pub struct Join {
    /// Inner or left.
    pub kind: JoinKind,
    /// The ON condition.
    pub on: Expr,
}

/// A SELECT.
#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    /// SELECT DISTINCT.
    pub distinct: bool,
    /// Tables in FROM order; `Expr::Column::table` indexes this.
    pub from: Vec<TableRef>,
    /// `joins[i]` attaches `from[i + 1]`.
    pub joins: Vec<Join>,
    /// WHERE.
    pub filter: Option<Expr>,
    /// GROUP BY expressions.
    pub group_by: Vec<Expr>,
    /// HAVING.
    pub having: Option<Expr>,
    /// Output columns.
    pub projection: Vec<OutputColumn>,
    /// ORDER BY, with output aliases and ordinals resolved to expressions.
    pub order_by: Vec<OrderItem>,
    /// LIMIT.
    pub limit: Option<u64>,
    /// OFFSET.
    pub offset: Option<u64>,
}

impl Select {
    /// Whether the query aggregates (GROUP BY, HAVING or an aggregate in the output).
    pub fn is_aggregate(&self) -> bool {
        !self.group_by.is_empty()
            || self.having.is_some()
            || self.projection.iter().any(|c| c.expr.contains_aggregate())
    }
}

/// One output column.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputColumn {
    /// Name as the client sees it.
    pub name: String,
    /// The expression.
    pub expr: Expr,
}

/// One ORDER BY item, with the null placement made explicit (PostgreSQL defaults: NULLs last
/// ascending, first descending).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderItem {
    /// Sort key.
    pub expr: Expr,
    /// Descending.
    pub desc: bool,
    /// NULLs before non-NULLs.
    pub nulls_first: bool,
}

/// An INSERT.
#[derive(Debug, Clone, PartialEq)]
pub struct Insert {
    /// Target table.
    pub table: String,
    /// Column indices given values, in VALUES order.
    pub columns: Vec<usize>,
    /// Rows of expressions (literals, parameters, arithmetic).
    pub rows: Vec<Vec<Expr>>,
    /// ON CONFLICT (on the primary key).
    pub on_conflict: Option<OnConflict>,
}

/// What to do when an inserted row's primary key exists.
#[derive(Debug, Clone, PartialEq)]
pub enum OnConflict {
    /// Keep the existing row.
    DoNothing,
    /// Update the existing row; expressions may use `Expr::Column { table: 0 }` (the existing
    /// row) and `Expr::Excluded` (the proposed row).
    DoUpdate(Vec<Assignment>),
}

/// `column = expr`.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// Column index in the target table.
    pub column: usize,
    /// New value.
    pub value: Expr,
}

/// An UPDATE of one table.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// Target table.
    pub table: String,
    /// SET list.
    pub assignments: Vec<Assignment>,
    /// WHERE.
    pub filter: Option<Expr>,
}

/// A DELETE from one table.
#[derive(Debug, Clone, PartialEq)]
pub struct Delete {
    /// Target table.
    pub table: String,
    /// WHERE.
    pub filter: Option<Expr>,
}

/// A typed expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    /// What it computes.
    pub kind: ExprKind,
    /// Its logical type.
    pub ty: LogicalType,
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `=`
    Eq,
    /// `<>`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
    /// `AND`
    And,
    /// `OR`
    Or,
    /// `+`
    Plus,
    /// `-`
    Minus,
    /// `*`
    Multiply,
    /// `/`
    Divide,
    /// `%`
    Modulo,
    /// `||`
    Concat,
}

impl BinaryOp {
    /// Whether the operator compares two values.
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            Self::Eq | Self::NotEq | Self::Lt | Self::LtEq | Self::Gt | Self::GtEq
        )
    }
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    /// `NOT`
    Not,
    /// `-`
    Neg,
}

/// Aggregate functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFunc {
    /// `COUNT(*)` (no argument) or `COUNT(x)`.
    Count,
    /// `SUM`.
    Sum,
    /// `AVG`.
    Avg,
    /// `MIN`.
    Min,
    /// `MAX`.
    Max,
}

impl AggFunc {
    /// Lowercase SQL name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Sum => "sum",
            Self::Avg => "avg",
            Self::Min => "min",
            Self::Max => "max",
        }
    }
}

/// Scalar functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarFunc {
    /// `LOWER(text)`.
    Lower,
    /// `UPPER(text)`.
    Upper,
    /// `LENGTH(text)` in characters.
    Length,
    /// `ABS(number)`.
    Abs,
    /// `COALESCE(a, b, ...)`.
    Coalesce,
}

impl ScalarFunc {
    /// Lowercase SQL name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lower => "lower",
            Self::Upper => "upper",
            Self::Length => "length",
            Self::Abs => "abs",
            Self::Coalesce => "coalesce",
        }
    }
}

/// The shape of an expression.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// Column `column` of `from[table]` (for writes, table 0 is the target table).
    Column {
        /// Index into the statement's tables.
        table: usize,
        /// Index into that table's columns.
        column: usize,
    },
    /// `EXCLUDED.column` in ON CONFLICT DO UPDATE.
    Excluded {
        /// Index into the target table's columns.
        column: usize,
    },
    /// A constant.
    Literal(Value),
    /// `$n`, index `n - 1` into [`BoundQuery::params`].
    Param(usize),
    /// Unary operator.
    Unary {
        /// Operator.
        op: UnaryOp,
        /// Operand.
        expr: Box<Expr>,
    },
    /// Binary operator.
    Binary {
        /// Operator.
        op: BinaryOp,
        /// Left operand.
        left: Box<Expr>,
        /// Right operand.
        right: Box<Expr>,
    },
    /// `expr IS [NOT] NULL`.
    IsNull {
        /// Operand.
        expr: Box<Expr>,
        /// IS NOT NULL.
        negated: bool,
    },
    /// `expr [NOT] IN (list)`.
    InList {
        /// Operand.
        expr: Box<Expr>,
        /// Candidates.
        list: Vec<Expr>,
        /// NOT IN.
        negated: bool,
    },
    /// `expr [NOT] BETWEEN low AND high`.
    Between {
        /// Operand.
        expr: Box<Expr>,
        /// Lower bound (inclusive).
        low: Box<Expr>,
        /// Upper bound (inclusive).
        high: Box<Expr>,
        /// NOT BETWEEN.
        negated: bool,
    },
    /// `expr [NOT] LIKE pattern` (case-sensitive, `\` escapes).
    Like {
        /// Operand.
        expr: Box<Expr>,
        /// Pattern.
        pattern: Box<Expr>,
        /// NOT LIKE.
        negated: bool,
    },
    /// A scalar function call.
    Func {
        /// Function.
        func: ScalarFunc,
        /// Arguments.
        args: Vec<Expr>,
    },
    /// An aggregate call.
    Agg {
        /// Function.
        func: AggFunc,
        /// Argument; `None` for `COUNT(*)`.
        arg: Option<Box<Expr>>,
        /// `DISTINCT` inside the call.
        distinct: bool,
    },
}

impl Expr {
    /// `terms[0] OP terms[1] OP ...` for `AND`/`OR` as a balanced tree, so thousands of terms
    /// nest only log2 of that deep (left-leaning: up to three terms it is the parser's
    /// left-deep shape). No terms gives the operator's identity (`true` for AND).
    pub fn balanced(op: BinaryOp, mut terms: Vec<Expr>) -> Expr {
        if terms.len() <= 1 {
            return terms.pop().unwrap_or(Expr {
                kind: ExprKind::Literal(Value::Bool(op == BinaryOp::And)),
                ty: LogicalType::Bool,
            });
        }
        let right_terms = terms.split_off(terms.len().div_ceil(2));
        let (left, right) = (Self::balanced(op, terms), Self::balanced(op, right_terms));
        Expr {
            kind: ExprKind::Binary {
                op,
                left: Box::new(left),
                right: Box::new(right),
            },
            ty: LogicalType::Bool,
        }
    }

    /// The value of a literal or parameter (`params` are the statement's parameter values).
    pub fn constant(&self, params: &[Value]) -> Option<Value> {
        match &self.kind {
            ExprKind::Literal(v) => Some(v.clone()),
            ExprKind::Param(i) => params.get(*i).cloned(),
            _ => None,
        }
    }

    /// The AND-ed parts of a condition (the expression itself when it is not an AND).
    #[recursive::recursive]
    pub fn conjuncts(&self) -> Vec<&Expr> {
        match &self.kind {
            ExprKind::Binary {
                op: BinaryOp::And,
                left,
                right,
            } => {
                let mut out = left.conjuncts();
                out.extend(right.conjuncts());
                out
            }
            _ => vec![self],
        }
    }

    /// Whether this is `column = constant` or `column IN (constants)` on a column that
    /// `is_key(table, column)` accepts: a predicate a key-value store can answer by key.
    pub fn is_key_predicate(&self, is_key: &dyn Fn(usize, usize) -> bool) -> bool {
        let key = |x: &Expr| matches!(x.kind, ExprKind::Column { table, column } if is_key(table, column));
        let constant = |x: &Expr| matches!(x.kind, ExprKind::Literal(_) | ExprKind::Param(_));
        match &self.kind {
            ExprKind::Binary {
                op: BinaryOp::Eq,
                left,
                right,
            } => (key(left) && constant(right)) || (key(right) && constant(left)),
            ExprKind::InList {
                expr,
                list,
                negated: false,
            } => key(expr) && list.iter().all(constant),
            _ => false,
        }
    }

    /// Whether an aggregate call occurs anywhere inside.
    pub fn contains_aggregate(&self) -> bool {
        let mut found = false;
        self.walk(&mut |e| found |= matches!(e.kind, ExprKind::Agg { .. }));
        found
    }

    /// Visits this expression and every sub-expression, parents first.
    #[recursive::recursive]
    pub fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match &self.kind {
            ExprKind::Column { .. }
            | ExprKind::Excluded { .. }
            | ExprKind::Literal(_)
            | ExprKind::Param(_) => {}
            ExprKind::Unary { expr, .. } | ExprKind::IsNull { expr, .. } => expr.walk(f),
            ExprKind::Binary { left, right, .. } => {
                left.walk(f);
                right.walk(f);
            }
            ExprKind::InList { expr, list, .. } => {
                expr.walk(f);
                list.iter().for_each(|e| e.walk(f));
            }
            ExprKind::Between {
                expr, low, high, ..
            } => {
                expr.walk(f);
                low.walk(f);
                high.walk(f);
            }
            ExprKind::Like { expr, pattern, .. } => {
                expr.walk(f);
                pattern.walk(f);
            }
            ExprKind::Func { args, .. } => args.iter().for_each(|e| e.walk(f)),
            ExprKind::Agg { arg, .. } => {
                if let Some(a) = arg {
                    a.walk(f);
                }
            }
        }
    }
}
