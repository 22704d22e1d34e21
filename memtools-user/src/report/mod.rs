//! What users read: tables, JSON, exports and imports in other tools' formats.

pub mod jsonl;
pub mod memorytools;
pub mod summary;
pub mod text;
pub mod verdicts;
