//! Credentials for servers that require them, made at test time: NKey users, an
//! operator/account/user JWT chain with a `.creds` file, and a throw-away CA with a
//! server certificate for 127.0.0.1.

use base64::Engine as _;
use std::path::{Path, PathBuf};

/// A fresh NKey user: `(seed, public key)`.
pub fn nkey_user() -> (String, String) {
    let kp = nkeys::KeyPair::new_user();
    (kp.seed().expect("seed"), kp.public_key())
}

/// An operator-mode ("decentralised auth") setup: the server configuration lines that
/// trust one operator and preload its account (JetStream on), and [`Operator::creds`]
/// to mint users of that account.
pub struct Operator {
    operator: nkeys::KeyPair,
    account: nkeys::KeyPair,
    /// JetStream needs a system account in operator mode.
    system: nkeys::KeyPair,
}

impl Default for Operator {
    fn default() -> Self {
        Self::new()
    }
}

impl Operator {
    pub fn new() -> Operator {
        Operator {
            operator: nkeys::KeyPair::new_operator(),
            account: nkeys::KeyPair::new_account(),
            system: nkeys::KeyPair::new_account(),
        }
    }

    /// The lines for the server's configuration file.
    pub fn server_conf(&self) -> String {
        let op = self.operator.public_key();
        let op_jwt = jwt(
            &self.operator,
            &op,
            "mlc-test-operator",
            serde_json::json!({"type": "operator", "version": 2}),
        );
        let acc = self.account.public_key();
        let acc_jwt = jwt(
            &self.operator,
            &acc,
            "mlc",
            serde_json::json!({
                "limits": {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                           "wildcards": true, "conn": -1, "leaf": -1,
                           "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1},
                "default_permissions": {"pub": {}, "sub": {}},
                "type": "account", "version": 2
            }),
        );
        let sys = self.system.public_key();
        let sys_jwt = jwt(&self.operator, &sys, "SYS", serde_json::json!({"type": "account", "version": 2}));
        format!(
            "operator: \"{op_jwt}\"\nsystem_account: {sys}\nresolver: MEMORY\n\
             resolver_preload: {{\n  {acc}: \"{acc_jwt}\"\n  {sys}: \"{sys_jwt}\"\n}}\n"
        )
    }

    /// Writes `<dir>/<name>.creds` for a new user of the account allowed to publish
    /// `pub_allow` and subscribe `sub_allow` (empty: everything).
    pub fn creds(&self, dir: &Path, name: &str, pub_allow: &[&str], sub_allow: &[&str]) -> PathBuf {
        let user = nkeys::KeyPair::new_user();
        let perm = |allow: &[&str]| {
            if allow.is_empty() {
                serde_json::json!({})
            } else {
                serde_json::json!({ "allow": allow })
            }
        };
        let user_jwt = jwt(
            &self.account,
            &user.public_key(),
            name,
            serde_json::json!({
                "pub": perm(pub_allow), "sub": perm(sub_allow),
                "subs": -1, "data": -1, "payload": -1,
                "type": "user", "version": 2
            }),
        );
        let text = format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            user.seed().expect("seed")
        );
        let path = dir.join(format!("{name}.creds"));
        std::fs::write(&path, text).expect("write creds file");
        path
    }
}

/// A NATS JWT (`ed25519-nkey`) for `subject`, issued and signed by `issuer`.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let iat = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let claims = serde_json::json!({
        "jti": uuid::Uuid::new_v4().simple().to_string().to_uppercase(),
        "iat": iat,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let head = b64.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = b64.encode(claims.to_string());
    let signing_input = format!("{head}.{body}");
    let sig = issuer.sign(signing_input.as_bytes()).expect("sign");
    format!("{signing_input}.{}", b64.encode(sig))
}

/// A CA made for one test and a server certificate it signed for `127.0.0.1` and
/// `localhost`, as PEM files in `dir`.
pub struct TestCa {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl TestCa {
    pub fn new(dir: &Path) -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "mlc test CA");
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("server params");
        let cert = params.signed_by(&key, &ca, &ca_key).expect("server certificate");
        let ca_file = dir.join("ca.pem");
        let cert_file = dir.join("server.pem");
        let key_file = dir.join("server-key.pem");
        std::fs::write(&ca_file, ca.pem()).expect("write CA");
        std::fs::write(&cert_file, cert.pem()).expect("write certificate");
        std::fs::write(&key_file, key.serialize_pem()).expect("write key");
        TestCa { ca_file, cert_file, key_file, ca, ca_key }
    }

    /// A client certificate this CA signed, as `(cert, key)` PEM files in `dir`.
    pub fn client_cert(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().expect("client key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).expect("client certificate");
        let (cert_file, key_file) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}-key.pem")));
        std::fs::write(&cert_file, cert.pem()).expect("write client certificate");
        std::fs::write(&key_file, key.serialize_pem()).expect("write client key");
        (cert_file, key_file)
    }

    /// The server's `tls { }` block requiring client certificates of this CA.
    pub fn server_conf_verifying_clients(&self) -> String {
        format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n  timeout: 2\n}}\n",
            self.cert_file.display(),
            self.key_file.display(),
            self.ca_file.display()
        )
    }

    /// The server's `tls { }` block.
    pub fn server_conf(&self) -> String {
        format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  timeout: 2\n}}\n",
            self.cert_file.display(),
            self.key_file.display()
        )
    }
}
