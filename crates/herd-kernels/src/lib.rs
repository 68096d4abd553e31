//! herd-kernels
