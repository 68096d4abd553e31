//! The NCCL backend in one process (feature `cuda`; OpenMPI starts a
//! one-rank job without `mpirun`). Where libcuda, libnccl or a GPU is
//! missing (CI), starting it must fail with [`DistError::Unavailable`]
//! naming what is missing, not panic; with a GPU, every collective on one
//! rank must return its input and be counted.
#![cfg(feature = "cuda")]

use herd_dist::{Communicator, DistError, Mpi, Nccl, Op};

#[test]
fn nccl_starts_or_says_what_is_missing() {
    let world = Mpi::init().expect("MPI starts a one-rank job");
    let nccl = match Nccl::init(&world) {
        Err(DistError::Unavailable(why)) => {
            let named = ["libcuda", "libnccl", "GPU", "NCCL error"];
            assert!(named.iter().any(|n| why.contains(n)), "{why}");
            return;
        }
        Err(e) => panic!("expected the backend to be unavailable, got: {e}"),
        Ok(nccl) => nccl,
    };
    assert_eq!((nccl.rank(), nccl.size()), (0, 1));
    let mut sum = vec![1.5f32, -2.0, 3.25];
    nccl.all_reduce_sum(&mut sum).unwrap();
    assert_eq!(sum, [1.5, -2.0, 3.25]);
    let mut gathered = vec![0f32; 3];
    nccl.all_gather(&sum, &mut gathered).unwrap();
    assert_eq!(gathered, sum);
    let mut bytes = b"step".to_vec();
    nccl.broadcast_vec(0, &mut bytes).unwrap();
    assert_eq!(bytes, b"step");
    let stats = nccl.stats();
    // One rank: the all-reduce is a no-op, the rest run through NCCL.
    assert_eq!(stats.op(Op::AllReduce).calls, 0);
    assert_eq!(stats.op(Op::AllGather).bytes, 12);
    assert_eq!(stats.op(Op::Broadcast).calls, 2);
}
