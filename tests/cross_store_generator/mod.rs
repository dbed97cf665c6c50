//! A seeded generator of SELECTs over the shop catalog (joins, filters, aggregates, subqueries,
//! set operations, windows, dates and other engine-only expressions).
use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde_json::{Value as J, json};

/// SplitMix64.
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Ty {
    Text,
    Int,
    Dec,
    Float,
    Ts,
}

const TABLES: &[(&str, &[(&str, Ty)])] = &[
    (
        "customers",
        &[
            ("customer_id", Ty::Text),
            ("name", Ty::Text),
            ("city", Ty::Text),
            ("state", Ty::Text),
            ("created_at", Ty::Ts),
        ],
    ),
    (
        "products",
        &[
            ("product_id", Ty::Text),
            ("name", Ty::Text),
            ("brand", Ty::Text),
            ("category", Ty::Text),
            ("retail_price", Ty::Dec),
            ("discounted_price", Ty::Dec),
            ("rating", Ty::Float),
        ],
    ),
    (
        "inventory",
        &[
            ("product_id", Ty::Text),
            ("stock", Ty::Int),
            ("warehouse", Ty::Text),
            ("updated_at", Ty::Ts),
        ],
    ),
    (
        "orders",
        &[
            ("order_id", Ty::Text),
            ("customer_id", Ty::Text),
            ("status", Ty::Text),
            ("total", Ty::Dec),
            ("created_at", Ty::Ts),
        ],
    ),
    (
        "payments",
        &[
            ("payment_id", Ty::Text),
            ("order_id", Ty::Text),
            ("customer_id", Ty::Text),
            ("payment_type", Ty::Text),
            ("installments", Ty::Int),
            ("amount", Ty::Dec),
        ],
    ),
    (
        "order_items",
        &[
            ("order_id", Ty::Text),
            ("line", Ty::Int),
            ("product_id", Ty::Text),
            ("quantity", Ty::Int),
            ("price", Ty::Dec),
        ],
    ),
    (
        "carts",
        &[
            ("customer_id", Ty::Text),
            ("product_id", Ty::Text),
            ("quantity", Ty::Int),
        ],
    ),
    (
        "product_hits",
        &[("product_id", Ty::Text), ("hits", Ty::Int)],
    ),
];

/// Real join keys: (table, column, table, column).
const EDGES: &[(&str, &str, &str, &str)] = &[
    ("orders", "customer_id", "customers", "customer_id"),
    ("payments", "order_id", "orders", "order_id"),
    ("payments", "customer_id", "customers", "customer_id"),
    ("inventory", "product_id", "products", "product_id"),
    ("carts", "product_id", "products", "product_id"),
    ("carts", "customer_id", "customers", "customer_id"),
    ("product_hits", "product_id", "products", "product_id"),
    ("carts", "product_id", "inventory", "product_id"),
    ("order_items", "order_id", "orders", "order_id"),
    ("order_items", "product_id", "products", "product_id"),
    ("order_items", "order_id", "payments", "order_id"),
];

/// Low-cardinality columns worth grouping by.
const GROUPABLE: &[&str] = &[
    "state",
    "city",
    "status",
    "payment_type",
    "category",
    "brand",
    "warehouse",
    "installments",
];

/// Values of every column, sampled from the oracle, for constants.
pub struct Samples(BTreeMap<(String, String), Vec<J>>);

impl Samples {
    pub async fn load(oracle: SocketAddr) -> Samples {
        let mut out = BTreeMap::new();
        for (t, cols) in TABLES {
            for (c, _) in *cols {
                let sql = format!("SELECT DISTINCT {c} FROM {t} ORDER BY {c} LIMIT 400");
                let r = super::query(oracle, &sql, json!([])).await;
                assert_eq!(r.status, 200, "{sql}: {}", r.body);
                let values: Vec<J> = r.body["rows"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|row| row[0].clone())
                    .filter(|v| !v.is_null())
                    .collect();
                out.insert(((*t).to_owned(), (*c).to_owned()), values);
            }
        }
        Samples(out)
    }
}

