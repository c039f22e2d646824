//! The models one server serves: each with its own engine thread and queue
//! (a slow model never blocks a fast one), looked up by name per request,
//! and replaced whole, without downtime, on reload.
//!
//! A request takes an `Arc` of the model it names and keeps it until it is
//! answered; a reload loads and warms the new model beside the old one, then
//! swaps the `Arc` in the registry. Requests that hold the old one finish on
//! it, and when the last lets go its engine drains its queue and stops.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::api::ModelInfo;
use super::engine::{BatchSettings, CostSettings, Engine};
use super::error::ApiError;
use super::metrics::Metrics;
use crate::model::{Classifier, ModelDir, Precision};
use crate::store::log::PredictionLog;
use crate::store::{ModelRecord, Store};
use crate::uncertainty::calibration::Calibration;

/// A model to serve: its name in requests and its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// The name requests use (`"model": "…"`).
    pub name: String,
    /// The model directory.
    pub dir: PathBuf,
}

impl ModelSpec {
    /// A model named after its directory (the last component of its path).
    pub fn of_dir(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Self {
            name: ModelDir::new(&dir).name(),
            dir,
        }
    }
}

impl FromStr for ModelSpec {
    type Err = String;

    /// `NAME=DIR`, or `DIR` for a model named after its directory.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err("a model is NAME=DIR or DIR, got an empty value".into());
        }
        match s.split_once('=') {
            Some((name, dir)) => {
                let (name, dir) = (name.trim(), dir.trim());
                check_name(name)?;
                if dir.is_empty() {
                    return Err(format!("model '{name}' names no directory (NAME=DIR)"));
                }
                Ok(Self {
                    name: name.to_string(),
                    dir: PathBuf::from(dir),
                })
            }
            None => Ok(Self::of_dir(s)),
        }
    }
}

/// A model name must fit in a URL path segment and the `--model` list:
/// no `/`, `,`, `=`, spaces or control characters.
pub fn check_name(name: &str) -> Result<(), String> {
    let unfit = |c: char| c == '/' || c == ',' || c == '=' || c.is_whitespace() || c.is_control();
    if name.is_empty() || name.len() > 128 || name.chars().any(unfit) {
        return Err(format!(
            "model name '{name}' must be 1 to 128 characters without '/', ',', '=', spaces or control characters"
        ));
    }
    Ok(())
}

/// A cascade to serve: its name and its models' names, smallest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CascadeSpec {
    /// The name requests use, like a model's.
    pub name: String,
    /// The models it runs, in order; each passes on what it is unsure of.
    pub stages: Vec<String>,
}

impl FromStr for CascadeSpec {
    type Err = String;

    /// `NAME=FIRST,NEXT[,…]`, naming served models.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, stages) = s.trim().split_once('=').ok_or_else(|| {
            format!("a cascade is NAME=FIRST,NEXT (served models' names), got '{s}'")
        })?;
        let name = name.trim();
        check_name(name)?;
        let stages: Vec<String> = stages.split(',').map(|m| m.trim().to_string()).collect();
        if stages.len() < 2 || stages.iter().any(String::is_empty) {
            return Err(format!(
                "cascade '{name}' needs two or more models' names, separated by commas, got '{s}'"
            ));
        }
        Ok(Self {
            name: name.to_string(),
            stages,
        })
    }
}

/// A cascade as one request runs it: its models (as they are now) and, for
/// each but the last, the threshold above which it answers.
pub struct CascadePlan {
    /// The cascade's name.
    pub name: String,
    /// Each model with the threshold on its calibrated top probability;
    /// the last model's is `None` (it answers whatever reaches it), as is
    /// one whose fit passes everything on.
    pub stages: Vec<(Arc<ServedModel>, Option<f64>)>,
}

