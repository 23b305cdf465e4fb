//! Every system call of the userspace IP-in-IP data path, behind safe wrappers: the TUN device
//! (`TUNSETIFF`, `TUNSETPERSIST`, `TUNSETOFFLOAD`, interface ioctls), the raw `IPPROTO_IPIP`
//! sockets (RFC 2003) with their options (`IP_MTU_DISCOVER` for RFC 1191 path MTU discovery,
//! buffers, a socket filter), `sendmmsg`/`recvmmsg` with `IP_TOS` control messages, and `poll`.
//! The only file of the tunnel allowed `unsafe`; each block says why it is sound.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use super::{Outgoing, RECEIVE_BATCH, RECEIVE_SLOT, SEND_BATCH, VNET_HEADER};
use tracing::debug;

pub(super) fn context(error: io::Error, what: String) -> io::Error {
    io::Error::new(error.kind(), format!("{what}: {error}"))
}

pub(super) fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// An `AF_INET` socket.
pub(super) fn socket(kind: libc::c_int, protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: no pointers; the result is checked.
    let fd = check(unsafe { libc::socket(libc::AF_INET, kind | libc::SOCK_CLOEXEC, protocol) })?;
    // SAFETY: `fd` was just opened and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(super) fn setsockopt<T>(
    socket: &impl AsFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of the size passed, for the duration of the call.
    check(unsafe {
        libc::setsockopt(
            socket.as_fd().as_raw_fd(),
            level,
            name,
            (value as *const T).cast::<libc::c_void>(),
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

pub(super) fn socket_address(address: Ipv4Addr) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(address).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// A raw IP-in-IP socket bound to `local`, with path MTU discovery `discovery`.
pub(super) fn raw_ipip_socket(local: Ipv4Addr, discovery: libc::c_int) -> io::Result<OwnedFd> {
    let socket = socket(libc::SOCK_RAW, libc::IPPROTO_IPIP)?;
    setsockopt(&socket, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, &discovery)?;
    let address = socket_address(local);
    // SAFETY: `address` is a live `sockaddr_in` of the size passed.
    check(unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&raw const address).cast::<libc::sockaddr>(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    })?;
    Ok(socket)
}

/// Keeps the socket that only sends from receiving: every raw socket of a protocol gets a copy
/// of each packet received. Connected to the loopback address, from which no IP-in-IP comes,
/// the kernel passes it by without copying anything (sends still name their node); a socket
/// filter that accepts nothing stands behind that.
pub(super) fn receive_nothing(socket: &OwnedFd) -> io::Result<()> {
    let loopback = socket_address(Ipv4Addr::LOCALHOST);
    // SAFETY: `loopback` is a live `sockaddr_in` of the size passed.
    let connected = check(unsafe {
        libc::connect(
            socket.as_raw_fd(),
            (&raw const loopback).cast::<libc::sockaddr>(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    });
    if let Err(error) = connected {
        debug!(%error, "cannot connect the sending IP-in-IP socket to the loopback address");
    }
    let mut reject = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let program = libc::sock_fprog {
        len: 1,
        filter: reject.as_mut_ptr(),
    };
    setsockopt(socket, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &program)
}

/// A buffer of `size` octets for `socket` (`SO_RCVBUF` or `SO_SNDBUF`, by `name`), so a burst
/// waits there instead of being dropped or blocking. Forced past `net.core.rmem_max` or
/// `wmem_max` (`force`) where the process may (`CAP_NET_ADMIN`); otherwise capped by them.
pub(super) fn enlarge_buffer(
    socket: &OwnedFd,
    force: libc::c_int,
    name: libc::c_int,
    size: libc::c_int,
) {
    if setsockopt(socket, libc::SOL_SOCKET, force, &size).is_err()
        && let Err(error) = setsockopt(socket, libc::SOL_SOCKET, name, &size)
    {
        debug!(%error, "cannot enlarge an IP-in-IP socket buffer");
    }
}

/// Room for one `cmsghdr` with an `int`, aligned like one.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub(super) struct Control([u8; 32]);

/// Sends `packets` (lying in `buffer`) on a raw IP-in-IP socket with one `sendmmsg`, each to
/// its node with its TOS in the outer header (an `IP_TOS` control message, so nothing is left
/// on the socket). How many went (at most `SEND_BATCH`); an error only if the first did not.
pub(super) fn send_many(
    socket: BorrowedFd<'_>,
    buffer: &[u8],
    packets: &[Outgoing],
) -> io::Result<usize> {
    let count = packets.len().min(SEND_BATCH);
    let mut addresses = [socket_address(Ipv4Addr::UNSPECIFIED); SEND_BATCH];
    let mut iovs = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; SEND_BATCH];
    let mut controls = [Control([0; 32]); SEND_BATCH];
    // SAFETY: all-zero bytes are a valid `mmsghdr` (integers and null pointers).
    let mut messages: [libc::mmsghdr; SEND_BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: `CMSG_SPACE` only computes a size.
    let space = unsafe { libc::CMSG_SPACE(size_of::<libc::c_int>() as u32) } as usize;
    for (index, packet) in packets.iter().take(count).enumerate() {
        let bytes = buffer
            .get(packet.start..packet.start + packet.length)
            .ok_or(io::ErrorKind::InvalidInput)?;
        addresses[index] = socket_address(packet.node);
        iovs[index] = libc::iovec {
            iov_base: bytes.as_ptr().cast_mut().cast::<libc::c_void>(),
            iov_len: bytes.len(),
        };
        let message = &mut messages[index].msg_hdr;
        message.msg_name = (&raw mut addresses[index]).cast::<libc::c_void>();
        message.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        message.msg_iov = &raw mut iovs[index];
        message.msg_iovlen = 1;
        message.msg_control = controls[index].0.as_mut_ptr().cast::<libc::c_void>();
        message.msg_controllen = space.min(size_of::<Control>()) as _;
        // SAFETY: `message` points at its `Control`, large and aligned enough for one header
        // with an `int` (so `CMSG_FIRSTHDR` is not null).
        unsafe {
            let header = libc::CMSG_FIRSTHDR(message);
            (*header).cmsg_level = libc::IPPROTO_IP;
            (*header).cmsg_type = libc::IP_TOS;
            (*header).cmsg_len = libc::CMSG_LEN(size_of::<libc::c_int>() as u32) as _;
            libc::CMSG_DATA(header)
                .cast::<libc::c_int>()
                .write_unaligned(libc::c_int::from(packet.tos));
        }
    }
    // SAFETY: the first `count` messages point at addresses, iovecs and control buffers that
    // live on this frame until the call returns; the kernel only reads the packets, through
    // the iovecs, which point into `buffer`.
    let sent = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            messages.as_mut_ptr(),
            count as libc::c_uint,
            0,
        )
    };
    usize::try_from(sent).map_err(|_| io::Error::last_os_error())
}

/// Receives up to `RECEIVE_BATCH` packets without blocking, with one `recvmmsg`, packet `i`
/// into the slot of `RECEIVE_SLOT` octets at `i * RECEIVE_SLOT` in `buffer`, its length in
/// `lengths[i]` (`usize::MAX` for a packet cut short). How many came.
pub(super) fn receive_many(
    socket: BorrowedFd<'_>,
    buffer: &mut [u8],
    lengths: &mut [usize; RECEIVE_BATCH],
) -> io::Result<usize> {
    let mut iovs = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; RECEIVE_BATCH];
    // SAFETY: all-zero bytes are a valid `mmsghdr` (integers and null pointers).
    let mut messages: [libc::mmsghdr; RECEIVE_BATCH] = unsafe { std::mem::zeroed() };
    let mut count = 0;
    for ((slot, iov), message) in buffer
        .chunks_exact_mut(RECEIVE_SLOT)
        .zip(&mut iovs)
        .zip(&mut messages)
    {
        *iov = libc::iovec {
            iov_base: slot.as_mut_ptr().cast::<libc::c_void>(),
            iov_len: slot.len(),
        };
        message.msg_hdr.msg_iov = iov;
        message.msg_hdr.msg_iovlen = 1;
        count += 1;
    }
    // SAFETY: the first `count` messages point at iovecs on this frame, which point at
    // disjoint slots of `buffer`, writable for their length during the call.
    let received = unsafe {
        libc::recvmmsg(
            socket.as_raw_fd(),
            messages.as_mut_ptr(),
            count as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    let received = usize::try_from(received).map_err(|_| io::Error::last_os_error())?;
    for (length, message) in lengths.iter_mut().zip(&messages).take(received) {
        *length = if message.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            usize::MAX
        } else {
            message.msg_len as usize
        };
    }
    Ok(received)
}

/// The kernel's path MTU toward `node` (what made a DF send fail), read through `probe`.
pub(super) fn path_mtu(probe: &UdpSocket, node: Ipv4Addr) -> io::Result<u32> {
    // Connecting a UDP socket sends nothing; it looks up the route with its learnt MTU.
    probe.connect((node, 9))?;
    let mut mtu: libc::c_int = 0;
    let mut length = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `mtu` and `length` are live and `length` is the size of `mtu`.
    check(unsafe {
        libc::getsockopt(
            probe.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU,
            (&raw mut mtu).cast::<libc::c_void>(),
            &raw mut length,
        )
    })?;
    u32::try_from(mtu).map_err(|_| io::Error::other("negative path MTU"))
}

/// Waits up to `timeout_ms` for `fd` to be readable; false when `wake` became readable (its
/// writer closed: stop).
pub(super) fn wait_readable(
    fd: BorrowedFd<'_>,
    wake: BorrowedFd<'_>,
    timeout_ms: libc::c_int,
) -> bool {
    let mut fds = [
        libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: `fds` is a live array of two `pollfd` for the duration of the call.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
    ready <= 0 || fds[1].revents == 0
}

/// An `ifreq` naming `name`.
pub(super) fn interface_request(name: &str) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() < libc::IFNAMSIZ
        && !bytes
            .iter()
            .any(|b| *b == 0 || *b == b'/' || b.is_ascii_whitespace());
    if !valid {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a valid interface name"),
        ));
    }
    // SAFETY: all-zero bytes are a valid `ifreq` (a name array and a union of plain values).
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (to, from) in request.ifr_name.iter_mut().zip(bytes) {
        *to = *from as libc::c_char;
    }
    Ok(request)
}

pub(super) fn ioctl(
    fd: &impl AsFd,
    request: libc::Ioctl,
    value: &mut libc::ifreq,
) -> io::Result<()> {
    // SAFETY: every request passed here reads or writes one `ifreq`, live during the call.
    check(unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), request, &raw mut *value) }).map(drop)
}

