//! The HTTP routes of the public RPCs, read from their `google.api.http`
//! annotations in the contract (AIP-127): no route table is kept by hand,
//! so an annotated RPC is reachable over HTTP/JSON without touching the
//! gateway.

use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MethodDescriptor, Value,
};

/// The annotation's extension of `google.protobuf.MethodOptions`.
const HTTP_RULE: &str = "google.api.http";

/// Where the request message comes from besides the path.
#[derive(Debug, Clone)]
pub enum BodyRule {
    /// GET and DELETE: every other field is a query parameter.
    None,
    /// `body: "*"`: the JSON body is the whole request message.
    Whole,
    /// `body: "field"`: the JSON body is that field; the rest are query
    /// parameters.
    Field(FieldDescriptor),
}

#[derive(Debug, Clone)]
enum Segment {
    Literal(String),
    /// A path variable: a field of the request, dotted into nested messages.
    Variable(Vec<FieldDescriptor>),
}

/// One HTTP binding of one RPC.
#[derive(Debug, Clone)]
pub struct Route {
    pub http_method: http::Method,
    /// The template as written, such as `/api/v1/agents/{agent_id}:deploy`.
    pub template: String,
    segments: Vec<Segment>,
    verb: Option<String>,
    pub body: BodyRule,
    pub method: MethodDescriptor,
    /// `/package.Service/Method`, the gRPC path the call takes inside.
    pub grpc_path: String,
}

impl Route {
    /// The path variables, as dotted proto field paths, in template order.
    pub fn variables(&self) -> Vec<Vec<FieldDescriptor>> {
        self.segments
            .iter()
            .filter_map(|segment| match segment {
                Segment::Variable(path) => Some(path.clone()),
                Segment::Literal(_) => None,
            })
            .collect()
    }

    fn literal_count(&self) -> usize {
        self.segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count()
            + usize::from(self.verb.is_some())
    }

    /// The variables' raw values when `path` fits this template.
    fn bind<'p>(&self, path: &'p str) -> Option<Vec<(&[FieldDescriptor], &'p str)>> {
        let path = path.strip_prefix('/')?;
        let (path, verb) = split_verb(path);
        if verb != self.verb.as_deref() {
            return None;
        }
        let parts: Vec<&str> = path.split('/').collect();
        if parts.len() != self.segments.len() {
            return None;
        }
        let mut bound = Vec::new();
        for (segment, part) in self.segments.iter().zip(parts) {
            match segment {
                Segment::Literal(literal) if literal == part => {}
                Segment::Literal(_) => return None,
                Segment::Variable(_) if part.is_empty() => return None,
                Segment::Variable(field) => bound.push((field.as_slice(), part)),
            }
        }
        Some(bound)
    }
}

/// Splits a `:verb` off the last segment (`agents/1:share` → `agents/1`,
/// `share`).
fn split_verb(path: &str) -> (&str, Option<&str>) {
    let last_slash = path.rfind('/').map_or(0, |i| i + 1);
    match path[last_slash..].rfind(':') {
        Some(colon) => (
            &path[..last_slash + colon],
            Some(&path[last_slash + colon + 1..]),
        ),
        None => (path, None),
    }
}

/// What a request's method and path lead to.
pub enum Found<'r> {
    Route {
        route: &'r Route,
        /// Path variables with their percent-encoded values.
        variables: Vec<(&'r [FieldDescriptor], &'r str)>,
    },
    /// The path exists for other methods only.
    WrongMethod(Vec<http::Method>),
    Nothing,
}

/// Every public RPC's HTTP bindings.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// Reads the bindings of every method of the services `public` accepts.
    /// A malformed annotation is a contract bug, reported with its method.
    pub fn from_contract(
        pool: &DescriptorPool,
        public: impl Fn(&str) -> bool,
    ) -> Result<Self, String> {
        let extension = pool
            .get_extension_by_name(HTTP_RULE)
            .ok_or_else(|| format!("the contract does not declare {HTTP_RULE}"))?;
        let mut routes = Vec::new();
        for service in pool.services() {
            if !public(service.full_name()) {
                continue;
            }
            for method in service.methods() {
                let options = method.options();
                if !options.has_extension(&extension) {
                    continue;
                }
                let Value::Message(rule) = options.get_extension(&extension).into_owned() else {
                    continue;
                };
                let mut rules = vec![rule.clone()];
                if let Some(Value::List(more)) = rule
                    .get_field_by_name("additional_bindings")
                    .map(|v| v.into_owned())
                {
                    rules.extend(more.into_iter().filter_map(|v| match v {
                        Value::Message(m) => Some(m),
                        _ => None,
                    }));
                }
                for rule in rules {
                    routes.push(
                        route_of(&method, &rule)
                            .map_err(|e| format!("{}: {e}", method.full_name()))?,
                    );
                }
            }
        }
        // The most literal template wins: `/workspaces/switch` before
        // `/workspaces/{workspace_id}`.
        routes.sort_by_key(|r| std::cmp::Reverse(r.literal_count()));
        Ok(Self { routes })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn find<'r>(&'r self, method: &http::Method, path: &'r str) -> Found<'r> {
        // The methods of the most literal templates the path fits: a PUT to
        // `/workspaces/switch` is told POST, not also `{workspace_id}`'s.
        let mut allowed = Vec::new();
        let mut most_literal = None;
        for route in &self.routes {
            if let Some(variables) = route.bind(path) {
                if route.http_method == *method {
                    return Found::Route { route, variables };
                }
                let literal = *most_literal.get_or_insert(route.literal_count());
                if route.literal_count() == literal && !allowed.contains(&route.http_method) {
                    allowed.push(route.http_method.clone());
                }
            }
        }
        if allowed.is_empty() {
            Found::Nothing
        } else {
            Found::WrongMethod(allowed)
        }
    }
}

