//! Real servers for the backup storages, each on its own free loopback
//! address, stopped by pid when its guard drops: `s3s-fs` (an S3 API over a
//! directory, checking signatures) and `vsftpd` (FTP with explicit TLS, a
//! certificate from a CA made for the test). SFTP is the harness's sshd
//! (`Subsystem sftp internal-sftp`). scripts/install-deps.sh installs both
//! programs.

use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{free_loopback_address, free_port, shared_temp_dir};

fn run(command: &mut Command) {
    let output = command.output().unwrap_or_else(|error| panic!("{command:?}: {error}"));
    assert!(output.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// A random password-like value for one test run.
pub fn random_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).expect("random");
    let suffix: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{prefix}{suffix}")
}

/// Waits until `address:port` accepts a connection, or panics with `log`.
fn wait_listening(address: Ipv4Addr, port: u16, child: &mut Child, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect((address, port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status}: {}", std::fs::read_to_string(log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not listen on {address}:{port}: {}", std::fs::read_to_string(log).unwrap_or_default());
}

fn stop(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The `s3s-fs` binary: on PATH, or where `cargo install` puts it.
fn s3s_fs() -> PathBuf {
    let installed = std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo/bin/s3s-fs"));
    match installed {
        Some(path) if path.exists() => path,
        _ => PathBuf::from("s3s-fs"),
    }
}

/// A running `s3s-fs` serving one bucket from a temporary directory, over
/// plain HTTP, with one access key pair.
pub struct S3Server {
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    /// The directory the bucket's objects are files in.
    pub bucket_dir: PathBuf,
    /// s3s-fs's root: multipart uploads in progress are files here.
    pub root: PathBuf,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl S3Server {
    pub fn start() -> Self {
        let dir = shared_temp_dir("pgfleet-s3-");
        let bucket = "backups".to_owned();
        let root = dir.path().join("root");
        let bucket_dir = root.join(&bucket);
        std::fs::create_dir_all(&bucket_dir).expect("bucket dir");
        let address = free_loopback_address();
        let port = free_port(address);
        let access_key = random_secret("AK");
        let secret_key = random_secret("sk-");
        let log = dir.path().join("s3s-fs.log");
        let mut child = Command::new(s3s_fs())
            // Its debug log names each part it writes, with its size.
            .env("RUST_LOG", "s3s_fs=debug")
            .env("NO_COLOR", "1")
            .args(["--host", &address.to_string(), "--port", &port.to_string()])
            .args(["--access-key", &access_key, "--secret-key", &secret_key])
            .arg(&root)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(std::fs::File::create(dir.path().join("s3s-fs.err")).expect("log"))
            .spawn()
            .expect("start s3s-fs (scripts/install-deps.sh installs it)");
        wait_listening(address, port, &mut child, "s3s-fs", &dir.path().join("s3s-fs.err"));
        S3Server {
            endpoint: format!("http://{address}:{port}"),
            bucket,
            access_key,
            secret_key,
            bucket_dir,
            root,
            child: Some(child),
            dir,
        }
    }

    /// The multipart uploads the server took parts for, in the order they
    /// started, each as its parts' sizes by part number; from its log
    /// (`write file, path: …/.upload_id-<id>.part-<n>, size: <bytes>, …`).
    pub fn multipart_uploads(&self) -> Vec<Vec<u64>> {
        let log = std::fs::read_to_string(self.dir.path().join("s3s-fs.log")).unwrap_or_default();
        let mut uploads: Vec<(String, Vec<(u32, u64)>)> = Vec::new();
        for line in log.lines().filter(|line| line.contains("write file, path:")) {
            let Some((_, rest)) = line.split_once(".upload_id-") else { continue };
            let Some((id, rest)) = rest.split_once(".part-") else { continue };
            let Some((number, rest)) = rest.split_once(", size: ") else { continue };
            let (Ok(number), Some(Ok(size))) = (number.parse(), rest.split(',').next().map(str::parse)) else {
                continue;
            };
            match uploads.iter_mut().find(|(known, _)| known == id) {
                Some((_, parts)) => parts.push((number, size)),
                None => uploads.push((id.to_owned(), vec![(number, size)])),
            }
        }
        uploads
            .into_iter()
            .map(|(_, mut parts)| {
                parts.sort();
                parts.into_iter().map(|(_, size)| size).collect()
            })
            .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// The FTP login user the tests create (the tests run as root).
pub const FTP_USER: &str = "pgfleet-ftp";
const FTP_HOME: &str = "/var/lib/pgfleet-ftp";

/// Creates the FTP user once per test process, with a fresh random
/// password, and returns it.
pub fn ftp_user_password() -> &'static str {
    static PASSWORD: OnceLock<String> = OnceLock::new();
    PASSWORD.get_or_init(|| {
        let exists = Command::new("id").arg(FTP_USER).output().is_ok_and(|output| output.status.success());
        if !exists {
            // vsftpd's PAM service wants a shell listed in /etc/shells, and
            // vsftpd a home it can enter before it goes to local_root.
            run(Command::new("useradd").args(["-m", "-d", FTP_HOME, "-s", "/bin/bash", FTP_USER]));
        }
        std::fs::create_dir_all(FTP_HOME).expect("ftp user's home");
        run(Command::new("usermod").args(["-d", FTP_HOME, FTP_USER]));
        let password = random_secret("ftp-pw-");
        let mut chpasswd = Command::new("chpasswd").stdin(Stdio::piped()).spawn().expect("chpasswd");
        use std::io::Write as _;
        chpasswd
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{FTP_USER}:{password}\n").as_bytes())
            .expect("chpasswd input");
        assert!(chpasswd.wait().expect("chpasswd").success(), "chpasswd failed");
        password
    })
}

/// A running vsftpd: explicit FTPS required for login and data, passive
/// mode, `FTP_USER` chrooted to a temporary directory.
pub struct FtpServer {
    pub address: Ipv4Addr,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// The PEM file of the CA that signed the server's certificate.
    pub ca_file: PathBuf,
    /// The FTP root (`/` as the client sees it).
    pub root: PathBuf,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl FtpServer {
    /// With FTPS required.
    pub fn start() -> Self {
        Self::start_with_tls(true)
    }

    /// With FTPS required (`tls`), or plain FTP only.
    pub fn start_with_tls(tls: bool) -> Self {
        let password = ftp_user_password().to_owned();
        let dir = shared_temp_dir("pgfleet-ftp-");
        let path = |name: &str| dir.path().join(name);
        let address = free_loopback_address();
        let port = free_port(address);
        make_certificates(dir.path(), address);
        let root = path("root");
        std::fs::create_dir(&root).expect("ftp root");
        run(Command::new("chown").arg(FTP_USER).arg(&root));
        std::fs::create_dir_all("/var/run/vsftpd/empty").expect("secure_chroot_dir");
        // The passive ports: this address is the test's own, so any range
        // is free on it.
        let config = format!(
            "listen=YES\nlisten_ipv6=NO\nlisten_address={address}\nlisten_port={port}\nbackground=NO\n\
             anonymous_enable=NO\nlocal_enable=YES\nwrite_enable=YES\nlocal_umask=077\n\
             chroot_local_user=YES\nallow_writeable_chroot=YES\nlocal_root={root}\n\
             userlist_enable=NO\npam_service_name=vsftpd\nsecure_chroot_dir=/var/run/vsftpd/empty\n\
             connect_from_port_20=NO\npasv_enable=YES\npasv_min_port=40000\npasv_max_port=40100\n\
             ssl_enable={ssl}\nforce_local_logins_ssl=YES\nforce_local_data_ssl=YES\n\
             rsa_cert_file={cert}\nrsa_private_key_file={key}\nrequire_ssl_reuse=YES\nssl_ciphers=HIGH\n\
             seccomp_sandbox=NO\nisolate_network=NO\nisolate=NO\n\
             xferlog_enable=YES\nvsftpd_log_file={log}\nlog_ftp_protocol=YES\ndual_log_enable=NO\n",
            root = root.display(),
            ssl = if tls { "YES" } else { "NO" },
            cert = path("server.pem").display(),
            key = path("server.key").display(),
            log = path("vsftpd.log").display(),
        );
        std::fs::write(path("vsftpd.conf"), config).expect("vsftpd.conf");
        std::fs::set_permissions(path("vsftpd.conf"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let mut child = Command::new("/usr/sbin/vsftpd")
            .arg(path("vsftpd.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(path("vsftpd.err")).expect("log"))
            .spawn()
            .expect("start /usr/sbin/vsftpd (apt-get install vsftpd)");
        wait_listening(address, port, &mut child, "vsftpd", &path("vsftpd.err"));
        FtpServer {
            address,
            port,
            user: FTP_USER.into(),
            password,
            ca_file: path("ca.pem"),
            root,
            child: Some(child),
            dir,
        }
    }

    pub fn log(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("vsftpd.err"), read("vsftpd.log"))
    }
}

impl Drop for FtpServer {
    fn drop(&mut self) {
        // vsftpd forks a process per session: stop those too, by pid.
        if let Some(child) = &self.child {
            for pid in super::descendants(child.id()) {
                let _ = Command::new("kill").arg(pid.to_string()).stderr(Stdio::null()).status();
            }
        }
        stop(&mut self.child);
    }
}

/// A CA (`ca.pem`) and a server certificate it signed for `address`
/// (`server.pem`, `server.key`), with openssl.
fn make_certificates(dir: &Path, address: Ipv4Addr) {
    let openssl = |args: &[&str]| run(Command::new("openssl").current_dir(dir).args(args));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=pgfleet test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=pgfleet test ftp",
    ]);
    std::fs::write(dir.join("san.ext"), format!("subjectAltName=IP:{address}\n")).expect("san.ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}
