//! The playground at `GET /`, driven in headless Chromium: classify with
//! uncertainty, correct an answer, label the review queue from the keyboard,
//! and read an error, behind an API key. Screenshots go to
//! `target/playground/` (or `CANDOR_SCREENSHOTS`); `CANDOR_PLAYGROUND_MODEL`
//! serves another model than the fixture (the README's pictures use
//! `models/sentiment`).

use std::path::PathBuf;

use candor::serve::models::ModelSpec;
use serde_json::{json, Value};

use crate::browser::Browser;
use crate::database::{settings_with_database, Backend, TestDatabase};
use crate::helpers::{fixture_model, spawn_app_serving};

const KEY: &str = "playground-key";

fn screenshots() -> PathBuf {
    std::env::var("CANDOR_SCREENSHOTS").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/playground"),
        PathBuf::from,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playground_classifies_corrects_and_labels_the_review_queue_in_a_real_browser() {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let mut settings = settings_with_database(&db.url);
    settings.api_key = Some(KEY.into());
    let model =
        std::env::var("CANDOR_PLAYGROUND_MODEL").map_or_else(|_| fixture_model(), PathBuf::from);
    let app = spawn_app_serving(vec![ModelSpec::of_dir(&model)], settings).await;
    let (name, texts) = match model == fixture_model() {
        true => (
            "tiny-trec6".to_string(),
            "Who wrote Hamlet?\nHow far away is the moon?",
        ),
        false => (
            candor::serve::models::dir_name(&model),
            "a warm, funny, sharply written film\nit is a film",
        ),
    };
    let browser = Browser::start().await;
    browser.open(&format!("{}/", app.address)).await;

    // Without the key the page says what went wrong; with it, the models load.
    browser
        .wait_for(
            "the missing key's error",
            "return document.getElementById('error').textContent.includes('401')",
        )
        .await;
    browser.type_into("#key", KEY).await;
    browser.click("#texts").await;
    browser
        .wait_for(
            "the model list",
            &format!("return document.getElementById('model').value === '{name}'"),
        )
        .await;

    // Classify two texts with 8 MC-dropout samples.
    browser.type_into("#texts", texts).await;
    browser.type_into("#samples", "8").await;
    browser.click("#classify").await;
    browser
        .wait_for(
            "two results",
            "return document.querySelectorAll('.result').length === 2",
        )
        .await;
    let labels: Value = app_labels(&app, &name).await;
    let shown = browser
        .run(
            "return [...document.querySelectorAll('.result')].map(r => ({
                label: r.querySelector('.label').textContent,
                rows: r.querySelectorAll('.scores .track').length,
                dots: r.querySelectorAll('.dot').length,
                whiskers: r.querySelectorAll('.whisker').length,
                figures: r.querySelector('.figures').textContent,
                set: r.querySelector('.prediction-set') !== null }))",
        )
        .await;
    let count = labels.as_array().unwrap().len() as u64;
    for result in shown.as_array().unwrap() {
        assert!(
            labels.as_array().unwrap().contains(&result["label"]),
            "{result}"
        );
        assert_eq!(result["rows"], count, "a bar per label");
        assert_eq!(result["whiskers"], count, "a whisker per label");
        assert_eq!(result["dots"], count * 8, "a dot per label and sample");
        let figures = result["figures"].as_str().unwrap();
        assert!(figures.contains("mutual information"), "{figures}");
        assert_eq!(result["set"], true, "the prediction set is shown");
    }
    std::fs::create_dir_all(screenshots()).unwrap();
    std::fs::write(
        screenshots().join("classify.png"),
        browser.screenshot().await,
    )
    .unwrap();

    // Correct the first answer to another label.
    let other = browser
        .run("const s = document.querySelector('.result select'); s.value = [...s.options].map(o => o.value).find(v => v !== s.value); return s.value")
        .await;
    browser.click(".result .send-feedback").await;
    browser
        .wait_for(
            "the feedback receipt",
            "return document.querySelector('.result .status').textContent.startsWith('Saved: ')",
        )
        .await;

    // The review queue: the other text is left; label it with the keyboard.
    browser.click("#tab-review").await;
    browser.click("#load-queue").await;
    browser
        .wait_for(
            "one item to review",
            "return document.querySelectorAll('#queue .item').length === 1",
        )
        .await;
    browser
        .run("document.getElementById('queue').focus(); return true")
        .await;
    browser.press("2").await;
    browser
        .wait_for(
            "the item labelled",
            "return document.querySelector('#queue .item').classList.contains('done')",
        )
        .await;
    let status = browser
        .run("return document.getElementById('queue-status').textContent")
        .await;
    assert_eq!(status, "0 of 1 left to label.");
    let stats: Value = app
        .client
        .get(format!("{}/v1/stats?model={name}", app.address))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["feedback"], 2, "{stats}");
    let second_label = &labels[1];
    let queue_label = browser
        .run("return document.querySelector('#queue .item .status').textContent")
        .await;
    assert_eq!(
        queue_label,
        json!(format!("labelled {}", second_label.as_str().unwrap()))
    );
    assert_ne!(other, Value::Null);

    // A refused request is shown with the server's reason.
    browser.click("#tab-classify").await;
    browser.type_into("#samples", "1000").await;
    browser.click("#classify").await;
    browser
        .wait_for("the error line", "return document.getElementById('error').textContent.includes('samples must be between 1 and 100')")
        .await;
    app.stop().await.unwrap();
}

async fn app_labels(app: &crate::helpers::TestApp, name: &str) -> Value {
    let info: Value = app
        .client
        .get(format!("{}/v1/models/{name}", app.address))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    info["labels"].clone()
}

#[tokio::test]
async fn the_playground_page_is_served_without_the_key_and_runs_only_its_own_script() {
    let mut settings = crate::helpers::test_settings();
    settings.api_key = Some(KEY.into());
    let app = crate::helpers::spawn_app_with(settings).await;
    let page = app.get("/").await;
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(policy.contains("connect-src 'self'"), "{policy}");
    let html = page.text().await.unwrap();
    assert!(html.contains("candor playground"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page loads nothing from elsewhere"
    );
    let unauthorised = app.post("/", json!({"inputs": "x"})).await;
    assert_eq!(unauthorised.status(), 401, "POST / still needs the key");
    app.stop().await.unwrap();
}
