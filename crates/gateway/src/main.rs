use std::process::ExitCode;

use agentshare_kit::identity::ServiceName;

fn main() -> ExitCode {
    agentshare_kit::bootstrap::run_service(ServiceName::Gateway, None, |context, _db, listener| {
        agentshare_gateway::start(context, listener)
    })
}
