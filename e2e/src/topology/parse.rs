//! Reading a topology file: the YAML as written (containerlab's fields, unknown ones refused),
//! then validation into the model of `topology`: names, binds, exec lines, pods and links, each
//! refusal naming the file, the node or link, and what to change.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{
    Bind, DaemonKind, Endpoint, ExecKind, ExecLine, LABEL_DAEMON, LABEL_PODS, Link, Node, NodeKind,
    Pod, Topology, TopologyError,
};

// ---------------------------------------------------------------------------------------------
// The file as written.
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    name: String,
    /// containerlab's container name prefix; irrelevant here.
    #[serde(default, rename = "prefix")]
    _prefix: Option<IgnoredAny>,
    /// containerlab's management network; irrelevant here (no management network).
    #[serde(default, rename = "mgmt")]
    _mgmt: Option<IgnoredAny>,
    topology: RawTopology,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    #[serde(default)]
    nodes: BTreeMap<String, RawNode>,
    #[serde(default)]
    links: Vec<RawLink>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    kind: Option<String>,
    image: Option<String>,
    #[serde(default)]
    binds: Vec<String>,
    #[serde(default)]
    exec: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    labels: BTreeMap<String, serde_yaml::Value>,
    /// containerlab management addresses; irrelevant here.
    #[serde(default, rename = "mgmt-ipv4")]
    _mgmt_ipv4: Option<IgnoredAny>,
    #[serde(default, rename = "mgmt-ipv6")]
    _mgmt_ipv6: Option<IgnoredAny>,
    /// containerlab's graph grouping; irrelevant here.
    #[serde(default, rename = "group")]
    _group: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    endpoints: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Loading and validation.
// ---------------------------------------------------------------------------------------------

impl Topology {
    /// Reads and validates a topology file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, TopologyError> {
        let path = path.as_ref();
        let read_error = |source| TopologyError::Read {
            file: path.to_path_buf(),
            source,
        };
        let file = std::fs::canonicalize(path).map_err(read_error)?;
        let text = std::fs::read_to_string(&file).map_err(read_error)?;
        Self::parse(&text, &file)
    }

    /// Validates a topology's text; `file` is where it lives (bind paths are relative to its
    /// directory) and names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Self, TopologyError> {
        let raw: RawFile = serde_yaml::from_str(text).map_err(|source| TopologyError::Yaml {
            file: file.to_path_buf(),
            source,
        })?;
        let invalid = |what: String| TopologyError::Invalid {
            file: file.to_path_buf(),
            what,
        };
        let dir = file.parent().unwrap_or(Path::new("."));

        check_name(&raw.name, 24).map_err(|why| invalid(format!("name {:?}: {why}", raw.name)))?;
        if raw.topology.nodes.is_empty() {
            return Err(invalid("topology.nodes is empty: a lab needs nodes".into()));
        }

        let mut nodes = BTreeMap::new();
        for (name, raw_node) in raw.topology.nodes {
            let node = validate_node(&name, raw_node, dir)
                .map_err(|what| invalid(format!("node {name:?}: {what}")))?;
            nodes.insert(name, node);
        }

        let mut links = Vec::new();
        let mut used: BTreeSet<Endpoint> = BTreeSet::new();
        for (index, raw_link) in raw.topology.links.iter().enumerate() {
            let link = validate_link(&nodes, raw_link, &mut used).map_err(|what| {
                invalid(format!(
                    "links[{index}] {:?}: {what}",
                    raw_link.endpoints.join(" - ")
                ))
            })?;
            links.push(link);
        }

        let topology = Topology {
            name: raw.name,
            file: file.to_path_buf(),
            nodes,
            links,
        };
        topology.check_namespaces().map_err(invalid)?;
        Ok(topology)
    }

    /// The same topology under another lab name (the same rules as `name:`), so that tests
    /// of one binary, which run in parallel, can each build their own copy of one file.
    pub fn renamed(mut self, name: &str) -> Result<Self, TopologyError> {
        let invalid = |what: String| TopologyError::Invalid {
            file: self.file.clone(),
            what,
        };
        check_name(name, 24).map_err(|why| invalid(format!("name {name:?}: {why}")))?;
        self.name = name.to_string();
        self.check_namespaces().map_err(invalid)?;
        Ok(self)
    }

    /// The namespace of a node (or bridge): `tern-<lab>-<node>`.
    pub fn netns(&self, node: &str) -> String {
        format!("tern-{}-{node}", self.name)
    }

    /// The namespace of a pod: `tern-<lab>-<node>-<pod>`.
    pub fn pod_netns(&self, node: &str, pod: &str) -> String {
        format!("tern-{}-{node}-{pod}", self.name)
    }

    /// Every namespace the lab creates: nodes, bridges and pods.
    pub fn namespaces(&self) -> Vec<String> {
        let mut all = Vec::new();
        for node in self.nodes.values() {
            all.push(self.netns(&node.name));
            for pod in &node.pods {
                all.push(self.pod_netns(&node.name, &pod.name));
            }
        }
        all
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// The directory holding the topology file.
    pub fn dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("/"))
    }

    fn check_namespaces(&self) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        for ns in self.namespaces() {
            if !seen.insert(ns.clone()) {
                return Err(format!(
                    "two nodes or pods would share the namespace {ns}; rename one of them"
                ));
            }
        }
        Ok(())
    }
}

