//! The leak analysis pipeline (being written).
