//! Kernel tests of conditions (`TARGET if COND`): evaluated by the BPF
//! program on the guest's kernels (which also proves the verifier takes
//! the interpreter there), on a BTF-named argument and on a kernel
//! variable's value, exact against the fixture's own counts.

use anyhow::{Result, ensure};

use super::{
    by_command,
    results::{KernelTest, Results},
};
use hwbp_tests::harness::{
    fixture::printed,
    trace::{number, values},
};

/// vfs_read's `count`, named by BTF, and the comm: the fixture's 25 reads
/// of 4000 bytes and nothing else, without `--comm`.
pub(super) const VFS_COND: KernelTest = KernelTest {
    name: "vfs_cond",
    scenario: "run vfs_cond -q --no-tui -o vfs_cond.jsonl \\
               'vfs_read if count == 4000 && comm == \"fx_reads\"' \\
               -- fx_kernel read-as fx_reads /proc/version 25",
    check: vfs_cond,
};

fn vfs_cond(results: &Results) -> Result<()> {
    // Exactly the fixture's 25 calls of 4000 bytes.
    let (fixture, trace) = by_command::fixture_reads(results, "vfs_cond")?;
    // The fixture's other reads (the loader's, before it renamed itself)
    // are rejected, not lost: kernel_count adds up (parse_trace checks).
    for hit in &trace.hits {
        fixture.expect_vfs_read(hit)?;
    }
    Ok(())
}

/// A kernel variable's value: of the fixture's writes to pid_max, exactly
/// those above 100140 are kept, with their values.
pub(super) const PIDMAX_COND: KernelTest = KernelTest {
    name: "pidmax_cond",
    scenario: "run pidmax_cond -q --no-tui -o pidmax_cond.jsonl 'pid_max:w if value > 100140' \\
               -- fx_kernel pidmax 50",
    check: pidmax_cond,
};

fn pidmax_cond(results: &Results) -> Result<()> {
    let (run, trace) = results.traced("pidmax_cond")?;
    let written = printed(&run.stdout, "wrote ")?;
    ensure!(
        written.len() == 50,
        "the fixture reports {} writes, not 50",
        written.len()
    );
    let kept: Vec<u64> = written.iter().copied().filter(|&v| v > 100_140).collect();
    let seen = values(&trace)?;
    ensure!(seen == kept, "values kept {seen:?}, expected {kept:?}");
    // Left out of the summary when 0.
    let rejected = number(&trace.summary["targets"][0], "rejected").unwrap_or(0);
    ensure!(
        rejected as usize == written.len() - kept.len(),
        "{rejected} writes rejected, expected {}",
        written.len() - kept.len()
    );
    Ok(())
}
