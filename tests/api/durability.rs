//! Nothing answered is lost: graceful shutdown under load, a hard kill,
//! a database that goes away and comes back, two servers on one database.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::{Connection, Row};
use uuid::Uuid;

use crate::common::fixture_model;
use crate::database::{settings_with_database, Backend, PrivatePostgres, TestDatabase};
use crate::helpers::{json_answer, spawn_app_with};
use crate::on_both_databases;

/// `candor serve` as a separate process, so it can be signalled.
pub struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:port`.
    pub address: String,
}

impl ServerProcess {
    fn start(database_url: &str) -> Self {
        Self::start_with(&fixture_model(), &["--database-url", database_url])
    }

    /// Serves `model` with further `serve` options.
    pub fn start_with(model: &std::path::Path, options: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_candor"))
            .args(["--log-format", "json", "serve", "--addr", "127.0.0.1:0"])
            .arg("--model")
            .arg(model)
            .args(options)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start candor serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Keep reading stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<Value>(&line) {
                    if event["fields"]["message"] == "serving" {
                        let _ = tx.send(event["fields"]["addr"].as_str().unwrap().to_string());
                    }
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server reports its address");
        ServerProcess {
            child,
            address: format!("http://{addr}"),
        }
    }

    /// Sends the signal `name` (as `kill -NAME`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not stop in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Clients classifying as fast as they can until told to stop or refused;
/// returns every id the server answered with.
struct Load {
    stop: Arc<AtomicBool>,
    ids: Arc<Mutex<Vec<String>>>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(address: &str, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ids = Arc::new(Mutex::new(Vec::new()));
        let clients = (0..clients)
            .map(|c| {
                let (stop, ids, address) = (stop.clone(), ids.clone(), address.to_string());
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let body = json!({"inputs": [format!("Who is client {c} asking {i} ?"), "What is a fjord ?"]});
                        let Ok(response) = client
                            .post(format!("{address}/v1/classify"))
                            .json(&body)
                            .send()
                            .await
                        else {
                            break;
                        };
                        if response.status() != 200 {
                            break;
                        }
                        let Ok(answer) = response.json::<Value>().await else {
                            break;
                        };
                        let mut ids = ids.lock().unwrap();
                        for p in answer["predictions"].as_array().unwrap() {
                            ids.push(p["id"].as_str().unwrap().to_string());
                        }
                    }
                })
            })
            .collect();
        Load { stop, ids, clients }
    }

    async fn wait_for(&self, answered: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.ids.lock().unwrap().len() < answered {
            assert!(Instant::now() < deadline, "the load got too few answers");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients {
            client.await.unwrap();
        }
        let ids = self.ids.lock().unwrap().clone();
        ids
    }
}

async fn stored_ids(db: &TestDatabase) -> HashSet<String> {
    let store = db.store().await;
    let ids = store.prediction_ids().await.unwrap();
    store.close().await;
    ids.into_iter().map(|id| id.to_string()).collect()
}

on_both_databases!(
    after_sigterm_under_load_every_returned_id_is_in_the_database,
    sigterm_body
);
async fn sigterm_body(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let mut server = ServerProcess::start(&db.url);
    let load = Load::start(&server.address, 8);
    load.wait_for(400).await;
    server.signal("TERM");
    let status = server.wait(Duration::from_secs(20));
    let returned = load.finish().await;
    assert!(status.success(), "exit status {status}");
    let stored = stored_ids(&db).await;
    let missing: Vec<&String> = returned.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} returned ids are not in the database",
        missing.len(),
        returned.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hard_kill_mid_load_leaves_a_sqlite_file_that_opens_and_passes_its_integrity_check() {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let mut server = ServerProcess::start(&db.url);
    let load = Load::start(&server.address, 8);
    load.wait_for(400).await;
    let file = db.sqlite_file().unwrap();
    let url = format!("sqlite://{}", file.display());
    // Kill only once some batches are committed (on a loaded machine the
    // writer may not have committed when the 400th answer arrives).
    let committed = rows_once_some_are_committed(&url).await;
    server.signal("KILL");
    server.wait(Duration::from_secs(10));
    load.finish().await;
    let mut connection = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("the file opens");
    let check: String = sqlx::query("pragma integrity_check")
        .fetch_one(&mut connection)
        .await
        .unwrap()
        .get(0);
    assert_eq!(check, "ok");
    let rows: i64 = sqlx::query("select count(*) from predictions")
        .fetch_one(&mut connection)
        .await
        .unwrap()
        .get(0);
    assert!(
        rows >= committed,
        "{committed} committed rows before the kill, {rows} after"
    );
}

/// The prediction count of the SQLite file at `url` once it is above zero
/// (waiting up to 20 s).
async fn rows_once_some_are_committed(url: &str) -> i64 {
    for _ in 0..200 {
        if let Ok(mut connection) = sqlx::SqliteConnection::connect(url).await {
            let rows: Option<i64> = sqlx::query("select count(*) from predictions")
                .fetch_one(&mut connection)
                .await
                .ok()
                .map(|row| row.get(0));
            connection.close().await.ok();
            if let Some(rows) = rows.filter(|&r| r > 0) {
                return rows;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no prediction was committed within 20 s of load")
}

async fn classify_ids(app: &crate::helpers::TestApp, texts: &[&str]) -> Vec<String> {
    let response = app.post("/v1/classify", json!({ "inputs": texts })).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    answer["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn predictions_are_answered_while_postgres_is_down_and_logged_once_it_is_back() {
    let postgres = PrivatePostgres::start();
    let app = spawn_app_with(settings_with_database(&postgres.url())).await;
    let mut ids = classify_ids(&app, &["Who is Bach ?", "Where is Lima ?"]).await;

    postgres.stop();
    for i in 0..10 {
        let text = format!("Question {i} asked while the database is down ?");
        ids.extend(classify_ids(&app, &[&text]).await);
    }
    let ready = app.get_json("/readyz").await;
    assert_eq!(ready["ready"], true, "predictions are still served");
    assert_eq!(ready["database"], "unavailable");
    let feedback = app
        .post(
            "/v1/feedback",
            json!({"prediction_id": ids[0], "label": "HUM"}),
        )
        .await;
    assert_eq!(feedback.status(), 503);

    postgres.resume();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stored: HashSet<String> = match candor::store::Store::connect(&postgres.url()).await {
            Ok(store) => store
                .prediction_ids()
                .await
                .map(|ids| ids.iter().map(Uuid::to_string).collect())
                .unwrap_or_default(),
            Err(_) => HashSet::new(),
        };
        if ids.iter().all(|id| stored.contains(id)) {
            break;
        }
        assert!(Instant::now() < deadline, "the backlog did not land");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready = app.get_json("/readyz").await;
    assert_eq!(ready["database"], "ok");
    assert_eq!(ready["log_backlog"], 0);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("candor_predictions_unlogged_total 0"));
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_serve_processes_on_one_postgres_database_see_each_others_feedback() {
    let db = TestDatabase::new(Backend::Postgres).await;
    let first = ServerProcess::start(&db.url);
    let mut second = ServerProcess::start(&db.url);
    let client = reqwest::Client::new();
    let classify = |address: &str, text: &str| {
        client
            .post(format!("{address}/v1/classify"))
            .json(&json!({ "inputs": text }))
    };
    let answer = json_answer(classify(&first.address, "Who wrote Hamlet ?")).await;
    let id = answer["predictions"][0]["id"].clone();
    // Feedback on the second server about the first one's prediction.
    let given = client
        .post(format!("{}/v1/feedback", second.address))
        .json(&json!({"prediction_id": id, "label": "HUM"}))
        .send()
        .await
        .unwrap();
    assert_eq!(given.status(), 201);
    classify(&second.address, "Where is Lima ?")
        .send()
        .await
        .unwrap();
    second.signal("TERM");
    assert!(second.wait(Duration::from_secs(20)).success());
    let stats = json_answer(client.get(format!("{}/v1/stats", first.address))).await;
    assert_eq!(stats["feedback"], 1);
    assert_eq!(stats["predictions"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn healthcheck_succeeds_against_a_ready_server_and_fails_once_it_is_gone() {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let mut server = ServerProcess::start(&db.url);
    let addr = server.address.trim_start_matches("http://").to_string();
    let check = || {
        Command::new(env!("CARGO_BIN_EXE_candor"))
            .args(["healthcheck", "--addr", &addr, "--timeout-ms", "2000"])
            .output()
            .unwrap()
    };
    // 503 (exit 1) while the model warms up, then 200 (exit 0).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = check();
        if answer.status.success() {
            break;
        }
        assert_eq!(answer.status.code(), Some(1));
        assert!(
            Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&answer.stderr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server.signal("TERM");
    assert!(server.wait(Duration::from_secs(20)).success());
    let gone = check();
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("readyz"));
}
