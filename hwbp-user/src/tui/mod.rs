//! The live dashboard: hits per target as they happen.
//!
//! Split as in gitui and oryx: [`event`] (terminal input, ticks and the
//! session's messages through one channel), [`app`] (pure state and the key
//! handler), [`ui`] (render functions of `&App`), and here the loop that
//! ties them, generic over the ratatui [`Backend`] so that tests drive it
//! with a `TestBackend`.
//!
//! The dashboard runs on its own thread and copies the session's
//! [`SharedStats`] (and a `-- CMD`'s captured output) five times a second;
//! the collector never waits for it beyond that copy. It opens once the
//! session has armed (errors before print on the normal screen) and stays up
//! after the run ends until `q`.
//! The terminal is restored by a Drop guard and a chained panic hook.

pub mod app;
pub mod event;
mod prompt;
pub mod ui;

use std::{
    fs::{File, OpenOptions},
    io::{self, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    sync::{
        Arc, Once,
        atomic::{AtomicBool, Ordering},
        mpsc::Sender,
    },
    thread::{self, JoinHandle},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crossterm::{
    cursor, execute,
    terminal::{self, EnterAlternateScreen, LeaveAlternateScreen},
};
use ratatui::{
    Terminal,
    backend::{Backend, CrosstermBackend, TestBackend},
    layout::Size,
};
use tokio::sync::{Notify, oneshot};

use crate::{
    output::stats::SharedStats, output::stats::monotonic_ns, probe::aggregates::Records,
    probe::arm::Armament, probe::process::CommandOutput, record::format::ChangeRecord,
    record::format::Summary,
};
use app::{Action, App, CommandOutputView, Traced};
use event::{Event, Events};

/// 5 frames per second.
pub const TICK: Duration = Duration::from_millis(200);

/// What the dashboard shows besides the stats.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// `-o` files being written.
    pub outputs: Vec<String>,
    /// The traced process was started by us (`-- CMD`): quitting
    /// interrupts it, as Ctrl-C would in the shell.
    pub launched: bool,
    /// `--redact-addresses`.
    pub redact_addresses: bool,
    /// `--records`, shown in the status bar unless it is `all`.
    pub records: Records,
    /// The launched command's output, read from a pipe so that it does not
    /// write on the dashboard's screen (`o` shows it).
    pub output: Option<Arc<CommandOutput>>,
    /// Where `a`, `m`, `x` and space send their commands (`--control`'s
    /// lines); the session answers through [`Dashboard::change_answers`].
    pub changes: Option<tokio::sync::mpsc::UnboundedSender<String>>,
}

/// The dashboard thread, seen from the session's side.
pub struct Dashboard {
    tx: Sender<Event>,
    thread: Option<JoinHandle<io::Result<()>>>,
    /// Resolves when the dashboard thread ends.
    closed: Option<oneshot::Receiver<()>>,
}

impl Dashboard {
    /// Starts the dashboard thread; it waits for [`Dashboard::armed`]
    /// before it takes the terminal. `stop` is notified when the user quits.
    pub fn spawn(stats: SharedStats, stop: Arc<Notify>, config: Config) -> io::Result<Self> {
        let events = Events::new(TICK);
        let tx = events.sender();
        let (closed_tx, closed) = oneshot::channel();
        let thread = thread::Builder::new()
            .name("dashboard".into())
            .spawn(move || dashboard(events, &stats, &stop, config, closed_tx))?;
        Ok(Self {
            tx,
            thread: Some(thread),
            closed: Some(closed),
        })
    }

    pub fn armed(&self, armament: &Armament) {
        let _ = self.tx.send(Event::Armed(armament.clone()));
    }

    /// Where the session answers the dashboard's changes.
    pub fn change_answers(&self) -> impl Fn(Result<ChangeRecord, String>) + Send + Sync + 'static {
        let tx = self.tx.clone();
        move |result| {
            let _ = tx.send(Event::Changed(Box::new(result)));
        }
    }

    /// The session returned; the dashboard shows the final state, or
    /// closes when the session failed or was ended by a signal.
    pub fn finished(&self, result: Result<&Summary, String>) {
        let _ = self.tx.send(Event::Finished(result.cloned()));
    }

    /// Waits until the user quits; SIGINT, SIGTERM and SIGHUP close the
    /// dashboard too (the session's own handlers are gone by now).
    pub async fn until_closed(&mut self) {
        use tokio::signal::unix::{SignalKind, signal};
        let Some(closed) = self.closed.take() else {
            return;
        };
        let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            let _ = closed.await;
            return;
        };
        tokio::select! {
            _ = closed => return,
            _ = int.recv() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
        let _ = self.tx.send(Event::Quit);
    }

    /// Waits for the dashboard thread; the terminal is restored after it.
    pub fn join(mut self) -> anyhow::Result<()> {
        let _ = self.tx.send(Event::Quit);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => {
                result.map_err(|e| anyhow::anyhow!("the dashboard failed: {e}; try --no-tui"))
            }
            Some(Err(_)) => anyhow::bail!("the dashboard crashed (see above); try --no-tui"),
            None => Ok(()),
        }
    }
}

