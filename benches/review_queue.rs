//! The review queue at scale, on a SQLite file and a PostgreSQL database.
//!
//! `cargo bench --bench review_queue` (scripts/bench-review-queue.sh runs it).
//! `CANDOR_BENCH_ROWS` predictions (default 1,000,000) are generated in SQL:
//! two models, two labels, spread uncertainties (half with MC figures, 5%
//! abstained), 20% repeated texts and feedback on 1%. They are written
//! before migration 0004, so its backfill of `review_items` is timed too.
//! Then, each the median of several calls: the first page (20 items), a
//! page a tenth of the rows deep (reached by following `next`), the query the
//! queue used before (a window function over every prediction), and the
//! insert throughput of the log writer's call with and without keeping the
//! queue. PostgreSQL runs when `CANDOR_BENCH_DATABASE_URL` names a server
//! (a fresh database is created on it and dropped afterwards).

use std::borrow::Cow;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use candor::store::{Dialect, ModelRecord, PredictionRecord, ReviewCursor, SampledFigures, Store};
use sqlx::migrate::Migrator;
use sqlx::{Connection, Executor};
use uuid::Uuid;

/// Calls timed per figure.
const REPEATS: usize = 7;
/// How deep the deep page is, as a share of the predictions (100,000 of a million).
const DEPTH_SHARE: usize = 10;
/// Rows per insert call, as the log writer sends them (`--log-batch-rows`).
const BATCH_ROWS: usize = 256;
/// Insert calls timed per variant.
const INSERT_BATCHES: usize = 40;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let rows: usize = std::env::var("CANDOR_BENCH_ROWS")
        .map_or(Ok(1_000_000), |n| n.parse())
        .context("CANDOR_BENCH_ROWS")?;
    sqlx::any::install_default_drivers();
    let folder = tempfile::tempdir()?;
    let sqlite = format!("sqlite://{}", folder.path().join("bench.db").display());
    bench("sqlite", &sqlite, rows).await?;
    if let Ok(admin) = std::env::var("CANDOR_BENCH_DATABASE_URL") {
        let (url, name) = fresh_postgres(&admin).await?;
        let outcome = bench("postgres", &url, rows).await;
        let mut connection = sqlx::PgConnection::connect(&admin).await?;
        connection
            .execute(format!("drop database {name} with (force)").as_str())
            .await?;
        outcome?;
    }
    Ok(())
}

async fn bench(name: &str, url: &str, rows: usize) -> anyhow::Result<()> {
    println!("{name}: {rows} predictions");
    let store = Store::connect(url).await?;
    migrate_before_review_items(&store).await?;
    let models = [
        model(&store, "bench-a").await?,
        model(&store, "bench-b").await?,
    ];
    let started = Instant::now();
    fill(&store, models, rows).await?;
    report("bulk insert", started.elapsed());
    let started = Instant::now();
    store.migrate().await?;
    report("migration 0004 (backfill)", started.elapsed());
    analyze(&store).await?;

    let first = median(|| async {
        store.review_page(Some("bench-a"), None, 20).await?;
        Ok(())
    })
    .await?;
    report("first page, 20 items", first);
    let depth = (rows / DEPTH_SHARE / 1000).max(1) * 1000;
    let deep = cursor_at(&store, depth).await?;
    let deep_page = median(|| async {
        store.review_page(Some("bench-a"), Some(&deep), 20).await?;
        Ok(())
    })
    .await?;
    report(&format!("page at depth {depth}, 20 items"), deep_page);
    let before = median(|| async {
        sqlx::query(&old_review_queue_sql(store.dialect()))
            .bind("bench-a")
            .bind(20i64)
            .fetch_all(store.pool())
            .await?;
        Ok(())
    })
    .await?;
    report("before: window-function query, 20 items", before);

    let (with_queue, without) = insert_rates(&store, models[0]).await?;
    println!(
        "  insert, {BATCH_ROWS} rows a call: {with_queue:.0} rows/s keeping the queue, \
         {without:.0} rows/s without ({:.0}%)",
        100.0 * with_queue / without
    );
    store.close().await;
    Ok(())
}

fn report(what: &str, took: Duration) {
    println!("  {what:<42} {:>10.2} ms", took.as_secs_f64() * 1e3);
}

/// The median time of [`REPEATS`] calls, after one warm-up call.
async fn median<F, Fut>(mut call: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    call().await?;
    let mut times = Vec::with_capacity(REPEATS);
    for _ in 0..REPEATS {
        let started = Instant::now();
        call().await?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times[REPEATS / 2])
}

async fn fresh_postgres(admin: &str) -> anyhow::Result<(String, String)> {
    let name = format!("candor_bench_{}", Uuid::new_v4().simple());
    let mut connection = sqlx::PgConnection::connect(admin).await?;
    connection
        .execute(format!("create database {name}").as_str())
        .await?;
    let base = admin.rsplit_once('/').context("a database URL")?.0;
    Ok((format!("{base}/{name}"), name))
}

