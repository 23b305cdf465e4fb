//! RouteService: the Loc-RIB streamed in pages, filtered by prefix, family and peer, with each
//! route's kernel state.
//!
//! The speaker's table is ordered by address, then length; a listing walks it from just before
//! where its scope starts and stops as soon as nothing further can match.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnetwork::{IpNetwork, Ipv4Network};
use tern_bgp::RouteEntry;
use tern_proto::v1 as pb;
use tern_proto::v1::route_service_server::RouteService;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::convert;
use super::server::{Api, Stream, stopping};
use crate::handle::Command;

/// Routes per streamed ListRoutes message unless the client asks otherwise.
const DEFAULT_PAGE: usize = 1000;
/// The largest page a client may ask for.
pub(super) const MAX_PAGE: usize = 10_000;

/// Which prefixes a listing covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Every prefix.
    All,
    /// Prefixes equal to or inside this one.
    Inside(IpNetwork),
    /// Prefixes that contain this address, most specific first.
    Containing(IpAddr),
}

/// A ListRoutes request, checked.
#[derive(Debug, Clone)]
struct RouteQuery {
    scope: Scope,
    /// `Some(true)`: IPv4 only; `Some(false)`: IPv6 only.
    ipv4: Option<bool>,
    peer: Option<IpAddr>,
    page: usize,
    start_after: Option<IpNetwork>,
    limit: usize,
}

impl RouteQuery {
    /// Checks a request; a bad field is an INVALID_ARGUMENT that names it.
    fn parse(request: pb::ListRoutesRequest) -> Result<RouteQuery, Status> {
        let text = request.prefix.trim();
        let scope = if text.is_empty() {
            Scope::All
        } else if text.contains('/') {
            let prefix = convert::prefix("prefix", text)?;
            // Inside 10.244.1.7/24 means inside 10.244.1.0/24.
            Scope::Inside(
                IpNetwork::new(prefix.network(), prefix.prefix()).map_err(|_| {
                    Status::invalid_argument(format!("prefix: {text:?} is not a prefix"))
                })?,
            )
        } else {
            Scope::Containing(convert::address("prefix", text)?)
        };
        let ipv4 = match pb::AddressFamily::try_from(request.family) {
            Ok(pb::AddressFamily::Unspecified) => None,
            Ok(pb::AddressFamily::Ipv4Unicast) => Some(true),
            Ok(pb::AddressFamily::Ipv6Unicast) => Some(false),
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "family: unknown value {}",
                    request.family
                )));
            }
        };
        let peer = match request.peer.trim() {
            "" => None,
            text => Some(convert::address("peer", text)?),
        };
        let start_after = match request.start_after.trim() {
            "" => None,
            text => Some(convert::prefix("start_after", text)?),
        };
        let page = match request.page_size as usize {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        Ok(RouteQuery {
            scope,
            ipv4,
            peer,
            page,
            start_after,
            limit: request.limit as usize,
        })
    }

    /// Where the scan of the ordered table starts: after this prefix.
    fn start(&self) -> Option<IpNetwork> {
        let scope_start = match (self.scope, self.ipv4) {
            (Scope::Inside(net), _) => before(net),
            (_, Some(false)) => Some(LAST_IPV4),
            _ => None,
        };
        match (scope_start, self.start_after) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the scan may stop at `prefix`: nothing after it can match.
    fn past(&self, prefix: IpNetwork) -> bool {
        if self.ipv4 == Some(true) && prefix.is_ipv6() {
            return true;
        }
        match self.scope {
            Scope::Inside(net) => {
                net.is_ipv4() != prefix.is_ipv4() && net.is_ipv4()
                    || net.is_ipv4() == prefix.is_ipv4() && prefix.network() > net.broadcast()
            }
            _ => false,
        }
    }

    /// Whether `entry` is one the listing asks for.
    fn matches(&self, entry: &RouteEntry) -> bool {
        let prefix = entry.prefix;
        let family = self.ipv4.is_none_or(|v4| v4 == prefix.is_ipv4());
        let scope = match self.scope {
            Scope::All => true,
            Scope::Inside(net) => {
                net.is_ipv4() == prefix.is_ipv4()
                    && net.contains(prefix.network())
                    && prefix.prefix() >= net.prefix()
            }
            Scope::Containing(address) => prefix.contains(address),
        };
        let peer = self
            .peer
            .is_none_or(|peer| entry.sources.contains(&Some(peer)));
        family && scope && peer && self.start_after.is_none_or(|after| prefix > after)
    }
}

