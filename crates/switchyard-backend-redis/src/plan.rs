//! From a bound statement to the steps that run it on Redis: which keys (partitions and
//! fields) it pins, what it writes, and the statements a layout cannot run, refused before
//! anything is sent.

use switchyard_backend::{BackendError, Fragment};
use switchyard_config::RedisMode;
use switchyard_core::ir::{BinaryOp, Expr, ExprKind, OnConflict, Statement};
use switchyard_core::routing::{CompareOp, Route, build_request};
use switchyard_core::{LogicalType, Value};

use crate::RedisBackend;
use crate::layout::Layout;

/// One unit of work.
pub(crate) enum Step {
    /// Every row, found with SCAN over the key pattern, up to `max_rows`.
    Scan { max_rows: u64 },
    /// The rows of these partitions (and, per partition, these clustering fields). `max_rows`
    /// is set for a scan: its rows are filtered by the statement's WHERE, and more than
    /// `max_rows` rows read (before the filter) is an error. A keyed read needs no filter: its
    /// key predicates chose exactly the keys read.
    Read {
        partitions: Vec<Vec<Value>>,
        fields: Option<Vec<Vec<Value>>>,
        max_rows: Option<u64>,
    },
    /// `on_conflict`: Some(false) plain insert (duplicate = error), Some(true) increment, None
    /// keep the existing row.
    Insert {
        rows: Vec<Vec<Value>>,
        on_conflict: Option<bool>,
    },
    Update {
        partitions: Vec<Vec<Value>>,
        fields: Option<Vec<Vec<Value>>>,
        changes: Vec<Change>,
    },
    Delete {
        partitions: Vec<Vec<Value>>,
        fields: Option<Vec<Vec<Value>>>,
    },
}

pub(crate) enum Change {
    Set(usize, Value),
    Incr(usize, i64),
}

