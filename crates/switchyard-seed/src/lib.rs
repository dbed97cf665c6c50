//! Deterministic demo data for the shop catalog: the same scale gives the same rows, on every
//! machine and every backend (ChaCha8 with a fixed seed).
//!
//! Scale 1: 1,000 customers, 2,000 products with one inventory row each, 5,000 orders of 1-5
//! items with one payment each (and their lines as `order_items` rows), carts for 200 customers,
//! 200 sessions, hits for every product.

use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;
use serde_json::json;
use switchyard_core::Value;

/// The rows of one logical table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableData {
    /// Logical table name.
    pub table: &'static str,
    /// Column names of `rows`.
    pub columns: Vec<&'static str>,
    /// The rows.
    pub rows: Vec<Vec<Value>>,
}

const SEED: u64 = 0x5317_c4a7_d00d;
const STATES: [(&str, &[&str]); 6] = [
    ("SP", &["Sao Paulo", "Campinas", "Santos"]),
    ("RJ", &["Rio de Janeiro", "Niteroi"]),
    ("MG", &["Belo Horizonte", "Uberlandia"]),
    ("RS", &["Porto Alegre", "Caxias do Sul"]),
    ("PR", &["Curitiba", "Londrina"]),
    ("BA", &["Salvador", "Feira de Santana"]),
];
const FIRST: [&str; 12] = [
    "Ana", "Bruno", "Carla", "Diego", "Elisa", "Felipe", "Gabi", "Heitor", "Iris", "Joao", "Karen",
    "Lucas",
];
const LAST: [&str; 10] = [
    "Silva", "Souza", "Costa", "Santos", "Oliveira", "Pereira", "Lima", "Gomes", "Ribeiro",
    "Almeida",
];
const BRANDS: [&str; 8] = [
    "Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay",
];
const CATEGORIES: [&str; 6] = [
    "electronics",
    "books",
    "toys",
    "kitchen",
    "garden",
    "sports",
];
const COLORS: [&str; 5] = ["black", "white", "red", "blue", "green"];
const STATUSES: [&str; 4] = ["delivered", "shipped", "processing", "canceled"];
const PAYMENT_TYPES: [&str; 4] = ["credit_card", "boleto", "voucher", "debit_card"];
const WAREHOUSES: [&str; 3] = ["GRU", "GIG", "CNF"];

/// Customer id number `n` (from 1).
pub fn customer_id(n: usize) -> String {
    format!("c{n:06}")
}

/// Product id number `n` (from 1).
pub fn product_id(n: usize) -> String {
    format!("p{n:06}")
}

fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

fn money(cents: i64) -> Decimal {
    Decimal::new(cents, 2)
}

fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

