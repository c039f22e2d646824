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
use crate::common::fixture_model;
use crate::database::{settings_with_database, Backend, TestDatabase};
use crate::helpers::{json_answer, spawn_app_serving, TestApp};

const KEY: &str = "playground-key";

/// MC-dropout samples the playground is asked for.
const SAMPLES: u64 = 8;

fn screenshots() -> PathBuf {
    std::env::var("CANDOR_SCREENSHOTS").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/playground"),
        PathBuf::from,
    )
}

// One browser session walks through every step: starting Chromium is most of
// the cost, and the later steps need the state the earlier ones leave (the
// key typed, the predictions made and corrected).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_playground_classifies_corrects_and_labels_the_review_queue_in_a_real_browser() {
    let playground = Playground::open().await;
    playground.is_refused_until_given_the_key().await;
    playground
        .classifies_two_texts_with_their_uncertainty()
        .await;
    playground.corrects_the_first_answer().await;
    playground.labels_the_other_text_in_the_review_queue().await;
    playground
        .shows_a_refused_request_with_the_servers_reason()
        .await;
    playground.app.stop().await.unwrap();
}

/// The playground of a server behind [`KEY`], open in headless Chromium.
struct Playground {
    app: TestApp,
    browser: Browser,
    /// The served model's name.
    model: String,
    /// Its labels, in order.
    labels: Value,
    /// Two texts to classify, one a line.
    texts: &'static str,
    /// The database the server logs to; dropping it removes it.
    _db: TestDatabase,
}

impl Playground {
    /// Serves the fixture (or `CANDOR_PLAYGROUND_MODEL`) with a SQLite
    /// database and opens the page.
    async fn open() -> Playground {
        let db = TestDatabase::new(Backend::Sqlite).await;
        let mut settings = settings_with_database(&db.url);
        settings.api_key = Some(KEY.into());
        let dir = std::env::var("CANDOR_PLAYGROUND_MODEL")
            .map_or_else(|_| fixture_model(), PathBuf::from);
        let app = spawn_app_serving(vec![ModelSpec::of_dir(&dir)], settings).await;
        let (model, texts) = match dir == fixture_model() {
            true => (
                "tiny-trec6".to_string(),
                "Who wrote Hamlet?\nHow far away is the moon?",
            ),
            false => (
                candor::model::ModelDir::new(&dir).name(),
                "a warm, funny, sharply written film\nit is a film",
            ),
        };
        let labels = app_labels(&app, &model).await;
        let browser = Browser::start().await;
        browser.open(&format!("{}/", app.address)).await;
        Playground {
            app,
            browser,
            model,
            labels,
            texts,
            _db: db,
        }
    }

    /// Without the key the page says what went wrong; with it, the models load.
    async fn is_refused_until_given_the_key(&self) {
        self.browser
            .wait_for(
                "the missing key's error",
                "return document.getElementById('error').textContent.includes('401')",
            )
            .await;
        self.browser.type_into("#key", KEY).await;
        self.browser.click("#texts").await;
        let listed = format!(
            "return document.getElementById('model').value === '{}'",
            self.model
        );
        self.browser.wait_for("the model list", &listed).await;
    }

    /// Each result shows a bar, a whisker and a dot per sample for every
    /// label, the uncertainty figures and the prediction set.
    async fn classifies_two_texts_with_their_uncertainty(&self) {
        self.browser.type_into("#texts", self.texts).await;
        self.browser
            .type_into("#samples", &SAMPLES.to_string())
            .await;
        self.browser.click("#classify").await;
        self.browser
            .wait_for(
                "two results",
                "return document.querySelectorAll('.result').length === 2",
            )
            .await;
        let shown = self
            .browser
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
        let labels = self.labels.as_array().unwrap();
        let count = labels.len() as u64;
        for result in shown.as_array().unwrap() {
            assert!(labels.contains(&result["label"]), "{result}");
            assert_eq!(result["rows"], count, "a bar per label");
            assert_eq!(result["whiskers"], count, "a whisker per label");
            assert_eq!(
                result["dots"],
                count * SAMPLES,
                "a dot per label and sample"
            );
            let figures = result["figures"].as_str().unwrap();
            assert!(figures.contains("mutual information"), "{figures}");
            assert_eq!(result["set"], true, "the prediction set is shown");
        }
        self.save_screenshot("classify.png").await;
    }

    /// Sends the first answer's feedback with another label than predicted.
    async fn corrects_the_first_answer(&self) {
        let other = self
            .browser
            .run("const s = document.querySelector('.result select'); s.value = [...s.options].map(o => o.value).find(v => v !== s.value); return s.value")
            .await;
        assert_ne!(other, Value::Null);
        self.browser.click(".result .send-feedback").await;
        self.browser
            .wait_for(
                "the feedback receipt",
                "return document.querySelector('.result .status').textContent.startsWith('Saved: ')",
            )
            .await;
    }

    /// The review queue holds only the text not corrected; the key `2`
    /// labels it with the second label, and the server has both corrections.
    async fn labels_the_other_text_in_the_review_queue(&self) {
        self.browser.click("#tab-review").await;
        self.browser.click("#load-queue").await;
        self.browser
            .wait_for(
                "one item to review",
                "return document.querySelectorAll('#queue .item').length === 1",
            )
            .await;
        self.browser
            .run("document.getElementById('queue').focus(); return true")
            .await;
        self.browser.press("2").await;
        self.browser
            .wait_for(
                "the item labelled",
                "return document.querySelector('#queue .item').classList.contains('done')",
            )
            .await;
        let status = self
            .browser
            .run("return document.getElementById('queue-status').textContent")
            .await;
        assert_eq!(status, "0 of 1 left to label.");
        let stats = self.stats().await;
        assert_eq!(stats["feedback"], 2, "{stats}");
        let queue_label = self
            .browser
            .run("return document.querySelector('#queue .item .status').textContent")
            .await;
        let second_label = self.labels[1].as_str().unwrap();
        assert_eq!(queue_label, json!(format!("labelled {second_label}")));
    }

    /// Asks for more samples than the server allows.
    async fn shows_a_refused_request_with_the_servers_reason(&self) {
        self.browser.click("#tab-classify").await;
        self.browser.type_into("#samples", "1000").await;
        self.browser.click("#classify").await;
        self.browser
            .wait_for("the error line", "return document.getElementById('error').textContent.includes('samples must be between 1 and 100')")
            .await;
    }

    /// `GET /v1/stats` of the model.
    async fn stats(&self) -> Value {
        let url = format!("{}/v1/stats?model={}", self.app.address, self.model);
        json_answer(self.app.client.get(url).bearer_auth(KEY)).await
    }

    /// Saves what the browser shows in [`screenshots`] as `name`.
    async fn save_screenshot(&self, name: &str) {
        std::fs::create_dir_all(screenshots()).unwrap();
        std::fs::write(screenshots().join(name), self.browser.screenshot().await).unwrap();
    }
}

/// The labels of the served model `name`, in order.
async fn app_labels(app: &TestApp, name: &str) -> Value {
    let url = format!("{}/v1/models/{name}", app.address);
    json_answer(app.client.get(url).bearer_auth(KEY)).await["labels"].clone()
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
