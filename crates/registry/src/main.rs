use std::process::ExitCode;

use agentshare_kit::config::BadSetting;
use agentshare_kit::identity::ServiceName;

fn main() -> ExitCode {
    agentshare_kit::bootstrap::run_service(ServiceName::Registry, Some(&agentshare_registry::MIGRATIONS), |context, db, listener| async move {
        let db = db.ok_or_else(|| BadSetting::new("database_url", "registry needs a database"))?;
        agentshare_registry::start(context, db, listener).await
    })
}
