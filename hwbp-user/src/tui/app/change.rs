//! The dashboard's changes of the targets while tracing: `a` adds one
//! (a prompt taking the target grammar), `m` moves the selected one (the
//! prompt starts from what it watches), `x` removes it after a `y`, space
//! pauses or resumes it. Each key sends the session a line as `--control`
//! takes it, by the target's number; the session's answer (the change or
//! why nothing changed) comes back as [`App::changed`] and shows in the
//! status line. A paused or removed target keeps its row and history,
//! marked in its name.

use crossterm::event::{KeyCode, KeyEvent};

use super::{Action, App, TargetView};
use crate::record::format::{ChangeRecord, TargetInfo};

/// Marks on a target's name.
pub const PAUSED: &str = " [paused]";
pub const REMOVED: &str = " [removed]";

/// A line being typed for a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    pub kind: PromptKind,
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptKind {
    /// `a`: the target to add.
    Add,
    /// `m`: where target N goes.
    Move(usize),
    /// `x`: `y` removes target N.
    Remove(usize),
}

impl Prompt {
    /// What the status line shows before the text.
    pub fn label(&self, targets: &[TargetView]) -> String {
        let name = |slot: usize| targets.get(slot).map_or("?", |t| t.target.as_str());
        match self.kind {
            PromptKind::Add => "add target:".to_owned(),
            PromptKind::Move(slot) => format!("move `{}` to:", name(slot)),
            PromptKind::Remove(slot) => format!("remove `{}`? y/n", name(slot)),
        }
    }
}

/// Longest line a prompt takes.
const PROMPT_MAX: usize = 256;

impl App {
    /// Whether target `slot` was removed.
    fn removed(&self, slot: usize) -> bool {
        self.removed_targets.get(slot).copied().unwrap_or(false)
    }

    /// `a`, `m`, `x` and space; None for any other key.
    pub(super) fn change_key(&mut self, key: KeyEvent) -> Option<Action> {
        let slot = self.selected;
        let kind = match key.code {
            KeyCode::Char('a') => PromptKind::Add,
            KeyCode::Char('m') => PromptKind::Move(slot),
            KeyCode::Char('x') => PromptKind::Remove(slot),
            KeyCode::Char(' ') => PromptKind::Move(usize::MAX),
            _ => return None,
        };
        if self.ended.is_some() {
            self.message = Some("the trace has ended: nothing to change".into());
            return Some(Action::None);
        }
        if kind != PromptKind::Add && self.removed(slot) {
            self.message = Some("this target was removed".into());
            return Some(Action::None);
        }
        if kind == PromptKind::Move(usize::MAX) {
            let paused = self.paused_targets.get(slot).copied().unwrap_or(false);
            let verb = if paused { "resume" } else { "pause" };
            return Some(Action::Change(format!("{verb} {slot}")));
        }
        let text = match kind {
            PromptKind::Move(slot) => self
                .targets
                .get(slot)
                .map(|t| t.target.trim_end_matches(PAUSED).to_owned())
                .unwrap_or_default(),
            _ => String::new(),
        };
        self.prompt = Some(Prompt { kind, text });
        Some(Action::None)
    }

