//! What went wrong, said the way the empty and error states show it: a short title, the store's
//! own message (which already names the file and what to do), and a next step in the GUI.

use memtools::store::StoreError;

/// A problem the UI shows in place of the data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    pub title: String,
    pub detail: String,
    pub hint: String,
}

/// Which empty or error state this is (tests and the layout look at it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    NoStore,
    EmptyStore,
    NewerSchema,
    Corrupt,
    NotAStore,
    Other,
}

const RECORD_HINT: &str = "Record a session with `memtools-user record -- CMD` or import a memorytools CSV with `memtools-user import FILE`, then press Reload; or open another store above.";

impl Problem {
    pub fn from_store(e: &StoreError) -> Problem {
        let (kind, title, hint) = match e {
            StoreError::Missing { .. } => (ProblemKind::NoStore, "No store here", RECORD_HINT),
            StoreError::NoSessions { .. } => (
                ProblemKind::EmptyStore,
                "The store has no sessions yet",
                RECORD_HINT,
            ),
            StoreError::NewerSchema { .. } => (
                ProblemKind::NewerSchema,
                "Written by a newer memtools",
                "Upgrade memtools (memtools-user and memtools-gui) to read this store; it is left untouched.",
            ),
            StoreError::Corrupt { .. } => (
                ProblemKind::Corrupt,
                "Not a readable store",
                "The file is damaged or not SQLite: move it aside and record again, or open another store above.",
            ),
            StoreError::NotAStore { .. } => (
                ProblemKind::NotAStore,
                "An SQLite file, but not a memtools store",
                "Open the store `memtools-user record` wrote (memtools.db by default).",
            ),
            _ => (
                ProblemKind::Other,
                "Cannot read the store",
                "Check the file's permissions, or open another store above.",
            ),
        };
        Problem {
            kind,
            title: title.to_string(),
            detail: e.to_string(),
            hint: hint.to_string(),
        }
    }

    /// An existing store with no session in it.
    pub fn empty_store(path: &std::path::Path) -> Problem {
        Problem::from_store(&StoreError::NoSessions {
            path: path.to_path_buf(),
        })
    }

    /// Shows the problem centred in `ui`.
    pub fn show(&self, ui: &mut egui::Ui) {
        ui.vertical_centered(|ui| {
            ui.add_space(ui.available_height() * 0.25);
            ui.heading(&self.title);
            ui.add_space(8.0);
            ui.label(&self.detail);
            ui.add_space(4.0);
            ui.label(egui::RichText::new(&self.hint).weak());
        });
    }
}