/// The largest IPv4 key of the table: starting after it skips to IPv6.
const LAST_IPV4: IpNetwork = IpNetwork::V4(
    match Ipv4Network::new_checked(std::net::Ipv4Addr::BROADCAST, 32) {
        Some(n) => n,
        None => panic!("a valid prefix"),
    },
);

/// A key just before `net` in the table's order (address, then length), so that a page that
/// starts after it starts at `net` or the first prefix after it.
fn before(net: IpNetwork) -> Option<IpNetwork> {
    match net.prefix() {
        0 if net.is_ipv4() => None,
        0 => Some(LAST_IPV4),
        length => IpNetwork::new(net.network(), length - 1).ok(),
    }
}

impl Api {
    /// The kernel state of each entry of a page.
    async fn kernel_states(
        &self,
        entries: &[RouteEntry],
        blocks: &BTreeSet<IpNetwork>,
    ) -> Result<Vec<pb::KernelState>, Status> {
        let prefixes: Vec<IpNetwork> = entries.iter().map(|e| e.prefix).collect();
        let installed = self
            .ask(|reply| Command::Installed(prefixes, reply))
            .await?;
        Ok(entries
            .iter()
            .zip(installed)
            .map(|(entry, installed)| {
                if blocks.contains(&entry.prefix) {
                    pb::KernelState::Blackhole
                } else if installed {
                    pb::KernelState::Installed
                } else {
                    pb::KernelState::NotInstalled
                }
            })
            .collect())
    }

    /// Converts and sends one page; false once the client is gone.
    async fn send_page(
        &self,
        entries: Vec<RouteEntry>,
        blocks: &BTreeSet<IpNetwork>,
        out: &mpsc::Sender<Result<pb::ListRoutesResponse, Status>>,
    ) -> Result<bool, Status> {
        if entries.is_empty() {
            return Ok(true);
        }
        let states = self.kernel_states(&entries, blocks).await?;
        let routes = entries
            .iter()
            .zip(states)
            .map(|(e, state)| convert::route(e, state))
            .collect();
        Ok(out
            .send(Ok(pb::ListRoutesResponse { routes }))
            .await
            .is_ok())
    }

    /// Streams the routes `query` asks for in pages.
    async fn stream_routes(
        &self,
        query: RouteQuery,
        out: &mpsc::Sender<Result<pb::ListRoutesResponse, Status>>,
    ) -> Result<(), Status> {
        let blocks: BTreeSet<IpNetwork> = self
            .ask(Command::ListBlocks)
            .await?
            .into_iter()
            .map(|(prefix, _)| prefix)
            .collect();
        let speaker = &self.handle.speaker;
        let limit = if query.limit == 0 {
            usize::MAX
        } else {
            query.limit
        };
        if let Scope::Containing(address) = query.scope {
            // At most one prefix per length contains the address: look each up, longest first.
            let mut found = Vec::new();
            let longest = if address.is_ipv4() { 32 } else { 128 };
            for length in (0..=longest).rev() {
                let Ok(candidate) = IpNetwork::new(address, length) else {
                    continue;
                };
                let candidate = IpNetwork::new(candidate.network(), length).unwrap_or(candidate);
                let page = speaker
                    .routes(before(candidate), 1)
                    .await
                    .map_err(|_| stopping())?;
                if let Some(entry) = page.into_iter().next()
                    && entry.prefix == candidate
                    && query.matches(&entry)
                {
                    found.push(entry);
                }
            }
            found.truncate(limit);
            for chunk in found.chunks(query.page) {
                if !self.send_page(chunk.to_vec(), &blocks, out).await? {
                    return Ok(());
                }
            }
            return Ok(());
        }
        let mut after = query.start();
        let mut sent = 0;
        loop {
            let page = speaker
                .routes(after, query.page)
                .await
                .map_err(|_| stopping())?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = Some(last.prefix);
            let full = page.len() == query.page;
            let mut done = !full;
            let mut wanted = Vec::new();
            for entry in page {
                if query.past(entry.prefix) || sent + wanted.len() >= limit {
                    done = true;
                    break;
                }
                if query.matches(&entry) {
                    wanted.push(entry);
                }
            }
            sent += wanted.len();
            if !self.send_page(wanted, &blocks, out).await? || done {
                return Ok(());
            }
        }
    }
}