/// Ends the session however the dashboard thread ends, panics included.
struct StopOnDrop<'a>(&'a Notify);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

fn dashboard(
    mut events: Events,
    stats: &SharedStats,
    stop: &Notify,
    config: Config,
    _closed: oneshot::Sender<()>,
) -> io::Result<()> {
    let _stop = StopOnDrop(stop);
    let armament = loop {
        match events.wait() {
            Event::Armed(armament) => break armament,
            Event::Finished(_) | Event::Quit => return Ok(()),
            Event::Tick | Event::Key(_) | Event::Resize | Event::Changed(_) => {}
        }
    };
    let Config {
        outputs,
        launched,
        redact_addresses,
        records,
        output,
        changes,
    } = config;
    let name = match &armament.scope {
        crate::probe::arm::Scope::Process { pid, .. } => {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim().to_owned())
                .unwrap_or_default()
        }
        crate::probe::arm::Scope::SystemWide { .. } => String::new(),
    };
    let mut app = App::armed(&armament, name, launched, outputs);
    app.redact = redact_addresses;
    app.records = records;
    app.output = output
        .as_ref()
        .map(|o| CommandOutputView::new(o.name.clone()));
    let mut guard = TerminalGuard::enter()?;
    events.start_input();
    let exit = run(
        &mut guard.terminal,
        &mut app,
        &mut events,
        stats,
        output.as_deref(),
        changes.as_ref(),
    );
    // Stop reading keys before the terminal goes back to the shell.
    drop(events);
    drop(guard);
    let exit = exit?;
    if exit == Exit::Quit {
        stop.notify_one();
        interrupt_launched(&app);
    }
    Ok(())
}

/// Why the loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The user quit.
    Quit,
    /// The session failed, or a signal ended it.
    Closed,
}

/// The dashboard loop: draws on every tick and key until the user quits or
/// the session goes away. `output`: the launched command's, when captured.
pub fn run<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    events: &mut Events,
    stats: &SharedStats,
    output: Option<&CommandOutput>,
    changes: Option<&tokio::sync::mpsc::UnboundedSender<String>>,
) -> io::Result<Exit> {
    refresh(app, stats, output);
    draw(terminal, app)?;
    loop {
        match events.wait() {
            Event::Tick => refresh(app, stats, output),
            Event::Key(key) => match app.handle_key(key) {
                Action::None => {}
                Action::Quit => return Ok(Exit::Quit),
                Action::Redraw => terminal.clear()?,
                Action::Complete(prefix) => {
                    let pid = match app.traced {
                        Traced::Process { pid, .. } => Some(pid),
                        Traced::SystemWide { .. } => None,
                    };
                    let names = crate::target::list::names(&prefix, pid);
                    app.completed(names.map_err(|e| format!("{e:#}")));
                }
                Action::Change(line) => match changes {
                    Some(changes) if changes.send(line).is_ok() => {}
                    _ => app.message = Some("the trace has ended: nothing to change".into()),
                },
                Action::Snapshot => {
                    app.message = Some(
                        match terminal.size().and_then(|size| write_snapshot(app, size)) {
                            Ok(path) => format!("view written to {}", path.display()),
                            Err(e) => format!("could not write the view: {e}"),
                        },
                    );
                }
            },
            // draw() resizes; the clear repaints what the terminal reflowed.
            Event::Resize => terminal.clear()?,
            Event::Finished(Ok(summary)) => {
                refresh(app, stats, output);
                app.finish(&summary);
                if summary.end_reason == "signal" {
                    return Ok(Exit::Closed);
                }
                // The traced command may have written on the screen (through
                // /dev/tty, or all of it under -p).
                terminal.clear()?;
            }
            Event::Changed(result) => {
                // The stats hold an added target by now.
                refresh(app, stats, output);
                app.changed(*result);
            }
            Event::Finished(Err(_)) | Event::Quit => return Ok(Exit::Closed),
            Event::Armed(_) => {}
        }
        draw(terminal, app)?;
    }
}

/// Draws the view, and tells the App how the help fits the terminal drawn
/// on (its keys scroll the help no further than the end).
fn draw<B: Backend>(terminal: &mut Terminal<B>, app: &mut App) -> io::Result<()> {
    let area = terminal.draw(|f| ui::render(f, app))?.area;
    app.help_fit = ui::help_fit(area.as_size());
    Ok(())
}

