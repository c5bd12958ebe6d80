//! Kernel tests of struct members by name, typed from the guest kernel's
//! BTF, written through a sysctl by a shell:
//! - `init_net.core.sysctl_somaxconn` (vmlinux BTF has no VAR for
//!   `init_net`; hwbp takes `struct net` after its name, checked against
//!   its room in kallsyms), through /proc/sys/net/core/somaxconn;
//! - `cdrom_sysctl_settings.autoclose`, a variable of the module cdrom,
//!   inserted for it: typed from the module's split BTF
//!   (/sys/kernel/btf/cdrom on top of vmlinux's), through
//!   /proc/sys/dev/cdrom/autoclose. Its address is checked against
//!   /proc/kallsyms plus the member's offset as bpftool (libbpf) reads
//!   the same BTF.
//!
//! and `list` of each variable's members.

use anyhow::{Context as _, Result, anyhow, ensure};

use super::results::{KernelTest, Results, Run, expect_frame};
use hwbp_tests::harness::{
    fixture::printed,
    trace::{Trace, hex_field, text_field, values},
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
    let target = &trace.header["targets"][0];
    let addr = hex_field(target, "addr")?;
    let init_net = results.addr("init_net_addr")?;
    ensure!(
        (init_net..init_net + 0x4000).contains(&addr) && target["len"] == 4,
        "init_net.core.sysctl_somaxconn armed at {addr:#x} (len {}), not 4 bytes inside \
         init_net at {init_net:#x}",
        target["len"]
    );
    expect_int_writes(&run, &trace, addr)?;
    expect_frame(&trace, "proc_sys_call_handler")?;
    let list = results.succeeded("somaxconn_list")?;
    let (listed, _, size) = listed(&list, "init_net.core.sysctl_somaxconn (int)")?;
    ensure!(
        listed == addr && size == 4,
        "list shows init_net.core.sysctl_somaxconn at {listed:#x} ({size} bytes), the trace \
         armed {addr:#x} (4 bytes)"
    );
    Ok(())
}

/// The module cdrom, which needs no other, registers /proc/sys/dev/cdrom
/// when inserted and keeps its settings in `static struct
/// cdrom_sysctl_settings cdrom_sysctl_settings` (bss; no BTF VAR: pahole
/// gives modules VARs of per-CPU variables only). Five writes to
/// autoclose by a shell, the last restoring its value (1, the module
/// parameter's default), as for somaxconn; with `-v`, which says which type
/// hwbp took. The oracle: the variable's address from /proc/kallsyms (its
/// `[cdrom]` line) and the struct as bpftool dumps it from
/// /sys/kernel/btf/cdrom (its size, each member's offset in bits). Then
/// `list` of its members.
pub(super) const CDROM: KernelTest = KernelTest {
    name: "cdrom",
    scenario: r#"
        insmod /lib/modules/cdrom.ko && fact cdrom_inserted yes
        fact cdrom_settings_addr "$(awk '$3 == "cdrom_sysctl_settings" && $4 == "[cdrom]" {
            print $1; exit }' /proc/kallsyms)"
        bpftool btf dump file /sys/kernel/btf/cdrom |
            awk '/^\[/ { p = / STRUCT .cdrom_sysctl_settings. / } p' > cdrom.btf
        run cdrom -v -q --no-tui -o cdrom.jsonl cdrom_sysctl_settings.autoclose \
            -- sh -c 'for v in 11 22 33 44 "$0"; do
                echo "$v" > /proc/sys/dev/cdrom/autoclose && echo "wrote $v"; done' \
            "$(cat /proc/sys/dev/cdrom/autoclose)"
        run cdrom_list list 'cdrom_sysctl_settings.*'
    "#,
    check: cdrom,
};

