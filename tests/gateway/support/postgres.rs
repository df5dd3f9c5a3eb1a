//! A throwaway PostgreSQL cluster for the store tests: `initdb` in a temp dir and `pg_ctl` on a
//! free loopback port, as the `postgres` user when the tests run as root (PostgreSQL refuses to
//! run as root). Stopped on drop. Missing binaries fail the test with instructions: never a skip.

use std::path::PathBuf;
use std::process::{Command, Output};

use super::net::free_port;

/// A PostgreSQL server this test started.
pub struct TestPostgres {
    /// `postgres://postgres@127.0.0.1:port/postgres`.
    pub url: String,
    dir: tempfile::TempDir,
    port: u16,
}

fn bin_dir() -> PathBuf {
    let root = PathBuf::from("/usr/lib/postgresql");
    let newest = std::fs::read_dir(&root).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").is_file())
            .max()
    });
    newest.unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed (CI={}): the store tests need a real server. Run `bash \
             scripts/test.sh` (it installs Debian's `postgresql`), or `apt-get install -y \
             postgresql`.",
            std::env::var("CI").unwrap_or_default()
        )
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
}

/// Runs a PostgreSQL tool, as `postgres` when we are root.
fn run(tool: &str, args: &[&str]) -> Output {
    let path = bin_dir().join(tool);
    let output = if is_root() {
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&path)
            .args(args)
            .output()
    } else {
        Command::new(&path).args(args).output()
    };
    output.unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()))
}

impl TestPostgres {
    /// Creates a cluster and starts it.
    pub fn start() -> TestPostgres {
        let dir = tempfile::tempdir().expect("temp dir");
        if is_root() {
            let status = Command::new("chown")
                .args(["postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown postgres failed");
        }
        let data = dir.path().join("data");
        let out = run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
        );
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let pg = TestPostgres {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            dir,
            port,
        };
        pg.resume();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Starts the server on its data directory (again, after `stop`).
    pub fn resume(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        let out = run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-o",
                &options,
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server at once, as a crash would.
    pub fn stop(&self) {
        let out = run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `pg_dump` of the whole database, as text.
    pub fn dump(&self) -> String {
        let out = run(
            "pg_dump",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "postgres",
            ],
        );
        assert!(
            out.status.success(),
            "pg_dump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let _ = run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }
}