fn refresh(app: &mut App, stats: &SharedStats, output: Option<&CommandOutput>) {
    // The only wait the collector can see: one copy under the lock.
    let copy = match stats.lock() {
        Ok(s) => s.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    app.refresh(copy, monotonic_ns());
    // Lines are shared, not copied: a copy is as cheap as the stats'.
    if let Some(output) = output {
        app.refresh_output(output.tail());
    }
}

/// Renders the current view as text.
pub fn view_text(app: &App, size: Size) -> io::Result<String> {
    let mut terminal = Terminal::new(TestBackend::new(size.width, size.height))?;
    terminal.draw(|f| ui::render(f, app))?;
    Ok(ui::buffer_text(terminal.backend().buffer()))
}

/// `e`: the view as text in `hwbp-dashboard-SECONDS.txt` in the current
/// directory.
fn write_snapshot(app: &App, size: Size) -> io::Result<PathBuf> {
    let text = view_text(app, size)?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for n in 0..100 {
        let path = PathBuf::from(match n {
            0 => format!("hwbp-dashboard-{stamp}.txt"),
            n => format!("hwbp-dashboard-{stamp}-{n}.txt"),
        });
        match create_private(&path) {
            Ok(mut file) => {
                file.write_all(text.as_bytes())?;
                return Ok(path);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "100 snapshots this second already",
    ))
}

/// A new file of mode 0600: never over an existing file, never through a
/// symlink (create_new is O_EXCL, which fails on a symlink, dangling or
/// not; O_NOFOLLOW says so twice).
fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Quitting a `-- CMD` run interrupts the command, as Ctrl-C does in the
/// shell (where the whole foreground process group gets SIGINT).
fn interrupt_launched(app: &App) {
    if let Traced::Process {
        pid,
        launched: true,
        ..
    } = app.traced
        && !app.process_exited()
        && pid > 0
        && parent_of(pid) == Some(std::process::id())
    {
        // SAFETY: kill(2) takes no pointers. `pid` was just seen as our own
        // child, and a child's pid is not reused before we reap it.
        unsafe { libc::kill(pid, libc::SIGINT) };
    }
}

/// The parent pid of a process, from /proc/PID/stat (`pid (comm) state
/// ppid ...`; the comm may hold spaces and parentheses, so read after the
/// last `)`).
fn parent_of(pid: i32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether the terminal is in raw mode on the alternate screen (by us).
static TERMINAL_TAKEN: AtomicBool = AtomicBool::new(false);

/// Raw mode and the alternate screen, undone on drop and on panic.
struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<io::Stdout>>,
}

impl TerminalGuard {
    fn enter() -> io::Result<Self> {
        install_panic_hook();
        terminal::enable_raw_mode()?;
        TERMINAL_TAKEN.store(true, Ordering::SeqCst);
        let guard = execute!(io::stdout(), EnterAlternateScreen, cursor::Hide)
            .and_then(|()| Terminal::new(CrosstermBackend::new(io::stdout())))
            .map(|terminal| Self { terminal });
        if guard.is_err() {
            restore_terminal();
        }
        guard
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Whether the dashboard has the terminal: then nothing else may write on
/// it (a message would land on the dashboard's screen).
pub fn terminal_taken() -> bool {
    TERMINAL_TAKEN.load(Ordering::SeqCst)
}

/// Leaves raw mode and the alternate screen, if we entered them; safe to
/// call from any thread, any number of times. Panic reports held back while
/// the dashboard had the terminal print after it, on the normal screen.
pub fn restore_terminal() {
    if TERMINAL_TAKEN.swap(false, Ordering::SeqCst) {
        let _ = terminal::disable_raw_mode();
        let _ = execute!(io::stdout(), LeaveAlternateScreen, cursor::Show);
    }
    let held = match HELD_PANICS.lock() {
        Ok(mut held) => std::mem::take(&mut *held),
        Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
    };
    for report in held {
        // Not eprintln!: after a hang-up stderr fails, and eprintln! panics.
        let _ = writeln!(io::stderr(), "{report}");
    }
}

thread_local! {
    /// Inside [`catch_unwind`] on this thread: a panic here is caught and
    /// handled (the session ends with an error), so the dashboard goes on.
    static CATCHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Reports of caught panics, held while the dashboard has the terminal.
static HELD_PANICS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// [`std::panic::catch_unwind`], told to the panic hook: a panic caught
/// here leaves the terminal to the dashboard (which then shows the error
/// the caller makes of it), and its report prints once the dashboard is
/// gone. Any other panic restores the terminal first, as the process or
/// the dashboard is about to go.
pub fn catch_unwind<R>(f: impl FnOnce() -> R + std::panic::UnwindSafe) -> thread::Result<R> {
    let outer = CATCHING.with(|c| c.replace(true));
    let result = std::panic::catch_unwind(f);
    CATCHING.with(|c| c.set(outer));
    result
}

/// Restores the terminal before the previous hook prints the panic, so
/// that the message lands on the normal screen; unless the panic is caught
/// by [`catch_unwind`] while the dashboard runs, whose report waits for the
/// terminal to come back.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CATCHING.with(|c| c.get()) && terminal_taken() {
                let thread = thread::current();
                let report = format!("thread '{}' {info}", thread.name().unwrap_or("<unnamed>"));
                match HELD_PANICS.lock() {
                    Ok(mut held) => held.push(report),
                    Err(poisoned) => poisoned.into_inner().push(report),
                }
                return;
            }
            restore_terminal();
            previous(info);
        }));
    });
}

#[cfg(test)]
mod tests;
