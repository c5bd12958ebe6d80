//! Changing what is armed while tracing: moving a target to another
//! address, mode or length without giving up its debug registers, adding
//! one, removing one, pausing and resuming one.
//!
//! A move uses PERF_EVENT_IOC_MODIFY_ATTRIBUTES (Linux 4.17) on every event
//! of the target: the kernel rewrites the breakpoint in place, so the debug
//! register is never released and no other user (ptrace, gdb, another
//! tracer) can take it in between, the concern raised against
//! ksym_tracer's rewrite on perf events. It is all or nothing: when one
//! event refuses, those already moved are moved back. When the kernel has
//! no such ioctl, or refuses the change itself (the ioctl only changes
//! address, type, length and `disabled`: a move from an execute breakpoint
//! to a data watchpoint also changes `exclude_kernel`), the move opens new
//! events first and closes the old ones only once every new one is armed:
//! the target is never unarmed, but it needs a free debug register per
//! place meanwhile. The session writes the BPF side's configuration around
//! these calls (see docs/design.md, "Changing targets while tracing").

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd},
};

use perf_event_open_sys::{self as sys, bindings::perf_event_attr};
use thiserror::Error;

use super::arm::{
    ArmError, Armed, Event, Place, X86_DEBUG_REGISTERS, attr, disable, explain, open,
};
use crate::target::resolve::Breakpoint;

/// How a move was done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MoveMethod {
    /// PERF_EVENT_IOC_MODIFY_ATTRIBUTES on every event: the same events,
    /// the same debug registers.
    Modified,
    /// New events opened and armed, then the old ones closed, because the
    /// kernel would not modify them (the reason).
    Reopened { reason: String },
}

impl MoveMethod {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Modified => "modify",
            Self::Reopened { .. } => "reopen",
        }
    }
}

#[derive(Debug, Error)]
pub enum LiveError {
    #[error(
        "the kernel refused to move `{target}` to {to} on {place} ({modify}), and to open it there \
         anew: {reopen}; `{target}` still watches what it watched"
    )]
    Move {
        target: String,
        to: String,
        place: Place,
        modify: io::Error,
        reopen: String,
    },
    #[error(
        "the kernel refused to move `{target}` to {to} on {place}: {source}; `{target}` still watches what it watched"
    )]
    Modify {
        target: String,
        to: String,
        place: Place,
        source: io::Error,
    },
    #[error("cannot {action} `{target}` on {place}: {source}")]
    Toggle {
        action: &'static str,
        target: String,
        place: Place,
        source: io::Error,
    },
    #[error("cannot add `{target}`: {source}")]
    Add { target: String, source: ArmError },
}