/// Generates every table's rows for `scale` (0 gives empty tables).
pub fn generate(scale: u32) -> Vec<TableData> {
    let scale = scale as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let n_customers = 1000 * scale;
    let n_products = 2000 * scale;
    let n_orders = 5000 * scale;
    let n_carts = 200 * scale;

    let mut customers = Vec::with_capacity(n_customers);
    for n in 1..=n_customers {
        let (state, cities) = STATES[rng.random_range(0..STATES.len())];
        let city = cities[rng.random_range(0..cities.len())];
        let first = FIRST[rng.random_range(0..FIRST.len())];
        let last = LAST[rng.random_range(0..LAST.len())];
        let email = if rng.random_ratio(1, 20) {
            Value::Null
        } else {
            text(format!(
                "{}.{}{n}@example.com",
                first.to_lowercase(),
                last.to_lowercase()
            ))
        };
        let created = epoch() + Duration::seconds(rng.random_range(0..365 * 86_400));
        customers.push(vec![
            text(customer_id(n)),
            text(format!("{first} {last}")),
            email,
            text(city),
            text(state),
            Value::Timestamp(created),
        ]);
    }

    let mut products = Vec::with_capacity(n_products);
    let mut prices = Vec::with_capacity(n_products);
    let mut inventory = Vec::with_capacity(n_products);
    let mut hits = Vec::with_capacity(n_products);
    for n in 1..=n_products {
        let brand = BRANDS[rng.random_range(0..BRANDS.len())];
        let category = CATEGORIES[rng.random_range(0..CATEGORIES.len())];
        let retail: i64 = rng.random_range(500..200_000);
        let discounted = retail - retail * rng.random_range(0..30) / 100;
        prices.push(discounted);
        let rating = f64::from(rng.random_range(10..=50_u32)) / 10.0;
        let specs = json!({
            "color": COLORS[rng.random_range(0..COLORS.len())],
            "weight_g": rng.random_range(50..5000),
            "tags": [category, brand.to_lowercase()],
        });
        products.push(vec![
            text(product_id(n)),
            text(format!("{brand} {category} {n}")),
            text(brand),
            text(category),
            Value::Decimal(money(retail)),
            Value::Decimal(money(discounted)),
            Value::Float(rating),
            Value::Json(specs),
        ]);
        let updated = epoch() + Duration::seconds(rng.random_range(0..365 * 86_400));
        inventory.push(vec![
            text(product_id(n)),
            Value::Int(rng.random_range(0..500)),
            text(WAREHOUSES[rng.random_range(0..WAREHOUSES.len())]),
            Value::Timestamp(updated),
        ]);
        hits.push(vec![
            text(product_id(n)),
            Value::Int(rng.random_range(0..5000)),
        ]);
    }

    let mut orders = Vec::with_capacity(n_orders);
    let mut payments = Vec::with_capacity(n_orders);
    let mut order_items = Vec::with_capacity(n_orders * 3);
    for n in 1..=n_orders {
        let customer = customer_id(rng.random_range(1..=n_customers.max(1)));
        let n_items = rng.random_range(1..=5);
        let mut items = Vec::new();
        let mut lines = Vec::new();
        let mut total = 0i64;
        for line in 1..=n_items {
            let p = rng.random_range(1..=n_products.max(1));
            let quantity: i64 = rng.random_range(1..=3);
            let price = prices.get(p - 1).copied().unwrap_or(0);
            total += price * quantity;
            items.push(json!({ "product_id": product_id(p), "quantity": quantity, "price": money(price).to_string() }));
            lines.push((line, product_id(p), quantity, money(price)));
        }
        let created = epoch() + Duration::seconds(rng.random_range(0..365 * 86_400));
        let order_id = format!("o{n:07}");
        for (line, product, quantity, price) in lines {
            order_items.push(vec![
                text(&order_id),
                Value::Int(line),
                text(product),
                Value::Int(quantity),
                Value::Decimal(price),
            ]);
        }
        orders.push(vec![
            text(&order_id),
            text(&customer),
            text(STATUSES[rng.random_range(0..STATUSES.len())]),
            Value::Decimal(money(total)),
            Value::Timestamp(created),
            Value::Json(serde_json::Value::Array(items)),
        ]);
        let payment_type = PAYMENT_TYPES[rng.random_range(0..PAYMENT_TYPES.len())];
        let installments = if payment_type == "credit_card" {
            rng.random_range(1..=10)
        } else {
            1
        };
        payments.push(vec![
            text(format!("pay{n:07}")),
            text(order_id),
            text(customer),
            text(payment_type),
            Value::Int(installments),
            Value::Decimal(money(total)),
        ]);
    }

    let mut carts = Vec::new();
    let mut sessions = Vec::new();
    for n in 1..=n_carts {
        let customer = customer_id(rng.random_range(1..=n_customers.max(1)));
        let mut chosen: Vec<usize> = Vec::new();
        for _ in 0..rng.random_range(1..=4) {
            let p = rng.random_range(1..=n_products.max(1));
            if !chosen.contains(&p)
                && !carts
                    .iter()
                    .any(|r: &Vec<Value>| r[0] == text(&customer) && r[1] == text(product_id(p)))
            {
                chosen.push(p);
                carts.push(vec![
                    text(&customer),
                    text(product_id(p)),
                    Value::Int(rng.random_range(1..=3)),
                ]);
            }
        }
        sessions.push(vec![
            text(format!("s{n:06}")),
            text(customer),
            Value::Json(json!({ "cart_items": chosen.len(), "last_page": format!("/product/{}", product_id(chosen.first().copied().unwrap_or(1))) })),
        ]);
    }

    vec![
        TableData {
            table: "customers",
            columns: vec![
                "customer_id",
                "name",
                "email",
                "city",
                "state",
                "created_at",
            ],
            rows: customers,
        },
        TableData {
            table: "products",
            columns: vec![
                "product_id",
                "name",
                "brand",
                "category",
                "retail_price",
                "discounted_price",
                "rating",
                "specs",
            ],
            rows: products,
        },
        TableData {
            table: "inventory",
            columns: vec!["product_id", "stock", "warehouse", "updated_at"],
            rows: inventory,
        },
        TableData {
            table: "orders",
            columns: vec![
                "order_id",
                "customer_id",
                "status",
                "total",
                "created_at",
                "items",
            ],
            rows: orders,
        },
        TableData {
            table: "payments",
            columns: vec![
                "payment_id",
                "order_id",
                "customer_id",
                "payment_type",
                "installments",
                "amount",
            ],
            rows: payments,
        },
        TableData {
            table: "carts",
            columns: vec!["customer_id", "product_id", "quantity"],
            rows: carts,
        },
        TableData {
            table: "sessions",
            columns: vec!["session_id", "customer_id", "data"],
            rows: sessions,
        },
        TableData {
            table: "product_hits",
            columns: vec!["product_id", "hits"],
            rows: hits,
        },
        TableData {
            table: "order_items",
            columns: vec!["order_id", "line", "product_id", "quantity", "price"],
            rows: order_items,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_one_has_the_documented_sizes_and_is_deterministic() {
        let a = generate(1);
        let sizes: Vec<(&str, usize)> = a.iter().map(|t| (t.table, t.rows.len())).collect();
        assert_eq!(
            &sizes[..5],
            &[
                ("customers", 1000),
                ("products", 2000),
                ("inventory", 2000),
                ("orders", 5000),
                ("payments", 5000)
            ]
        );
        assert_eq!(sizes[7], ("product_hits", 2000));
        assert_eq!(sizes[8].0, "order_items");
        assert!((5000..=25_000).contains(&sizes[8].1), "{}", sizes[8].1);
        assert!(sizes[5].1 >= 200, "carts: {}", sizes[5].1);
        assert_eq!(a, generate(1));
        for t in &a {
            assert!(
                t.rows.iter().all(|r| r.len() == t.columns.len()),
                "{}",
                t.table
            );
        }
    }
}
