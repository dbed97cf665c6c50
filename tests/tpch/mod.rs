//! TPC-H at a small scale factor: the eight tables as a Switchyard catalog, their data from the
//! `tpchgen` crate (dbgen's generator), a copy loaded straight into PostgreSQL as the oracle, and
//! the 22 queries as published (validation substitution parameters; Q15's view as a `WITH`).
//! Shared by the differential suite (answers equal PostgreSQL's) and `cargo bench --bench tpch`.

#![allow(dead_code)] // the bench and the suite use different parts

use std::io::Write;
use std::process::{Command, Stdio};
use std::str::FromStr;

use switchyard_config::Config;
use switchyard_core::Value;

/// The scale factor the suite and the bench load.
pub const SCALE: f64 = 0.01;

/// A TPC-H table: columns with logical types, and the primary key.
pub struct TpchTable {
    pub name: &'static str,
    pub columns: &'static [(&'static str, &'static str)],
    pub key: &'static [&'static str],
}

const MONEY: &str = "decimal(15,2)";

pub const TABLES: [TpchTable; 8] = [
    TpchTable {
        name: "region",
        columns: &[
            ("r_regionkey", "int"),
            ("r_name", "text"),
            ("r_comment", "text"),
        ],
        key: &["r_regionkey"],
    },
    TpchTable {
        name: "nation",
        columns: &[
            ("n_nationkey", "int"),
            ("n_name", "text"),
            ("n_regionkey", "int"),
            ("n_comment", "text"),
        ],
        key: &["n_nationkey"],
    },
    TpchTable {
        name: "part",
        columns: &[
            ("p_partkey", "int"),
            ("p_name", "text"),
            ("p_mfgr", "text"),
            ("p_brand", "text"),
            ("p_type", "text"),
            ("p_size", "int"),
            ("p_container", "text"),
            ("p_retailprice", MONEY),
            ("p_comment", "text"),
        ],
        key: &["p_partkey"],
    },
    TpchTable {
        name: "supplier",
        columns: &[
            ("s_suppkey", "int"),
            ("s_name", "text"),
            ("s_address", "text"),
            ("s_nationkey", "int"),
            ("s_phone", "text"),
            ("s_acctbal", MONEY),
            ("s_comment", "text"),
        ],
        key: &["s_suppkey"],
    },
    TpchTable {
        name: "partsupp",
        columns: &[
            ("ps_partkey", "int"),
            ("ps_suppkey", "int"),
            ("ps_availqty", "int"),
            ("ps_supplycost", MONEY),
            ("ps_comment", "text"),
        ],
        key: &["ps_partkey", "ps_suppkey"],
    },
    TpchTable {
        name: "customer",
        columns: &[
            ("c_custkey", "int"),
            ("c_name", "text"),
            ("c_address", "text"),
            ("c_nationkey", "int"),
            ("c_phone", "text"),
            ("c_acctbal", MONEY),
            ("c_mktsegment", "text"),
            ("c_comment", "text"),
        ],
        key: &["c_custkey"],
    },
    TpchTable {
        name: "orders",
        columns: &[
            ("o_orderkey", "int"),
            ("o_custkey", "int"),
            ("o_orderstatus", "text"),
            ("o_totalprice", MONEY),
            ("o_orderdate", "date"),
            ("o_orderpriority", "text"),
            ("o_clerk", "text"),
            ("o_shippriority", "int"),
            ("o_comment", "text"),
        ],
        key: &["o_orderkey"],
    },
    TpchTable {
        name: "lineitem",
        columns: &[
            ("l_orderkey", "int"),
            ("l_partkey", "int"),
            ("l_suppkey", "int"),
            ("l_linenumber", "int"),
            ("l_quantity", MONEY),
            ("l_extendedprice", MONEY),
            ("l_discount", MONEY),
            ("l_tax", MONEY),
            ("l_returnflag", "text"),
            ("l_linestatus", "text"),
            ("l_shipdate", "date"),
            ("l_commitdate", "date"),
            ("l_receiptdate", "date"),
            ("l_shipinstruct", "text"),
            ("l_shipmode", "text"),
            ("l_comment", "text"),
        ],
        key: &["l_orderkey", "l_linenumber"],
    },
];

