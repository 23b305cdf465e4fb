//! The addresses of the local interface a connection runs over, read with `getifaddrs(3)`.
//! The runtime asks for them once a connection is up, so the core can give a peer next hops of
//! the other address family than the session's (RFC 2545, RFC 8950). Like [`crate::sockopt`],
//! this module is allowed `unsafe`: it walks the list the C library hands back and frees it.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::speaker::core::{LinkAddress, MAX_LINK_ADDRESSES};

/// Every address of the interface that holds `local` (both families, link-local included), at
/// most [`MAX_LINK_ADDRESSES`]; empty when no interface holds it.
pub fn link_addresses(local: IpAddr) -> io::Result<Vec<LinkAddress>> {
    let local = local.to_canonical();
    let all = interface_addresses()?;
    let Some(name) = all
        .iter()
        .find(|(_, a)| a.address == local)
        .map(|(name, _)| name.clone())
    else {
        return Ok(Vec::new());
    };
    Ok(all
        .into_iter()
        .filter(|(n, _)| *n == name)
        .map(|(_, a)| a)
        .take(MAX_LINK_ADDRESSES)
        .collect())
}

/// Every IPv4 and IPv6 address of every interface, with the interface's name (an IPv4 label
/// such as `eth0:1` counts as its interface, `eth0`).
fn interface_addresses() -> io::Result<Vec<(Vec<u8>, LinkAddress)>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a valid place for the list pointer; the list is freed below.
    if unsafe { libc::getifaddrs(&raw mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list getifaddrs returned, which is not freed yet.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        let (Some(address), Some(mask)) = (ip_of(entry.ifa_addr), ip_of(entry.ifa_netmask)) else {
            continue;
        };
        if entry.ifa_name.is_null() {
            continue;
        }
        // SAFETY: a non-null `ifa_name` is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(entry.ifa_name) }.to_bytes();
        let name = name.split(|&b| b == b':').next().unwrap_or(name).to_vec();
        let prefix_len = match mask {
            IpAddr::V4(m) => u32::from(m).count_ones(),
            IpAddr::V6(m) => u128::from(m).count_ones(),
        } as u8;
        out.push((
            name,
            LinkAddress {
                address,
                prefix_len,
            },
        ));
    }
    // SAFETY: `head` came from getifaddrs and nothing borrowed from the list outlives this.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// The IP address in a socket address from getifaddrs, if it is IPv4 or IPv6.
fn ip_of(address: *const libc::sockaddr) -> Option<IpAddr> {
    if address.is_null() {
        return None;
    }
    // SAFETY: a non-null address from getifaddrs points to a socket address whose family field
    // says which structure it really is; only that structure is read.
    unsafe {
        match i32::from((*address).sa_family) {
            libc::AF_INET => {
                let v4 = &*address.cast::<libc::sockaddr_in>();
                Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))))
            }
            libc::AF_INET6 => {
                let v6 = &*address.cast::<libc::sockaddr_in6>();
                Some(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loopback_interface_holds_127_0_0_1_with_its_prefix() {
        let addresses = link_addresses(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
        assert!(
            addresses
                .iter()
                .any(|a| a.address == IpAddr::V4(Ipv4Addr::LOCALHOST) && a.prefix_len == 8),
            "{addresses:?}"
        );
    }

    #[test]
    fn an_address_no_interface_holds_has_no_link_addresses() {
        let nowhere = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 254));
        assert_eq!(link_addresses(nowhere).unwrap(), Vec::new());
    }
}