#[tonic::async_trait]
impl RouteService for Api {
    type ListRoutesStream = Stream<pb::ListRoutesResponse>;

    async fn list_routes(
        &self,
        request: Request<pb::ListRoutesRequest>,
    ) -> Result<Response<Self::ListRoutesStream>, Status> {
        let query = RouteQuery::parse(request.into_inner())?;
        let (out, stream) = mpsc::channel(2);
        let api = self.clone();
        tokio::spawn(async move {
            if let Err(status) = api.stream_routes(query, &out).await {
                let _ = out.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(stream))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(request: pb::ListRoutesRequest) -> RouteQuery {
        RouteQuery::parse(request).unwrap()
    }

    fn net(text: &str) -> IpNetwork {
        text.parse().unwrap()
    }

    #[test]
    fn a_listing_inside_a_prefix_starts_just_before_it_and_stops_past_it() {
        let q = query(pb::ListRoutesRequest {
            prefix: "10.244.10.7/24".into(),
            ..Default::default()
        });
        assert_eq!(q.scope, Scope::Inside(net("10.244.10.0/24")));
        let start = q.start().unwrap();
        assert!(start < net("10.244.10.0/24") && start > net("10.244.9.255/32"));
        assert!(!q.past(net("10.244.10.192/26")));
        assert!(q.past(net("10.244.11.0/26")));
        assert!(q.past(net("fd00::/64")));
    }

    #[test]
    fn an_ipv6_listing_skips_every_ipv4_route() {
        let q = query(pb::ListRoutesRequest {
            family: pb::AddressFamily::Ipv6Unicast as i32,
            ..Default::default()
        });
        assert_eq!(q.start(), Some(LAST_IPV4));
        let v4 = query(pb::ListRoutesRequest {
            family: pb::AddressFamily::Ipv4Unicast as i32,
            ..Default::default()
        });
        assert_eq!(v4.start(), None);
        assert!(v4.past(net("::/0")));
        let everything_v6 = query(pb::ListRoutesRequest {
            prefix: "::/0".into(),
            ..Default::default()
        });
        assert_eq!(everything_v6.start(), Some(LAST_IPV4));
    }

    #[test]
    fn a_bare_address_asks_for_the_routes_that_contain_it() {
        let q = query(pb::ListRoutesRequest {
            prefix: "10.244.10.70".into(),
            ..Default::default()
        });
        assert_eq!(q.scope, Scope::Containing("10.244.10.70".parse().unwrap()));
    }

    #[test]
    fn page_sizes_have_a_default_and_a_ceiling() {
        assert_eq!(query(pb::ListRoutesRequest::default()).page, DEFAULT_PAGE);
        let big = query(pb::ListRoutesRequest {
            page_size: 1_000_000,
            ..Default::default()
        });
        assert_eq!(big.page, MAX_PAGE);
    }
}
