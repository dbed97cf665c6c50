//! What undoes a write: the compensation a saga step records (DELETE by key for an INSERT, the
//! before-image for UPDATE and DELETE, the opposite increment for `x = x ± n`), the rows a
//! write touches, and the refusal of writes whose undo cannot be derived. Pure functions over
//! the catalog and the bound statements.

use super::*;

/// Refuses writes whose undo the router cannot derive and the client did not give.
pub(super) fn check_compensable(
    i: usize,
    st: &TxStatement,
    p: &Prepared,
    catalog: &Catalog,
) -> Result<(), RouterError> {
    if st.compensation.is_some() {
        return Ok(());
    }
    let need = |what: &str| {
        Err(refused(
            i,
            ErrorCode::Unsupported,
            format!("{what}; give this statement an explicit `compensation`"),
        ))
    };
    match &p.plan.query.statement {
        Statement::Insert(ins) => {
            if ins.on_conflict.is_some() {
                return need("the undo of INSERT ... ON CONFLICT depends on which rows existed");
            }
            if p.request
                .accesses
                .first()
                .and_then(|a| a.key_lookup.as_ref())
                .is_none()
            {
                return need(
                    "the INSERT does not give every primary-key column, so its rows cannot be deleted by key",
                );
            }
        }
        Statement::Update(u) => {
            let pk = catalog
                .table(&u.table)
                .map(|t| t.primary_key.clone())
                .unwrap_or_default();
            if u.assignments.iter().any(|a| pk.contains(&a.column)) {
                return need("an UPDATE of the primary key cannot be undone from a before-image");
            }
        }
        Statement::Select(_) | Statement::Delete(_) => {}
    }
    Ok(())
}

/// `SELECT <columns> FROM t WHERE <the statement's filter>` (same parameters) for an UPDATE or
/// DELETE: the rows it will touch. All columns give the before-image that derived compensations
/// restore; the key columns give the keys for cache invalidation and change events.
pub(crate) fn rows_to_write(
    catalog: &Catalog,
    query: &BoundQuery,
    columns: impl Fn(&Table) -> Vec<usize>,
) -> Option<BoundQuery> {
    let (name, filter) = match &query.statement {
        Statement::Update(u) => (&u.table, &u.filter),
        Statement::Delete(d) => (&d.table, &d.filter),
        _ => return None,
    };
    let table = catalog.table(name)?;
    let projection = columns(table)
        .into_iter()
        .map(|i| OutputColumn {
            name: table.columns[i].name.clone(),
            expr: switchyard_core::ir::Expr {
                kind: ExprKind::Column {
                    table: 0,
                    column: i,
                },
                ty: table.columns[i].ty,
            },
        })
        .collect();
    Some(BoundQuery {
        statement: Statement::Select(Select {
            distinct: false,
            from: vec![TableRef {
                table: name.clone(),
                alias: name.clone(),
            }],
            joins: Vec::new(),
            filter: filter.clone(),
            group_by: Vec::new(),
            having: None,
            projection,
            order_by: Vec::new(),
            limit: None,
            offset: None,
        }),
        params: query.params.clone(),
    })
}

/// The before-image query of a prepared UPDATE/DELETE: every column.
pub(super) fn before_image(catalog: &Catalog, p: &Prepared) -> Option<BoundQuery> {
    rows_to_write(catalog, &p.plan.query, |t| (0..t.columns.len()).collect())
}

/// The primary keys a write touched: the inserted keys, or the before-image's.
pub(super) fn written_keys(
    catalog: &Catalog,
    p: &Prepared,
    before: Option<&[Vec<Value>]>,
) -> Vec<Vec<Value>> {
    match &p.plan.query.statement {
        Statement::Select(_) => Vec::new(),
        Statement::Insert(_) => p
            .request
            .accesses
            .first()
            .and_then(|a| a.key_lookup.clone())
            .unwrap_or_default(),
        Statement::Update(_) | Statement::Delete(_) => {
            let Some(table) = catalog.table(p.plan.query.statement.access_tables()[0]) else {
                return Vec::new();
            };
            match before {
                Some(rows) => rows
                    .iter()
                    .map(|r| table.primary_key.iter().map(|&c| r[c].clone()).collect())
                    .collect(),
                None => p
                    .request
                    .accesses
                    .first()
                    .and_then(|a| a.key_lookup.clone())
                    .unwrap_or_default(),
            }
        }
    }
}

