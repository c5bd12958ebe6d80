//! The trace format: what a hit, a run's header and its summary look like
//! once symbolized. JSON Lines files are one [`TraceLine`] per line; the
//! same types feed the headless output, the dashboard and the exports.

use std::{
    fmt,
    hash::{BuildHasher as _, Hash, Hasher},
    ops::Deref,
    sync::{Arc, OnceLock},
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// Separates a frame's inlined calls in its string.
pub const INLINED: &str = " inlined ";

/// A symbolized stack, innermost frame first. Hits with the same raw stack
/// share one (the symbolizer interns them), and its JSON array is rendered
/// once, on the first hit written: escaping the same frames for every hit
/// took a quarter of the reader's time.
#[derive(Clone, Default)]
pub struct Stack(Arc<StackFrames>);

#[derive(Default)]
struct StackFrames {
    frames: Vec<Arc<str>>,
    json: OnceLock<Box<RawValue>>,
    /// The frames' hash, computed once: the dashboard's tally of stacks
    /// hashes a hit's stacks on every hit.
    hash: OnceLock<u64>,
}

impl Stack {
    pub fn new(frames: Vec<Arc<str>>) -> Self {
        Self(Arc::new(StackFrames {
            frames,
            json: OnceLock::new(),
            hash: OnceLock::new(),
        }))
    }

    /// The same shared stack (not merely equal frames): what interning
    /// gives hits with the same raw stack.
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl Deref for Stack {
    type Target = [Arc<str>];

    fn deref(&self) -> &[Arc<str>] {
        &self.0.frames
    }
}

impl<'a> IntoIterator for &'a Stack {
    type Item = &'a Arc<str>;
    type IntoIter = std::slice::Iter<'a, Arc<str>>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.frames.iter()
    }
}

impl From<Vec<Arc<str>>> for Stack {
    fn from(frames: Vec<Arc<str>>) -> Self {
        Self::new(frames)
    }
}

impl FromIterator<Arc<str>> for Stack {
    fn from_iter<I: IntoIterator<Item = Arc<str>>>(frames: I) -> Self {
        Self::new(frames.into_iter().collect())
    }
}

impl PartialEq for Stack {
    fn eq(&self, other: &Self) -> bool {
        Self::ptr_eq(self, other) || self.0.frames == other.0.frames
    }
}

impl Eq for Stack {}

/// By the frames' text, like `Eq`: two stacks with the same frames hash
/// alike even when they are not the same shared stack (the symbolizer's
/// cache may have dropped one and made the other).
impl Hash for Stack {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let hash = self
            .0
            .hash
            .get_or_init(|| foldhash::fast::FixedState::default().hash_one(&self.0.frames));
        state.write_u64(*hash);
    }
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.0.frames).finish()
    }
}

impl Stack {
    /// The frames as a JSON array, rendered on the first call and kept;
    /// None if they cannot be (never, for strings).
    pub fn json(&self) -> Option<&RawValue> {
        if let Some(json) = self.0.json.get() {
            return Some(json);
        }
        let json = serde_json::value::to_raw_value(&self.0.frames).ok()?;
        Some(self.0.json.get_or_init(|| json))
    }
}

impl Stack {
    /// The frames as a JSON array, without rendering it into the stack's
    /// cache: for a stack written once (an aggregate line), where the
    /// cache would only keep the text alive (2 to 5 KB a stack, for as
    /// many stacks as the kernel counted).
    pub fn serialize_frames<S: Serializer>(stack: &Self, serializer: S) -> Result<S::Ok, S::Error> {
        match stack.0.json.get() {
            Some(json) => json.serialize(serializer),
            None => stack.0.frames.serialize(serializer),
        }
    }
}

impl Serialize for Stack {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.json() {
            Some(json) => json.serialize(serializer),
            None => self.0.frames.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Stack {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<Arc<str>>::deserialize(deserializer).map(Self::new)
    }
}

/// Bumped on incompatible changes of the JSONL layout.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum TraceLine {
    Header(Header),
    Hit(HitRecord),
    /// A target added, moved, removed, paused or resumed while tracing.
    Change(ChangeRecord),
    /// Exact counts from the kernel, written at the end (before the
    /// summary): one per target, process, comm and stack.
    Aggregate(AggregateRecord),
    Summary(Summary),
}

