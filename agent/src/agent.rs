//! The agent's main loop: turns the configuration into speaker peers and originated blocks, and
//! the speaker's best paths into kernel routes.
//!
//! Kernel rules, as Calico's: a blackhole for each of our blocks; a learned route is installed
//! only when it falls inside an enabled IP pool and is not one of our blocks, or when a
//! (top-of-rack) peer's filters admit it, such as a default route.
//!
//! Restart without loss: routes already in the kernel with our protocol are adopted as stale at
//! start and kept; once every peer sent its End-of-RIB (or the restart time passed), the stale
//! ones not learned again are deleted. On SIGTERM the sessions close without a Cease, so peers
//! keep our routes under graceful restart, and the kernel routes stay.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnetwork::IpNetwork;
use tern_bgp::{Notice, RouteEntry, Speaker, SpeakerEvent, Subscription};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::config::Config;
use crate::error::{AgentError, BlockError, PeerError};
pub use crate::handle::{AgentHandle, AgentStatus, BlockSource, Command, Refusals};
use crate::reconcile::{
    Admission, DesiredPeer, Learned, Repair, communities, desired_peers, encapsulation_changed,
    exported, keep_restart_only_settings, peer_changes, repair, speaker_config,
};
use crate::routes::{KernelRoute, Programmer, RouteKind, RouteTag};
use crate::state::Saved;
use crate::tunnel::Tunnels;

/// The first delay before a failed kernel install is tried again (doubling, five tries).
const RETRY_FIRST_DELAY: Duration = Duration::from_millis(500);

/// How often the kernel is compared with what it should hold.
const REPAIR_INTERVAL: Duration = Duration::from_secs(30);

/// The running agent's state.
pub struct Agent {
    /// Blocks added through the API.
    api_blocks: BTreeSet<IpNetwork>,
    /// The state file as loaded: its held entries are written back by every save.
    saved: Saved,
    /// Peers added through the API (also in `peers`); a reload keeps them.
    api_peers: BTreeSet<IpAddr>,
    commands: mpsc::Receiver<Command>,
    handle: AgentHandle,
    started: std::time::SystemTime,
    config: Config,
    speaker: Speaker,
    /// The speaker's events, subscribed before any peer is added so that no route learned
    /// before [`Agent::run`] starts is missed; `run` takes it.
    events: Option<Subscription>,
    programmer: Programmer,
    /// Batches for the kernel writer task, which installs them while this loop goes on taking
    /// the speaker's next changes (on the other core).
    kernel: crate::routes::WriterQueue,
    peers: BTreeMap<IpAddr, DesiredPeer>,
    /// Learned routes in the kernel, and those adopted from an earlier run until the sweep.
    learned: Learned,
    /// The encapsulation devices (IP-in-IP, VXLAN) and their per-route state.
    tunnels: Tunnels,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("node", &self.config.node_name)
            .finish()
    }
}

impl Agent {
    /// Starts the speaker and adopts what the kernel already holds.
    pub async fn start(config: Config) -> Result<Agent, AgentError> {
        let tag = RouteTag {
            table: config.route_table,
            protocol: config.route_protocol.0,
            metric: config.metric,
        };
        let programmer = Programmer::open(tag).map_err(AgentError::io("the route socket"))?;
        let existing = programmer.dump().await?;
        let (connection, links, _) =
            rtnetlink::new_connection().map_err(AgentError::io("the link socket"))?;
        tokio::spawn(connection);
        let mut tunnels = Tunnels::new(links);
        let restarting = !existing.is_empty();
        let listen = SocketAddr::new(config.listen_address, config.listen_port);
        let (speaker, _) = Speaker::start(speaker_config(&config, restarting), &[listen])
            .await
            .map_err(AgentError::io("the BGP listener"))?;
        let events = Some(speaker.subscribe_lossless());
        let peers = desired_peers(&config)?;
        let stale: BTreeSet<IpNetwork> = existing.keys().copied().collect();
        if restarting {
            info!(
                routes = stale.len(),
                "adopted kernel routes from an earlier run as stale"
            );
        }
        let saved = Saved::load(&config);
        let api_blocks = saved.blocks.clone();
        let mut blocks = config.blocks.clone();
        blocks.extend(api_blocks.iter().copied());
        tunnels.configure(&config, &blocks).await;
        let (commands_tx, commands) = mpsc::channel(64);
        let handle = AgentHandle {
            commands: commands_tx,
            speaker: speaker.clone(),
        };
        let mut agent = Agent {
            api_blocks,
            saved,
            api_peers: BTreeSet::new(),
            commands,
            handle,
            started: std::time::SystemTime::now(),
            config,
            speaker,
            events,
            kernel: crate::routes::spawn_writer(programmer.clone(), RETRY_FIRST_DELAY),
            programmer,
            learned: Learned {
                stale,
                awaiting_eor: peers.keys().copied().collect(),
                ..Learned::default()
            },
            peers,
            tunnels,
        };
        agent.apply_blocks(&[]).await;
        for peer in agent.peers.values() {
            agent.speaker.add_peer(peer.config.clone()).await?;
        }
        Ok(agent)
    }