fn route_of(method: &MethodDescriptor, rule: &DynamicMessage) -> Result<Route, String> {
    let text = |name: &str| {
        rule.get_field_by_name(name)
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let mut binding = None;
    for (name, verb) in [
        ("get", http::Method::GET),
        ("put", http::Method::PUT),
        ("post", http::Method::POST),
        ("delete", http::Method::DELETE),
        ("patch", http::Method::PATCH),
    ] {
        if rule.has_field_by_name(name) {
            binding = Some((verb, text(name)));
        }
    }
    let (http_method, template) =
        binding.ok_or("only get, put, post, delete and patch are served")?;
    let input = method.input();
    let (path, verb) = split_verb(
        template
            .strip_prefix('/')
            .ok_or("the template must start with /")?,
    );
    let mut segments = Vec::new();
    for part in path.split('/') {
        if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            let name = name.strip_suffix("=*").unwrap_or(name);
            segments.push(Segment::Variable(field_path(&input, name)?));
        } else if part.is_empty() || part.contains(['{', '}', '*']) {
            return Err(format!("segment {part:?} of {template} is not supported"));
        } else {
            segments.push(Segment::Literal(part.to_string()));
        }
    }
    let body = match text("body").as_str() {
        "" => BodyRule::None,
        "*" => BodyRule::Whole,
        field => BodyRule::Field(
            input
                .get_field_by_name(field)
                .ok_or_else(|| format!("body field {field} is not in {}", input.full_name()))?,
        ),
    };
    if matches!(http_method, http::Method::GET | http::Method::DELETE)
        && !matches!(body, BodyRule::None)
    {
        return Err(format!("{http_method} {template} must not take a body"));
    }
    Ok(Route {
        http_method,
        segments,
        verb: verb.map(str::to_string),
        body,
        grpc_path: format!("/{}/{}", method.parent_service().full_name(), method.name()),
        method: method.clone(),
        template,
    })
}

/// `a.b` as fields of `message`, each but the last a singular message.
fn field_path(
    message: &prost_reflect::MessageDescriptor,
    dotted: &str,
) -> Result<Vec<FieldDescriptor>, String> {
    let mut fields = Vec::new();
    let mut current = message.clone();
    let mut names = dotted.split('.').peekable();
    while let Some(name) = names.next() {
        let field = current.get_field_by_name(name).ok_or_else(|| {
            format!(
                "path variable {dotted} is not a field of {}",
                message.full_name()
            )
        })?;
        if field.is_list() || field.is_map() {
            return Err(format!("path variable {dotted} is repeated"));
        }
        if names.peek().is_some() {
            let Kind::Message(next) = field.kind() else {
                return Err(format!("path variable {dotted} goes through a scalar"));
            };
            current = next;
        } else if matches!(field.kind(), Kind::Message(_)) {
            return Err(format!("path variable {dotted} is a message"));
        }
        fields.push(field);
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        let pool = crate::http::contract_pool().expect("the contract decodes");
        Router::from_contract(&pool, crate::http::is_public).expect("every annotation is served")
    }

    fn rpc_of(router: &Router, method: &http::Method, path: &str) -> Option<String> {
        match router.find(method, path) {
            Found::Route { route, .. } => Some(route.method.full_name().to_string()),
            _ => None,
        }
    }

    #[test]
    fn the_seed_routes_are_served_as_written() {
        let router = router();
        assert_eq!(
            rpc_of(&router, &http::Method::GET, "/api/v1/agents/a1/workspaces").as_deref(),
            Some("agentshare.sharing.v1.SharingService.GetAgentWorkspaces")
        );
        assert_eq!(
            rpc_of(
                &router,
                &http::Method::PATCH,
                "/api/v1/agents/a1/workspaces"
            )
            .as_deref(),
            Some("agentshare.sharing.v1.SharingService.SetAgentWorkspaces")
        );
        assert_eq!(
            rpc_of(&router, &http::Method::POST, "/api/v1/workspaces/switch").as_deref(),
            Some("agentshare.sharing.v1.TenancyService.SwitchWorkspace")
        );
    }

    #[test]
    fn every_public_rpc_has_a_route() {
        let pool = crate::http::contract_pool().expect("the contract decodes");
        let router = router();
        for service in pool
            .services()
            .filter(|s| crate::http::is_public(s.full_name()))
        {
            for method in service.methods() {
                assert!(
                    router
                        .routes()
                        .iter()
                        .any(|r| r.method.full_name() == method.full_name()),
                    "{} has no HTTP route",
                    method.full_name()
                );
            }
        }
    }

    #[test]
    fn no_two_routes_claim_the_same_method_and_template() {
        let router = router();
        let mut seen = std::collections::HashSet::new();
        for route in router.routes() {
            assert!(
                seen.insert((route.http_method.clone(), route.template.clone())),
                "{} {} is bound twice",
                route.http_method,
                route.template
            );
        }
    }

    #[test]
    fn verbs_and_variables_split_as_templates_say() {
        assert_eq!(
            split_verb("api/v1/agents/x:share"),
            ("api/v1/agents/x", Some("share"))
        );
        assert_eq!(split_verb("api/v1/agents/x"), ("api/v1/agents/x", None));
        assert_eq!(split_verb("a:b/c"), ("a:b/c", None));
    }

    #[test]
    fn unknown_paths_and_methods_are_told_apart() {
        let router = router();
        assert!(matches!(
            router.find(&http::Method::GET, "/api/v1/nothing-here"),
            Found::Nothing
        ));
        assert!(matches!(
            router.find(&http::Method::PUT, "/api/v1/workspaces/switch"),
            Found::WrongMethod(_)
        ));
    }
}
