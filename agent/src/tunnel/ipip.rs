//! The IP-in-IP device (RFC 2003): the kernel's `tunl0` where the kernel has an ipip module,
//! otherwise the userspace encapsulator in [`super::userspace`] behind a TUN device of the same
//! name.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use rtnetlink::LinkIpIp;
use rtnetlink::packet_route::link::InfoKind;

use ipnetwork::Ipv4Network;
use tracing::{info, warn};

use super::{IPIP_DEVICE, TunnelError, Tunnels, userspace};
use crate::config::IpipDataPath;

/// The IP-in-IP device in use.
#[derive(Debug)]
pub(super) struct Ipip {
    pub(super) ifindex: u32,
    /// The userspace encapsulator, when the kernel has no ipip device.
    pub(super) userspace: Option<userspace::UserspaceIpip>,
    /// Encapsulated routes: block -> node addresses (the userspace encapsulator's table).
    pub(super) routes: BTreeMap<Ipv4Network, Vec<Ipv4Addr>>,
    /// `routes` changed since the userspace table was last replaced.
    pub(super) dirty: bool,
}

impl Tunnels {
    pub(super) async fn ensure_ipip(
        &mut self,
        choice: IpipDataPath,
        node: Ipv4Addr,
        mtu: u32,
    ) -> Result<(), TunnelError> {
        if let Some(ipip) = &self.ipip {
            let kernel = ipip.userspace.is_none();
            let fits = match choice {
                IpipDataPath::Auto => true,
                IpipDataPath::Kernel => kernel,
                IpipDataPath::Userspace => !kernel,
            };
            if fits {
                match &ipip.userspace {
                    Some(device) => device.set_mtu(mtu)?,
                    None => self.set_mtu_up(ipip.ifindex, mtu).await?,
                }
                return Ok(());
            }
            if let Some(ipip) = self.ipip.take() {
                self.drop_ipip(ipip).await;
            }
        }
        let existing = self.link(IPIP_DEVICE).await;
        let kernel_device = match (&existing, choice) {
            (_, IpipDataPath::Userspace) => None,
            (Some((index, Some(InfoKind::IpIp), _)), _) => Some(*index),
            (Some((_, Some(InfoKind::Tun), _)), IpipDataPath::Auto) => None,
            (Some((_, kind, _)), _) => {
                return Err(TunnelError::NotIpip(format!("{kind:?}")));
            }
            (None, _) => {
                let message = LinkIpIp::new(IPIP_DEVICE).build();
                let added = self.handle.link().add(message).execute().await;
                // Loading the ipip module creates its own tunl0 (the fallback device), which
                // can make our request fail with EEXIST: what counts is what is there now.
                let now = match self.link(IPIP_DEVICE).await {
                    Some((index, Some(InfoKind::IpIp), _)) => Some(index),
                    _ => None,
                };
                match (now, added) {
                    (Some(index), _) => Some(index),
                    (None, Err(error)) if choice == IpipDataPath::Kernel => {
                        return Err(TunnelError::NoKernelIpip(error));
                    }
                    (None, Err(error)) => {
                        info!(%error, "the kernel has no ipip device; using the userspace encapsulator");
                        None
                    }
                    (None, Ok(())) => {
                        return Err(TunnelError::NotIpip("a new device".into()));
                    }
                }
            }
        };
        let ipip = match kernel_device {
            Some(ifindex) => {
                self.set_mtu_up(ifindex, mtu).await?;
                Ipip {
                    ifindex,
                    userspace: None,
                    routes: BTreeMap::new(),
                    dirty: false,
                }
            }
            None => {
                let device = tokio::task::spawn_blocking(move || {
                    userspace::UserspaceIpip::start(IPIP_DEVICE, node, mtu)
                })
                .await??;
                Ipip {
                    ifindex: device.ifindex(),
                    userspace: Some(device),
                    routes: BTreeMap::new(),
                    dirty: true,
                }
            }
        };
        self.ipip = Some(ipip);
        Ok(())
    }

    pub(super) async fn drop_ipip(&self, ipip: Ipip) {
        match ipip.userspace {
            Some(device) => {
                drop(device);
                if let Err(error) = userspace::delete_device(IPIP_DEVICE) {
                    warn!(%error, "cannot delete the userspace {IPIP_DEVICE}");
                }
                info!("IP-in-IP off: the userspace {IPIP_DEVICE} removed");
            }
            // The kernel's tunl0 is the ipip module's fallback device and cannot be deleted;
            // without routes it carries nothing.
            None => info!("IP-in-IP off"),
        }
    }
}