/// The statements that undo one statement, in the order to run them.
pub(super) fn compensation_for(
    catalog: &Catalog,
    p: &Prepared,
    st: &TxStatement,
    before: Option<&[Vec<Value>]>,
) -> Vec<CompStmt> {
    if let Some(c) = &st.compensation {
        return vec![CompStmt {
            sql: c.sql.clone(),
            params: c.params.clone(),
            idempotent: false,
        }];
    }
    let statement = &p.plan.query.statement;
    let Some(table) = statement
        .access_tables()
        .first()
        .and_then(|t| catalog.table(t))
    else {
        return Vec::new();
    };
    let key_filter = |params: &mut Vec<serde_json::Value>, key: &[Value]| -> String {
        table
            .primary_key
            .iter()
            .zip(key)
            .map(|(&c, v)| {
                params.push(v.to_json(table.columns[c].ty));
                format!("{} = ${}", quote(&table.columns[c].name), params.len())
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let pk_of = |row: &[Value]| -> Vec<Value> {
        table.primary_key.iter().map(|&c| row[c].clone()).collect()
    };
    match statement {
        Statement::Select(_) => Vec::new(),
        Statement::Insert(_) => written_keys(catalog, p, None)
            .iter()
            .map(|key| {
                let mut params = Vec::new();
                let filter = key_filter(&mut params, key);
                CompStmt {
                    sql: format!("DELETE FROM {} WHERE {filter}", quote(&table.name)),
                    params,
                    idempotent: true,
                }
            })
            .collect(),
        Statement::Update(u) => {
            let before = before.unwrap_or_default();
            // `x = x + n` / `x = x - n` everywhere: undo with the opposite increment, which
            // commutes with concurrent writers (a before-image would erase their changes).
            let deltas: Option<Vec<(usize, &'static str, Value)>> = u
                .assignments
                .iter()
                .map(|a| delta_of(a.column, &a.value, &p.plan.query.params))
                .collect();
            before
                .iter()
                .map(|row| {
                    let mut params = Vec::new();
                    let sets: Vec<String> = match &deltas {
                        Some(ds) => ds
                            .iter()
                            .map(|(c, inverse, n)| {
                                params.push(n.to_json(table.columns[*c].ty));
                                let name = quote(&table.columns[*c].name);
                                format!("{name} = {name} {inverse} ${}", params.len())
                            })
                            .collect(),
                        None => u
                            .assignments
                            .iter()
                            .map(|a| {
                                params.push(row[a.column].to_json(table.columns[a.column].ty));
                                format!(
                                    "{} = ${}",
                                    quote(&table.columns[a.column].name),
                                    params.len()
                                )
                            })
                            .collect(),
                    };
                    let filter = key_filter(&mut params, &pk_of(row));
                    CompStmt {
                        sql: format!(
                            "UPDATE {} SET {} WHERE {filter}",
                            quote(&table.name),
                            sets.join(", ")
                        ),
                        params,
                        idempotent: deltas.is_none(),
                    }
                })
                .collect()
        }
        Statement::Delete(_) => {
            let before = before.unwrap_or_default();
            if before.is_empty() {
                return Vec::new();
            }
            let names: Vec<String> = table.columns.iter().map(|c| quote(&c.name)).collect();
            let mut params = Vec::new();
            let tuples: Vec<String> = before
                .iter()
                .map(|row| {
                    let slots: Vec<String> = row
                        .iter()
                        .zip(&table.columns)
                        .map(|(v, c)| {
                            params.push(v.to_json(c.ty));
                            format!("${}", params.len())
                        })
                        .collect();
                    format!("({})", slots.join(", "))
                })
                .collect();
            vec![CompStmt {
                sql: format!(
                    "INSERT INTO {} ({}) VALUES {} ON CONFLICT DO NOTHING",
                    quote(&table.name),
                    names.join(", "),
                    tuples.join(", ")
                ),
                params,
                idempotent: true,
            }]
        }
    }
}

/// `column = column + n` (or `- n`) with `n` a literal or parameter: the inverse operator and n.
pub(super) fn delta_of(
    column: usize,
    value: &switchyard_core::ir::Expr,
    params: &[Value],
) -> Option<(usize, &'static str, Value)> {
    let ExprKind::Binary { op, left, right } = &value.kind else {
        return None;
    };
    let inverse = match op {
        BinaryOp::Plus => "-",
        BinaryOp::Minus => "+",
        _ => return None,
    };
    if !matches!(left.kind, ExprKind::Column { table: 0, column: c } if c == column) {
        return None;
    }
    let n = match &right.kind {
        ExprKind::Literal(v) => v.clone(),
        ExprKind::Param(i) => params.get(*i)?.clone(),
        _ => return None,
    };
    Some((column, inverse, n))
}

impl Router {
    /// Undoes the done (and, in recovery, prepared) steps, last first. Stops at the first step
    /// that cannot be undone safely or whose compensation fails.
    pub(super) async fn compensate(
        &self,
        log: &SagaLog,
        saga_id: &str,
        context: &Context,
        steps: &mut [Step],
    ) -> Result<(), RouterError> {
        self.log_progress(log, saga_id, SagaState::Compensating, steps)
            .await?;
        for k in (0..steps.len()).rev() {
            let run = match steps[k].state {
                StepState::Done => true,
                StepState::Prepared => {
                    // Unknown whether it ran: only an idempotent undo is safe.
                    if !steps[k].compensation.iter().all(|c| c.idempotent) {
                        return Err(RouterError::Transaction(Box::new(TxFailure {
                            code: ErrorCode::TransactionInDoubt,
                            message: format!(
                                "step {k} on `{}` may or may not have run and its compensation is not idempotent",
                                steps[k].backend
                            ),
                            saga_id: Some(saga_id.to_owned()),
                            statement: steps[k].statements.first().copied(),
                            cause: None,
                        })));
                    }
                    true
                }
                StepState::Pending | StepState::Compensated => false,
            };
            if !run {
                continue;
            }
            failpoint::hit(&format!("saga.before_compensate.{k}")).await;
            self.compensate_step(log, saga_id, context, steps, k)
                .await?;
        }
        Ok(())
    }

    async fn compensate_step(
        &self,
        log: &SagaLog,
        saga_id: &str,
        context: &Context,
        steps: &mut [Step],
        k: usize,
    ) -> Result<(), RouterError> {
        let comps = steps[k].compensation.clone();
        let mut plans = Vec::with_capacity(comps.len());
        for c in &comps {
            plans.push(self.prepare(&c.sql, &c.params, context).await?);
        }
        let on_log = self
            .backends
            .get_index_of(steps[k].backend.as_str())
            .is_some_and(|b| b == log.backend);
        if steps[k].atomic {
            let target = self
                .backends
                .get_index_of(steps[k].backend.as_str())
                .ok_or_else(no_target)?;
            let mut tx = self.backend_by_id(target)?.begin().await?;
            for p in &plans {
                if p.target != Some(target) {
                    return Err(RouterError::Plan(CoreError::NoRoute {
                        reason: format!(
                            "a compensation of step {k} does not route to `{}`",
                            steps[k].backend
                        ),
                    }));
                }
                self.tx_run(&mut tx, target, &p.plan.query).await?;
            }
            steps[k].state = StepState::Compensated;
            if on_log {
                let record = log.progress(saga_id, SagaState::Compensating, steps)?;
                tx.execute(Fragment {
                    query: &record,
                    catalog: &log.catalog,
                })
                .await?;
                tx.commit().await?;
            } else {
                tx.commit().await?;
                self.log_progress(log, saga_id, SagaState::Compensating, steps)
                    .await?;
            }
        } else {
            for p in &plans {
                self.execute(&p.plan.query, &p.plan.route, &p.request, false)
                    .await?;
            }
            steps[k].state = StepState::Compensated;
            self.log_progress(log, saga_id, SagaState::Compensating, steps)
                .await?;
        }
        for (c, p) in comps.iter().zip(&plans) {
            tracing::debug!(saga = saga_id, step = k, sql = %c.sql, "compensated");
            let keys = written_keys(&self.catalog, p, None);
            self.invalidate_written(p, &keys).await;
        }
        Ok(())
    }
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}