    /// A key while a prompt is open.
    pub(super) fn prompt_key(&mut self, key: KeyEvent) -> Action {
        let Some(prompt) = self.prompt.as_mut() else {
            return Action::None;
        };
        if let PromptKind::Remove(slot) = prompt.kind {
            self.prompt = None;
            return match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => Action::Change(format!("remove {slot}")),
                _ => Action::None,
            };
        }
        match key.code {
            KeyCode::Enter => {
                let text = prompt.text.trim().to_owned();
                let kind = prompt.kind;
                self.prompt = None;
                if text.is_empty() {
                    return Action::None;
                }
                return Action::Change(match kind {
                    PromptKind::Move(slot) => format!("move {slot} {text}"),
                    _ => format!("add {text}"),
                });
            }
            KeyCode::Esc => self.prompt = None,
            // A bare symbol's start completes (not after BINARY:, +, :MODE).
            KeyCode::Tab if !prompt.text.is_empty() && !prompt.text.contains([':', '+', '/']) => {
                return Action::Complete(prompt.text.clone());
            }
            KeyCode::Backspace => {
                prompt.text.pop();
            }
            KeyCode::Char(c) if prompt.text.len() < PROMPT_MAX => prompt.text.push(c),
            _ => {}
        }
        Action::None
    }

    /// The names that start with the prompt's text (Tab): one completes
    /// it, several extend it to what they share and show in the status
    /// line, none says so.
    pub fn completed(&mut self, names: Result<Vec<String>, String>) {
        let Some(prompt) = self.prompt.as_mut() else {
            return;
        };
        let names = match names {
            Ok(names) => names,
            Err(e) => {
                self.message = Some(format!("cannot list names: {e}"));
                return;
            }
        };
        let Some(first) = names.first() else {
            self.message = Some(format!("no symbol starts with `{}`", prompt.text));
            return;
        };
        // The longest start every name shares.
        let shared = names.iter().skip(1).fold(first.len(), |len, name| {
            first[..len]
                .char_indices()
                .zip(name.chars())
                .find(|((_, a), b)| a != b)
                .map_or(len.min(name.len()), |((i, _), _)| i)
        });
        if shared >= prompt.text.len() {
            prompt.text = first[..shared].to_owned();
        }
        self.message = (names.len() > 1).then(|| {
            let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
            let more = if names.len() > 5 { ", …" } else { "" };
            format!("{} names: {}{more}", names.len(), shown.join(", "))
        });
    }

    /// The session's answer to a change: the targets follow it, and the
    /// status line says what happened or why nothing did.
    pub fn changed(&mut self, result: Result<ChangeRecord, String>) {
        let change = match result {
            Ok(change) => change,
            Err(e) => {
                self.message = Some(format!("error: {e}"));
                return;
            }
        };
        let id = change.id;
        let name =
            |t: &Option<TargetInfo>| t.as_ref().map_or("?", |t| t.target.as_str()).to_owned();
        self.message = Some(match change.action.as_str() {
            "add" => {
                if let Some(to) = &change.to {
                    self.targets.truncate(id);
                    self.targets.push(view_of(to));
                }
                self.paused_targets.resize(id + 1, false);
                self.removed_targets.resize(id + 1, false);
                format!("added `{}`", name(&change.to))
            }
            "move" => {
                let paused = self.paused_targets.get(id).copied().unwrap_or(false);
                if let (Some(to), Some(view)) = (&change.to, self.targets.get_mut(id)) {
                    *view = view_of(to);
                    if paused {
                        view.target.push_str(PAUSED);
                    }
                }
                format!(
                    "moved `{}` to `{}` ({})",
                    name(&change.from),
                    name(&change.to),
                    change.method.as_deref().unwrap_or("?")
                )
            }
            "remove" => {
                if let Some(slot) = self.removed_targets.get_mut(id) {
                    *slot = true;
                }
                if let Some(view) = self.targets.get_mut(id) {
                    view.target = view.target.trim_end_matches(PAUSED).to_owned() + REMOVED;
                }
                format!("removed `{}`", name(&change.from))
            }
            action => {
                let pause = action == "pause";
                if let Some(slot) = self.paused_targets.get_mut(id) {
                    *slot = pause;
                }
                if let (Some(to), Some(view)) = (&change.to, self.targets.get_mut(id)) {
                    view.target = to.target.clone() + if pause { PAUSED } else { "" };
                }
                format!("{action}d `{}`", name(&change.to))
            }
        });
    }
}

