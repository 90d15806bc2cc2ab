use std::process::ExitCode;

use agentshare_kit::config::BadSetting;
use agentshare_kit::identity::ServiceName;

fn main() -> ExitCode {
    agentshare_kit::bootstrap::run_service(ServiceName::Scheduler, Some(&agentshare_scheduler::MIGRATIONS), |context, db, listener| async move {
        let db = db.ok_or_else(|| BadSetting::new("database_url", "scheduler needs a database"))?;
        agentshare_scheduler::start(context, db, listener).await
    })
}