/// Opens `/dev/net/tun` non-blocking and attaches it to the TUN device `name` (created if
/// missing) without packet information, with a `virtio_net_hdr` before each packet and TCP
/// segmentation and checksum offload (TSO super-packets come to this side; without
/// `TUNSETOFFLOAD`, an old kernel, whole packets do).
pub(super) fn open_tun(name: &str) -> io::Result<File> {
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/net/tun")?;
    let mut request = interface_request(name)?;
    request.ifr_ifru.ifru_flags =
        (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
    ioctl(&tun, libc::TUNSETIFF, &mut request)?;
    // A persistent device keeps what an earlier process set: say it again.
    let size = VNET_HEADER as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads one `int` through the pointer, live during the call.
    check(unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETVNETHDRSZ, &raw const size) })?;
    let offloads = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO_ECN;
    // SAFETY: TUNSETOFFLOAD takes its argument by value; no pointer is involved.
    let offloaded = check(unsafe {
        libc::ioctl(
            tun.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            libc::c_ulong::from(offloads),
        )
    });
    if let Err(error) = offloaded {
        debug!(device = name, %error, "no TCP segmentation offload on the TUN device");
    }
    Ok(tun)
}

pub(super) fn set_persist(tun: &File, persist: bool) -> io::Result<()> {
    // SAFETY: TUNSETPERSIST takes its argument by value; no pointer is involved.
    check(unsafe {
        libc::ioctl(
            tun.as_raw_fd(),
            libc::TUNSETPERSIST,
            libc::c_ulong::from(persist),
        )
    })
    .map(drop)
}

