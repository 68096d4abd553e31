//! herd-tokenizer