fn literal(v: &J, ty: Ty) -> String {
    match (v, ty) {
        (J::String(s), Ty::Text | Ty::Ts) => format!("'{}'", s.replace('\'', "''")),
        (J::String(s), _) => s.clone(),
        (other, _) => other.to_string(),
    }
}

struct Access {
    table: &'static str,
    alias: String,
    cols: &'static [(&'static str, Ty)],
}

fn predicate(rng: &mut Rng, samples: &Samples, a: &Access) -> String {
    let (c, ty) = *rng.pick(a.cols);
    let col = format!("{}.{c}", a.alias);
    let values = samples
        .0
        .get(&(a.table.to_owned(), c.to_owned()))
        .cloned()
        .unwrap_or_default();
    if values.is_empty() || rng.chance(5) {
        return format!("{col} IS {}NULL", if rng.chance(50) { "NOT " } else { "" });
    }
    let v = |rng: &mut Rng| literal(rng.pick(&values), ty);
    match (ty, rng.below(6)) {
        (_, 0) => format!("{col} = {}", v(rng)),
        (_, 1) => format!("{col} IN ({}, {}, {})", v(rng), v(rng), v(rng)),
        (Ty::Text, 2) => {
            let s = rng
                .pick(&values)
                .as_str()
                .unwrap_or("")
                .chars()
                .take(2)
                .collect::<String>();
            format!(
                "{col} LIKE '{}%'",
                s.replace('\'', "''").replace(['%', '_'], "")
            )
        }
        (_, 3) => {
            let (x, y) = (v(rng), v(rng));
            format!("{col} BETWEEN {x} AND {y}")
        }
        (_, 4) => format!("{col} <> {}", v(rng)),
        (_, _) => format!("{col} {} {}", rng.pick(&[">", ">=", "<", "<="]), v(rng)),
    }
}

/// `[NOT] IN` / `[NOT] EXISTS` over a table that shares a join key with `a`.
fn subquery_filter(rng: &mut Rng, samples: &Samples, a: &Access) -> Option<String> {
    let edges: Vec<(&str, &str, &str)> = EDGES
        .iter()
        .filter_map(|(x, xc, y, yc)| {
            if *x == a.table {
                Some((*xc, *y, *yc))
            } else if *y == a.table {
                Some((*yc, *x, *xc))
            } else {
                None
            }
        })
        .collect();
    if edges.is_empty() {
        return None;
    }
    let (col, t, tcol) = *rng.pick(&edges);
    let cols = TABLES.iter().find(|(n, _)| *n == t).map(|(_, c)| *c)?;
    let inner = Access {
        table: t,
        alias: "s".to_owned(),
        cols,
    };
    let pred = predicate(rng, samples, &inner);
    let not = if rng.chance(30) { "NOT " } else { "" };
    Some(if rng.chance(50) {
        // NOT IN over a column that may hold NULL is PostgreSQL's three-valued puzzle:
        // exclude NULLs so the answer is about the values.
        format!(
            "{}.{col} {not}IN (SELECT s.{tcol} FROM {t} s WHERE {pred} AND s.{tcol} IS NOT NULL)",
            a.alias
        )
    } else {
        format!(
            "{not}EXISTS (SELECT 1 FROM {t} s WHERE s.{tcol} = {}.{col} AND {pred})",
            a.alias
        )
    })
}

/// An output expression only the engine computes, over column `c` of type `ty`.
fn engine_expression(rng: &mut Rng, c: &str, ty: Ty) -> String {
    match (ty, rng.below(5)) {
        (Ty::Text, 0) => format!("SUBSTRING({c} FROM 1 FOR 3)"),
        (Ty::Text, 1) => {
            format!("CASE WHEN {c} LIKE 'A%' THEN 'a' WHEN {c} IS NULL THEN 'n' ELSE 'z' END")
        }
        (Ty::Ts, 0) => format!("date_trunc('month', {c})"),
        (Ty::Ts, 1) => format!("EXTRACT(YEAR FROM {c})"),
        (Ty::Ts, 2) => format!("CAST({c} AS date)"),
        (Ty::Ts, 3) => format!("age(TIMESTAMP '2025-01-01 00:00:00', {c})"),
        (Ty::Text, 2) => format!("COUNT(*) OVER (PARTITION BY {c})"),
        (Ty::Int | Ty::Dec, 2) => format!("SUM({c}) OVER (PARTITION BY {c} > 10)"),
        (Ty::Int | Ty::Dec, 0) => format!("CAST({c} AS int)"),
        (Ty::Int | Ty::Dec, 1) => format!("CASE WHEN {c} > 10 THEN {c} * 2 ELSE 0 END"),
        _ => format!("dense_rank() OVER (ORDER BY {c})"),
    }
}