/// The hits of one target by one process (and comm) with one stack, as the
/// BPF program counted them: every hit, recorded or not.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AggregateRecord {
    /// The target as the user wrote it (its current name, if it was moved).
    pub target: Arc<str>,
    /// The instruction at the hits, named: the accessing one of a data
    /// target, the target itself for an execute one.
    pub ip_sym: Arc<str>,
    pub pid: u32,
    pub comm: Arc<str>,
    pub count: u64,
    /// Hits per CPU, by CPU number, CPUs without hits left out.
    pub cpus: Vec<CpuHits>,
    /// The calling function of an execute target, the accessing one of a
    /// data target (as [`HitRecord::caller`]); `[unknown]` without a stack.
    pub caller: Arc<str>,
    /// False when the kernel had no room left for this stack's frames
    /// (`--max-stacks`): its hits are counted here, without frames.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub stack_stored: bool,
    /// Written once per file, so without keeping its JSON
    /// ([`Stack::serialize_frames`]).
    #[serde(default, serialize_with = "Stack::serialize_frames")]
    pub kstack: Stack,
    #[serde(default, serialize_with = "Stack::serialize_frames")]
    pub ustack: Stack,
}

/// The hits of an aggregate on one CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuHits {
    pub cpu: u32,
    pub hits: u64,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// One change of the targets while tracing (`--control`, the dashboard's
/// keys): hits after it carry the target's new name and address.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRecord {
    /// CLOCK_MONOTONIC nanoseconds when the change was made.
    pub ts_ns: u64,
    /// `add`, `move`, `remove`, `pause` or `resume`.
    pub action: String,
    /// The target's number: its place in the header's `targets`, then in
    /// the order targets were added (a removed target keeps its number).
    pub id: usize,
    /// What the target watched before (not for `add`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<TargetInfo>,
    /// What it watches now (not for `remove`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<TargetInfo>,
    /// How a move was made: `modify` (PERF_EVENT_IOC_MODIFY_ATTRIBUTES, the
    /// same events and debug registers) or `reopen` (new events armed
    /// before the old ones closed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Why a move was made by reopening: the kernel's refusal to modify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// The kernel's ids of the target's events (PERF_EVENT_IOC_ID) before
    /// and after the change: a move by `modify` keeps them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_ids_before: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_ids: Vec<u64>,
}

/// One address a target watched, when it was moved while tracing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchSummary {
    pub target: String,
    pub symbol: String,
    pub addr: String,
    pub mode: String,
    /// Hits recorded while it watched this.
    pub hits: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format_version: u32,
    pub tool: String,
    pub kernel_release: String,
    pub hostname: String,
    /// Wall-clock start, seconds since the Unix epoch.
    pub start_unix_s: f64,
    /// CLOCK_MONOTONIC at start: `ts_ns - start_monotonic_ns` is time into the run.
    pub start_monotonic_ns: u64,
    pub command_line: Vec<String>,
    pub targets: Vec<TargetInfo>,
}

/// One armed target, as written and as resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetInfo {
    pub target: String,
    pub symbol: String,
    pub addr: String,
    pub mode: String,
    pub len: u8,
    pub space: String,
}

/// A function argument as read from its register.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arg {
    pub name: Arc<str>,
    /// None (null) when the argument is not captured: it is in an xmm
    /// register, on the stack, or where hwbp cannot tell ([`crate::target::abi`]).
    pub value: Option<String>,
    /// The C type, when BTF (kernel) or DWARF (user) names it.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub ty: Option<Arc<str>>,
    /// Where an argument not captured is: `xmm0`, `rdi, rsi` (an
    /// aggregate), `stack`, or `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Arc<str>>,
}

