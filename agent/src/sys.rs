//! The agent's few system calls that neither std nor a crate wraps safely.
#![allow(unsafe_code)]

use std::cell::Cell;

thread_local! {
    static RAISED: Cell<bool> = const { Cell::new(false) };
}

/// Gives the calling thread a higher scheduling priority (nice -10), once per thread. The
/// thread that writes routes to the kernel is the critical path of convergence: the kernel
/// does the FIB work inside its sendmsg, while the speaker and the agent loop share the
/// other cores; an equal share would leave the kernel writer waiting for CPU behind them.
/// Without the privilege (CAP_SYS_NICE) nothing changes.
pub fn raise_thread_priority() {
    if RAISED.with(Cell::get) {
        return;
    }
    RAISED.with(|r| r.set(true));
    // SAFETY: gettid takes no arguments and cannot fail; setpriority only reads its integer
    // arguments and reports failure through its return value, which we ignore on purpose.
    unsafe {
        let tid = libc::gettid();
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, -10);
    }
}

/// The process's effective user id: the owner of the files it creates.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid takes no arguments, touches no memory and cannot fail.
    unsafe { libc::geteuid() }
}