/// A placement: which backend (by name in the config) holds each table.
pub type Placement = fn(&str) -> &'static str;

/// Every table on backend `db`.
pub fn on_one_store(_: &str) -> &'static str {
    "db"
}

/// The polyglot placement: lineitem and orders on PostgreSQL; customer, nation and
/// region on MariaDB; part, partsupp and supplier on MongoDB.
pub fn polyglot(table: &str) -> &'static str {
    match table {
        "lineitem" | "orders" => "pg",
        "customer" | "nation" | "region" => "mysql",
        _ => "mongo",
    }
}

/// The catalog with each table on `placement`'s backend; `backends` gives each backend's config
/// (by name). The saga log and change events are off.
pub fn config(
    placement: Placement,
    backends: &[(&str, switchyard_config::BackendConfig)],
) -> Config {
    let mut toml = String::from("[server]\nlisten = \"127.0.0.1:0\"\n");
    for (name, b) in backends {
        let scheme = match b.kind {
            switchyard_config::BackendKind::Postgres => "postgres://x/y",
            switchyard_config::BackendKind::Mysql => "mysql://x/y",
            switchyard_config::BackendKind::Sqlite => "sqlite://x.db",
            switchyard_config::BackendKind::Mongodb => "mongodb://x/y",
            switchyard_config::BackendKind::Redis => "redis://x",
        };
        toml.push_str(&format!(
            "[backends.{name}]\nkind = \"{}\"\nurl = \"{scheme}\"\n",
            b.kind.as_str()
        ));
    }
    for t in &TABLES {
        let columns: Vec<String> = t
            .columns
            .iter()
            .map(|(c, ty)| format!("{c} = \"{ty}\""))
            .collect();
        let key: Vec<String> = t.key.iter().map(|k| format!("\"{k}\"")).collect();
        toml.push_str(&format!(
            "[tables.{}]\ncolumns = {{ {} }}\nprimary_key = [{}]\nplacements = [{{ backend = \"{}\", role = \"primary\" }}]\n",
            t.name,
            columns.join(", "),
            key.join(", "),
            placement(t.name)
        ));
    }
    let mut config =
        switchyard_config::parse_str(&toml, "tpch.toml", &|_| None).expect("TPC-H catalog");
    for (name, b) in backends {
        config.backends.insert((*name).to_owned(), b.clone());
    }
    config.transactions.log_backend = None;
    config.events.backend = None;
    config
}

/// The generated data of every table, as dbgen's `|`-separated lines (trailing `|` removed).
pub fn generate(scale: f64) -> Vec<(&'static str, Vec<String>)> {
    use tpchgen::generators as g;
    fn lines<T: std::fmt::Display>(it: impl Iterator<Item = T>) -> Vec<String> {
        it.map(|row| {
            let line = row.to_string();
            line.strip_suffix('|').unwrap_or(&line).to_owned()
        })
        .collect()
    }
    vec![
        ("region", lines(g::RegionGenerator::new(scale, 1, 1).iter())),
        ("nation", lines(g::NationGenerator::new(scale, 1, 1).iter())),
        ("part", lines(g::PartGenerator::new(scale, 1, 1).iter())),
        (
            "supplier",
            lines(g::SupplierGenerator::new(scale, 1, 1).iter()),
        ),
        (
            "partsupp",
            lines(g::PartSuppGenerator::new(scale, 1, 1).iter()),
        ),
        (
            "customer",
            lines(g::CustomerGenerator::new(scale, 1, 1).iter()),
        ),
        ("orders", lines(g::OrderGenerator::new(scale, 1, 1).iter())),
        (
            "lineitem",
            lines(g::LineItemGenerator::new(scale, 1, 1).iter()),
        ),
    ]
}

pub fn table(name: &str) -> &'static TpchTable {
    TABLES
        .iter()
        .find(|t| t.name == name)
        .expect("a TPC-H table")
}