impl RedisBackend {
    /// The commands of a fragment, as text (for explain) and as runnable steps.
    pub(crate) fn plan<'a>(
        &self,
        fragment: Fragment<'a>,
    ) -> Result<(Layout<'a>, Vec<Step>), BackendError> {
        let layout = self.layout(fragment)?;
        let query = fragment.query;
        let request = build_request(
            query,
            fragment.catalog,
            Route::single(0, 1),
            Vec::new(),
            Vec::new(),
        );
        let access = request
            .accesses
            .first()
            .ok_or_else(|| self.unsupported("a statement without a table"))?;
        let needs_key = |hint: &str| BackendError::NeedsKey {
            backend: self.name.clone(),
            table: layout.table.name.clone(),
            hint: hint.to_owned(),
        };
        // Key tuples over the pattern's columns, from equality / IN predicates.
        let pinned = |columns: &[usize]| -> Option<Vec<Vec<Value>>> {
            let mut tuples: Vec<Vec<Value>> = vec![Vec::new()];
            for c in columns {
                // Every key predicate on the column must hold: intersect them
                // (`k IN (a, b) AND k = 'b'` reads `b` only), each value once.
                let mut keyed = access.predicates.iter().filter(|p| {
                    p.column == *c && matches!(p.op, CompareOp::Eq | CompareOp::InList)
                });
                let mut values: Vec<&Value> = Vec::new();
                for v in &keyed.next()?.values {
                    if !values.contains(&v) {
                        values.push(v);
                    }
                }
                for other in keyed {
                    values.retain(|v| other.values.contains(v));
                }
                tuples = tuples
                    .iter()
                    .flat_map(|t| {
                        values
                            .iter()
                            .map(move |v| [t.clone(), vec![(*v).clone()]].concat())
                    })
                    .collect();
            }
            Some(tuples)
        };
        let allowed: Vec<usize> = layout
            .key_columns
            .iter()
            .chain(&layout.clustering)
            .copied()
            .collect();
        let by_key_only = |filter: Option<&Expr>| {
            filter.is_none_or(|f| {
                f.conjuncts()
                    .iter()
                    .all(|c| c.is_key_predicate(&|_, column| allowed.contains(&column)))
            })
        };
        let key_hint = format!(
            "add WHERE {} = ... (or IN (...))",
            layout
                .key_columns
                .iter()
                .map(|c| layout.table.columns[*c].name.as_str())
                .collect::<Vec<_>>()
                .join(" = ... AND ")
        );
        let steps = match &query.statement {
            Statement::Select(s) => {
                let only_keys = by_key_only(s.filter.as_ref());
                if !s.joins.is_empty()
                    || s.is_aggregate()
                    || s.distinct
                    || !s.order_by.is_empty()
                    || !only_keys
                {
                    return Err(self.unsupported(
                        "Redis answers key lookups only (no joins, aggregates, ORDER BY or filters beyond the key)",
                    ));
                }
                if s.projection
                    .iter()
                    .any(|c| !matches!(c.expr.kind, ExprKind::Column { .. }))
                {
                    return Err(self.unsupported("Redis returns columns, not computed expressions"));
                }
                match (pinned(&layout.key_columns), layout.placement.scan_max_rows) {
                    (Some(partitions), _) => {
                        let fields = if layout.mode == RedisMode::HashPerPartition {
                            pinned(&layout.clustering)
                        } else {
                            None
                        };
                        vec![Step::Read {
                            partitions,
                            fields,
                            max_rows: None,
                        }]
                    }
                    // A scan reads every row and keeps those matching the (key-only) filter.
                    (None, Some(max_rows)) => vec![Step::Scan { max_rows }],
                    (None, None) => return Err(needs_key(&key_hint)),
                }
            }
            Statement::Insert(ins) => {
                let rows: Vec<Vec<Value>> = ins
                    .rows
                    .iter()
                    .map(|row| {
                        let mut full = vec![Value::Null; layout.table.columns.len()];
                        for (e, c) in row.iter().zip(&ins.columns) {
                            full[*c] = e.constant(&query.params).unwrap_or(Value::Null);
                        }
                        full
                    })
                    .collect();
                for row in &rows {
                    self.check_row(&layout, row)?;
                }
                let increment = match &ins.on_conflict {
                    None => Some(false),
                    Some(OnConflict::DoNothing) => None,
                    Some(OnConflict::DoUpdate(assignments)) => {
                        match (assignments.as_slice(), layout.values.as_slice()) {
                            ([a], [v])
                                if a.column == *v
                                    && is_increment_by_excluded(&a.value, *v)
                                    && matches!(
                                        layout.mode,
                                        RedisMode::Counter | RedisMode::HashPerPartition
                                    )
                                    && layout.table.columns[*v].ty == LogicalType::Int =>
                            {
                                Some(true)
                            }
                            _ => {
                                return Err(self.unsupported(
                                "ON CONFLICT DO UPDATE on Redis supports `SET v = table.v + EXCLUDED.v` (an increment of the int value of a counter or hash-per-partition table)",
                            ));
                            }
                        }
                    }
                };
                vec![Step::Insert {
                    rows,
                    on_conflict: increment,
                }]
            }
            Statement::Update(u) => {
                let partitions = pinned(&layout.key_columns).ok_or_else(|| needs_key(&key_hint))?;
                let fields = if layout.mode == RedisMode::HashPerPartition {
                    Some(
                        pinned(&layout.clustering)
                            .ok_or_else(|| needs_key("add the clustering key"))?,
                    )
                } else {
                    None
                };
                let mut changes = Vec::new();
                for a in &u.assignments {
                    if layout.key_columns.contains(&a.column)
                        || layout.clustering.contains(&a.column)
                    {
                        return Err(self.unsupported(
                            "a Redis UPDATE cannot change the key (DELETE the row, then INSERT it)",
                        ));
                    }
                    let change = match &a.value.kind {
                        _ if a.value.constant(&query.params).is_some() => Change::Set(
                            a.column,
                            a.value.constant(&query.params).unwrap_or(Value::Null),
                        ),
                        ExprKind::Binary {
                            op: op @ (BinaryOp::Plus | BinaryOp::Minus),
                            left,
                            right,
                        } if matches!(left.kind, ExprKind::Column { column, .. } if column == a.column) => {
                            match right.constant(&query.params) {
                                Some(Value::Int(n)) => Change::Incr(
                                    a.column,
                                    if *op == BinaryOp::Plus { n } else { -n },
                                ),
                                _ => {
                                    return Err(
                                        self.unsupported("Redis increments by an integer constant")
                                    );
                                }
                            }
                        }
                        _ => {
                            return Err(self.unsupported(
                                "Redis UPDATE sets constants or adds an integer (`x = x + n`)",
                            ));
                        }
                    };
                    self.check_change(&layout, &change)?;
                    changes.push(change);
                }
                if !by_key_only(u.filter.as_ref()) {
                    return Err(self.unsupported("Redis UPDATE filters by key only"));
                }
                vec![Step::Update {
                    partitions,
                    fields,
                    changes,
                }]
            }
            Statement::Delete(d) => {
                if !by_key_only(d.filter.as_ref()) {
                    return Err(self.unsupported("Redis DELETE filters by key only"));
                }
                let partitions = pinned(&layout.key_columns).ok_or_else(|| needs_key(&key_hint))?;
                let fields = if layout.mode == RedisMode::HashPerPartition {
                    pinned(&layout.clustering)
                } else {
                    None
                };
                vec![Step::Delete { partitions, fields }]
            }
        };
        Ok((layout, steps))
    }
}