pub(super) fn set_interface_mtu(control: &OwnedFd, name: &str, mtu: u32) -> io::Result<()> {
    let mut request = interface_request(name)?;
    request.ifr_ifru.ifru_mtu = libc::c_int::try_from(mtu)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("MTU {mtu}")))?;
    ioctl(control, libc::SIOCSIFMTU as libc::Ioctl, &mut request)
        .map_err(|e| context(e, format!("cannot set the MTU of {name} to {mtu}")))
}

pub(super) fn set_interface_up(control: &OwnedFd, name: &str) -> io::Result<()> {
    let mut request = interface_request(name)?;
    ioctl(control, libc::SIOCGIFFLAGS as libc::Ioctl, &mut request)?;
    // SAFETY: SIOCGIFFLAGS filled in `ifru_flags`.
    let flags = unsafe { request.ifr_ifru.ifru_flags };
    request.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    ioctl(control, libc::SIOCSIFFLAGS as libc::Ioctl, &mut request)
        .map_err(|e| context(e, format!("cannot bring {name} up")))
}

pub(super) fn interface_index(control: &OwnedFd, name: &str) -> io::Result<u32> {
    let mut request = interface_request(name)?;
    ioctl(control, libc::SIOCGIFINDEX as libc::Ioctl, &mut request)?;
    // SAFETY: SIOCGIFINDEX filled in `ifru_ifindex`.
    let index = unsafe { request.ifr_ifru.ifru_ifindex };
    u32::try_from(index).map_err(|_| io::Error::other("negative interface index"))
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn interface_names_are_checked() {
        assert!(interface_request("tunl0").is_ok());
        assert!(interface_request("").is_err());
        assert!(interface_request("a-name-too-long-x").is_err());
        assert!(interface_request("a/b").is_err());
    }
}