impl Arg {
    /// The value as the headless line shows it: `7`, or
    /// `<not captured: double in xmm0>`.
    pub fn shown(&self) -> std::borrow::Cow<'_, str> {
        if let Some(value) = &self.value {
            return value.into();
        }
        let ty = self.ty.as_deref().unwrap_or("?");
        match self.location.as_deref() {
            Some("stack") => format!("<not captured: {ty} on the stack>"),
            Some("unknown") | None => format!("<not captured: {ty}, register unknown>"),
            Some(registers) => format!("<not captured: {ty} in {registers}>"),
        }
        .into()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HitRecord {
    /// CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns).
    pub ts_ns: u64,
    pub cpu: u32,
    pub pid: u32,
    pub tid: u32,
    pub comm: Arc<str>,
    /// The target as the user wrote it.
    pub target: Arc<str>,
    pub symbol: Arc<str>,
    pub addr: String,
    pub mode: Arc<str>,
    pub ip: String,
    pub ip_sym: Arc<str>,
    /// The value at a data target after the access (none where the hit
    /// comes before it: an arm64 write or rw watchpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<u64>,
    /// The value before this access: the previous hit's, or the one read
    /// when the target was armed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_value: Option<u64>,
    /// The C type of a data target, when BTF names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_type: Option<String>,
    /// `value` decoded by `value_type` (`-1`, `true`, `0xffff…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_value_text: Option<String>,
    /// Argument registers of an execute target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<Arg>>,
    /// Innermost frame first. A frame reads `func+0xOFF`, then
    /// ` (file:line)` where debug info has it, then ` inlined FUNC (file:line)`
    /// for each call inlined at that address (see [`crate::record::symbolize`]).
    #[serde(default)]
    pub kstack: Stack,
    #[serde(default)]
    pub ustack: Stack,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSummary {
    pub target: String,
    pub symbol: String,
    pub addr: String,
    pub mode: String,
    /// Hits recorded (lines in the trace).
    pub hits: u64,
    /// Every hit the BPF program counted (that passed the filters and the
    /// condition), recorded or not: `hits + dropped + unsampled +
    /// unrecorded + after_limit`.
    #[serde(default)]
    pub counted: u64,
    /// Hits counted but given no record by choice (`--records sample:N`
    /// or `none`); not lost. Left out when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unsampled: u64,
    /// Hits missing from the aggregates because the kernel's table was full
    /// (`--max-keys`). Left out when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub agg_full: u64,
    /// Hits counted under a stack whose frames the kernel had no room for
    /// (`--max-stacks`). Left out when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stack_full: u64,
    /// Hits lost because their record found no place in the ring buffer:
    /// it was full, or (`dropped_busy`) its lock stayed taken.
    pub dropped: u64,
    /// Of `dropped`, records lost with room left: another CPU held the ring
    /// buffer's lock through every try (a hit in kernel code only tries
    /// it). Left out when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_busy: u64,
    /// Records written only after a try found the ring buffer's lock taken
    /// by another CPU: kept, not lost. Left out when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retried: u64,
    /// Hits rejected in the kernel: by --comm/--tid, and hwbp-trace's own
    /// (a tracer never records itself).
    #[serde(default)]
    pub filtered: u64,
    /// Hits the target's condition (`TARGET if COND`) rejected in the
    /// kernel: not recorded, not in `hits`. Left out when 0 (a target
    /// without a condition).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rejected: u64,
    /// arm64: traps that repeated the one before, the same execution of
    /// the instruction (an interrupt ended the kernel's single step over it
    /// early; docs/arm64.md): not hits, not recorded, not lost, but in
    /// `kernel_count`. Left out when 0 (always on x86-64).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retraps: u64,
    #[serde(default)]
    pub kstack_errors: u64,
    #[serde(default)]
    pub ustack_errors: u64,
    /// Hits received after -n was reached, not recorded.
    #[serde(default)]
    pub after_limit: u64,
    /// Times the kernel counted the breakpoint firing (the perf events'
    /// own counts): the ground truth the other numbers add up to.
    #[serde(default)]
    pub kernel_count: u64,
    /// Hits the kernel counted but never handed to the BPF program
    /// (`kernel_count - hits_seen_by_bpf`): lost before recording.
    #[serde(default)]
    pub missed: u64,
    /// Hits the BPF program recorded that hwbp-trace never wrote: tracing
    /// ended on an error before it read them (or a record was malformed).
    #[serde(default)]
    pub unrecorded: u64,
    /// For a target moved while tracing, what it watched in turn, each
    /// with its hits: they add up to `hits`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watches: Vec<WatchSummary>,
    /// The target was removed while tracing (`--control`, the dashboard).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub targets: Vec<TargetSummary>,
    /// Every hit lost, all targets together.
    pub lost: u64,
    pub duration_s: f64,
    /// Why tracing ended: `signal`, `duration`, `max-hits`, `process-exit`, `error`.
    pub end_reason: String,
    /// This file stopped receiving hits (a write failed, e.g. disk full):
    /// it holds fewer hit lines than `hits`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trace_truncated: bool,
    /// Trace files that could not be written completely (not in the file).
    #[serde(skip)]
    pub output_errors: Vec<String>,
    /// Why tracing ended early when `end_reason` is `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How a `-- CMD` ended, when the trace ended with it (`end_reason`
    /// `process-exit`), as a shell's `$?` says it: its exit code, or 128 +
    /// the signal's number when a signal killed it. hwbp-trace exits with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    /// The signal that killed the command (`SIGKILL`), when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// Which hits got a record (`--records`): `all`, `sample:N` or `none`.
    #[serde(default = "all_records")]
    pub records: String,
}

fn all_records() -> String {
    "all".to_owned()
}

/// The frame under an execute target's own in its stacks (the kernel one
/// when there is one): its caller's.
pub fn stack_caller<'a>(kstack: &'a Stack, ustack: &'a Stack) -> Option<&'a str> {
    let stack = if kstack.is_empty() { ustack } else { kstack };
    stack.get(1).map(|frame| &**frame)
}

/// The function a caller's frame names: the innermost of the calls
/// inlined there, the code that made the call or the access (a Rust
/// atomic store names `atomic_store`, as gdb's first frame does; its
/// enclosing function is in the stack); `[unknown]` without one.
pub fn frame_caller(frame: Option<&str>) -> &str {
    frame.map_or("[unknown]", last_function)
}

impl HitRecord {
    /// Who made the hit: the calling function of an execute hit (the frame
    /// under the target in its stack; at a user function's first
    /// instruction that is the return address at the stack pointer, which
    /// the symbolizer puts there), the accessing function of a data hit;
    /// `[unknown]` without a stack. The one answer the dashboard's callers
    /// and `report --by caller` give, read from a live hit or a JSONL line.
    pub fn caller(&self) -> &str {
        let frame = if &*self.mode == "x" {
            stack_caller(&self.kstack, &self.ustack)
        } else {
            Some(&*self.ip_sym)
        };
        frame_caller(frame)
    }

    /// The headless line, ftrace-like:
    /// `comm-tid [cpu] seconds: target mode ip_sym value`. One line whatever
    /// the traced program named itself or its symbols: control characters
    /// are escaped ([`crate::printable`]).
    pub fn line(&self) -> String {
        let secs = self.ts_ns / 1_000_000_000;
        let micros = (self.ts_ns % 1_000_000_000) / 1000;
        // Everything after the comm is escaped at once below, so that no
        // field can be forgotten; the comm first, so that it pads by what shows.
        let head = format!(
            "{:>16}-{:<7} [{:03}] {secs}.{micros:06}: ",
            crate::printable::printable(&self.comm),
            self.tid,
            self.cpu
        );
        let mut line = format!("{} {}", self.target, self.mode);
        // At a function's entry the ip names the function itself: the call
        // `vfs_read(file=…, …)` says it all.
        let entry = format!("{}+0x0", self.symbol);
        if self.args.is_none()
            || !(*self.ip_sym == *entry || self.ip_sym.starts_with(&format!("{entry} ")))
        {
            line.push(' ');
            // The full frame (inlined calls, paths) is in the JSONL.
            line.push_str(&short_frame(&self.ip_sym));
        }
        if let Some(value) = self.value {
            match (&self.value_text, &self.old_value_text, self.old_value) {
                (Some(text), Some(old), _) => line.push_str(&format!(" value={old}→{text}")),
                (Some(text), None, _) => line.push_str(&format!(" value={text}")),
                (None, _, Some(old)) => {
                    line.push_str(&format!(" value={old}→{value} ({old:#x}→{value:#x})"))
                }
                (None, _, None) => line.push_str(&format!(" value={value} ({value:#x})")),
            }
        } else if let Some(old) = self.old_value {
            // Read before the access (arm64): the new value is not known yet.
            match &self.old_value_text {
                Some(text) => line.push_str(&format!(" value={text}→?")),
                None => line.push_str(&format!(" value={old}→? ({old:#x}→?)")),
            }
        }
        if let Some(args) = &self.args {
            let args: Vec<String> = args
                .iter()
                .map(|a| format!("{}={}", a.name, a.shown()))
                .collect();
            let func = self.symbol.split('+').next().unwrap_or(&self.symbol);
            line.push_str(&format!(" {func}({})", args.join(", ")));
        }
        head + &crate::printable::printable(&line)
    }
}

/// The function names in a frame string, outermost first: the frame's own
/// function, then the functions inlined into it at that address.
/// `vfs_read+0x10` → `[vfs_read]`; `f+0x4 (a.rs:3) inlined g (b.rs:9)` →
/// `[f, g]`; a raw address stays as it is.
pub fn frame_functions(frame: &str) -> Vec<&str> {
    let separators = &*SEPARATORS;
    let mut out = Vec::new();
    let mut start = 0;
    let ends = separators.inlined.find_iter(frame.as_bytes());
    for end in ends.chain(std::iter::once(frame.len())) {
        let part = &frame[start..end];
        out.push(if start == 0 {
            own_function(part)
        } else {
            before(&separators.location, part)
        });
        start = end + INLINED.len();
    }
    out
}

/// The last of [`frame_functions`], without gathering them: the innermost
/// function at that address (a hit's caller is counted by it).
pub fn last_function(frame: &str) -> &str {
    let separators = &*SEPARATORS;
    match separators.inlined.find_iter(frame.as_bytes()).last() {
        Some(at) => before(&separators.location, &frame[at + INLINED.len()..]),
        None => own_function(frame),
    }
}

/// What splits a frame string, searched for once made: the dashboard's
/// and the summary's tallies split a frame of every hit.
struct Separators {
    inlined: memchr::memmem::Finder<'static>,
    location: memchr::memmem::Finder<'static>,
    module: memchr::memmem::Finder<'static>,
    offset: memchr::memmem::FinderRev<'static>,
}

static SEPARATORS: std::sync::LazyLock<Separators> = std::sync::LazyLock::new(|| Separators {
    inlined: memchr::memmem::Finder::new(INLINED),
    location: memchr::memmem::Finder::new(" ("),
    module: memchr::memmem::Finder::new(" ["),
    offset: memchr::memmem::FinderRev::new("+0x"),
});

/// `text` up to the first match of `finder`, or all of it. The separators
/// are ASCII, so a match is on a character boundary.
fn before<'a>(finder: &memchr::memmem::Finder<'_>, text: &'a str) -> &'a str {
    match finder.find(text.as_bytes()) {
        Some(at) => &text[..at],
        None => text,
    }
}

/// A frame's own function, from the part before any inlined call:
/// `func+0x1f (file:line)` or `func+0x1f [module]` → `func`; a raw
/// address or `[file+0x…]` stays as it is.
fn own_function(first: &str) -> &str {
    let separators = &*SEPARATORS;
    let name = before(&separators.location, first);
    // `func+0x1f [module]`: the module goes, like the offset.
    let func = match separators.module.find(name.as_bytes()) {
        Some(at) if !name.starts_with('[') => &name[..at],
        _ => name,
    };
    match separators.offset.rfind(func.as_bytes()) {
        Some(at) if at > 0 && !func.starts_with('[') => &func[..at],
        _ => func,
    }
}

/// A frame for one line of text: without inlined calls, the file's
/// directories or the toolchain's path: `f+0x1f (main.rs:42)`.
pub fn short_frame(frame: &str) -> String {
    let own = frame.split(INLINED).next().unwrap_or(frame);
    match own.split_once(" (") {
        Some((func, loc)) => {
            let loc = loc.trim_end_matches(')');
            let short = loc.rsplit('/').next().unwrap_or(loc);
            format!("{func} ({short})")
        }
        None => own.to_owned(),
    }
}

/// `{n:#x}`, as addresses and raw registers are written, without the
/// formatting machinery (several per hit).
pub fn hex(n: u64) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 18];
    let mut at = text.len();
    let mut rest = n;
    loop {
        at -= 1;
        text[at] = DIGITS[(rest & 0xf) as usize];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    at -= 2;
    text[at..at + 2].copy_from_slice(b"0x");
    // ASCII digits: always UTF-8.
    String::from(std::str::from_utf8(&text[at..]).unwrap_or_default())
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    /// An aggregate line reads back as it was written (a JSON object keyed
    /// by CPU number would not: the tag's buffering loses the keys' type).
    #[test]
    fn aggregate_lines_round_trip() {
        let line = TraceLine::Aggregate(AggregateRecord {
            target: "t".into(),
            ip_sym: "f+0x3".into(),
            pid: 7,
            comm: "c".into(),
            count: 5,
            cpus: vec![CpuHits { cpu: 0, hits: 2 }, CpuHits { cpu: 3, hits: 3 }],
            caller: "g".into(),
            stack_stored: false,
            kstack: Stack::default(),
            ustack: vec![Arc::from("f+0x3"), Arc::from("g+0x9")].into(),
        });
        let text = serde_json::to_string(&line).expect("serializes");
        assert!(text.starts_with(r#"{"type":"aggregate","#), "{text}");
        assert!(text.contains(r#""stack_stored":false"#), "{text}");
        let back: TraceLine = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, line);
    }

    use super::*;

    fn hit() -> HitRecord {
        HitRecord {
            ts_ns: 12_345_678_901_234,
            cpu: 1,
            pid: 100,
            tid: 101,
            comm: "fx_user".into(),
            target: "counter".into(),
            symbol: "counter".into(),
            addr: "0x5000".into(),
            mode: "w".into(),
            ip: "0x1234".into(),
            ip_sym: "bump+0x1f".into(),
            value: Some(42),
            args: None,
            kstack: Stack::default(),
            ustack: vec!["bump+0x1f".into(), "main+0x10".into()].into(),
            ..Default::default()
        }
    }

    #[test]
    fn jsonl_round_trip() {
        let line = TraceLine::Hit(hit());
        let text = serde_json::to_string(&line).expect("serialize");
        assert!(
            text.starts_with(r#"{"type":"hit","ts_ns":12345678901234,"#),
            "{text}"
        );
        assert!(
            !text.contains("\"args\""),
            "absent args are omitted: {text}"
        );
        let back: TraceLine = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, line);
    }

    #[test]
    fn headless_line() {
        assert_eq!(
            hit().line(),
            "         fx_user-101     [001] 12345.678901: counter w bump+0x1f value=42 (0x2a)"
        );
    }

    /// A comm chosen to clear the terminal, or to split the line in two,
    /// shows escaped; so do symbols and argument values.
    #[test]
    fn headless_line_escapes_control_characters() {
        let mut h = hit();
        h.comm = "\x1b[2J\x1b[41m".into();
        assert_eq!(
            h.line(),
            "     \\e[2J\\e[41m-101     [001] 12345.678901: counter w bump+0x1f value=42 (0x2a)"
        );
        h.comm = "a\nb".into();
        h.ip_sym = "bu\rmp+0x1f".into();
        assert_eq!(
            h.line(),
            "            a\\nb-101     [001] 12345.678901: counter w bu\\rmp+0x1f value=42 (0x2a)"
        );
        h.args = Some(vec![Arg {
            name: "s".into(),
            value: Some("\u{7}".into()),
            ty: None,
            location: None,
        }]);
        assert!(h.line().ends_with(" counter(s=\\x07)"), "{}", h.line());
        assert!(!h.line().chars().any(char::is_control), "{}", h.line());
    }

    #[test]
    fn headless_line_old_new_and_args() {
        let mut h = hit();
        h.old_value = Some(41);
        assert!(
            h.line()
                .ends_with("counter w bump+0x1f value=41→42 (0x29→0x2a)"),
            "{}",
            h.line()
        );
        h.value_type = Some("int".into());
        h.value_text = Some("42".into());
        h.old_value_text = Some("-1".into());
        assert!(
            h.line().ends_with("counter w bump+0x1f value=-1→42"),
            "{}",
            h.line()
        );

        let mut h = hit();
        h.target = "vfs_read".into();
        h.symbol = "vfs_read".into();
        h.mode = "x".into();
        h.ip_sym = "vfs_read+0x0".into();
        h.value = None;
        h.args = Some(vec![
            Arg {
                name: "file".into(),
                value: Some("0xffff1".into()),
                ty: Some("struct file *".into()),
                location: None,
            },
            Arg {
                name: "count".into(),
                value: Some("131072".into()),
                ty: Some("size_t".into()),
                location: None,
            },
        ]);
        assert!(
            h.line()
                .ends_with(": vfs_read x vfs_read(file=0xffff1, count=131072)"),
            "{}",
            h.line()
        );
        let text = serde_json::to_string(&TraceLine::Hit(h.clone())).expect("serialize");
        assert!(
            text.contains(r#"{"name":"file","value":"0xffff1","type":"struct file *"}"#),
            "{text}"
        );
        let back: TraceLine = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, TraceLine::Hit(h));

        // Arguments not captured: a null value, the type, where it is.
        let mut h = hit();
        h.target = "scale".into();
        h.symbol = "scale".into();
        h.mode = "x".into();
        h.ip_sym = "scale+0x0".into();
        h.value = None;
        let not_captured = |name: &str, ty: &str, location: &str| Arg {
            name: name.into(),
            value: None,
            ty: Some(ty.into()),
            location: Some(location.into()),
        };
        h.args = Some(vec![
            not_captured("f", "double", "xmm0"),
            Arg {
                name: "k".into(),
                value: Some("7".into()),
                ty: Some("int".into()),
                location: None,
            },
            not_captured("s", "struct big", "stack"),
            not_captured("p", "struct pair", "rsi, rdx"),
            not_captured("n", "int", "unknown"),
        ]);
        assert!(
            h.line().ends_with(
                ": scale x scale(f=<not captured: double in xmm0>, k=7, \
                 s=<not captured: struct big on the stack>, \
                 p=<not captured: struct pair in rsi, rdx>, \
                 n=<not captured: int, register unknown>)"
            ),
            "{}",
            h.line()
        );
        let text = serde_json::to_string(&TraceLine::Hit(h.clone())).expect("serialize");
        assert!(
            text.contains(
                r#"{"name":"f","value":null,"type":"double","location":"xmm0"},{"name":"k","value":"7","type":"int"}"#
            ),
            "{text}"
        );
        let back: TraceLine = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, TraceLine::Hit(h));
    }

    #[test]
    fn short_frames() {
        assert_eq!(
            short_frame("f+0x1f (/work/src/main.rs:42) inlined g (/x/y.rs:1)"),
            "f+0x1f (main.rs:42)"
        );
        assert_eq!(short_frame("vfs_read+0x0"), "vfs_read+0x0");
        assert_eq!(short_frame("xfs_read+0x10 [xfs]"), "xfs_read+0x10 [xfs]");
    }

    #[test]
    fn hex_as_format_writes_it() {
        for n in [
            0,
            1,
            0xf,
            0x10,
            0xdead_beef,
            u64::MAX,
            1 << 63,
            0x5555_5557_4a60,
        ] {
            assert_eq!(hex(n), format!("{n:#x}"));
        }
    }

    #[test]
    fn functions_of_frames() {
        assert_eq!(frame_functions("vfs_read+0x10"), ["vfs_read"]);
        assert_eq!(frame_functions("xfs_read+0x10 [xfs]"), ["xfs_read"]);
        assert_eq!(frame_functions("0xffff8000"), ["0xffff8000"]);
        assert_eq!(
            frame_functions("[libc.so.6+0x1234]"),
            ["[libc.so.6+0x1234]"]
        );
        assert_eq!(
            frame_functions("main+0x4 (src/main.rs:3) inlined a::<b>::c (src/lib.rs:9) inlined d"),
            ["main", "a::<b>::c", "d"]
        );
        // The last function is the last of them, whatever the frame.
        for frame in [
            "vfs_read+0x10",
            "xfs_read+0x10 [xfs]",
            "0xffff8000",
            "[libc.so.6+0x1234]",
            "main+0x4 (src/main.rs:3) inlined a::<b>::c (src/lib.rs:9) inlined d",
            "a inlined inlined b",
            " inlined x",
            "",
            "f+0x1 (a (b).rs:1) inlined g (c.rs:2)",
        ] {
            assert_eq!(
                Some(&last_function(frame)),
                frame_functions(frame).last(),
                "{frame:?}"
            );
        }
        assert_eq!(frame_functions("a inlined inlined b"), ["a", "inlined b"]);
    }
}
