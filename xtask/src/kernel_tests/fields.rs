//! Kernel tests of struct members by name, typed from the guest kernel's
//! BTF: `init_net.core.sysctl_somaxconn` (vmlinux BTF has no VAR for
//! `init_net`; hwbp takes `struct net` after its name, checked against its
//! room in kallsyms), written through /proc/sys/net/core/somaxconn, and
//! `list 'init_net.core.*'`.

use anyhow::{Context as _, Result, ensure};

use super::results::{KernelTest, Results, expect_frame};
use hwbp_tests::harness::{
    fixture::printed,
    trace::{hex_field, text_field, values},
};

/// Five writes to somaxconn by a shell (`echo V > …` is a builtin: the
/// shell writes itself), the last restoring the value it had; each prints
/// `wrote V`. Then the members of `init_net.core`, as `list` shows them.
pub(super) const SOMAXCONN: KernelTest = KernelTest {
    name: "somaxconn",
    scenario: r#"
        fact init_net_addr "$(addr_of init_net)"
        run somaxconn -q --no-tui -o somaxconn.jsonl init_net.core.sysctl_somaxconn \
            -- sh -c 'for v in 1000 2000 3000 4000 "$0"; do
                echo "$v" > /proc/sys/net/core/somaxconn && echo "wrote $v"; done' \
            "$(cat /proc/sys/net/core/somaxconn)"
        run somaxconn_list list 'init_net.core.*'
    "#,
    check: somaxconn,
};

/// Exactly the 5 writes, at one address inside `init_net`, each with the
/// value written, typed `int` and decoded in decimal, from the sysctl
/// handler; `list` shows that member at that address, 4 bytes of `int`.
fn somaxconn(results: &Results) -> Result<()> {
    let (run, trace) = results.traced("somaxconn")?;
    let written = printed(&run.stdout, "wrote ")?;
    ensure!(
        written.len() == 5,
        "the shell reports {} writes, not 5",
        written.len()
    );
    ensure!(
        trace.hits.len() == 5,
        "expected exactly 5 hits, the trace has {}",
        trace.hits.len()
    );
    let target = &trace.header["targets"][0];
    let addr = hex_field(target, "addr")?;
    let init_net = results.addr("init_net_addr")?;
    ensure!(
        (init_net..init_net + 0x4000).contains(&addr) && target["len"] == 4,
        "init_net.core.sysctl_somaxconn armed at {addr:#x} (len {}), not 4 bytes inside \
         init_net at {init_net:#x}",
        target["len"]
    );
    for hit in &trace.hits {
        ensure!(
            hex_field(hit, "addr")? == addr && text_field(hit, "mode")? == "w",
            "hit at another address or mode: {hit}"
        );
        ensure!(
            text_field(hit, "value_type")? == "int",
            "not typed int: {hit}"
        );
    }
    let seen = values(&trace)?;
    ensure!(
        seen == written,
        "values seen {seen:?} differ from values written {written:?}"
    );
    let texts: Vec<String> = trace
        .hits
        .iter()
        .map(|h| text_field(h, "value_text").map(str::to_owned))
        .collect::<Result<_>>()?;
    let decimal: Vec<String> = written.iter().map(u64::to_string).collect();
    ensure!(texts == decimal, "value_text {texts:?}, not {decimal:?}");
    expect_frame(&trace, "proc_sys_call_handler")?;

    let list = results.succeeded("somaxconn_list")?;
    let line = list
        .stdout
        .lines()
        .find(|l| l.ends_with(" init_net.core.sysctl_somaxconn (int)"))
        .with_context(|| format!("list shows no sysctl_somaxconn:\n{}", list.stdout))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    ensure!(
        words.first() == Some(&format!("{addr:#018x}").as_str()) && words.get(2) == Some(&"4"),
        "list shows `{line}`, the trace armed {addr:#x} (4 bytes)"
    );
    Ok(())
}
