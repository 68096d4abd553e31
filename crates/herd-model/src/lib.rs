//! herd-model
