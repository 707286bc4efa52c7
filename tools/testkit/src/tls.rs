//! A test PKI: a CA of the test's own and the certificates it issues, with chosen validity
//! periods (expired, expiring, valid), written as PEM files the way an installation keeps them
//! (keys 0600). For the tests of TLS to the bus and the database, and of certificate checks.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// A CA in a directory of its own; `ca` is its certificate.
pub struct Pki {
    dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (PEM).
    pub ca: PathBuf,
}

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, mode 0600).
    pub key: PathBuf,
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A server: `serverAuth`.
    Server,
    /// A client: `clientAuth`.
    Client,
}

impl Pki {
    /// A new CA named `name`, valid from yesterday for ten years.
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = OffsetDateTime::now_utc() - Duration::days(1);
        params.not_after = OffsetDateTime::now_utc() + Duration::days(3650);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-sign the CA");
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, cert.pem()).expect("write the CA certificate");
        write_key(&dir.path().join("ca.key"), &key);
        Pki {
            dir,
            issuer: Issuer::new(params, key),
            ca,
        }
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A certificate for `localhost` and `127.0.0.1`, valid from yesterday for a year.
    pub fn issue(&self, name: &str, role: Role) -> Issued {
        self.issue_with(name, role, &["localhost", "127.0.0.1"], -1, 365)
    }

    /// A certificate named `name` (common name and file names) for `sans`, valid from
    /// `from_days` to `to_days` relative to now (negative: in the past).
    pub fn issue_with(
        &self,
        name: &str,
        role: Role,
        sans: &[&str],
        from_days: i64,
        to_days: i64,
    ) -> Issued {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("certificate params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![match role {
            Role::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Role::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.not_before = OffsetDateTime::now_utc() + Duration::days(from_days);
        params.not_after = OffsetDateTime::now_utc() + Duration::days(to_days);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let issued = Issued {
            cert: self.dir.path().join(format!("{name}.crt")),
            key: self.dir.path().join(format!("{name}.key")),
        };
        std::fs::write(&issued.cert, cert.pem()).expect("write the certificate");
        write_key(&issued.key, &key);
        issued
    }
}

fn write_key(path: &Path, key: &KeyPair) {
    std::fs::write(path, key.serialize_pem()).expect("write the key");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
}
