//! The application state and the frame that lays it out. All state lives here, outside the UI
//! closures; the panels are functions of it that report what the user did. Slow work goes to
//! [`crate::loader::Jobs`], whose replies are applied at the start of each frame.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use memtools::analysis::GIB;
use memtools::detect::ProcessResult;
use memtools::model::Metric;
use memtools::store::SessionRow;
use serde::{Deserialize, Serialize};

use crate::loader::{Jobs, Loaded, Reply};
use crate::params_panel::Knobs;
use crate::plot::{Drawn, Overlays, PlotCache};
use crate::problem::Problem;
use crate::sessions::Counts;
use crate::table::{Row, TableState};

/// What is remembered between runs (eframe persistence; the window layout is eframe's own).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Saved {
    pub recent: Vec<PathBuf>,
    pub overlays: Overlays,
    pub table: TableState,
    pub knobs: Knobs,
}

/// Recent stores kept in the menu.
const RECENT: usize = 8;

/// Where reading the selected session stands.
#[derive(Clone, Debug, PartialEq)]
pub enum LoadState {
    Idle,
    Loading { done: u64, total: u64 },
    Failed(Problem),
}

/// The whole application.
pub struct App {
    pub store_path: PathBuf,
    pub(crate) path_field: String,
    pub saved: Saved,
    /// `None` while the list is being read.
    pub sessions: Option<Result<Vec<SessionRow>, Problem>>,
    pub selected_session: Option<i64>,
    /// The metric asked for; `None` is the session's default.
    pub metric: Option<Metric>,
    /// The metric each session opens with (`memtools-gui --metric NAME`); `None` is the
    /// session's default.
    pub opening_metric: Option<Metric>,
    pub load: LoadState,
    load_job: u64,
    pub loaded: Option<Arc<Loaded>>,
    generation: u64,
    pub results: Option<Vec<ProcessResult>>,
    analyse_job: u64,
    pub analysing: bool,
    analysis_dirty: bool,
    pub rows: Vec<Row>,
    pub order: Vec<usize>,
    order_for: Option<(TableState, u64)>,
    pub selected: BTreeSet<i64>,
    pub(crate) plot_cache: PlotCache,
    /// What the last frame's plot drew.
    pub drawn: Drawn,
    pub counts: HashMap<i64, Counts>,
    /// The knobs `counts` were computed with; other knobs make them stale.
    counts_for: Option<crate::params_panel::Knobs>,
    counts_job: u64,
    pub(crate) jobs: Jobs,
    started: bool,
    /// The "where it grows" panel.
    pub sites: crate::sites_panel::SitesPanel,
    pub(crate) frame_stats: crate::frame_stats::FrameStats,
    pub this_machine: u64,
}

impl App {
    /// An app on `store`, with what was remembered from earlier runs. Nothing is read until
    /// the first frame, so replies can wake the UI.
    pub fn new(store: PathBuf, saved: Saved) -> App {
        App {
            path_field: store.display().to_string(),
            store_path: store,
            saved,
            sessions: None,
            selected_session: None,
            metric: None,
            opening_metric: None,
            load: LoadState::Idle,
            load_job: 0,
            loaded: None,
            generation: 0,
            results: None,
            analyse_job: 0,
            analysing: false,
            analysis_dirty: false,
            rows: Vec::new(),
            order: Vec::new(),
            order_for: None,
            selected: BTreeSet::new(),
            plot_cache: PlotCache::default(),
            drawn: Drawn::default(),
            counts: HashMap::new(),
            counts_for: None,
            counts_job: 0,
            jobs: Jobs::default(),
            started: false,
            sites: Default::default(),
            frame_stats: crate::frame_stats::FrameStats::from_env(),
            this_machine: memtools::limits::machine_memory().unwrap_or(16 * GIB),
        }
    }

    /// Whether any job is still under way (tests wait for this to turn false).
    pub fn busy(&self) -> bool {
        !self.started
            || self.sessions.is_none()
            || matches!(self.load, LoadState::Loading { .. })
            || self.analysing
            || self.sites.pending()
    }

