//! The arguments of `patgate demo-deploy` (the stand-in itself is `crate::demo`).

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to listen [default: the configuration's upstream.url when it is on this
    /// machine, else 127.0.0.1:14516].
    #[arg(long, value_name = "ADDRESS")]
    pub listen: Option<std::net::SocketAddr>,
    /// A demo user as NAME:PASSWORD; repeat for more.
    #[arg(long = "user", value_name = "NAME:PASSWORD")]
    pub users: Vec<String>,
    /// A demo administrator as NAME:PASSWORD; repeat for more.
    #[arg(long = "admin", value_name = "NAME:PASSWORD")]
    pub admins: Vec<String>,
    /// A file of demo users, one NAME:PASSWORD or NAME:PASSWORD:admin per line.
    #[arg(long, value_name = "PATH")]
    pub users_file: Option<PathBuf>,
}

/// `demo-deploy`: the users named by flags and file, or the two defaults (alice, and
/// admin as administrator, each with their name as password).
pub fn demo_users(args: &DemoArgs) -> Result<Vec<crate::demo::DemoUser>, String> {
    use crate::demo::{default_users, read_users, DemoUser};
    let mut users = Vec::new();
    for text in &args.users {
        users.push(DemoUser::parse(text, false).map_err(|e| format!("--user {e}"))?);
    }
    for text in &args.admins {
        users.push(DemoUser::parse(text, true).map_err(|e| format!("--admin {e}"))?);
    }
    if let Some(path) = &args.users_file {
        users.extend(read_users(path)?);
    }
    Ok(if users.is_empty() {
        default_users()
    } else {
        users
    })
}
