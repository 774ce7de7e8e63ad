//! A real nginx (scripts/nginx-setup.sh installs it) as a child process, with a
//! generated configuration in a temporary folder: the proxy operators put in front of
//! Deploy, here asking the gateway's forward-auth endpoint with `auth_request`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// nginx running until dropped.
pub struct Nginx {
    pub addr: SocketAddr,
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx with `server_body` inside `server { listen …; }`.
    pub async fn start(server_body: &str) -> Nginx {
        let binary = nginx_binary();
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\nevents {{ worker_connections 64; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  server {{\n    listen {addr};\n{server_body}\n  }}\n}}\n"
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = std::process::Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nginx starts");
        let mut nginx = Nginx { addr, child, dir };
        let up = super::within(Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(addr).await.is_ok()
        })
        .await;
        if up.is_none() {
            let log = nginx.log();
            let _ = nginx.child.kill();
            panic!("nginx did not start within 10 s:\n{log}");
        }
        nginx
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// nginx's error log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_binary() -> &'static str {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for candidate in ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(candidate).exists() {
            return candidate;
        }
    }
    let status = std::process::Command::new("bash")
        .arg(root.join("scripts/nginx-setup.sh"))
        .status()
        .expect("bash runs scripts/nginx-setup.sh");
    assert!(status.success(), "scripts/nginx-setup.sh failed");
    "/usr/sbin/nginx"
}