/// Checks that every cascade is well formed over `models`: a new name,
/// served models (not itself, not a cascade) of the same labels, and a fit
/// for each hand-over in the first model's calibration. The thresholds of
/// each cascade's stages, in order.
fn plan_cascades(
    cascades: &[CascadeSpec],
    models: &[Arc<ServedModel>],
) -> Result<Vec<Vec<Option<f64>>>, String> {
    let find = |name: &str| models.iter().find(|m| m.name == name);
    let mut plans = Vec::with_capacity(cascades.len());
    for (i, cascade) in cascades.iter().enumerate() {
        let name = &cascade.name;
        if find(name).is_some() || cascades[..i].iter().any(|c| &c.name == name) {
            return Err(format!(
                "cascade '{name}' has the name of another model or cascade"
            ));
        }
        let mut stages = Vec::with_capacity(cascade.stages.len());
        for stage in &cascade.stages {
            if stage == name {
                return Err(format!("cascade '{name}' names itself"));
            }
            let model = find(stage).ok_or_else(|| {
                let served: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
                format!(
                    "cascade '{name}' names '{stage}', which is not a served model (served: {})",
                    served.join(", ")
                )
            })?;
            stages.push(model);
        }
        let mut thresholds = Vec::with_capacity(stages.len());
        for pair in stages.windows(2) {
            thresholds.push(hand_over(name, pair[0], pair[1])?);
        }
        thresholds.push(None);
        plans.push(thresholds);
    }
    Ok(plans)
}

/// The fitted threshold at which `first` passes texts on to `next`.
fn hand_over(
    cascade: &str,
    first: &ServedModel,
    next: &ServedModel,
) -> Result<Option<f64>, String> {
    if first.labels() != next.labels() {
        return Err(format!(
            "cascade '{cascade}': '{}' and '{}' have different labels",
            first.name, next.name
        ));
    }
    let sha = &next.info.weights_sha256;
    let step = first
        .calibration
        .as_ref()
        .and_then(|c| c.cascade.iter().find(|s| &s.next_weights_sha256 == sha))
        .ok_or_else(|| {
            format!(
                "cascade '{cascade}': {}'s calibration has no fit for passing texts on to '{}'                  (these weights): run candor calibrate --model {} --data <calibration data> --cascade-to {}",
                first.name,
                next.name,
                first.dir.display(),
                next.dir.display()
            )
        })?;
    Ok(step.threshold)
}

/// Checks a list of models before anything loads: at least one, names unique.
pub fn check_specs(specs: &[ModelSpec]) -> anyhow::Result<()> {
    anyhow::ensure!(!specs.is_empty(), "no model to serve: pass --model DIR");
    for (i, spec) in specs.iter().enumerate() {
        check_name(&spec.name).map_err(anyhow::Error::msg)?;
        if let Some(earlier) = specs[..i].iter().find(|s| s.name == spec.name) {
            anyhow::bail!(
                "two models are named '{}' ({} and {}): name one of them, as --model NAME=DIR",
                spec.name,
                earlier.dir.display(),
                spec.dir.display()
            );
        }
    }
    Ok(())
}

/// One model being served.
pub struct ServedModel {
    /// Its name in requests.
    pub name: String,
    /// The directory it was loaded from.
    pub dir: PathBuf,
    /// The model (also owned by the engine thread).
    pub classifier: Arc<Classifier>,
    /// The queue to its inference thread.
    pub engine: Engine,
    /// What `GET /v1/models/{name}` answers (without the limits).
    pub info: ModelInfo,
    /// Its calibration.json, when it has one.
    pub calibration: Option<Calibration>,
    /// Its predictions' log, when a database is kept.
    pub log: Option<PredictionLog>,
    /// When it was loaded.
    pub loaded_at: std::time::SystemTime,
}

impl ServedModel {
    /// The encoder layers: what sampling modes and request costs count in.
    pub fn layers(&self) -> usize {
        self.classifier.network.layer_count()
    }

    /// The labels in class order.
    pub fn labels(&self) -> &[String] {
        &self.classifier.labels
    }

    /// The sampling mode a request names; `top` without `top_layers`
    /// samples as many layers as the calibration's top scores did, else 1.
    pub fn sampling_mode(
        &self,
        mode: super::api::ModeName,
        top_layers: Option<&serde_json::Value>,
    ) -> Result<crate::uncertainty::SamplingMode, String> {
        let calibrated = self
            .calibration
            .as_ref()
            .and_then(|c| c.top.as_ref())
            .map_or(1, |top| top.layers);
        mode.resolve(top_layers, self.layers(), calibrated)
    }