/// PERF_EVENT_IOC_MODIFY_ATTRIBUTES; Err(errno).
fn modify(event: &Event, attr: &mut perf_event_attr) -> Result<(), i32> {
    // SAFETY: an open perf event descriptor and a valid, initialised
    // perf_event_attr that outlives the call; the kernel only reads it.
    let rc = unsafe { sys::ioctls::MODIFY_ATTRIBUTES(event.fd.as_raw_fd(), attr) };
    if rc < 0 {
        return Err(io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    Ok(())
}

/// The attributes of `bp` at `place`, enabled or not.
fn attr_for(bp: &Breakpoint, place: Place, enabled: bool) -> perf_event_attr {
    let mut attr = attr(bp, place);
    attr.set_disabled(u64::from(!enabled));
    attr
}

impl Armed {
    /// The events of target `slot`, in order.
    fn indices(&self, slot: usize) -> Vec<usize> {
        (0..self.events.len())
            .filter(|&i| self.events[i].slot == slot)
            .collect()
    }

    /// The kernel's ids of target `slot`'s events (PERF_EVENT_IOC_ID), in
    /// order: a move by modification keeps them, a reopening does not.
    pub fn event_ids(&self, slot: usize) -> Vec<u64> {
        self.indices(slot)
            .into_iter()
            .filter_map(|i| {
                let mut id = 0u64;
                // SAFETY: an open perf event descriptor and a pointer to a
                // local u64 the kernel writes the id to.
                let rc = unsafe { sys::ioctls::ID(self.events[i].fd.as_raw_fd(), &raw mut id) };
                (rc >= 0).then_some(id)
            })
            .collect()
    }

    /// Debug registers this run holds per place.
    pub fn targets_per_place(&self) -> usize {
        let mut slots: Vec<usize> = self.events.iter().map(|e| e.slot).collect();
        slots.sort_unstable();
        slots.dedup();
        slots.len()
    }

    /// Moves target `slot` from `from` to `to` on every event, or on none.
    /// `enabled`: whether the target is armed (not paused).
    pub fn move_target(
        &mut self,
        slot: usize,
        from: &Breakpoint,
        to: &Breakpoint,
        enabled: bool,
        program: BorrowedFd<'_>,
    ) -> Result<MoveMethod, LiveError> {
        let indices = self.indices(slot);
        for (n, &i) in indices.iter().enumerate() {
            let event = &self.events[i];
            let mut new = attr_for(to, event.place, enabled);
            let Err(errno) = modify(event, &mut new) else {
                continue;
            };
            // Move back those already moved: the kernel took this very
            // change from them, so it takes the old one back. The one that
            // refused too: a refused modification can leave the event
            // disabled (seen on 6.18 after an EPERM), and writing its old
            // attributes enables it again.
            for &j in &indices[..=n] {
                let back = &self.events[j];
                let mut old = attr_for(from, back.place, enabled);
                if let Err(e) = modify(back, &mut old) {
                    log::warn!(
                        "could not move `{}` back on {}: {}",
                        from.spec.text,
                        back.place,
                        io::Error::from_raw_os_error(e)
                    );
                }
            }
            let place = event.place;
            let source = io::Error::from_raw_os_error(errno);
            return match errno {
                // No such ioctl (before 4.17), or a change it does not make.
                libc::ENOTTY | libc::EOPNOTSUPP | libc::EINVAL => self
                    .reopen(slot, to, enabled, program)
                    .map(|()| MoveMethod::Reopened {
                        reason: source.to_string(),
                    })
                    .map_err(|reopen| LiveError::Move {
                        target: from.spec.text.clone(),
                        to: to.to_string(),
                        place,
                        modify: source,
                        reopen,
                    }),
                _ => Err(LiveError::Modify {
                    target: from.spec.text.clone(),
                    to: to.to_string(),
                    place,
                    source,
                }),
            };
        }
        Ok(MoveMethod::Modified)
    }

    /// Opens `to` at every place of target `slot`, attaches and (if
    /// `enabled`) enables it, then closes the old events; on any failure
    /// closes the new ones and leaves the old ones as they were.
    fn reopen(
        &mut self,
        slot: usize,
        to: &Breakpoint,
        enabled: bool,
        program: BorrowedFd<'_>,
    ) -> Result<(), String> {
        let indices = self.indices(slot);
        let places: Vec<Place> = indices.iter().map(|&i| self.events[i].place).collect();
        let held = self.targets_per_place();
        let mut new = Vec::with_capacity(places.len());
        for &place in &places {
            let event = open_one(to, place, slot, program, held).map_err(|e| e.to_string())?;
            new.push(event);
        }
        if enabled {
            for event in &new {
                // SAFETY: an open perf event descriptor; ENABLE takes no pointer.
                if unsafe { sys::ioctls::ENABLE(event.fd.as_raw_fd(), 0) } < 0 {
                    let e = io::Error::last_os_error();
                    for event in &new {
                        disable(event);
                    }
                    return Err(format!("cannot enable it on {}: {e}", event.place));
                }
            }
        }
        self.retire(slot);
        self.events.extend(new);
        Ok(())
    }

    /// Disables and closes target `slot`'s events, keeping their counts.
    fn retire(&mut self, slot: usize) {
        // With what was retired before: the total so far.
        let counts = self.kernel_counts(slot + 1);
        if self.retired.len() <= slot {
            self.retired.resize(slot + 1, 0);
        }
        self.retired[slot] = counts[slot];
        let (gone, kept): (Vec<Event>, Vec<Event>) =
            self.events.drain(..).partition(|e| e.slot == slot);
        for event in &gone {
            disable(event);
        }
        drop(gone);
        self.events = kept;
    }

    /// Arms `bp` as target `slot` at every place (every CPU, or every
    /// thread the process has now), or nowhere. A full set of debug
    /// registers is an error naming how many this run holds.
    pub fn add_target(
        &mut self,
        slot: usize,
        bp: &Breakpoint,
        program: BorrowedFd<'_>,
    ) -> Result<(), LiveError> {
        let places: Vec<Place> = match &self.scope {
            super::arm::Scope::SystemWide { cpus } => {
                cpus.iter().copied().map(Place::Cpu).collect()
            }
            // Every thread the process has now: one started since the run
            // began carries the other targets as inherited events, and
            // needs this one opened on it.
            super::arm::Scope::Process { pid, tids } => match super::arm::Scope::process(*pid) {
                Ok(super::arm::Scope::Process { tids: now, .. }) => now,
                _ => tids.clone(),
            }
            .into_iter()
            .map(Place::Thread)
            .collect(),
        };
        let held = self.targets_per_place();
        let mut new = Vec::with_capacity(places.len());
        for place in places {
            match open_one(bp, place, slot, program, held) {
                Ok(event) => new.push(event),
                // A thread that exited since the run started runs nothing.
                Err(ArmError::Open { errno, .. })
                    if errno == libc::ESRCH && matches!(place, Place::Thread(_)) =>
                {
                    continue;
                }
                Err(source) => {
                    return Err(LiveError::Add {
                        target: bp.spec.text.clone(),
                        source,
                    });
                }
            }
        }
        for event in &new {
            // SAFETY: an open perf event descriptor; ENABLE takes no pointer.
            if unsafe { sys::ioctls::ENABLE(event.fd.as_raw_fd(), 0) } < 0 {
                let source = io::Error::last_os_error();
                for event in &new {
                    disable(event);
                }
                return Err(LiveError::Add {
                    target: bp.spec.text.clone(),
                    source: ArmError::Enable {
                        target: bp.spec.text.clone(),
                        place: event.place,
                        source,
                    },
                });
            }
        }
        self.events.extend(new);
        Ok(())
    }

    /// Disarms and closes target `slot`'s events: its debug registers are
    /// free again. Its count so far stays in [`Armed::kernel_counts`].
    pub fn remove_target(&mut self, slot: usize) {
        self.retire(slot);
    }

    /// Pauses (disables) or resumes (enables) target `slot`'s events. A
    /// disabled breakpoint keeps its debug register.
    pub fn set_enabled(&mut self, slot: usize, enabled: bool) -> Result<(), LiveError> {
        for i in self.indices(slot) {
            let event = &self.events[i];
            // SAFETY: an open perf event descriptor; neither ioctl takes a pointer.
            let rc = unsafe {
                if enabled {
                    sys::ioctls::ENABLE(event.fd.as_raw_fd(), 0)
                } else {
                    sys::ioctls::DISABLE(event.fd.as_raw_fd(), 0)
                }
            };
            if rc < 0 {
                return Err(LiveError::Toggle {
                    action: if enabled { "resume" } else { "pause" },
                    target: String::new(),
                    place: event.place,
                    source: io::Error::last_os_error(),
                });
            }
        }
        Ok(())
    }
}

/// Opens `bp` at `place`, disabled, with the program attached. `held`:
/// the debug registers this run holds at each place already, for the
/// message when none is left.
fn open_one(
    bp: &Breakpoint,
    place: Place,
    slot: usize,
    program: BorrowedFd<'_>,
    held: usize,
) -> Result<Event, ArmError> {
    let fd = open(bp, place).map_err(|errno| ArmError::Open {
        target: bp.spec.text.clone(),
        place,
        errno,
        reason: match errno {
            libc::ENOSPC => format!(
                "no free debug register ({}): x86 CPUs have {X86_DEBUG_REGISTERS} and this run holds \
                 {held} of them; debuggers, perf or other tracers may hold the others. Remove a target \
                 first, or stop them",
                io::Error::from_raw_os_error(errno)
            ),
            _ => explain(bp, errno, held + 1, held),
        },
    })?;
    // SAFETY: both descriptors are open and owned for the duration of the
    // call; SET_BPF only takes a reference on the program.
    let rc = unsafe { sys::ioctls::SET_BPF(fd.as_raw_fd(), program.as_raw_fd() as u32) };
    if rc < 0 {
        return Err(ArmError::Attach {
            target: bp.spec.text.clone(),
            place,
            source: io::Error::last_os_error(),
        });
    }
    Ok(Event { fd, slot, place })
}

/// The `CONFIG` map while tracing. A target's entry (address and
/// configuration) is found by a hit's breakpoint address, and carries the
/// target's id that the hit records: so an entry is written before any
/// breakpoint can fire at its address, configuration first and address
/// second (a hit that finds the address finds its configuration), and
/// removed after no breakpoint is armed there, address first.
impl super::load::Probe {
    /// Adds an entry for target `slot` watching `bp`; returns its index.
    pub fn add_entry(
        &mut self,
        bp: &Breakpoint,
        stack: super::load::StackChoice,
        slot: usize,
    ) -> Result<usize, super::load::LoadError> {
        let index = (0..hwbp_common::MAX_SLOTS)
            .find(|&i| self.config.addrs[i] == 0)
            .ok_or(super::load::LoadError::TooManyTargets(
                hwbp_common::MAX_SLOTS + 1,
            ))?;
        self.config.slots[index] = super::load::slot_config(bp, stack, slot);
        if self.condition(slot).is_some() {
            self.config.slots[index].flags |= hwbp_common::SLOT_COND;
        }
        if bp.mode.is_data() {
            // User stacks are read around large frames from now on.
            self.config.filter.stack_gap = hwbp_common::STACK_GAP_WATCHED;
        }
        self.write_config()?;
        self.config.addrs[index] = bp.addr;
        self.write_config()?;
        self.slots = self.slots.max(slot + 1);
        Ok(index)
    }

    /// Removes entry `index`: its address first, then its configuration.
    pub fn remove_entry(&mut self, index: usize) -> Result<(), super::load::LoadError> {
        if index >= hwbp_common::MAX_SLOTS {
            return Ok(());
        }
        self.config.addrs[index] = 0;
        self.write_config()?;
        self.config.slots[index] = hwbp_common::SlotConfig::default();
        self.write_config()
    }

    /// The index of the entry of target `slot` at `addr`.
    pub fn entry_of(&self, slot: usize, addr: u64) -> Option<usize> {
        (0..hwbp_common::MAX_SLOTS)
            .find(|&i| self.config.addrs[i] == addr && self.config.slots[i].slot as usize == slot)
    }
}
