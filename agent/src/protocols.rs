//! Route protocol numbers (`rtm_protocol`) and who writes routes with them. tern owns every
//! route of its protocol in its table (it replaces and deletes them), so it must not take the
//! number of another route source: the kernel's own routes, `ip route add` (boot, static), router
//! advertisements, DHCP clients, or a routing daemon (FRR's zebra writes 186 and up).
//!
//! The numbers come from iproute2's `/etc/iproute2/rt_protos` and FRR's `rt_protos.d/frr.conf`,
//! built in so the check does not depend on the host; the host's own files are read too, so a
//! daemon registered there is protected as well.

use std::path::Path;

/// `RTPROT_UNSPEC`: never a valid protocol for a route we write.
pub const UNSPEC: u8 = 0;
/// BIRD's number, which Calico (and so tern, by default) tags its routes with.
pub const BIRD: u8 = 12;

/// The well-known numbers: iproute2's list and FRR's daemons.
const KNOWN: &[(u8, &str)] = &[
    (0, "unspec"),
    (1, "redirect"),
    (2, "kernel"),
    (3, "boot"),
    (4, "static"),
    (8, "gated"),
    (9, "ra"),
    (10, "mrt"),
    (11, "zebra"),
    (12, "bird"),
    (13, "dnrouted"),
    (14, "xorp"),
    (15, "ntk"),
    (16, "dhcp"),
    (18, "keepalived"),
    (42, "babel"),
    (99, "openr"),
    (186, "bgp"),
    (187, "isis"),
    (188, "ospf"),
    (189, "rip"),
    (190, "ripng"),
    (191, "nhrp"),
    (192, "eigrp"),
    (193, "ldp"),
    (194, "sharp"),
    (195, "pbr"),
    (196, "static (FRR)"),
    (197, "openfabric"),
    (198, "srte"),
];

/// The host's rt_protos files: the main one and `rt_protos.d/*.conf`.
fn host_entries() -> Vec<(u8, String)> {
    let mut files = vec![Path::new("/etc/iproute2/rt_protos").to_path_buf()];
    if let Ok(dir) = std::fs::read_dir("/etc/iproute2/rt_protos.d") {
        let mut extra: Vec<_> = dir
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
        extra.sort();
        files.extend(extra);
    }
    files
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|text| parse(&text))
        .collect()
}

/// The `number name` lines of an rt_protos file (comments and bad lines skipped).
fn parse(text: &str) -> Vec<(u8, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or_default();
            let mut words = line.split_whitespace();
            let number = words.next()?.parse::<u8>().ok()?;
            let name = words.next()?;
            Some((number, name.to_owned()))
        })
        .collect()
}

/// The number for a protocol name (`bird`, `static`, ...), from the built-in list or the
/// host's files.
pub fn number(name: &str) -> Option<u8> {
    KNOWN
        .iter()
        .find(|(_, known)| *known == name)
        .map(|(n, _)| *n)
        .or_else(|| {
            host_entries()
                .into_iter()
                .find(|(_, known)| known == name)
                .map(|(n, _)| n)
        })
}

/// Who else writes routes with `protocol`, when it is not free for tern: `None` for BIRD's
/// 12 (Calico's, taken over from BIRD as calico-node does) and for numbers nothing claims.
pub fn owner(protocol: u8) -> Option<String> {
    if protocol == BIRD {
        return None;
    }
    KNOWN
        .iter()
        .find(|(n, _)| *n == protocol)
        .map(|(_, name)| (*name).to_owned())
        .or_else(|| {
            host_entries()
                .into_iter()
                .find(|(n, _)| *n == protocol)
                .map(|(_, name)| name)
        })
        .map(|name| format!("{name} routes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_route_sources_are_named_and_bird_is_free() {
        assert_eq!(owner(BIRD), None);
        assert_eq!(owner(201), None, "an unassigned number is free");
        for (protocol, name) in [(2, "kernel"), (3, "boot"), (4, "static"), (9, "ra")] {
            assert_eq!(owner(protocol), Some(format!("{name} routes")));
        }
        assert_eq!(owner(16).as_deref(), Some("dhcp routes"));
        assert_eq!(owner(186).as_deref(), Some("bgp routes"), "FRR's zebra");
        assert_eq!(number("bird"), Some(12));
        assert_eq!(number("static"), Some(4));
        assert_eq!(number("no-such-protocol"), None);
    }

    #[test]
    fn every_daemon_of_the_hosts_rt_protos_is_refused() {
        for (protocol, name) in host_entries() {
            if protocol != BIRD {
                assert!(owner(protocol).is_some(), "{protocol} ({name})");
            }
        }
        assert_eq!(
            parse("# comment\n12\tbird\n  200 mine # ours\nbad line\n"),
            vec![(12, "bird".to_owned()), (200, "mine".to_owned())]
        );
    }
}