    /// A handle for the control API.
    pub fn handle(&self) -> AgentHandle {
        self.handle.clone()
    }

    /// Our blocks: from the configuration and from the API.
    fn blocks(&self) -> Vec<IpNetwork> {
        let mut all = self.config.blocks.clone();
        all.extend(
            self.api_blocks
                .iter()
                .filter(|b| !self.config.blocks.contains(b)),
        );
        all
    }

    /// Makes `blocks` the API blocks, once the state file holds them: when it cannot be
    /// written, nothing changes and the call that asked fails.
    fn commit_blocks(&mut self, blocks: BTreeSet<IpNetwork>) -> Result<(), BlockError> {
        let path = &self.config.state_file;
        self.saved.save(path, &blocks).map_err(|error| {
            warn!(file = %path.display(), %error, "cannot save the API blocks: the change is refused");
            BlockError::NotSaved {
                path: path.clone(),
                reason: error.to_string(),
            }
        })?;
        self.api_blocks = blocks;
        Ok(())
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::AddBlock(block, reply) => {
                let result = self.add_block(block).await;
                let _ = reply.send(result);
            }
            Command::RemoveBlock(block, reply) => {
                let result = if self.config.blocks.contains(&block) {
                    Err(BlockError::FromConfig { block })
                } else if self.api_blocks.contains(&block) {
                    let mut blocks = self.api_blocks.clone();
                    blocks.remove(&block);
                    match self.commit_blocks(blocks) {
                        Ok(()) => {
                            self.apply_blocks(&[block]).await;
                            Ok(true)
                        }
                        Err(error) => Err(error),
                    }
                } else {
                    Ok(false)
                };
                let _ = reply.send(result);
            }
            Command::SetBlocks(blocks, reply) => {
                let result = self.set_blocks(blocks).await;
                let _ = reply.send(result);
            }
            Command::ListBlocks(reply) => {
                let mut list: Vec<(IpNetwork, BlockSource)> = self
                    .config
                    .blocks
                    .iter()
                    .map(|b| (*b, BlockSource::Config))
                    .collect();
                list.extend(
                    self.api_blocks
                        .iter()
                        .filter(|b| !self.config.blocks.contains(b))
                        .map(|b| (*b, BlockSource::Api)),
                );
                list.sort();
                let _ = reply.send(list);
            }
            Command::Status(reply) => {
                let (path, detail) = self.tunnels.status();
                let _ = reply.send(AgentStatus {
                    node: self.config.node_name.clone(),
                    router_id: self
                        .config
                        .router_id()
                        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
                    asn: self.config.as_number,
                    started: self.started,
                    ready: self.learned.swept,
                    kernel_routes: self.learned.routes.len(),
                    peer_kinds: self.peers.iter().map(|(a, p)| (*a, p.kind)).collect(),
                    data_path: path,
                    data_path_detail: detail,
                    refusals: self.refusals(),
                });
            }
            Command::Installed(prefixes, reply) => {
                let _ = reply.send(
                    prefixes
                        .iter()
                        .map(|p| self.learned.routes.contains_key(p))
                        .collect(),
                );
            }
            Command::AddPeer(peer, reply) => {
                let _ = reply.send(self.add_peer(peer).await);
            }
            Command::UpdatePeer(mut peer, reply) => {
                let address = peer.config.address;
                peer.config.max_prefix =
                    (peer.config.max_prefix).or(Some(self.config.max_prefixes.speaker()));
                let result = match self.peers.get_mut(&address) {
                    None => Err(PeerError::NotFound(address)),
                    Some(existing) => {
                        existing.config = peer.config.clone();
                        let _ = self.speaker.update_peer(peer.config).await;
                        info!(peer = %address, "peer changed through the API");
                        Ok(())
                    }
                };
                let _ = reply.send(result);
            }
            Command::RemovePeer(address, reply) => {
                let result = if self.peers.remove(&address).is_some() {
                    self.api_peers.remove(&address);
                    self.learned.awaiting_eor.remove(&address);
                    let _ = self.speaker.remove_peer(address).await;
                    info!(peer = %address, "peer removed through the API");
                    Ok(())
                } else {
                    Err(PeerError::NotFound(address))
                };
                let _ = reply.send(result);
            }
            Command::ResetPeer(address, hard, reply) => {
                let result = if self.peers.contains_key(&address) {
                    let _ = self.speaker.reset_peer(address, hard).await;
                    info!(peer = %address, hard, "peer reset through the API");
                    Ok(())
                } else {
                    Err(PeerError::NotFound(address))
                };
                let _ = reply.send(result);
            }
        }
    }

    /// What the node refused to protect itself, from the kernel writer and the tunnels.
    fn refusals(&self) -> Refusals {
        let tunnel = self.tunnels.userspace_counters().unwrap_or_default();
        let connections = self.speaker.connection_stats();
        Refusals {
            kernel_routes_held_by_others: self.programmer.refused(),
            connections_from_non_peers: connections.refused_not_peer,
            connections_over_the_cap: connections.refused_at_cap,
            connections_without_open: connections.open_timeouts,
            sessions_stalled: connections.send_stalls,
            ipip_unknown_source: tunnel.unknown_source,
            ipip_foreign_source: tunnel.foreign_source,
            ipip_not_local: tunnel.not_local,
        }
    }

    /// Adds a peer from the API; without a prefix limit of its own it gets the configured
    /// default, as every peer of the file does.
    async fn add_peer(&mut self, mut peer: DesiredPeer) -> Result<(), PeerError> {
        let address = peer.config.address;
        peer.config.max_prefix =
            (peer.config.max_prefix).or(Some(self.config.max_prefixes.speaker()));
        if self.peers.contains_key(&address) {
            return Err(PeerError::AlreadyExists(address));
        }
        if address == self.config.node_address.ip() {
            return Err(PeerError::OwnAddress(address));
        }
        let _ = self.speaker.add_peer(peer.config.clone()).await;
        info!(peer = %address, asn = peer.config.asn, "peer added through the API");
        self.api_peers.insert(address);
        self.peers.insert(address, peer);
        Ok(())
    }

    async fn add_block(&mut self, block: IpNetwork) -> Result<bool, BlockError> {
        let blocks = self.blocks();
        if blocks.contains(&block) {
            return Ok(false);
        }
        self.config.check_block(block, &blocks)?;
        let mut api_blocks = self.api_blocks.clone();
        api_blocks.insert(block);
        self.commit_blocks(api_blocks)?;
        self.apply_blocks(&[]).await;
        Ok(true)
    }

    async fn set_blocks(&mut self, wanted: Vec<IpNetwork>) -> Result<(), BlockError> {
        // Check the whole set first: a refused call changes nothing.
        let mut all = self.config.blocks.clone();
        for block in &wanted {
            if !all.contains(block) {
                self.config.check_block(*block, &all)?;
                all.push(*block);
            }
        }
        let wanted: BTreeSet<IpNetwork> = wanted
            .into_iter()
            .filter(|b| !self.config.blocks.contains(b))
            .collect();
        let removed: Vec<IpNetwork> = self.api_blocks.difference(&wanted).copied().collect();
        self.commit_blocks(wanted)?;
        self.apply_blocks(&removed).await;
        Ok(())
    }

    /// Installs blackholes for our blocks and originates them; withdraws `removed` ones.
    async fn apply_blocks(&mut self, removed: &[IpNetwork]) {
        let blackholes: Vec<KernelRoute> = self
            .blocks()
            .into_iter()
            .map(|prefix| KernelRoute {
                prefix,
                kind: RouteKind::Blackhole,
            })
            .collect();
        // A prefix another protocol holds is logged once by the programmer.
        for error in self.programmer.replace(&blackholes).await {
            if !error.is_refusal() {
                warn!(%error, "cannot install a block's blackhole");
            }
        }
        for block in self.blocks() {
            self.learned.stale.remove(&block);
            if exported(&self.config, block) {
                let _ = self
                    .speaker
                    .originate(block, communities(&self.config, block))
                    .await;
            }
        }
        for block in removed {
            let _ = self.speaker.withdraw(*block).await;
        }
        let blocks = self.blocks();
        self.tunnels.update_address(&self.config, &blocks).await;
        for error in self.programmer.delete(removed).await {
            warn!(%error, "cannot delete a block's blackhole");
        }
    }

    /// Applies a batch of best-path changes: the reconciler decides, the tunnels learn which
    /// routes they carry, and the kernel writer gets the changes.
    async fn program(&mut self, batch: Vec<(IpNetwork, Option<RouteEntry>)>) {
        let blocks = self.blocks();
        let admission = Admission {
            pools: &self.config.ip_pools,
            own_blocks: &blocks,
            peers: &self.peers,
        };
        let devices = self.tunnels.devices();
        let programmed = self
            .learned
            .program(&admission, &self.config, devices, batch);
        if devices.any() {
            for (prefix, used) in &programmed.tunnels {
                self.tunnels.note(*prefix, used);
            }
            // Neighbour and FDB entries (VXLAN) and the userspace table before the routes.
            self.tunnels.sync().await;
        }
        if !programmed.kernel.is_empty() {
            self.kernel.push(programmed.kernel);
        }
    }

    /// Deletes the adopted routes nobody announced again.
    async fn sweep(&mut self) {
        if self.learned.swept {
            return;
        }
        let gone = self.learned.sweep();
        self.tunnels.sweep().await;
        if !gone.is_empty() {
            info!(routes = gone.len(), "sweeping stale kernel routes");
        }
        for error in self.programmer.delete(&gone).await {
            warn!(%error, "stale route delete failed");
        }
    }

    /// Compares the kernel with what it should hold and mends the difference.
    async fn repair(&mut self) {
        if self.kernel.pending() > 0 {
            // The writer is still applying changes: the kernel is behind on purpose.
            return;
        }
        let Ok(actual) = self.programmer.dump().await else {
            return;
        };
        let Repair { fix, extra } = repair(&self.learned, &self.blocks(), &actual);
        if !fix.is_empty() || !extra.is_empty() {
            warn!(
                repaired = fix.len(),
                removed = extra.len(),
                "kernel routes differed; repaired"
            );
        }
        // A prefix another protocol holds is logged once by the programmer.
        for error in self.programmer.replace(&fix).await {
            if !error.is_refusal() {
                warn!(%error, "repair failed");
            }
        }
        for error in self.programmer.delete(&extra).await {
            warn!(%error, "repair failed");
        }
    }

    /// Runs until SIGTERM or SIGINT (planned restart: sessions close without a Cease and kernel
    /// routes stay) and applies the configuration again on SIGHUP.
    pub async fn run(mut self, config_path: std::path::PathBuf) -> Result<(), AgentError> {
        use tokio::signal::unix::{SignalKind, signal};
        let handler = AgentError::io("a signal handler");
        let mut terminate = signal(SignalKind::terminate()).map_err(handler)?;
        let mut interrupt =
            signal(SignalKind::interrupt()).map_err(AgentError::io("a signal handler"))?;
        let mut hangup =
            signal(SignalKind::hangup()).map_err(AgentError::io("a signal handler"))?;
        let mut events = match self.events.take() {
            Some(events) => events,
            None => self.speaker.subscribe_lossless(),
        };
        let mut repair = tokio::time::interval(REPAIR_INTERVAL);
        repair.tick().await;
        // A changed file is applied like SIGHUP: checked every two seconds by its content.
        let mut watch = tokio::time::interval(Duration::from_secs(2));
        watch.tick().await;
        let mut applied = std::fs::read(&config_path).ok();
        let mut pending: Option<Vec<u8>> = None;
        let restart_deadline = tokio::time::sleep(self.config.graceful_restart_time.0);
        tokio::pin!(restart_deadline);
        loop {
            tokio::select! {
                _ = terminate.recv() => break,
                _ = interrupt.recv() => break,
                _ = hangup.recv() => {
                    applied = std::fs::read(&config_path).ok();
                    match Config::load(&config_path) {
                        Ok(config) => self.reload(config).await,
                        Err(error) => warn!(%error, "configuration not reloaded"),
                    }
                }
                _ = watch.tick() => {
                    // A file edited in place is applied once it has stopped changing (the same
                    // on two reads two seconds apart) and parses; a half-written one never is.
                    let now = std::fs::read(&config_path).ok();
                    if now.is_none() || now == applied {
                        pending = None;
                    } else if now != pending {
                        pending = now;
                    } else {
                        applied = pending.take();
                        match applied.as_deref().map(|bytes| {
                            Config::parse(&String::from_utf8_lossy(bytes), &config_path)
                        }) {
                            Some(Ok(config)) => self.reload(config).await,
                            Some(Err(error)) => warn!(%error, "changed configuration not applied"),
                            None => {}
                        }
                    }
                }
                () = &mut restart_deadline, if !self.learned.swept => self.sweep().await,
                _ = repair.tick() => self.repair().await,
                Some(command) = self.commands.recv() => self.command(command).await,
                notice = events.next() => {
                    let Some(notice) = notice else { break };
                    let mut batch = Vec::new();
                    self.collect(notice, &mut batch);
                    // Take whatever else is ready, to program the kernel in one batch.
                    while let Some(notice) = events.try_next() {
                        self.collect(notice, &mut batch);
                        if batch.len() > 50_000 {
                            break;
                        }
                    }
                    self.program(batch).await;
                    if self.learned.sweep_due() {
                        self.sweep().await;
                    }
                }
            }
        }
        info!("stopping: sessions close without a Cease and kernel routes stay (graceful restart)");
        let _ = self.speaker.shutdown(true).await;
        Ok(())
    }

    fn collect(&mut self, notice: Notice, batch: &mut Vec<(IpNetwork, Option<RouteEntry>)>) {
        match notice {
            Notice::Event(SpeakerEvent::BestPath {
                prefix,
                best,
                sources,
            }) => {
                batch.push((
                    prefix,
                    best.map(|best| RouteEntry {
                        prefix,
                        best,
                        sources,
                    }),
                ));
            }
            Notice::Event(SpeakerEvent::EndOfRib { address, .. }) => {
                self.learned.end_of_rib(address);
            }
            // The speaker's runtime logs every state change; logging it here too would say it
            // twice.
            Notice::Event(SpeakerEvent::PeerState { .. }) => {}
            Notice::Event(SpeakerEvent::MaxPrefixExceeded {
                address,
                count,
                limit,
            }) => {
                warn!(peer = %address, count, limit, "peer exceeded its prefix limit");
            }
            Notice::Resync(entries) => batch.extend(self.learned.resync(entries)),
        }
    }

    /// Applies a new configuration: peers and blocks that changed; sessions that did not change
    /// are left alone.
    async fn reload(&mut self, mut config: Config) {
        let restart = keep_restart_only_settings(&self.config, &mut config);
        if !restart.is_empty() {
            warn!(
                settings = %restart.join(", "),
                "these settings take effect only when ternd restarts; it runs on with the old values"
            );
        }
        let configured = match desired_peers(&config) {
            Ok(peers) => peers,
            Err(error) => {
                warn!(%error, "configuration not reloaded");
                return;
            }
        };
        let changes = peer_changes(&self.peers, &self.api_peers, configured);
        let removed_blocks: Vec<IpNetwork> = self
            .config
            .blocks
            .iter()
            .filter(|b| !config.blocks.contains(b))
            .copied()
            .collect();
        for address in &changes.removed {
            let _ = self.speaker.remove_peer(*address).await;
        }
        for peer in &changes.changed {
            let _ = self.speaker.add_peer(peer.clone()).await;
        }
        let old = std::mem::replace(&mut self.config, config);
        let encapsulation = encapsulation_changed(&old, &self.config);
        let routes_changed = self.peers != changes.peers || encapsulation;
        self.peers = changes.peers;
        self.api_peers = changes.api_peers;
        if encapsulation {
            let blocks = self.blocks();
            self.tunnels.configure(&self.config, &blocks).await;
        }
        self.apply_blocks(&removed_blocks).await;
        if routes_changed {
            // Pools, filters or encapsulation changed: every learned route is computed again
            // (only those that come out different are written).
            self.reprogram().await;
        }
        info!("configuration reloaded");
    }

    /// Computes every kernel route again from the speaker's Loc-RIB (as after a resync).
    async fn reprogram(&mut self) {
        let Ok(all) = self.speaker.all_routes().await else {
            return;
        };
        let mut batch = Vec::new();
        self.collect(Notice::Resync(all), &mut batch);
        self.program(batch).await;
    }
}
