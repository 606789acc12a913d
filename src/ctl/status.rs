//! `herdctl status`: the herd at a glance in the terminal.
pub fn run(_server: &str, _config: &std::path::Path) -> Result<(), String> {
    Err("not yet".into())
}
