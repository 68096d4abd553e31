//! Checks every collective of the MPI communicator across real processes:
//! `mpirun -np N target/release/examples/comm_check`. Exits non-zero (and
//! prints which operation) on the first wrong result; `tools/test-all.sh`
//! runs it with 2 and 3 ranks. The communicator's counters must have
//! seen exactly those calls.

use std::process::ExitCode;

use herd_dist::{Communicator, Mpi, Op};

fn check(comm: &dyn Communicator) -> Result<(), String> {
    let (rank, size) = (comm.rank(), comm.size());
    let err = |e: herd_dist::DistError| e.to_string();
    // all-reduce: sum of (rank + i) over ranks.
    let mut v: Vec<f32> = (0..1000).map(|i| (rank + i) as f32).collect();
    comm.all_reduce_sum(&mut v).map_err(err)?;
    let ranks_sum = (size * (size - 1) / 2) as f32;
    if v.iter()
        .enumerate()
        .any(|(i, &x)| x != ranks_sum + (size * i) as f32)
    {
        return Err("all_reduce_sum gave a wrong sum".into());
    }
    // all-gather: rank r contributes [r, r].
    let mut out = vec![0f32; 2 * size];
    comm.all_gather(&[rank as f32; 2], &mut out).map_err(err)?;
    if out.chunks(2).enumerate().any(|(r, c)| c != [r as f32; 2]) {
        return Err(format!("all_gather gave {out:?}"));
    }
    // broadcast of a vector whose length only the root knows.
    let mut bytes = if rank == 0 {
        b"weights.safetensors".to_vec()
    } else {
        Vec::new()
    };
    comm.broadcast_vec(0, &mut bytes).map_err(err)?;
    if bytes != b"weights.safetensors" {
        return Err("broadcast_vec lost the root's bytes".into());
    }
    // A ring of point-to-point messages (the pipeline-parallel pattern).
    let next = (rank + 1) % size;
    let prev = (rank + size - 1) % size;
    let mut got = vec![0f32; 3];
    if rank % 2 == 0 {
        comm.send(next, &[rank as f32; 3]).map_err(err)?;
        comm.recv(prev, &mut got).map_err(err)?;
    } else {
        comm.recv(prev, &mut got).map_err(err)?;
        comm.send(next, &[rank as f32; 3]).map_err(err)?;
    }
    if got != [prev as f32; 3] {
        return Err(format!("rank {rank} received {got:?} from {prev}"));
    }
    // Bad input is an error on every rank, not a hang.
    if comm.send(size, &[0.0]).is_ok() {
        return Err("send to a missing rank succeeded".into());
    }
    comm.barrier().map_err(err)?;
    check_counts(comm)
}

/// The counters saw exactly the calls above (the failed send moved nothing).
fn check_counts(comm: &dyn Communicator) -> Result<(), String> {
    let size = comm.size() as u64;
    let stats = comm.stats();
    let expected = [
        (Op::AllReduce, 1, 4000),
        (Op::AllGather, 1, 8 * size),
        // broadcast_vec: the length, then the 19 bytes.
        (Op::Broadcast, 2, 8 + 19),
        (Op::Send, 1, 12),
        (Op::Recv, 1, 12),
        (Op::Barrier, 1, 0),
    ];
    for (op, calls, bytes) in expected {
        let got = stats.op(op);
        if (got.calls, got.bytes) != (calls, bytes) {
            return Err(format!(
                "{op:?} counted {} calls, {} bytes; expected {calls}, {bytes}",
                got.calls, got.bytes
            ));
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let comm = match Mpi::init() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match check(&comm) {
        Ok(()) => {
            println!(
                "rank {}/{}: all collectives correct",
                comm.rank(),
                comm.size()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rank {}: {e}", comm.rank());
            ExitCode::FAILURE
        }
    }
}