    /// Opens another store: remembered in the recent list, its sessions read afresh.
    pub fn open_store(&mut self, path: PathBuf) {
        self.saved.recent.retain(|p| p != &path);
        self.saved.recent.insert(0, path.clone());
        self.saved.recent.truncate(RECENT);
        self.path_field = path.display().to_string();
        self.store_path = path;
        self.selected_session = None;
        self.counts.clear();
        if self.started {
            self.reload();
        }
    }

    /// Reads the session list again (and then the selected session).
    pub fn reload(&mut self) {
        self.sessions = None;
        self.jobs.list_sessions(self.store_path.clone());
    }

    /// Shows session `id` (reading it in the background).
    pub fn select_session(&mut self, id: i64) {
        if self.selected_session != Some(id) {
            self.selected.clear();
            self.metric = self.opening_metric;
        }
        self.selected_session = Some(id);
        self.start_load();
    }

    /// Opens every session on `metric` (threads, fds, vm_size, ...) instead of its default.
    pub fn with_metric(mut self, metric: Option<Metric>) -> App {
        self.opening_metric = metric;
        self.metric = metric;
        self
    }

    /// Shows the selected session's `metric`.
    pub fn set_metric(&mut self, metric: Metric) {
        self.metric = Some(metric);
        self.start_load();
    }

    fn start_load(&mut self) {
        let Some(id) = self.selected_session else {
            return;
        };
        self.load = LoadState::Loading { done: 0, total: 0 };
        self.loaded = None;
        self.results = None;
        self.rows.clear();
        self.order_for = None;
        crate::plot::reset_view(&mut self.plot_cache);
        // A new session or metric: the same kind of range, asked afresh.
        self.sites.reset();
        self.load_job = self.jobs.load(self.store_path.clone(), id, self.metric);
    }

    /// Runs the pipeline with the current knobs, or marks that it must run again when one is
    /// already running.
    pub fn request_analysis(&mut self) {
        let Some(loaded) = self.loaded.clone() else {
            return;
        };
        if self.analysing {
            self.analysis_dirty = true;
            return;
        }
        self.analysing = true;
        self.analysis_dirty = false;
        let k = &self.saved.knobs;
        self.analyse_job = self.jobs.analyse(
            loaded,
            k.params.clone(),
            k.given_limit,
            self.this_machine,
            self.store_path.clone(),
        );
    }

    /// Applies the replies that arrived since the last frame.
    pub(crate) fn poll(&mut self, ctx: &egui::Context) {
        self.jobs.set_context(ctx);
        if !self.started {
            self.started = true;
            if !self.saved.recent.contains(&self.store_path) {
                self.saved.recent.insert(0, self.store_path.clone());
                self.saved.recent.truncate(RECENT);
            }
            self.reload();
        }
        for reply in self.jobs.replies() {
            match reply {
                Reply::Sessions(result) => self.on_sessions(result),
                Reply::Progress { job, done, total } if job == self.load_job => {
                    self.load = LoadState::Loading { done, total };
                }
                Reply::Loaded { job, result } if job == self.load_job => match result {
                    Ok(loaded) => {
                        self.load = LoadState::Idle;
                        self.set_loaded(loaded);
                    }
                    Err(p) => self.load = LoadState::Failed(p),
                },
                Reply::Live { job, loaded } if job == self.load_job => {
                    if let Some(Ok(list)) = &mut self.sessions
                        && let Some(row) = list.iter_mut().find(|s| s.id == loaded.session.id)
                    {
                        *row = loaded.session.clone();
                    }
                    self.set_loaded(loaded);
                }
                Reply::Sites { job, result } => self.sites.on_reply(job, result),
                Reply::Counts {
                    job,
                    session,
                    counts,
                } if job == self.counts_job => {
                    self.counts.insert(session, counts);
                }
                Reply::Analysed { job, results } if job == self.analyse_job => {
                    self.analysing = false;
                    self.on_results(results);
                    if self.analysis_dirty {
                        self.request_analysis();
                    }
                }
                _ => {} // a superseded job
            }
        }
    }

