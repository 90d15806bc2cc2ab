use std::process::ExitCode;

use agentshare_kit::identity::ServiceName;

fn main() -> ExitCode {
    agentshare_kit::bootstrap::run_service(ServiceName::Sharing, Some(&agentshare_sharing::MIGRATIONS), |context, db, listener| async move {
        let db = db.ok_or_else(|| agentshare_kit::config::BadSetting::new("database_url", "sharing needs a database"))?;
        agentshare_sharing::start(context, db, listener).await
    })
}
