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

/// Sets a socket's receive buffer to `bytes` (the kernel doubles it) past `rmem_max`
/// (SO_RCVBUFFORCE, which needs CAP_NET_ADMIN). The route programmer's batch socket needs room
/// for an answer to every request of a chunk.
pub fn force_receive_buffer(fd: std::os::fd::RawFd, bytes: usize) -> std::io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: `value` lives across the call and its size is passed with it; setsockopt only
    // reads it, and a bad descriptor is reported through the return value.
    let result = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