/// A target as the dashboard shows it, from a change record.
fn view_of(t: &TargetInfo) -> TargetView {
    TargetView {
        target: t.target.clone(),
        symbol: t.symbol.clone(),
        addr: u64::from_str_radix(t.addr.trim_start_matches("0x"), 16).unwrap_or(0),
        mode: match t.mode.as_str() {
            "x" => "x",
            "rw" => "rw",
            "r" => "r",
            _ => "w",
        },
        data: t.mode != "x",
        len: t.len,
        kernel: t.space == "kernel",
        condition: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::app::{
        Traced,
        tests::{key, targets},
    };

    fn app() -> App {
        App::new(targets(), Traced::SystemWide { cpus: 4 }, 12, vec![])
    }

    fn typed(app: &mut App, text: &str) {
        for c in text.chars() {
            assert_eq!(app.handle_key(key(KeyCode::Char(c))), Action::None);
        }
    }

    fn info(target: &str, addr: &str, mode: &str) -> TargetInfo {
        TargetInfo {
            target: target.into(),
            symbol: target.split(':').next().unwrap_or(target).into(),
            addr: addr.into(),
            mode: mode.into(),
            len: 4,
            space: "kernel".into(),
        }
    }

    /// Each key sends the line `--control` takes, by number; Esc and any
    /// key but `y` send nothing.
    #[test]
    fn keys_send_control_lines() {
        let mut app = app();
        assert_eq!(app.handle_key(key(KeyCode::Char('a'))), Action::None);
        typed(&mut app, "jiffies:w");
        assert_eq!(
            app.handle_key(key(KeyCode::Enter)),
            Action::Change("add jiffies:w".into())
        );
        assert_eq!(app.prompt, None);

        app.selected = 2;
        app.handle_key(key(KeyCode::Char('m')));
        assert_eq!(
            app.prompt.as_ref().map(|p| p.text.as_str()),
            Some("pid_max:w")
        );
        for _ in 0.."pid_max:w".len() {
            app.handle_key(key(KeyCode::Backspace));
        }
        typed(&mut app, "nr_threads/4");
        assert_eq!(
            app.handle_key(key(KeyCode::Enter)),
            Action::Change("move 2 nr_threads/4".into())
        );

        app.handle_key(key(KeyCode::Char('m')));
        assert_eq!(app.handle_key(key(KeyCode::Esc)), Action::None);
        assert_eq!(app.prompt, None);

        app.handle_key(key(KeyCode::Char('x')));
        assert_eq!(app.handle_key(key(KeyCode::Char('n'))), Action::None);
        app.handle_key(key(KeyCode::Char('x')));
        assert_eq!(
            app.handle_key(key(KeyCode::Char('y'))),
            Action::Change("remove 2".into())
        );
        assert_eq!(
            app.handle_key(key(KeyCode::Char(' '))),
            Action::Change("pause 2".into())
        );
    }

    /// Tab asks for the names starting with a bare symbol's text; one
    /// completes it, several extend it to what they share.
    #[test]
    fn tab_completes_from_the_names() {
        let mut app = app();
        app.handle_key(key(KeyCode::Char('a')));
        typed(&mut app, "vfs_r");
        assert_eq!(
            app.handle_key(key(KeyCode::Tab)),
            Action::Complete("vfs_r".into())
        );
        app.completed(Ok(vec!["vfs_read".into(), "vfs_readv".into()]));
        assert_eq!(
            app.prompt.as_ref().map(|p| p.text.as_str()),
            Some("vfs_read")
        );
        assert_eq!(app.message.as_deref(), Some("2 names: vfs_read, vfs_readv"));
        app.completed(Ok(vec!["vfs_readv".into()]));
        assert_eq!(
            app.prompt.as_ref().map(|p| p.text.as_str()),
            Some("vfs_readv")
        );
        app.completed(Ok(vec![]));
        assert_eq!(
            app.message.as_deref(),
            Some("no symbol starts with `vfs_readv`")
        );
        typed(&mut app, ":w");
        assert_eq!(
            app.handle_key(key(KeyCode::Tab)),
            Action::None,
            "not after :MODE"
        );
    }

    /// The session's answers: targets follow the changes, errors go to
    /// the status line and change nothing.
    #[test]
    fn answers_change_the_targets() {
        let mut app = app();
        let before = app.targets.clone();
        app.changed(Err("no target `nope`".into()));
        assert_eq!(app.message.as_deref(), Some("error: no target `nope`"));
        assert_eq!(app.targets, before);

        app.changed(Ok(ChangeRecord {
            action: "add".into(),
            id: 3,
            to: Some(info("jiffies:w", "0xffffffff83000000", "w")),
            ..Default::default()
        }));
        assert_eq!(app.targets.len(), 4);
        assert_eq!(app.targets[3].addr, 0xffff_ffff_8300_0000);
        assert_eq!(app.message.as_deref(), Some("added `jiffies:w`"));

        app.changed(Ok(ChangeRecord {
            action: "pause".into(),
            id: 2,
            to: Some(info("pid_max:w", "0xffffffff83001000", "w")),
            ..Default::default()
        }));
        assert_eq!(app.targets[2].target, "pid_max:w [paused]");
        app.selected = 2;
        assert_eq!(
            app.handle_key(key(KeyCode::Char(' '))),
            Action::Change("resume 2".into())
        );

        app.changed(Ok(ChangeRecord {
            action: "move".into(),
            id: 2,
            from: Some(info("pid_max:w", "0xffffffff83001000", "w")),
            to: Some(info("nr_threads/4", "0xffffffff83002000", "w")),
            method: Some("modify".into()),
            ..Default::default()
        }));
        assert_eq!(app.targets[2].target, "nr_threads/4 [paused]");
        assert_eq!(app.targets[2].addr, 0xffff_ffff_8300_2000);
        assert_eq!(
            app.message.as_deref(),
            Some("moved `pid_max:w` to `nr_threads/4` (modify)")
        );

        app.changed(Ok(ChangeRecord {
            action: "remove".into(),
            id: 2,
            from: Some(info("nr_threads/4", "0xffffffff83002000", "w")),
            ..Default::default()
        }));
        assert_eq!(app.targets[2].target, "nr_threads/4 [removed]");
        app.handle_key(key(KeyCode::Char('x')));
        assert_eq!(app.prompt, None, "a removed target cannot be removed again");
        assert_eq!(app.message.as_deref(), Some("this target was removed"));
    }
}