/// dbgen lines as rows of logical values.
pub fn rows(name: &str, lines: &[String]) -> Vec<Vec<Value>> {
    let t = table(name);
    lines
        .iter()
        .map(|line| {
            line.split('|')
                .zip(t.columns)
                .map(|(cell, (_, ty))| match *ty {
                    "int" => Value::Int(cell.parse().expect("int")),
                    "date" => Value::Date(
                        chrono::NaiveDate::parse_from_str(cell, "%Y-%m-%d").expect("date"),
                    ),
                    "text" => Value::Text(cell.to_owned()),
                    _ => Value::Decimal(rust_decimal::Decimal::from_str(cell).expect("decimal")),
                })
                .collect()
        })
        .collect()
}

/// Loads the data through the router (`seed_table`, as `switchyard seed` does).
pub async fn load(router: &switchyard_router::Router, data: &[(&'static str, Vec<String>)]) {
    for (name, lines) in data {
        let t = table(name);
        let columns: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
        router
            .seed_table(name, &columns, rows(name, lines), 1_000, &|_| {})
            .await
            .unwrap_or_else(|e| panic!("loading {name}: {e}"));
    }
}

/// Creates schema `schema` on PostgreSQL at `url` with the eight tables (PostgreSQL's types,
/// text in the "C" collation as the router's PostgreSQL tables have it) and copies the data in.
pub fn load_oracle(url: &str, schema: &str, data: &[(&'static str, Vec<String>)]) {
    let mut ddl =
        format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE; CREATE SCHEMA \"{schema}\";");
    for t in &TABLES {
        let cols: Vec<String> = t
            .columns
            .iter()
            .map(|(c, ty)| {
                let pg = match *ty {
                    "int" => "bigint".to_owned(),
                    "text" => "text COLLATE \"C\"".to_owned(),
                    "date" => "date".to_owned(),
                    other => other.replace("decimal", "numeric"),
                };
                format!("{c} {pg}")
            })
            .collect();
        ddl.push_str(&format!(
            "CREATE TABLE \"{schema}\".{} ({}, PRIMARY KEY ({}));",
            t.name,
            cols.join(", "),
            t.key.join(", ")
        ));
    }
    psql(url, &ddl, None);
    for (name, lines) in data {
        let mut text = lines.join("\n");
        text.push('\n');
        psql(
            url,
            &format!("COPY \"{schema}\".{name} FROM STDIN WITH (DELIMITER '|')"),
            Some(text.as_bytes()),
        );
    }
    psql(
        url,
        &format!("ANALYZE; SET search_path = \"{schema}\""),
        None,
    );
}

fn psql(url: &str, sql: &str, stdin: Option<&[u8]>) {
    let mut child = Command::new("psql")
        .arg(url)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql");
    {
        let mut input = child.stdin.take().expect("stdin");
        if let Some(bytes) = stdin {
            input.write_all(bytes).expect("write to psql");
        }
    }
    let out = child.wait_with_output().expect("psql");
    assert!(
        out.status.success(),
        "psql {sql:.80}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Drops the oracle schema when dropped.
pub struct Oracle {
    pub url: String,
    pub schema: String,
}

impl Drop for Oracle {
    fn drop(&mut self) {
        psql(
            &self.url,
            &format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema),
            None,
        );
    }
}

/// A TPC-H query: its number, its text, and whether its ORDER BY fixes the order of every row
/// it answers (ties are compared as multisets).
pub struct Query {
    pub number: u8,
    pub sql: &'static str,
    pub ordered: bool,
}

/// The 22 queries with the specification's validation parameters, in PostgreSQL's dialect.
pub fn queries() -> Vec<Query> {
    let q = |number, ordered, sql| Query {
        number,
        sql,
        ordered,
    };
    vec![
        q(
            1,
            true,
            "select l_returnflag, l_linestatus, sum(l_quantity) as sum_qty, sum(l_extendedprice) as sum_base_price, sum(l_extendedprice * (1 - l_discount)) as sum_disc_price, sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) as sum_charge, avg(l_quantity) as avg_qty, avg(l_extendedprice) as avg_price, avg(l_discount) as avg_disc, count(*) as count_order from lineitem where l_shipdate <= date '1998-12-01' - interval '90' day group by l_returnflag, l_linestatus order by l_returnflag, l_linestatus",
        ),
        q(
            2,
            true,
            "select s_acctbal, s_name, n_name, p_partkey, p_mfgr, s_address, s_phone, s_comment from part, supplier, partsupp, nation, region where p_partkey = ps_partkey and s_suppkey = ps_suppkey and p_size = 15 and p_type like '%BRASS' and s_nationkey = n_nationkey and n_regionkey = r_regionkey and r_name = 'EUROPE' and ps_supplycost = (select min(ps_supplycost) from partsupp, supplier, nation, region where p_partkey = ps_partkey and s_suppkey = ps_suppkey and s_nationkey = n_nationkey and n_regionkey = r_regionkey and r_name = 'EUROPE') order by s_acctbal desc, n_name, s_name, p_partkey limit 100",
        ),
        q(
            3,
            true,
            "select l_orderkey, sum(l_extendedprice * (1 - l_discount)) as revenue, o_orderdate, o_shippriority from customer, orders, lineitem where c_mktsegment = 'BUILDING' and c_custkey = o_custkey and l_orderkey = o_orderkey and o_orderdate < date '1995-03-15' and l_shipdate > date '1995-03-15' group by l_orderkey, o_orderdate, o_shippriority order by revenue desc, o_orderdate limit 10",
        ),
        q(
            4,
            true,
            "select o_orderpriority, count(*) as order_count from orders where o_orderdate >= date '1993-07-01' and o_orderdate < date '1993-07-01' + interval '3' month and exists (select * from lineitem where l_orderkey = o_orderkey and l_commitdate < l_receiptdate) group by o_orderpriority order by o_orderpriority",
        ),
        q(
            5,
            true,
            "select n_name, sum(l_extendedprice * (1 - l_discount)) as revenue from customer, orders, lineitem, supplier, nation, region where c_custkey = o_custkey and l_orderkey = o_orderkey and l_suppkey = s_suppkey and c_nationkey = s_nationkey and s_nationkey = n_nationkey and n_regionkey = r_regionkey and r_name = 'ASIA' and o_orderdate >= date '1994-01-01' and o_orderdate < date '1994-01-01' + interval '1' year group by n_name order by revenue desc",
        ),
        q(
            6,
            true,
            "select sum(l_extendedprice * l_discount) as revenue from lineitem where l_shipdate >= date '1994-01-01' and l_shipdate < date '1994-01-01' + interval '1' year and l_discount between .06 - 0.01 and .06 + 0.01 and l_quantity < 24",
        ),
        q(
            7,
            true,
            "select supp_nation, cust_nation, l_year, sum(volume) as revenue from (select n1.n_name as supp_nation, n2.n_name as cust_nation, extract(year from l_shipdate) as l_year, l_extendedprice * (1 - l_discount) as volume from supplier, lineitem, orders, customer, nation n1, nation n2 where s_suppkey = l_suppkey and o_orderkey = l_orderkey and c_custkey = o_custkey and s_nationkey = n1.n_nationkey and c_nationkey = n2.n_nationkey and ((n1.n_name = 'FRANCE' and n2.n_name = 'GERMANY') or (n1.n_name = 'GERMANY' and n2.n_name = 'FRANCE')) and l_shipdate between date '1995-01-01' and date '1996-12-31') as shipping group by supp_nation, cust_nation, l_year order by supp_nation, cust_nation, l_year",
        ),
        q(
            8,
            true,
            "select o_year, sum(case when nation = 'BRAZIL' then volume else 0 end) / sum(volume) as mkt_share from (select extract(year from o_orderdate) as o_year, l_extendedprice * (1 - l_discount) as volume, n2.n_name as nation from part, supplier, lineitem, orders, customer, nation n1, nation n2, region where p_partkey = l_partkey and s_suppkey = l_suppkey and l_orderkey = o_orderkey and o_custkey = c_custkey and c_nationkey = n1.n_nationkey and n1.n_regionkey = r_regionkey and r_name = 'AMERICA' and s_nationkey = n2.n_nationkey and o_orderdate between date '1995-01-01' and date '1996-12-31' and p_type = 'ECONOMY ANODIZED STEEL') as all_nations group by o_year order by o_year",
        ),
        q(
            9,
            true,
            "select nation, o_year, sum(amount) as sum_profit from (select n_name as nation, extract(year from o_orderdate) as o_year, l_extendedprice * (1 - l_discount) - ps_supplycost * l_quantity as amount from part, supplier, lineitem, partsupp, orders, nation where s_suppkey = l_suppkey and ps_suppkey = l_suppkey and ps_partkey = l_partkey and p_partkey = l_partkey and o_orderkey = l_orderkey and s_nationkey = n_nationkey and p_name like '%green%') as profit group by nation, o_year order by nation, o_year desc",
        ),
        q(
            10,
            true,
            "select c_custkey, c_name, sum(l_extendedprice * (1 - l_discount)) as revenue, c_acctbal, n_name, c_address, c_phone, c_comment from customer, orders, lineitem, nation where c_custkey = o_custkey and l_orderkey = o_orderkey and o_orderdate >= date '1993-10-01' and o_orderdate < date '1993-10-01' + interval '3' month and l_returnflag = 'R' and c_nationkey = n_nationkey group by c_custkey, c_name, c_acctbal, c_phone, n_name, c_address, c_comment order by revenue desc limit 20",
        ),
        q(
            11,
            false,
            "select ps_partkey, sum(ps_supplycost * ps_availqty) as value from partsupp, supplier, nation where ps_suppkey = s_suppkey and s_nationkey = n_nationkey and n_name = 'GERMANY' group by ps_partkey having sum(ps_supplycost * ps_availqty) > (select sum(ps_supplycost * ps_availqty) * 0.0001 from partsupp, supplier, nation where ps_suppkey = s_suppkey and s_nationkey = n_nationkey and n_name = 'GERMANY') order by value desc",
        ),
        q(
            12,
            true,
            "select l_shipmode, sum(case when o_orderpriority = '1-URGENT' or o_orderpriority = '2-HIGH' then 1 else 0 end) as high_line_count, sum(case when o_orderpriority <> '1-URGENT' and o_orderpriority <> '2-HIGH' then 1 else 0 end) as low_line_count from orders, lineitem where o_orderkey = l_orderkey and l_shipmode in ('MAIL', 'SHIP') and l_commitdate < l_receiptdate and l_shipdate < l_commitdate and l_receiptdate >= date '1994-01-01' and l_receiptdate < date '1994-01-01' + interval '1' year group by l_shipmode order by l_shipmode",
        ),
        q(
            13,
            true,
            "select c_count, count(*) as custdist from (select c_custkey, count(o_orderkey) from customer left outer join orders on c_custkey = o_custkey and o_comment not like '%special%requests%' group by c_custkey) as c_orders (c_custkey, c_count) group by c_count order by custdist desc, c_count desc",
        ),
        q(
            14,
            true,
            "select 100.00 * sum(case when p_type like 'PROMO%' then l_extendedprice * (1 - l_discount) else 0 end) / sum(l_extendedprice * (1 - l_discount)) as promo_revenue from lineitem, part where l_partkey = p_partkey and l_shipdate >= date '1995-09-01' and l_shipdate < date '1995-09-01' + interval '1' month",
        ),
        q(
            15,
            true,
            "with revenue0 (supplier_no, total_revenue) as (select l_suppkey, sum(l_extendedprice * (1 - l_discount)) from lineitem where l_shipdate >= date '1996-01-01' and l_shipdate < date '1996-01-01' + interval '3' month group by l_suppkey) select s_suppkey, s_name, s_address, s_phone, total_revenue from supplier, revenue0 where s_suppkey = supplier_no and total_revenue = (select max(total_revenue) from revenue0) order by s_suppkey",
        ),
        q(
            16,
            true,
            "select p_brand, p_type, p_size, count(distinct ps_suppkey) as supplier_cnt from partsupp, part where p_partkey = ps_partkey and p_brand <> 'Brand#45' and p_type not like 'MEDIUM POLISHED%' and p_size in (49, 14, 23, 45, 19, 3, 36, 9) and ps_suppkey not in (select s_suppkey from supplier where s_comment like '%Customer%Complaints%') group by p_brand, p_type, p_size order by supplier_cnt desc, p_brand, p_type, p_size",
        ),
        q(
            17,
            true,
            "select sum(l_extendedprice) / 7.0 as avg_yearly from lineitem, part where p_partkey = l_partkey and p_brand = 'Brand#23' and p_container = 'MED BOX' and l_quantity < (select 0.2 * avg(l_quantity) from lineitem where l_partkey = p_partkey)",
        ),
        q(
            18,
            true,
            "select c_name, c_custkey, o_orderkey, o_orderdate, o_totalprice, sum(l_quantity) from customer, orders, lineitem where o_orderkey in (select l_orderkey from lineitem group by l_orderkey having sum(l_quantity) > 300) and c_custkey = o_custkey and o_orderkey = l_orderkey group by c_name, c_custkey, o_orderkey, o_orderdate, o_totalprice order by o_totalprice desc, o_orderdate limit 100",
        ),
        q(
            19,
            true,
            "select sum(l_extendedprice * (1 - l_discount)) as revenue from lineitem, part where (p_partkey = l_partkey and p_brand = 'Brand#12' and p_container in ('SM CASE', 'SM BOX', 'SM PACK', 'SM PKG') and l_quantity >= 1 and l_quantity <= 1 + 10 and p_size between 1 and 5 and l_shipmode in ('AIR', 'AIR REG') and l_shipinstruct = 'DELIVER IN PERSON') or (p_partkey = l_partkey and p_brand = 'Brand#23' and p_container in ('MED BAG', 'MED BOX', 'MED PKG', 'MED PACK') and l_quantity >= 10 and l_quantity <= 10 + 10 and p_size between 1 and 10 and l_shipmode in ('AIR', 'AIR REG') and l_shipinstruct = 'DELIVER IN PERSON') or (p_partkey = l_partkey and p_brand = 'Brand#34' and p_container in ('LG CASE', 'LG BOX', 'LG PACK', 'LG PKG') and l_quantity >= 20 and l_quantity <= 20 + 10 and p_size between 1 and 15 and l_shipmode in ('AIR', 'AIR REG') and l_shipinstruct = 'DELIVER IN PERSON')",
        ),
        q(
            20,
            true,
            "select s_name, s_address from supplier, nation where s_suppkey in (select ps_suppkey from partsupp where ps_partkey in (select p_partkey from part where p_name like 'forest%') and ps_availqty > (select 0.5 * sum(l_quantity) from lineitem where l_partkey = ps_partkey and l_suppkey = ps_suppkey and l_shipdate >= date '1994-01-01' and l_shipdate < date '1994-01-01' + interval '1' year)) and s_nationkey = n_nationkey and n_name = 'CANADA' order by s_name",
        ),
        q(
            21,
            true,
            "select s_name, count(*) as numwait from supplier, lineitem l1, orders, nation where s_suppkey = l1.l_suppkey and o_orderkey = l1.l_orderkey and o_orderstatus = 'F' and l1.l_receiptdate > l1.l_commitdate and exists (select * from lineitem l2 where l2.l_orderkey = l1.l_orderkey and l2.l_suppkey <> l1.l_suppkey) and not exists (select * from lineitem l3 where l3.l_orderkey = l1.l_orderkey and l3.l_suppkey <> l1.l_suppkey and l3.l_receiptdate > l3.l_commitdate) and s_nationkey = n_nationkey and n_name = 'SAUDI ARABIA' group by s_name order by numwait desc, s_name limit 100",
        ),
        q(
            22,
            true,
            "select cntrycode, count(*) as numcust, sum(c_acctbal) as totacctbal from (select substring(c_phone from 1 for 2) as cntrycode, c_acctbal from customer where substring(c_phone from 1 for 2) in ('13', '31', '23', '29', '30', '18', '17') and c_acctbal > (select avg(c_acctbal) from customer where c_acctbal > 0.00 and substring(c_phone from 1 for 2) in ('13', '31', '23', '29', '30', '18', '17')) and not exists (select * from orders where o_custkey = c_custkey)) as custsale group by cntrycode order by cntrycode",
        ),
    ]
}
