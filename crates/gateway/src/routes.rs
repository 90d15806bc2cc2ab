//! Which public gRPC services the gateway routes, and to which backend.
//!
//! The table is read from the contract itself: every service of
//! `agentshare.<area>.v1` is routed to the `<area>` service, except internal
//! ones (`*InternalService`, `EventLogService`), which never leave the
//! cluster. A service added to the contract is routed without touching the
//! gateway.

use std::collections::HashMap;

use agentshare_kit::identity::ServiceName;

#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: HashMap<String, ServiceName>,
    /// Public services the gateway implements itself (`agentshare.gateway.v1`).
    own: Vec<String>,
}

fn is_internal(service: &str) -> bool {
    service.ends_with("InternalService") || service == "EventLogService"
}

/// The service that owns the gRPC service `full_name`
/// (`agentshare.<area>.v1.<Service>`), when clients may call it through the
/// gateway: a public service of an area the suite serves.
pub fn owner_of(full_name: &str) -> Option<ServiceName> {
    let mut parts = full_name.split('.');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("agentshare"), Some(area), Some("v1"), Some(service), None)
            if !is_internal(service) =>
        {
            ServiceName::parse(area)
        }
        _ => None,
    }
}

/// Whether clients may call the gRPC service `full_name` through the
/// gateway.
pub fn is_public(full_name: &str) -> bool {
    owner_of(full_name).is_some()
}

impl RouteTable {
    /// The table of the contract this gateway was built with.
    pub fn from_contract() -> Result<Self, String> {
        Ok(Self::of_pool(&crate::http::contract_pool()?))
    }

    pub fn of_pool(pool: &prost_reflect::DescriptorPool) -> Self {
        let mut routes = HashMap::new();
        let mut own = Vec::new();
        for service in pool.services() {
            let name = service.full_name().to_string();
            match owner_of(&name) {
                Some(ServiceName::Gateway) => own.push(name),
                Some(backend) => {
                    routes.insert(name, backend);
                }
                None => {}
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
        let table = RouteTable::from_contract().expect("the contract decodes");
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