    fn on_sessions(&mut self, result: Result<Vec<SessionRow>, Problem>) {
        let result = match result {
            Ok(list) if list.is_empty() => Err(Problem::empty_store(&self.store_path)),
            other => other,
        };
        if let Ok(list) = &result {
            // Keep the selection across a reload; else the newest session.
            let keep = self
                .selected_session
                .filter(|id| list.iter().any(|s| s.id == *id));
            if let Some(id) = keep.or(list.first().map(|s| s.id)) {
                self.selected_session = Some(id);
                self.start_load();
            }
        } else {
            self.loaded = None;
            self.results = None;
            self.rows.clear();
            self.load = LoadState::Idle;
        }
        self.sessions = Some(result);
    }

    fn set_loaded(&mut self, loaded: Loaded) {
        let loaded = Arc::new(loaded);
        self.generation += 1;
        self.rows = crate::table::rows(&loaded, self.results.as_deref());
        self.order_for = None;
        self.loaded = Some(loaded);
        self.request_analysis();
    }

    fn on_results(&mut self, results: Vec<ProcessResult>) {
        let Some(loaded) = &self.loaded else { return };
        let counts = |v| results.iter().filter(|r| r.analysis.verdict == v).count();
        use memtools::analysis::Verdict;
        self.counts.insert(
            loaded.session.id,
            (
                counts(Verdict::Leak),
                counts(Verdict::Ok),
                counts(Verdict::Insufficient),
            ),
        );
        self.rows = crate::table::rows(loaded, Some(&results));
        self.results = Some(results);
        self.count_other_sessions();
        self.order_for = None;
        self.refresh_order();
        // Show something at once: the table's first row (the biggest leak by default).
        if self.selected.is_empty()
            && let Some(&first) = self.order.first()
        {
            self.selected.insert(self.rows[first].process_id);
        }
    }

    /// Starts counting verdicts of the sessions not counted with the current knobs (after the
    /// selected one, which the user waits for).
    fn count_other_sessions(&mut self) {
        let knobs = &self.saved.knobs;
        if self.counts_for.as_ref() != Some(knobs) {
            let keep = self
                .selected_session
                .and_then(|id| Some((id, *self.counts.get(&id)?)));
            self.counts.clear();
            self.counts.extend(keep);
            self.counts_for = Some(knobs.clone());
        }
        let Some(Ok(list)) = &self.sessions else {
            return;
        };
        let todo: Vec<i64> = list
            .iter()
            .map(|s| s.id)
            .filter(|id| !self.counts.contains_key(id))
            .collect();
        if todo.is_empty() {
            return;
        }
        self.counts_job = self.jobs.count_sessions(
            self.store_path.clone(),
            todo,
            knobs.params.clone(),
            knobs.given_limit,
            self.this_machine,
        );
    }

    /// Re-sorts and re-filters when the table state or the rows changed.
    pub(crate) fn refresh_order(&mut self) {
        let key = (self.saved.table.clone(), self.generation);
        if self.order_for.as_ref() != Some(&key) {
            self.order = self.saved.table.order(&self.rows);
            self.order_for = Some(key);
        }
    }

    /// The names of the processes in table order (what a person reads top to bottom).
    pub fn table_names(&self) -> Vec<String> {
        self.order
            .iter()
            .map(|&i| self.rows[i].name.clone())
            .collect()
    }

    /// The pipeline's result for one process, if it ran.
    pub fn result_of(&self, process_id: i64) -> Option<&ProcessResult> {
        self.results
            .as_ref()?
            .iter()
            .find(|r| r.process.id == process_id)
    }

    /// The plot's time range in the last frame (seconds since the session started).
    pub fn plot_view(&self) -> Option<(f64, f64)> {
        self.plot_cache.view()
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }
}