/// Names of labs, nodes and pods: lowercase letters, digits, `-` and `_`, starting with a letter
/// or digit, at most `max` characters.
fn check_name(name: &str, max: usize) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    let ok_start = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !ok_chars || !ok_start {
        return Err(
            "use lowercase letters, digits, `-` and `_`, starting with a letter or digit"
                .to_string(),
        );
    }
    if name.len() > max {
        return Err(format!(
            "at most {max} characters (it becomes part of namespace names)"
        ));
    }
    Ok(())
}

/// A scalar YAML value as text (containerlab's env and labels are strings; YAML may type them).
fn scalar(value: &serde_yaml::Value) -> Option<String> {
    match value {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn validate_node(name: &str, raw: RawNode, dir: &Path) -> Result<Node, String> {
    check_name(name, 24)?;
    let kind = match raw.kind.as_deref() {
        Some("linux") => NodeKind::Linux,
        Some("bridge") => NodeKind::Bridge,
        Some(other) => {
            return Err(format!(
                "kind {other:?} is not supported: use `linux` (a host) or `bridge` (a segment)"
            ));
        }
        None => return Err("no kind: set `kind: linux` or `kind: bridge`".into()),
    };

    let mut env = BTreeMap::new();
    for (key, value) in &raw.env {
        let value = scalar(value).ok_or_else(|| format!("env {key}: give a plain string"))?;
        env.insert(key.clone(), value);
    }
    let mut labels = BTreeMap::new();
    for (key, value) in &raw.labels {
        let value = scalar(value).ok_or_else(|| format!("label {key}: give a plain string"))?;
        labels.insert(key.clone(), value);
    }

    let daemon = match labels.get(LABEL_DAEMON) {
        Some(value) => DaemonKind::from_label(value).ok_or_else(|| {
            format!("label {LABEL_DAEMON}: {value:?} is none of frr, bird, gobgp, ternd, none")
        })?,
        None => raw
            .image
            .as_deref()
            .map_or(DaemonKind::None, DaemonKind::from_image),
    };

    let binds = raw
        .binds
        .iter()
        .map(|bind| parse_bind(bind, dir))
        .collect::<Result<Vec<_>, _>>()?;

    let exec = raw
        .exec
        .iter()
        .enumerate()
        .map(|(i, line)| {
            parse_exec(line, daemon).map_err(|why| format!("exec[{i}] {line:?}: {why}"))
        })
        .collect::<Result<Vec<_>, _>>()?;

    let pods = match labels.get(LABEL_PODS) {
        Some(value) => parse_pods(value).map_err(|why| format!("label {LABEL_PODS}: {why}"))?,
        None => Vec::new(),
    };

    if kind == NodeKind::Bridge {
        if daemon != DaemonKind::None || !binds.is_empty() || !exec.is_empty() || !pods.is_empty() {
            return Err(
                "a bridge is a plain L2 segment: it takes no image daemon, binds, exec or pods"
                    .into(),
            );
        }
    } else if daemon != DaemonKind::None {
        let paths = daemon.config_paths();
        if !binds
            .iter()
            .any(|b| paths.iter().any(|p| b.container == Path::new(p)))
        {
            return Err(format!(
                "it runs {daemon} but no bind gives its config: add a bind ending in `:{}`",
                paths[0]
            ));
        }
    }

    let mut pod_names = BTreeSet::new();
    for pod in &pods {
        if !pod_names.insert(pod.name.as_str()) {
            return Err(format!("pod {:?} is listed twice", pod.name));
        }
    }

    Ok(Node {
        name: name.to_string(),
        kind,
        image: raw.image,
        daemon,
        binds,
        exec,
        env,
        labels,
        pods,
    })
}

fn parse_bind(text: &str, dir: &Path) -> Result<Bind, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (host, container) = match parts.as_slice() {
        [host, container] | [host, container, "ro" | "rw"] => (*host, *container),
        _ => {
            return Err(format!(
                "bind {text:?}: write it as host/path:/container/path (optionally :ro)"
            ));
        }
    };
    if host.is_empty() || !container.starts_with('/') {
        return Err(format!(
            "bind {text:?}: write it as host/path:/container/path (container path absolute)"
        ));
    }
    let host = dir.join(host);
    if !host.exists() {
        return Err(format!(
            "bind {text:?}: {} does not exist (host paths are relative to the topology file)",
            host.display()
        ));
    }
    Ok(Bind {
        host,
        container: PathBuf::from(container),
    })
}

fn parse_exec(line: &str, daemon: DaemonKind) -> Result<ExecLine, String> {
    let argv = split_words(line)?;
    let Some(program) = argv.first() else {
        return Err("empty command".into());
    };
    let kind = match program.as_str() {
        "ip" => {
            check_ip_args(&argv[1..])?;
            ExecKind::Ip
        }
        "sysctl" => {
            check_sysctl_args(&argv[1..])?;
            ExecKind::Sysctl
        }
        "vtysh" | "birdc" | "gobgp" => {
            let (kind, needs) = match program.as_str() {
                "vtysh" => (ExecKind::Vtysh, DaemonKind::Frr),
                "birdc" => (ExecKind::Birdc, DaemonKind::Bird),
                _ => (ExecKind::Gobgp, DaemonKind::Gobgp),
            };
            if daemon != needs {
                return Err(format!(
                    "`{program}` talks to {needs}, but this node runs {daemon}"
                ));
            }
            kind
        }
        other => {
            return Err(format!(
                "`{other}` is not supported here: exec lines may be `ip ...`, `sysctl net....`, \
                 or `vtysh`/`birdc`/`gobgp` for the node's daemon; do anything else from a test"
            ));
        }
    };
    Ok(ExecLine { argv, kind })
}

/// `ip` arguments that could reach beyond the node's namespace are refused: other namespaces
/// (`netns`, `-n`), batch files (`-b`), and all namespaces at once (`-all`).
fn check_ip_args(args: &[String]) -> Result<(), String> {
    if args.iter().any(|a| a == "netns") {
        return Err(
            "`ip` may not name or switch namespaces here (the runner picks the node's)".into(),
        );
    }
    for arg in args.iter().take_while(|a| a.starts_with('-')) {
        let bare = arg.trim_start_matches('-');
        // iproute2 accepts any abbreviation of an option: `-n`, `-net`, `-netns` alike.
        let refused = ["netns", "all", "batch"]
            .iter()
            .any(|opt| !bare.is_empty() && opt.starts_with(bare));
        if refused {
            return Err(format!(
                "`ip {arg}` is refused: the runner runs `ip` in the node's namespace, one command a line"
            ));
        }
    }
    if args.iter().all(|a| a.starts_with('-')) {
        return Err("`ip` with no object: write e.g. `ip addr add 10.0.0.1/24 dev eth1`".into());
    }
    Ok(())
}

/// `sysctl` may only read or write `net.*` keys (they are per namespace); anything else would
/// change the host.
fn check_sysctl_args(args: &[String]) -> Result<(), String> {
    let mut settings = 0;
    for arg in args {
        if arg.starts_with('-') {
            if !matches!(arg.as_str(), "-w" | "-q" | "-e" | "-qw" | "-wq") {
                return Err(format!(
                    "`sysctl {arg}` is refused: use `sysctl -w net.key=value`"
                ));
            }
            continue;
        }
        let key = arg.split('=').next().unwrap_or_default().replace('/', ".");
        if !key.starts_with("net.") {
            return Err(format!(
                "`{arg}`: only net.* keys, which belong to the node's namespace, may be set"
            ));
        }
        settings += 1;
    }
    if settings == 0 {
        return Err("`sysctl` with no key: write `sysctl -w net.key=value`".into());
    }
    Ok(())
}

/// Splits a command line into words: whitespace separates, `'...'` is literal, `"..."` allows
/// `\"` and `\\`, and a backslash outside quotes escapes the next character.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated ' quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated \" quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated \" quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("trailing backslash".into()),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Parses `tern.pods`: `name=IPv4[+IPv6],...`.
pub fn parse_pods(text: &str) -> Result<Vec<Pod>, String> {
    let mut pods = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, addrs) = entry
            .split_once('=')
            .ok_or_else(|| format!("{entry:?}: write name=IPv4 or name=IPv4+IPv6"))?;
        let name = name.trim();
        check_name(name, 16).map_err(|why| format!("pod name {name:?}: {why}"))?;
        let (v4, v6) = match addrs.split_once('+') {
            Some((v4, v6)) => (v4.trim(), Some(v6.trim())),
            None => (addrs.trim(), None),
        };
        let ipv4 = v4
            .parse::<Ipv4Addr>()
            .map_err(|_| format!("{entry:?}: {v4:?} is not an IPv4 address (no prefix length)"))?;
        let ipv6 = v6
            .map(|v6| {
                v6.parse::<Ipv6Addr>().map_err(|_| {
                    format!("{entry:?}: {v6:?} is not an IPv6 address (no prefix length)")
                })
            })
            .transpose()?;
        pods.push(Pod {
            name: name.to_string(),
            ipv4,
            ipv6,
        });
    }
    if pods.is_empty() {
        return Err("no pods listed: write name=IPv4[+IPv6],...".into());
    }
    Ok(pods)
}