/// Applies the migrations before 0004, so its backfill can be timed.
async fn migrate_before_review_items(store: &Store) -> anyhow::Result<()> {
    let mut migrator: Migrator = match store.dialect() {
        Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite"),
        Dialect::Postgres => sqlx::migrate!("./migrations/postgres"),
    };
    let earlier = migrator.iter().filter(|m| m.version < 4).cloned().collect();
    migrator.migrations = Cow::Owned(earlier);
    migrator.run(store.pool()).await?;
    Ok(())
}

async fn model(store: &Store, name: &str) -> anyhow::Result<i64> {
    Ok(store
        .register_model(&ModelRecord {
            name: name.into(),
            weights_sha256: format!("weights of {name}"),
            labels: vec!["negative".into(), "positive".into()],
            metrics: None,
        })
        .await?)
}

/// Generates the predictions and feedback in the database itself.
async fn fill(store: &Store, models: [i64; 2], rows: usize) -> anyhow::Result<()> {
    let (series, id, timestamp) = match store.dialect() {
        Dialect::Sqlite => (
            format!("with recursive series(i) as (select 1 union all select i + 1 from series where i < {rows}) select i from series"),
            "printf('%08x-0000-7000-8000-%012x', i, i)",
            "'2025-01-01T00:00:00.000Z'",
        ),
        Dialect::Postgres => (
            format!("select generate_series(1::bigint, {rows}) as i"),
            "(lpad(to_hex(i), 8, '0') || '-0000-7000-8000-' || lpad(to_hex(i), 12, '0'))::uuid",
            "timestamptz '2025-01-01' + i * interval '1 second'",
        ),
    };
    let distinct_texts = rows * 4 / 5;
    let (a, b) = (models[0], models[1]);
    let sql = format!(
        "insert into predictions (id, model_id, created_at, endpoint, text, text_sha256, label, score, \
             probabilities, predictive_entropy, margin, samples, mode, seed, expected_entropy, \
             mutual_information, variation_ratio, latency_ms, abstained) \
         select {id}, case when i % 3 = 0 then {b} else {a} end, {timestamp}, 'classify', \
             'a review of film number ' || (i % {distinct_texts}), 'sha-' || (i % {distinct_texts}), \
             case when i % 2 = 0 then 'positive' else 'negative' end, 0.5 + (i * 7919 % 500) / 1000.0, \
             '[0.4,0.6]', (i * 104729 % 693) / 1000.0, 0.2, \
             case when i % 2 = 0 then 30 end, case when i % 2 = 0 then 'full' end, \
             case when i % 2 = 0 then '1' end, case when i % 2 = 0 then 0.1 end, \
             case when i % 2 = 0 then (i * 13 % 100) / 1000.0 end, case when i % 2 = 0 then 0.1 end, \
             1.0, case when i % 20 = 0 then 1 when i % 20 < 5 then 0 end \
         from ({series}) series"
    );
    sqlx::query(&sql).execute(store.pool()).await?;
    let feedback = format!(
        "insert into feedback (prediction_id, label, source, created_at) \
         select {id}, 'positive', 'bench', {timestamp} from ({series}) series where i % 100 = 7"
    );
    sqlx::query(&feedback).execute(store.pool()).await?;
    Ok(())
}

async fn analyze(store: &Store) -> anyhow::Result<()> {
    sqlx::query("analyze").execute(store.pool()).await?;
    Ok(())
}

/// The cursor after the first `depth` items, by following `next`.
async fn cursor_at(store: &Store, depth: usize) -> anyhow::Result<ReviewCursor> {
    let mut cursor = None;
    let started = Instant::now();
    for _ in 0..depth / 1000 {
        let page = store
            .review_page(Some("bench-a"), cursor.as_ref(), 1000)
            .await?;
        cursor = Some(page.next.context("the queue is shorter than the depth")?);
    }
    let pages = (depth / 1000) as u32;
    report("walking 1,000-item pages (mean)", started.elapsed() / pages);
    cursor.context("a depth of at least 1000")
}

/// The review queue's query before `review_items`, for comparison.
fn old_review_queue_sql(dialect: Dialect) -> String {
    let (id, probabilities) = match dialect {
        Dialect::Sqlite => ("p.id", "p.probabilities"),
        Dialect::Postgres => ("p.id::text", "p.probabilities::text"),
    };
    let created = match dialect {
        Dialect::Sqlite => "p.created_at",
        Dialect::Postgres => "p.created_at::text",
    };
    let order = "coalesce(p.abstained, 0) desc, p.mutual_information desc nulls last, \
                 p.predictive_entropy desc, p.score asc, p.id";
    format!(
        "select {id}, {created}, p.model, p.endpoint, p.text, p.label, p.score, {probabilities}, \
                p.predictive_entropy, p.mutual_information, p.margin, p.samples, p.abstained \
         from ( \
             select p.*, m.name as model, \
                    row_number() over (partition by p.model_id, p.text_sha256 order by {order}) as duplicate_rank \
             from predictions p join models m on m.id = p.model_id \
             where ($1 is null or m.name = $1) \
               and not exists ( \
                   select 1 from feedback f join predictions q on q.id = f.prediction_id \
                   where q.model_id = p.model_id and q.text_sha256 = p.text_sha256) \
         ) p \
         where p.duplicate_rank = 1 \
         order by {order} \
         limit $2"
    )
}

