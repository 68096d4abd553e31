//! herd-engine