fn parse_endpoint(text: &str) -> Result<Endpoint, String> {
    let (node, iface) = text
        .split_once(':')
        .ok_or_else(|| format!("endpoint {text:?}: write it as node:interface"))?;
    check_iface(iface).map_err(|why| format!("endpoint {text:?}: {why}"))?;
    Ok(Endpoint {
        node: node.to_string(),
        iface: iface.to_string(),
    })
}

/// Linux interface names: 1 to 15 characters, no `/`, `:` or whitespace; `lo` and `cali*`
/// (the runner's pod interfaces) are taken.
fn check_iface(iface: &str) -> Result<(), String> {
    if iface.is_empty() || iface.len() > 15 {
        return Err("interface names have 1 to 15 characters".into());
    }
    if iface
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
        || iface == "."
        || iface == ".."
    {
        return Err("interface names may not hold `/`, `:` or spaces".into());
    }
    if iface == "lo" || iface.starts_with("cali") {
        return Err(format!(
            "{iface} is taken (lo, and cali* for pods); pick another name"
        ));
    }
    Ok(())
}

fn validate_link(
    nodes: &BTreeMap<String, Node>,
    raw: &RawLink,
    used: &mut BTreeSet<Endpoint>,
) -> Result<Link, String> {
    let [a, b] = raw.endpoints.as_slice() else {
        return Err(format!(
            "a link has exactly two endpoints (it has {}); join more nodes with a `kind: bridge` node",
            raw.endpoints.len()
        ));
    };
    let a = parse_endpoint(a)?;
    let b = parse_endpoint(b)?;
    let mut bridges = 0;
    for end in [&a, &b] {
        let node = nodes
            .get(&end.node)
            .ok_or_else(|| format!("endpoint {end}: no node {:?} in topology.nodes", end.node))?;
        match node.kind {
            NodeKind::Bridge => bridges += 1,
            NodeKind::Linux => {
                if end.iface == "eth0" {
                    return Err(format!(
                        "endpoint {end}: containerlab keeps eth0 for management; use eth1 and up"
                    ));
                }
            }
        }
        if !used.insert(end.clone()) {
            return Err(format!("endpoint {end} is used by another link"));
        }
    }
    if a == b {
        return Err("both ends are the same interface".into());
    }
    if bridges == 2 {
        return Err("both ends are bridges; put a node between them".into());
    }
    Ok(Link { a, b })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topologies_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies")
    }

    fn parse(text: &str) -> Result<Topology, TopologyError> {
        Topology::parse(text, &topologies_dir().join("test.clab.yml"))
    }

    fn invalid(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn every_shipped_topology_parses_and_names_its_daemons() {
        let mut seen = BTreeMap::new();
        for entry in std::fs::read_dir(topologies_dir()).expect("e2e/topologies") {
            let path = entry.expect("dir entry").path();
            let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !file.ends_with(".clab.yml") {
                continue;
            }
            let topology = Topology::load(&path).unwrap_or_else(|e| panic!("{e}"));
            let text = std::fs::read_to_string(&path).expect("read");
            assert!(
                text.starts_with('#'),
                "{file} must start with a comment: the picture, addresses and AS numbers"
            );
            for node in topology.nodes.values() {
                if node.daemon != DaemonKind::None {
                    let bind = node.config_bind().expect("validated");
                    assert!(bind.host.is_file(), "{file}: {}", bind.host.display());
                }
            }
            seen.insert(file.to_string(), topology);
        }
        for expected in [
            "mesh3.clab.yml",
            "mesh3-tor.clab.yml",
            "leaf-spine.clab.yml",
            "overlay.clab.yml",
            "interop.clab.yml",
            "rr.clab.yml",
        ] {
            assert!(seen.contains_key(expected), "{expected} is missing");
        }
        let interop = &seen["interop.clab.yml"];
        let daemons: Vec<_> = interop.nodes.values().map(|n| n.daemon).collect();
        for daemon in [DaemonKind::Frr, DaemonKind::Bird, DaemonKind::Gobgp] {
            assert!(daemons.contains(&daemon), "interop runs {daemon}");
        }
        let tor = &seen["mesh3-tor.clab.yml"];
        assert_eq!(tor.node("tor").map(|n| n.daemon), Some(DaemonKind::Frr));
        assert!(tor.nodes.values().any(|n| !n.pods.is_empty()));
    }

    #[test]
    fn a_minimal_topology_gives_namespaces_per_node_and_pod() {
        let topology = parse(
            r#"
name: t1
topology:
  nodes:
    a:
      kind: linux
      image: debian
      labels: { tern.pods: "p1=10.244.0.2+fd00::2, p2=10.244.0.3" }
      exec: ["ip addr add 10.0.0.1/24 dev eth1", "sysctl -w net.ipv4.conf.all.rp_filter=0"]
    b: { kind: linux }
    sw: { kind: bridge }
  links:
    - endpoints: ["a:eth1", "sw:a"]
    - endpoints: ["b:eth1", "sw:b"]
"#,
        )
        .expect("valid");
        assert_eq!(
            topology.namespaces(),
            [
                "tern-t1-a",
                "tern-t1-a-p1",
                "tern-t1-a-p2",
                "tern-t1-b",
                "tern-t1-sw"
            ]
        );
        let a = topology.node("a").expect("a");
        assert_eq!(a.daemon, DaemonKind::None);
        assert_eq!(a.pods[0].ipv6, Some("fd00::2".parse().expect("v6")));
        assert_eq!(a.exec[1].kind, ExecKind::Sysctl);
    }

    #[test]
    fn the_daemon_comes_from_the_image_unless_a_label_overrides_it() {
        assert_eq!(
            DaemonKind::from_image("quay.io/frrouting/frr:8.4.1"),
            DaemonKind::Frr
        );
        assert_eq!(
            DaemonKind::from_image("pierky/bird:2.0.12"),
            DaemonKind::Bird
        );
        assert_eq!(
            DaemonKind::from_image("jauderho/gobgp:v3.10.0"),
            DaemonKind::Gobgp
        );
        assert_eq!(
            DaemonKind::from_image("ghcr.io/tern-project/ternd:latest"),
            DaemonKind::Ternd
        );
        assert_eq!(DaemonKind::from_image("debian:bookworm"), DaemonKind::None);
        let topology = parse(
            "name: t2\ntopology:\n  nodes:\n    a: { kind: linux, image: quay.io/frrouting/frr, \
             labels: { tern.daemon: none } }\n",
        )
        .expect("valid");
        assert_eq!(topology.node("a").map(|n| n.daemon), Some(DaemonKind::None));
    }

    #[test]
    fn errors_name_the_file_the_node_and_what_to_change() {
        let error = invalid("name: t3\ntopology:\n  nodes:\n    a: { kind: linux, image: frr }\n");
        assert!(error.contains("test.clab.yml"), "{error}");
        assert!(error.contains("node \"a\""), "{error}");
        assert!(error.contains("/etc/frr/frr.conf"), "{error}");

        let error = invalid(
            "name: t3\ntopology:\n  nodes:\n    a: { kind: linux, exec: [\"rm -rf /\"] }\n",
        );
        assert!(error.contains("`rm` is not supported"), "{error}");

        let error = invalid("name: t3\ntopology:\n  nodes:\n    a: { kind: linux, colour: red }\n");
        assert!(error.contains("unknown field `colour`"), "{error}");
        assert!(error.contains("line 4"), "{error}");
    }

    #[test]
    fn exec_lines_cannot_reach_outside_the_node() {
        for line in [
            "ip netns exec x true",
            "ip -n other addr",
            "ip -netns other addr",
            "ip -all netns exec true",
            "ip -b /tmp/file",
            "ip -net other link",
            "ip link set eth1 netns 1",
            "sysctl -w kernel.pid_max=10",
            "sysctl -p",
            "sysctl vm.swappiness=1",
        ] {
            assert!(
                parse_exec(line, DaemonKind::None).is_err(),
                "{line} accepted"
            );
        }
        for line in [
            "ip addr add 10.0.0.1/24 dev eth1",
            "ip -6 route add default via fd00::1",
            "ip -4 -j route",
            "ip -f inet addr",
            "sysctl -w net.ipv4.ip_forward=1",
            "sysctl -qw net/ipv6/conf/all/forwarding=1",
        ] {
            assert!(parse_exec(line, DaemonKind::None).is_ok(), "{line} refused");
        }
        assert!(parse_exec("vtysh -c 'show bgp summary'", DaemonKind::Bird).is_err());
        assert_eq!(
            parse_exec("vtysh -c 'show bgp summary'", DaemonKind::Frr)
                .expect("ok")
                .argv,
            ["vtysh", "-c", "show bgp summary"]
        );
    }

    #[test]
    fn links_have_two_known_endpoints_each_used_once() {
        let base = "name: t4\ntopology:\n  nodes:\n    a: { kind: linux }\n    b: { kind: linux }\n    \
                    s1: { kind: bridge }\n    s2: { kind: bridge }\n  links:\n";
        for (links, expect) in [
            ("    - endpoints: [\"a:eth1\"]\n", "exactly two endpoints"),
            (
                "    - endpoints: [\"a:eth1\", \"c:eth1\"]\n",
                "no node \"c\"",
            ),
            ("    - endpoints: [\"a:eth0\", \"b:eth1\"]\n", "eth0"),
            (
                "    - endpoints: [\"a:eth1\", \"b:eth1\"]\n    - endpoints: [\"a:eth1\", \"b:eth2\"]\n",
                "used by another link",
            ),
            (
                "    - endpoints: [\"s1:x\", \"s2:y\"]\n",
                "both ends are bridges",
            ),
            (
                "    - endpoints: [\"a:averyveryverylongname\", \"b:eth1\"]\n",
                "1 to 15",
            ),
        ] {
            let error = invalid(&format!("{base}{links}"));
            assert!(error.contains(expect), "{expect}: {error}");
        }
    }

    #[test]
    fn pods_are_name_equals_addresses() {
        let pods = parse_pods("a=10.0.0.1, b=10.0.0.2+fd00::2").expect("valid");
        assert_eq!(pods.len(), 2);
        assert_eq!(pods[1].name, "b");
        assert!(parse_pods("a=10.0.0.1/32").is_err());
        assert!(parse_pods("a").is_err());
        assert!(parse_pods("").is_err());
        assert!(parse_pods("A=10.0.0.1").is_err());
    }

    #[test]
    fn words_split_like_a_shell_without_expansion() {
        assert_eq!(
            split_words(r#"vtysh -c 'show bgp summary json' -c "a \"b\"" c\ d"#).expect("ok"),
            [
                "vtysh",
                "-c",
                "show bgp summary json",
                "-c",
                "a \"b\"",
                "c d"
            ]
        );
        assert_eq!(split_words("  ").expect("ok"), Vec::<String>::new());
        assert!(split_words("'open").is_err());
    }

    #[test]
    fn two_namespaces_with_one_name_are_refused() {
        let error = invalid(
            "name: t5\ntopology:\n  nodes:\n    a: { kind: linux, labels: { tern.pods: \"b=10.0.0.1\" } }\n    \
             a-b: { kind: linux }\n",
        );
        assert!(error.contains("tern-t5-a-b"), "{error}");
    }
}
