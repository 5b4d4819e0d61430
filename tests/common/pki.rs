//! A throwaway certificate authority made with openssl: CAs, broker
//! certificates (valid, expired, for another name) and client certificates
//! with keys in each encoding `--key-file` accepts.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

use super::host::find_tool;

/// X.509 v3 extensions (webpki rejects v1 certificates) and a minimal `req`
/// section so no system openssl.cnf is involved.
const OPENSSL_EXT: &str = "\
[req]
distinguished_name = dn
[dn]
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_localhost]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
[server_elsewhere]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:broker.example.org
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
";

/// `openssl ca` settings, only to sign with explicit past dates (`openssl
/// x509` in OpenSSL 3.0 has no start-date option).
const OPENSSL_CA: &str = "\
[ca]
default_ca = backdating
[backdating]
database = index.txt
serial = serial
new_certs_dir = .
default_md = sha256
policy = anything
[anything]
commonName = supplied
";

/// Which names a server certificate is valid for, and when.
#[derive(Clone, Copy)]
pub enum ServerCert {
    /// `localhost` and 127.0.0.1, valid now.
    Localhost,
    /// `localhost` and 127.0.0.1, valid only on 2020-01-01.
    Expired,
    /// Only `broker.example.org`.
    Elsewhere,
}

/// How a client key is encoded (all three are accepted by `--key-file`).
#[derive(Clone, Copy, Debug)]
pub enum KeyFormat {
    /// `BEGIN RSA PRIVATE KEY`.
    RsaPkcs1,
    /// `BEGIN EC PRIVATE KEY`.
    EcSec1,
    /// `BEGIN PRIVATE KEY` holding a P-256 key.
    EcPkcs8,
}

impl KeyFormat {
    fn pem_label(self) -> &'static str {
        match self {
            KeyFormat::RsaPkcs1 => "-----BEGIN RSA PRIVATE KEY-----",
            KeyFormat::EcSec1 => "-----BEGIN EC PRIVATE KEY-----",
            KeyFormat::EcPkcs8 => "-----BEGIN PRIVATE KEY-----",
        }
    }
}

/// A directory of certificates and keys made with openssl. It and its files
/// are readable by everyone: mosquitto reads them after dropping root
/// privileges to its own user, and these are throwaway test keys.
pub struct Pki {
    dir: TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("mqtt-proxy-pki.")
            .tempdir()
            .expect("create pki tempdir");
        let pki = Pki { dir };
        pki.write("ext.cnf", OPENSSL_EXT);
        pki.write("ca.cnf", OPENSSL_CA);
        pki.write("index.txt", "");
        pki.write("serial", "1000\n");
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Write a file readable by the broker's user; returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        self.share()
    }

    /// Make the directory and everything in it readable by every user.
    pub fn share(&self) -> PathBuf {
        fs::set_permissions(self.dir.path(), fs::Permissions::from_mode(0o755))
            .expect("chmod pki dir");
        for entry in fs::read_dir(self.dir.path()).expect("list pki dir") {
            let path = entry.expect("pki dir entry").path();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod pki file");
        }
        self.dir.path().to_owned()
    }

    /// Run `openssl` in the directory; `args` are split at spaces (every
    /// name used here is relative and has none).
    fn openssl(&self, args: &str) {
        let out = Command::new(find_tool("openssl"))
            .args(args.split_whitespace())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn ec_key(&self, key: &str) {
        self.openssl(&format!(
            "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out {key}"
        ));
    }

    /// A self-signed CA `NAME.pem` with key `NAME.key`; returns the cert path.
    pub fn ca(&self, name: &str) -> PathBuf {
        self.ec_key(&format!("{name}.key"));
        self.openssl(&format!(
            "req -x509 -new -key {name}.key -out {name}.pem -days 2 -subj /CN={name} \
             -config ext.cnf -extensions ca_ext"
        ));
        self.share();
        self.path(&format!("{name}.pem"))
    }

    /// A broker certificate `NAME.pem` (key `NAME.key`) signed by CA `ca`.
    pub fn server(&self, name: &str, ca: &str, kind: ServerCert) -> (PathBuf, PathBuf) {
        self.ec_key(&format!("{name}.key"));
        self.openssl(&format!(
            "req -new -key {name}.key -out {name}.csr -subj /CN=mqtt-broker -config ext.cnf"
        ));
        match kind {
            ServerCert::Localhost => self.sign(name, ca, "server_localhost"),
            ServerCert::Elsewhere => self.sign(name, ca, "server_elsewhere"),
            ServerCert::Expired => self.openssl(&format!(
                "ca -batch -notext -config ca.cnf -cert {ca}.pem -keyfile {ca}.key \
                 -in {name}.csr -out {name}.pem \
                 -startdate 20200101000000Z -enddate 20200102000000Z \
                 -extfile ext.cnf -extensions server_localhost"
            )),
        }
        self.share();
        (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.key")),
        )
    }

    /// A client certificate `NAME.pem` signed by CA `ca`, with its key
    /// `NAME.key` in `format`.
    pub fn client(&self, name: &str, ca: &str, format: KeyFormat) -> (PathBuf, PathBuf) {
        let key = format!("{name}.key");
        match format {
            KeyFormat::RsaPkcs1 => self.openssl(&format!("genrsa -traditional -out {key} 2048")),
            KeyFormat::EcSec1 => self.openssl(&format!(
                "ecparam -genkey -name prime256v1 -noout -out {key}"
            )),
            KeyFormat::EcPkcs8 => self.ec_key(&key),
        }
        let pem = fs::read_to_string(self.path(&key)).expect("read client key");
        assert!(
            pem.starts_with(format.pem_label()),
            "{format:?} key starts with {:?}",
            pem.lines().next()
        );
        self.openssl(&format!(
            "req -new -key {key} -out {name}.csr -subj /CN={name} -config ext.cnf"
        ));
        self.sign(name, ca, "client");
        self.share();
        (self.path(&format!("{name}.pem")), self.path(&key))
    }

    /// Sign `NAME.csr` with CA `ca` into `NAME.pem`, valid for two days.
    fn sign(&self, name: &str, ca: &str, extensions: &str) {
        self.openssl(&format!(
            "x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}.key -CAcreateserial -days 2 \
             -out {name}.pem -extfile ext.cnf -extensions {extensions}"
        ));
    }
}

/// mosquitto.conf lines that turn the harness broker's listener into TLS.
pub fn tls_listener(ca: &Path, cert: &Path, key: &Path) -> String {
    format!(
        "cafile {}\ncertfile {}\nkeyfile {}\n",
        ca.display(),
        cert.display(),
        key.display()
    )
}
