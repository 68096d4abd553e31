//! `herd generate --tp/--pp` outside mpirun: the mistakes a user can make
//! without MPI are clear errors. The multi-process behaviour itself is tested
//! under mpirun by tools/test_parallel.sh.

use std::process::{Command, Output};

fn herd(args: &[&str], env: &[(&str, &str)]) -> Output {
    let model = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/models/llama31-tiny"
    );
    Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(["generate", "-m", model, "-p", "hi", "-n", "2"])
        .args(args)
        .envs(env.iter().copied())
        .env_remove("HERD_MODEL")
        .output()
        .expect("run herd")
}

#[test]
fn several_ranks_without_a_layout_are_refused() {
    let out = herd(&[], &[("OMPI_COMM_WORLD_SIZE", "2")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mpirun started 2 ranks but no layout was given"),
        "{err}"
    );
}

#[cfg(not(feature = "mpi"))]
#[test]
fn tensor_parallel_without_mpi_says_how_to_build_it() {
    let out = herd(&["--tp", "2"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("built without MPI"), "{err}");
    assert!(err.contains("mpirun -np 2"), "{err}");
}