impl RedisBackend {
    /// Refuses an inserted row the layout cannot store so that it reads back: a NULL key
    /// (PostgreSQL's not-null constraint of a primary key), or a NULL where the value is a
    /// bare string (a counter, a single-value hash-per-partition field).
    fn check_row(&self, layout: &Layout<'_>, row: &[Value]) -> Result<(), BackendError> {
        for c in layout.key_columns.iter().chain(&layout.clustering) {
            if row[*c].is_null() {
                return Err(BackendError::Constraint {
                    backend: self.name.clone(),
                    message: format!(
                        "null value in column `{}` of `{}` violates not-null constraint",
                        layout.table.columns[*c].name, layout.table.name
                    ),
                });
            }
        }
        if let [v] = layout.values.as_slice()
            && matches!(
                layout.mode,
                RedisMode::Counter | RedisMode::HashPerPartition
            )
            && row[*v].is_null()
        {
            return Err(self.unsupported(format!(
                "NULL in `{}`: a {} row stores its value as a bare string",
                layout.table.columns[*v].name,
                if layout.mode == RedisMode::Counter {
                    "counter"
                } else {
                    "hash-per-partition"
                }
            )));
        }
        Ok(())
    }

    /// Refuses a change the layout cannot make: NULL where the value is a bare string, an
    /// increment of a column that is not an int.
    fn check_change(&self, layout: &Layout<'_>, change: &Change) -> Result<(), BackendError> {
        match change {
            Change::Set(c, v) => {
                if v.is_null()
                    && layout.values.len() == 1
                    && matches!(
                        layout.mode,
                        RedisMode::Counter | RedisMode::HashPerPartition
                    )
                {
                    return Err(self.unsupported(format!(
                        "NULL in `{}`: this Redis layout stores the value as a bare string",
                        layout.table.columns[*c].name
                    )));
                }
            }
            Change::Incr(c, _) => {
                if layout.table.columns[*c].ty != LogicalType::Int {
                    return Err(self.unsupported(format!(
                        "Redis increments int columns only (`{}` is {})",
                        layout.table.columns[*c].name,
                        layout.table.columns[*c].ty.name()
                    )));
                }
            }
        }
        Ok(())
    }
}

fn is_increment_by_excluded(e: &Expr, column: usize) -> bool {
    match &e.kind {
        ExprKind::Binary {
            op: BinaryOp::Plus,
            left,
            right,
        } => {
            let own =
                |x: &Expr| matches!(x.kind, ExprKind::Column { column: c, .. } if c == column);
            let excluded =
                |x: &Expr| matches!(x.kind, ExprKind::Excluded { column: c } if c == column);
            (own(left) && excluded(right)) || (excluded(left) && own(right))
        }
        _ => false,
    }
}
