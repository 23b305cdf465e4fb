//! Socket options the standard library and socket2 do not offer: the TCP MD5 signature option
//! (RFC 2385), the minimum TTL of GTSM (RFC 5082) and going back to the default TTL. This is the one module allowed `unsafe`:
//! each call hands the kernel a pointer to a value that lives across the call.
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};

/// Linux's `TCP_MD5SIG_MAXKEYLEN`.
pub const MD5_MAX_KEY_LEN: usize = 80;

/// Linux's `struct tcp_md5sig` (include/uapi/linux/tcp.h).
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefix_len: u8,
    key_len: u16,
    ifindex: libc::c_int,
    key: [u8; MD5_MAX_KEY_LEN],
}

/// Sets (or, with an empty key, clears) the MD5 key for segments to and from `peer` on
/// `socket`: a listening socket (for inbound connections) or one about to connect.
pub fn set_tcp_md5(socket: &impl AsFd, peer: IpAddr, key: &[u8]) -> io::Result<()> {
    if key.len() > MD5_MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "TCP MD5 key of {} octets is longer than {MD5_MAX_KEY_LEN}",
                key.len()
            ),
        ));
    }
    let address = socket2::SockAddr::from(SocketAddr::new(peer, 0));
    // SAFETY: all-zero bytes are a valid `TcpMd5Sig` (plain integers and arrays).
    let mut value: TcpMd5Sig = unsafe { std::mem::zeroed() };
    let len = (address.len() as usize).min(size_of::<libc::sockaddr_storage>());
    // SAFETY: both regions are at least `len` octets and do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            address.as_ptr().cast::<u8>(),
            (&raw mut value.addr).cast::<u8>(),
            len,
        );
    }
    value.key_len = key.len() as u16;
    value.key[..key.len()].copy_from_slice(key);
    setsockopt(socket, libc::IPPROTO_TCP, libc::TCP_MD5SIG, &value)
}

/// Sends with this TTL (hop limit), or with the system's default when `None`.
pub fn set_ttl(socket: &impl AsFd, ipv6: bool, ttl: Option<u8>) -> io::Result<()> {
    // -1 asks Linux for the default (the route's or the sysctl's).
    let value = ttl.map_or(-1, libc::c_int::from);
    if ipv6 {
        setsockopt(socket, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, &value)
    } else {
        setsockopt(socket, libc::IPPROTO_IP, libc::IP_TTL, &value)
    }
}

/// GTSM (RFC 5082): drop packets arriving with a TTL (or hop limit) below `min`; 0 turns the
/// check off.
pub fn set_min_ttl(socket: &impl AsFd, ipv6: bool, min: u8) -> io::Result<()> {
    let value = libc::c_int::from(min);
    if ipv6 {
        setsockopt(socket, libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT, &value)
    } else {
        setsockopt(socket, libc::IPPROTO_IP, libc::IP_MINTTL, &value)
    }
}

fn setsockopt<T>(
    socket: &impl AsFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of the size passed, for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_fd().as_raw_fd(),
            level,
            name,
            (value as *const T).cast::<libc::c_void>(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
