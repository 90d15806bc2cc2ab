//! Which public gRPC services the gateway routes, and to which backend.
//!
//! The table is read from the contract itself: every service of
//! `agentshare.<area>.v1` is routed to the `<area>` service, except internal
//! ones (`*InternalService`, `EventLogService`), which never leave the
//! cluster. A service added to the contract is routed without touching the
//! gateway.

use std::collections::HashMap;

use agentshare_kit::identity::ServiceName;
use prost::Message;

#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: HashMap<String, ServiceName>,
    /// Public services the gateway implements itself (`agentshare.gateway.v1`).
    own: Vec<String>,
}

fn is_internal(service: &str) -> bool {
    service.ends_with("InternalService") || service == "EventLogService"
}

/// Whether clients may call the gRPC service `full_name`
/// (`agentshare.<area>.v1.<Service>`) through the gateway: a public service
/// of an area the suite serves.
pub fn is_public(full_name: &str) -> bool {
    let mut parts = full_name.split('.');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()),
        (Some("agentshare"), Some(area), Some("v1"), Some(service), None)
            if ServiceName::parse(area).is_some() && !is_internal(service)
    )
}

impl RouteTable {
    pub fn from_contract() -> Self {
        let Ok(set) = prost_types::FileDescriptorSet::decode(agentshare_proto::FILE_DESCRIPTOR_SET)
        else {
            return Self::default();
        };
        let mut routes = HashMap::new();
        let mut own = Vec::new();
        for file in set.file {
            let package = file.package();
            let mut parts = package.split('.');
            let (Some("agentshare"), Some(area), Some("v1"), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Some(backend) = ServiceName::parse(area) else {
                continue;
            };
            for service in &file.service {
                if is_internal(service.name()) {
                    continue;
                }
                let name = format!("{package}.{}", service.name());
                if backend == ServiceName::Gateway {
                    own.push(name);
                } else {
                    routes.insert(name, backend);
                }
            }
        }
        own.sort();
        Self { routes, own }
    }

    pub fn backend_of(&self, grpc_service: &str) -> Option<ServiceName> {
        self.routes.get(grpc_service).copied()
    }

    /// Public services the gateway serves itself.
    pub fn own_services(&self) -> &[String] {
        &self.own
    }

    /// Public services routed to a backend, sorted, with their backend.
    pub fn public_services(&self) -> Vec<(String, ServiceName)> {
        let mut all: Vec<_> = self
            .routes
            .iter()
            .map(|(name, backend)| (name.clone(), *backend))
            .collect();
        all.sort();
        all
    }

    pub fn backends(&self) -> Vec<ServiceName> {
        let mut backends: Vec<_> = self.routes.values().copied().collect();
        backends.sort();
        backends.dedup();
        backends
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_services_are_routed_and_internal_ones_are_not() {
        let table = RouteTable::from_contract();
        assert_eq!(
            table.backend_of("agentshare.sharing.v1.TenancyService"),
            Some(ServiceName::Sharing)
        );
        assert_eq!(
            table.backend_of("agentshare.registry.v1.AgentRegistryService"),
            Some(ServiceName::Registry)
        );
        assert_eq!(
            table.backend_of("agentshare.sharing.v1.AccessInternalService"),
            None
        );
        assert_eq!(
            table.backend_of("agentshare.events.v1.EventLogService"),
            None
        );
    }
}
