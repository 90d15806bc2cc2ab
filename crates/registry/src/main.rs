fn main() -> std::process::ExitCode {
    agentshare_kit::bootstrap::run_backend(&agentshare_registry::SERVICE)
}