/// Rows per second of `Store::insert_predictions` in batches as the log
/// writer sends them, and of the insert as it was before the review queue
/// had its table ([`insert_as_before`]); the two alternate batch by batch,
/// so drift (the WAL growing, checkpoints, caches) hits both alike.
async fn insert_rates(store: &Store, model: i64) -> anyhow::Result<(f64, f64)> {
    let mut took = [Duration::ZERO; 2];
    for b in 0..2 * INSERT_BATCHES {
        let keep_queue = b % 2 == 0;
        let batch: Vec<PredictionRecord> = (0..BATCH_ROWS)
            .map(|r| record(b * BATCH_ROWS + r))
            .collect();
        let started = Instant::now();
        if keep_queue {
            store.insert_predictions(model, &batch).await?;
        } else {
            insert_as_before(store, model, &batch).await?;
        }
        took[usize::from(!keep_queue)] += started.elapsed();
    }
    let rows = (INSERT_BATCHES * BATCH_ROWS) as f64;
    Ok((rows / took[0].as_secs_f64(), rows / took[1].as_secs_f64()))
}

/// `Store::insert_predictions` before migration 0004: the same statements
/// (32 rows each, one transaction a batch, the model touched), without the
/// review_items upsert.
async fn insert_as_before(
    store: &Store,
    model: i64,
    rows: &[PredictionRecord],
) -> anyhow::Result<()> {
    let postgres = store.dialect() == Dialect::Postgres;
    let cast = |n: usize, to: &str| {
        if postgres {
            format!("${n}::{to}")
        } else {
            format!("${n}")
        }
    };
    let mut transaction = store.pool().begin().await?;
    for chunk in rows.chunks(32) {
        let values: Vec<String> = (0..chunk.len())
            .map(|r| {
                let n = |c: usize| r * 21 + c + 1;
                let mut cells: Vec<String> = (0..21).map(|c| format!("${}", n(c))).collect();
                cells[0] = cast(n(0), "uuid");
                cells[2] = cast(n(2), "timestamptz");
                cells[8] = cast(n(8), "jsonb");
                format!("({})", cells.join(", "))
            })
            .collect();
        let sql = format!(
            "insert into predictions (id, model_id, created_at, endpoint, text, text_sha256, label, \
             score, probabilities, predictive_entropy, margin, samples, mode, seed, expected_entropy, \
             mutual_information, variation_ratio, latency_ms, abstained, text_truncated, request_id) \
             values {}",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for row in chunk {
            let sampled = row.sampled.as_ref();
            query = query
                .bind(row.id.to_string())
                .bind(model)
                .bind(candor::store::timestamp(row.created_at))
                .bind(row.endpoint)
                .bind(row.text.clone())
                .bind(row.text_sha256.clone())
                .bind(row.label.clone())
                .bind(row.score)
                .bind(serde_json::to_string(&row.probabilities)?)
                .bind(row.predictive_entropy)
                .bind(row.margin)
                .bind(sampled.map(|s| s.samples as i32))
                .bind(sampled.map(|s| s.mode.clone()))
                .bind(sampled.map(|s| s.seed.to_string()))
                .bind(sampled.map(|s| s.expected_entropy))
                .bind(sampled.map(|s| s.mutual_information))
                .bind(sampled.map(|s| s.variation_ratio))
                .bind(row.latency_ms)
                .bind(row.abstained.map(i32::from))
                .bind(i32::from(row.text_truncated))
                .bind(row.request_id.clone());
        }
        query.execute(&mut *transaction).await?;
    }
    let touch = format!(
        "update models set last_seen = {} where id = $2",
        cast(1, "timestamptz")
    );
    sqlx::query(&touch)
        .bind(candor::store::timestamp(SystemTime::now()))
        .bind(model)
        .execute(&mut *transaction)
        .await?;
    transaction.commit().await?;
    Ok(())
}

/// A prediction as the server logs it; a third repeat a text already logged.
fn record(n: usize) -> PredictionRecord {
    let text = if n.is_multiple_of(3) {
        format!("a review of film number {n}")
    } else {
        format!("a new review {n}")
    };
    PredictionRecord {
        id: Uuid::now_v7(),
        created_at: SystemTime::now(),
        endpoint: "classify",
        text_sha256: format!("sha-{text}"),
        text: Some(text),
        text_truncated: false,
        label: "positive".into(),
        score: 0.5 + (n % 500) as f64 / 1000.0,
        probabilities: vec![0.4, 0.6],
        predictive_entropy: (n % 693) as f64 / 1000.0,
        margin: 0.2,
        sampled: n.is_multiple_of(2).then(|| SampledFigures {
            samples: 30,
            mode: "full".into(),
            seed: 1,
            expected_entropy: 0.1,
            mutual_information: (n % 100) as f64 / 1000.0,
            variation_ratio: 0.1,
        }),
        latency_ms: 1.0,
        request_id: Some(Uuid::new_v4().to_string()),
        abstained: None,
    }
}