/// Exactly the 5 writes, at kallsyms' address of `cdrom_sysctl_settings`
/// plus bpftool's offset of `autoclose`, 4 bytes, each with the value
/// written, typed `int` (vmlinux's type, under the module's struct) and
/// decoded in decimal, from the module's sysctl handler; the type taken
/// from the struct named after the variable, of bpftool's size; `list`
/// shows the member at that address and offset.
fn cdrom(results: &Results) -> Result<()> {
    results
        .fact("cdrom_inserted")
        .context("insmod /lib/modules/cdrom.ko failed in the guest")?;
    let settings = results.addr("cdrom_settings_addr")?;
    let btf = results.read("cdrom.btf")?;
    let (size, offset) = bpftool_member(&btf, "autoclose")
        .with_context(|| format!("bpftool's dump of struct cdrom_sysctl_settings:\n{btf}"))?;
    let addr = settings + offset;
    let (run, trace) = results.traced("cdrom")?;
    let target = &trace.header["targets"][0];
    ensure!(
        hex_field(target, "addr")? == addr && target["len"] == 4,
        "cdrom_sysctl_settings.autoclose armed at {} (len {}), not at {addr:#x} \
         (kallsyms {settings:#x} + bpftool's offset {offset:#x}), 4 bytes",
        text_field(target, "addr")?,
        target["len"]
    );
    let rule = format!(
        "its type is taken to be `struct cdrom_sysctl_settings` ({size} bytes, {size} to the \
         next symbol)"
    );
    ensure!(
        run.stderr.contains(&rule),
        "-v does not say `{rule}`:\n{}",
        run.stderr
    );
    expect_int_writes(&run, &trace, addr)?;
    expect_frame(&trace, "proc_sys_call_handler")?;
    for hit in &trace.hits {
        let frames = hit["kstack"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        ensure!(
            frames
                .iter()
                .filter_map(|frame| frame.as_str())
                .any(|f| f.starts_with("cdrom_sysctl_handler+") && f.ends_with(" [cdrom]")),
            "a kernel stack without the module's cdrom_sysctl_handler [cdrom]: {hit}"
        );
    }
    let list = results.succeeded("cdrom_list")?;
    let (listed, listed_offset, size) = listed(&list, "cdrom_sysctl_settings.autoclose (int)")?;
    ensure!(
        (listed, listed_offset, size) == (addr, offset, 4),
        "list shows cdrom_sysctl_settings.autoclose at {listed:#x} +{listed_offset:#x} \
         ({size} bytes), not {addr:#x} +{offset:#x} (4 bytes)"
    );
    Ok(())
}

/// The run printed `wrote V` 5 times, and the trace has exactly those 5
/// writes at `addr`, in order, typed `int` and decoded in decimal.
fn expect_int_writes(run: &Run, trace: &Trace, addr: u64) -> Result<()> {
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
    let seen = values(trace)?;
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
    Ok(())
}

/// The address, offset and size `list` shows on the line ending with
/// `member` (`init_net.core.sysctl_somaxconn (int)`):
/// `0xADDRESS +0xOFFSET SIZE EXPR (TYPE)`.
fn listed(list: &Run, member: &str) -> Result<(u64, u64, u64)> {
    let line = list
        .stdout
        .lines()
        .find(|l| l.ends_with(&format!(" {member}")))
        .with_context(|| format!("list shows no {member}:\n{}", list.stdout))?;
    let hex = |word: Option<&str>, prefix: &str| {
        word.and_then(|w| w.strip_prefix(prefix))
            .and_then(|w| u64::from_str_radix(w, 16).ok())
            .ok_or_else(|| anyhow!("list shows `{line}`"))
    };
    let mut words = line.split_whitespace();
    let addr = hex(words.next(), "0x")?;
    let offset = hex(words.next(), "+0x")?;
    let size = words
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| anyhow!("list shows `{line}`"))?;
    Ok((addr, offset, size))
}

/// The struct's size and `member`'s byte offset in a struct record as
/// `bpftool btf dump` prints it:
///
/// ```text
/// [100865] STRUCT 'cdrom_sysctl_settings' size=1020 vlen=6
///         'info' type_id=100866 bits_offset=0
///         'autoclose' type_id=28 bits_offset=8000
/// ```
fn bpftool_member(dump: &str, member: &str) -> Result<(u64, u64)> {
    let mut lines = dump.lines();
    let number = |line: &str, key: &str| -> Result<u64> {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(key))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow!("no {key}N in `{line}`"))
    };
    let header = lines
        .next()
        .filter(|line| line.contains(" STRUCT "))
        .ok_or_else(|| anyhow!("no STRUCT record"))?;
    let size = number(header, "size=")?;
    let quoted = format!("'{member}' ");
    let line = lines
        .find(|line| line.trim_start().starts_with(&quoted))
        .ok_or_else(|| anyhow!("no member {member}"))?;
    let bits = number(line, "bits_offset=")?;
    ensure!(bits % 8 == 0, "{member} is a bit-field: `{line}`");
    Ok((size, bits / 8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bpftools_struct_records() {
        let dump = "[100865] STRUCT 'cdrom_sysctl_settings' size=1020 vlen=6\n\
                    \t'info' type_id=100866 bits_offset=0\n\
                    \t'autoclose' type_id=28 bits_offset=8000\n\
                    \t'autoeject' type_id=28 bits_offset=8032\n";
        assert_eq!(bpftool_member(dump, "autoclose").ok(), Some((1020, 1000)));
        assert_eq!(bpftool_member(dump, "autoeject").ok(), Some((1020, 1004)));
        assert!(bpftool_member(dump, "auto").is_err());
        assert!(bpftool_member("", "autoclose").is_err());
    }

    #[test]
    fn reads_list_lines() {
        let list = Run {
            rc: 0,
            stdout: "0xffffffffc0332008 +0x3e8           4 cdrom_sysctl_settings.autoclose (int)\n"
                .to_owned(),
            stderr: String::new(),
        };
        assert_eq!(
            listed(&list, "cdrom_sysctl_settings.autoclose (int)").ok(),
            Some((0xffffffffc0332008, 0x3e8, 4))
        );
        assert!(listed(&list, "cdrom_sysctl_settings.lock (int)").is_err());
    }
}