    /// The fitted temperature of the calibrated softmax.
    pub fn temperature(&self) -> f64 {
        self.classifier.config.candor.temperature
    }
}

/// What loading a model needs besides its directory.
pub struct Loader {
    /// Arithmetic of the dense layers.
    pub precision: Precision,
    /// Batching and queueing of each engine.
    pub batch: BatchSettings,
    /// How each engine sizes a request's cost budget.
    pub cost: CostSettings,
    /// Where the engines count.
    pub metrics: Arc<Metrics>,
    /// The database models are registered in, when one is kept.
    pub store: Option<Store>,
    /// The prediction log, whose handle each model binds to its id.
    pub log: Option<PredictionLog>,
}

impl Loader {
    /// Loads the model, checks its calibration and starts its engine (which
    /// warms up on its own thread); registers it in the database.
    pub async fn load(
        &self,
        spec: &ModelSpec,
    ) -> anyhow::Result<(ServedModel, std::thread::JoinHandle<()>)> {
        let dir = spec.dir.clone();
        let precision = self.precision;
        let (classifier, calibration) = tokio::task::spawn_blocking(move || {
            let classifier = Classifier::load_with(&dir, precision)?;
            with_calibration(classifier, &dir)
        })
        .await?
        .with_context(|| format!("loading model {}", spec.dir.display()))?;
        let classifier = Arc::new(classifier);
        let info = super::ops::model_info(&spec.name, &spec.dir, &classifier, calibration.as_ref());
        let log = match (&self.store, &self.log) {
            (Some(store), Some(log)) => Some(log.for_model(register(store, &info).await?)),
            _ => None,
        };
        let (engine, worker) = Engine::start(
            classifier.clone(),
            self.batch,
            self.cost,
            self.metrics.engine(&spec.name),
        )?;
        let model = ServedModel {
            name: spec.name.clone(),
            dir: spec.dir.clone(),
            classifier,
            engine,
            info,
            calibration,
            log,
            loaded_at: std::time::SystemTime::now(),
        };
        Ok((model, worker))
    }
}

/// Reads the model's calibration.json, checks it fits the model and points
/// the model's feature vectors at the representation its neighbours use.
fn with_calibration(
    mut classifier: Classifier,
    dir: &Path,
) -> anyhow::Result<(Classifier, Option<Calibration>)> {
    let mut calibration = Calibration::load(dir)?;
    if let Some(c) = &mut calibration {
        let (labels, hidden) = (classifier.labels.len(), classifier.config.hidden_size);
        c.check_against(dir, labels, classifier.network.layer_count(), hidden)?;
        if let Some(neighbours) = &c.neighbours {
            // Answers' feature vectors are the ones the neighbours were built from.
            classifier.features = neighbours.representation;
        }
    }
    Ok((classifier, calibration))
}

/// Records in the database that the model is served; its id there.
async fn register(store: &Store, info: &ModelInfo) -> anyhow::Result<i64> {
    store
        .register_model(&ModelRecord {
            name: info.name.clone(),
            weights_sha256: info.weights_sha256.clone(),
            labels: info.labels.clone(),
            metrics: info.training_metrics.clone(),
        })
        .await
        .with_context(|| format!("registering model {} in the database", info.name))
}

/// Longest a reloaded model may take to warm up before the reload gives up.
const WARM_UP_PATIENCE: Duration = Duration::from_secs(120);

/// What a reload did to one model.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Reloaded {
    /// The model's name.
    pub name: String,
    /// sha256 of the weights now served.
    pub weights_sha256: String,
    /// sha256 of the weights served before.
    pub previous_weights_sha256: String,
    /// Milliseconds to load and warm up the new copy.
    pub load_ms: u64,
}