/// A set operation over two tables' join-key columns, each side filtered.
fn set_operation(rng: &mut Rng, samples: &Samples) -> String {
    let (a, ac, b, bc) = *rng.pick(EDGES);
    let side = |rng: &mut Rng, table: &'static str, col: &str, alias: &str| {
        let cols = TABLES
            .iter()
            .find(|(n, _)| *n == table)
            .map(|(_, c)| *c)
            .unwrap_or(&[]);
        let access = Access {
            table,
            alias: alias.to_owned(),
            cols,
        };
        let filter = if rng.chance(70) {
            format!(" WHERE {}", predicate(rng, samples, &access))
        } else {
            String::new()
        };
        format!("SELECT {alias}.{col} FROM {table} {alias}{filter}")
    };
    let op = *rng.pick(&["UNION", "UNION ALL", "INTERSECT", "EXCEPT"]);
    let left = side(rng, a, ac, "s0");
    let right = side(rng, b, bc, "s1");
    format!("{left} {op} {right}")
}

/// One query and whether its answer's order is determined.
pub fn query(seed: u64, samples: &Samples) -> (String, bool) {
    let mut rng = Rng::new(seed);
    if rng.chance(8) {
        return (set_operation(&mut rng, samples), false);
    }
    let (t0, cols0) = *rng.pick(TABLES);
    let mut accesses = vec![Access {
        table: t0,
        alias: "t0".to_owned(),
        cols: cols0,
    }];
    let mut from = format!("{t0} t0");
    let joins = rng.below(3);
    for _ in 0..joins {
        let candidates: Vec<(usize, &str, &str, &str)> = EDGES
            .iter()
            .flat_map(|(a, ac, b, bc)| {
                let mut v = Vec::new();
                for (i, acc) in accesses.iter().enumerate() {
                    if acc.table == *a {
                        v.push((i, *ac, *b, *bc));
                    }
                    if acc.table == *b {
                        v.push((i, *bc, *a, *ac));
                    }
                }
                v
            })
            .filter(|(_, _, t, _)| !accesses.iter().any(|x| x.table == *t))
            .collect();
        if candidates.is_empty() {
            break;
        }
        let (i, col, t, tcol) = *rng.pick(&candidates);
        let alias = format!("t{}", accesses.len());
        let kind = if rng.chance(25) { "LEFT JOIN" } else { "JOIN" };
        let mut on = format!("{alias}.{tcol} = {}.{col}", accesses[i].alias);
        let cols = TABLES
            .iter()
            .find(|(n, _)| *n == t)
            .map(|(_, c)| *c)
            .unwrap_or(&[]);
        let acc = Access {
            table: t,
            alias: alias.clone(),
            cols,
        };
        if rng.chance(15) {
            on.push_str(" AND ");
            on.push_str(&predicate(&mut rng, samples, &acc));
        }
        from.push_str(&format!(" {kind} {t} {alias} ON {on}"));
        accesses.push(acc);
    }
    let n_pred = rng.below(3);
    let preds: Vec<String> = (0..n_pred)
        .map(|_| {
            let a = &accesses[rng.below(accesses.len())];
            predicate(&mut rng, samples, a)
        })
        .collect();
    let mut where_ = if preds.is_empty() {
        String::new()
    } else {
        format!(
            " WHERE {}",
            preds.join(if rng.chance(80) { " AND " } else { " OR " })
        )
    };
    // Keep answers small enough for a quick suite: pin big tables now and then.
    if accesses.len() > 1 && preds.is_empty() && rng.chance(50) {
        let a = &accesses[0];
        where_ = format!(" WHERE {}", predicate(&mut rng, samples, a));
    }
    // Constructs only the router-side engine runs: a subquery over a real join key.
    if rng.chance(20)
        && let Some(sub) = subquery_filter(&mut rng, samples, &accesses[0])
    {
        where_ = if where_.is_empty() {
            format!(" WHERE {sub}")
        } else {
            format!(" WHERE ({}) AND {sub}", &where_[" WHERE ".len()..])
        };
    }
    let all_cols: Vec<(String, Ty)> = accesses
        .iter()
        .flat_map(|a| {
            a.cols
                .iter()
                .map(move |(c, ty)| (format!("{}.{c}", a.alias), *ty))
        })
        .collect();
    let numeric: Vec<&(String, Ty)> = all_cols
        .iter()
        .filter(|(_, t)| matches!(t, Ty::Int | Ty::Dec | Ty::Float))
        .collect();
    let shape = rng.below(10);
    if shape < 4 && !numeric.is_empty() {
        // Aggregate, grouped or not.
        let groupable: Vec<&(String, Ty)> = all_cols
            .iter()
            .filter(|(c, _)| GROUPABLE.iter().any(|g| c.ends_with(&format!(".{g}"))))
            .collect();
        let group = if !groupable.is_empty() && rng.chance(70) {
            Some(rng.pick(&groupable).0.clone())
        } else {
            None
        };
        let mut outs: Vec<String> = group.iter().cloned().collect();
        outs.push("COUNT(*)".to_owned());
        for _ in 0..1 + rng.below(3) {
            let (c, _) = rng.pick(&numeric);
            let f = *rng.pick(&["SUM", "MIN", "MAX", "AVG", "COUNT"]);
            outs.push(format!("{f}({c})"));
        }
        // COUNT(DISTINCT) over low-cardinality columns: the Python MongoDB-wire test server
        // builds `$addToSet` sets in quadratic time.
        if rng.chance(30) && !groupable.is_empty() {
            let (c, _) = rng.pick(&groupable);
            outs.push(format!("COUNT(DISTINCT {c})"));
        }
        let mut sql = format!("SELECT {} FROM {from}{where_}", outs.join(", "));
        if let Some(g) = &group {
            sql.push_str(&format!(" GROUP BY {g}"));
            if rng.chance(30) {
                sql.push_str(&format!(" HAVING COUNT(*) > {}", rng.below(20)));
            }
            if rng.chance(50) {
                let order: Vec<String> = (1..=outs.len()).map(|i| i.to_string()).collect();
                sql.push_str(&format!(
                    " ORDER BY {} LIMIT {}",
                    order.join(", "),
                    1 + rng.below(10)
                ));
                return (sql, true);
            }
        }
        return (sql, false);
    }
    let n = 1 + rng.below(4);
    let mut outs: Vec<String> = Vec::new();
    for _ in 0..n {
        let (c, _) = rng.pick(&all_cols);
        if !outs.contains(c) {
            outs.push(c.clone());
        }
    }
    if rng.chance(25) {
        let (c, ty) = rng.pick(&all_cols).clone();
        let extra = engine_expression(&mut rng, &c, ty);
        if !outs.contains(&extra) {
            outs.push(extra);
        }
    }
    let distinct = if rng.chance(15) { "DISTINCT " } else { "" };
    let mut sql = format!("SELECT {distinct}{} FROM {from}{where_}", outs.join(", "));
    if rng.chance(50) {
        let order: Vec<String> = (1..=outs.len())
            .map(|i| format!("{i}{}", if rng.chance(30) { " DESC" } else { "" }))
            .collect();
        sql.push_str(&format!(
            " ORDER BY {} LIMIT {}",
            order.join(", "),
            1 + rng.below(30)
        ));
        if rng.chance(30) {
            sql.push_str(&format!(" OFFSET {}", rng.below(10)));
        }
        // Ties on every output column are equal rows, so the order is determined.
        return (sql, true);
    }
    if where_.is_empty() && accesses.len() > 1 {
        sql.push_str(" LIMIT 0");
    }
    (sql, false)
}