/// The models served, the first the default.
pub struct Registry {
    models: RwLock<Vec<Arc<ServedModel>>>,
    specs: Vec<ModelSpec>,
    cascades: Vec<CascadeSpec>,
    loader: Loader,
    /// Held while a reload runs: a second one is refused, not queued.
    reloading: tokio::sync::Mutex<()>,
    /// Every engine thread started, joined at shutdown.
    workers: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Registry {
    /// Loads every model (in order; the first is the default) and checks
    /// the cascades over them.
    pub async fn load(
        specs: Vec<ModelSpec>,
        cascades: Vec<CascadeSpec>,
        loader: Loader,
    ) -> anyhow::Result<Self> {
        check_specs(&specs)?;
        let mut models = Vec::with_capacity(specs.len());
        let mut workers = Vec::with_capacity(specs.len());
        for spec in &specs {
            let (model, worker) = loader.load(spec).await?;
            models.push(Arc::new(model));
            workers.push(worker);
        }
        plan_cascades(&cascades, &models).map_err(anyhow::Error::msg)?;
        Ok(Self {
            models: RwLock::new(models),
            specs,
            cascades,
            loader,
            reloading: tokio::sync::Mutex::new(()),
            workers: Mutex::new(workers),
        })
    }

    /// Every model, the default first.
    pub fn all(&self) -> Vec<Arc<ServedModel>> {
        self.models
            .read()
            .map_or_else(|p| p.into_inner().clone(), |m| m.clone())
    }

    /// The default model (the first given).
    pub fn default_model(&self) -> Arc<ServedModel> {
        self.all().swap_remove(0)
    }

    /// The model a request names, or the default when it names none.
    pub fn get(&self, name: Option<&str>) -> Result<Arc<ServedModel>, ApiError> {
        let Some(name) = name else {
            return Ok(self.default_model());
        };
        let all = self.all();
        if let Some(cascade) = self.cascades.iter().find(|c| c.name == name) {
            return Err(ApiError::Validation(format!(
                "'{name}' is a cascade (of {}): it answers POST /v1/classify; name one of its models here",
                cascade.stages.join(", ")
            )));
        }
        let names: Vec<String> = all.iter().map(|m| m.name.clone()).collect();
        all.into_iter()
            .find(|m| m.name == name)
            .ok_or_else(|| ApiError::UnknownModel {
                name: name.to_string(),
                served: names,
            })
    }

    /// The cascade of this name, with its models as they are now.
    pub fn cascade(&self, name: &str) -> Option<CascadePlan> {
        let index = self.cascades.iter().position(|c| c.name == name)?;
        let models = self.all();
        // Reloads keep every cascade valid, so the plan exists.
        let thresholds = plan_cascades(&self.cascades, &models)
            .ok()?
            .swap_remove(index);
        let stages = self.cascades[index]
            .stages
            .iter()
            .zip(thresholds)
            .filter_map(|(stage, t)| Some((models.iter().find(|m| &m.name == stage)?.clone(), t)))
            .collect();
        Some(CascadePlan {
            name: name.to_string(),
            stages,
        })
    }

    /// The cascades served and their models' names.
    pub fn cascades(&self) -> &[CascadeSpec] {
        &self.cascades
    }

    /// True once every model's engine has warmed up and while all live.
    pub fn is_ready(&self) -> bool {
        self.all().iter().all(|m| m.engine.is_ready())
    }

    /// Reads the model directories again (all, or the one named) and swaps
    /// each new copy in once it is warm. When any fails to load or warm up,
    /// none is swapped: the old models keep serving and the error says why.
    pub async fn reload(&self, name: Option<&str>) -> Result<Vec<Reloaded>, ApiError> {
        let Ok(_one_at_a_time) = self.reloading.try_lock() else {
            return Err(ApiError::ReloadInProgress);
        };
        let specs: Vec<&ModelSpec> = match name {
            None => self.specs.iter().collect(),
            Some(name) => {
                self.get(Some(name))?;
                self.specs.iter().filter(|s| s.name == name).collect()
            }
        };
        let mut fresh = Vec::with_capacity(specs.len());
        for spec in specs {
            let started = Instant::now();
            let (model, worker) = self
                .loader
                .load(spec)
                .await
                .map_err(|e| ApiError::ReloadFailed(format!("model '{}': {e:#}", spec.name)))?;
            self.keep_worker(worker);
            wait_until_warm(&model).await?;
            fresh.push((Arc::new(model), started.elapsed()));
        }
        self.check_cascades_with(&fresh)?;
        Ok(self.swap_in(fresh))
    }

    /// Refuses a reload after which a cascade would have no fit for its models.
    fn check_cascades_with(&self, fresh: &[(Arc<ServedModel>, Duration)]) -> Result<(), ApiError> {
        let after: Vec<Arc<ServedModel>> = self
            .all()
            .into_iter()
            .map(|m| {
                fresh
                    .iter()
                    .find(|(f, _)| f.name == m.name)
                    .map_or(m, |(f, _)| f.clone())
            })
            .collect();
        plan_cascades(&self.cascades, &after)
            .map(drop)
            .map_err(ApiError::ReloadFailed)
    }

    /// Replaces the models of the same names; the old copies are dropped
    /// here, and their engines stop once their last request is answered.
    fn swap_in(&self, fresh: Vec<(Arc<ServedModel>, Duration)>) -> Vec<Reloaded> {
        let mut models = self.models.write().unwrap_or_else(|p| p.into_inner());
        fresh
            .into_iter()
            .filter_map(|(model, took)| {
                let slot = models.iter_mut().find(|m| m.name == model.name)?;
                let previous = std::mem::replace(slot, model.clone());
                tracing::info!(
                    model = %model.name,
                    weights_sha256 = %model.info.weights_sha256,
                    previous = %previous.info.weights_sha256,
                    ms = took.as_millis() as u64,
                    "reloaded"
                );
                Some(Reloaded {
                    name: model.name.clone(),
                    weights_sha256: model.info.weights_sha256.clone(),
                    previous_weights_sha256: previous.info.weights_sha256.clone(),
                    load_ms: took.as_millis() as u64,
                })
            })
            .collect()
    }

    fn keep_worker(&self, worker: std::thread::JoinHandle<()>) {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        workers.retain(|w| !w.is_finished());
        workers.push(worker);
    }

    /// The engine threads, for shutdown to join once every model is dropped.
    pub fn take_workers(&self) -> Vec<std::thread::JoinHandle<()>> {
        std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Waits until a freshly loaded model's engine has run its warm-up pass.
async fn wait_until_warm(model: &ServedModel) -> Result<(), ApiError> {
    let started = Instant::now();
    while !model.engine.is_ready() {
        if !model.engine.is_alive() {
            return Err(ApiError::ReloadFailed(format!(
                "model '{}': its engine stopped while warming up",
                model.name
            )));
        }
        if started.elapsed() > WARM_UP_PATIENCE {
            return Err(ApiError::ReloadFailed(format!(
                "model '{}' did not warm up within {} s",
                model.name,
                WARM_UP_PATIENCE.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_is_named_explicitly_or_after_its_directory() {
        let named: ModelSpec = "trec=models/trec6".parse().unwrap();
        assert_eq!(named.name, "trec");
        assert_eq!(named.dir, PathBuf::from("models/trec6"));
        let plain: ModelSpec = "models/sentiment-tiny".parse().unwrap();
        assert_eq!(plain.name, "sentiment-tiny");
    }

    #[test]
    fn bad_model_names_and_empty_directories_are_refused() {
        for bad in [
            "",
            "=models/x",
            "a b=models/x",
            "x=",
            "../x=models/x",
            "a,b=models/x",
        ] {
            assert!(bad.parse::<ModelSpec>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_cascade_names_two_or_more_models() {
        let cascade: CascadeSpec = "auto=tiny, big".parse().unwrap();
        assert_eq!(cascade.name, "auto");
        assert_eq!(cascade.stages, ["tiny", "big"]);
        for bad in ["auto", "auto=tiny", "auto=tiny,", "=a,b"] {
            assert!(bad.parse::<CascadeSpec>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn two_models_of_one_name_are_refused_naming_both_directories() {
        let specs = vec![ModelSpec::of_dir("a/m"), ModelSpec::of_dir("b/m")];
        let error = check_specs(&specs).unwrap_err().to_string();
        assert!(error.contains("a/m") && error.contains("b/m"), "{error}");
        assert!(check_specs(&[]).is_err());
    }
}
