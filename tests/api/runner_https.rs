//! The http runner over https: a loopback server with a certificate from a CA the test makes.
//! Trusted through `[runner] ca_file` (or `SSL_CERT_FILE` for the real binary) the run succeeds;
//! without it the run fails and says the certificate failed verification.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use batchd::config::Config;
use batchd::runner::settings::CaFile;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

use crate::runner::{spawn_runner_with, wait_state};

/// A CA, written to `dir/ca.pem`, and a server certificate it signed for localhost and 127.0.0.1.
pub struct TestCa {
    pub ca_path: std::path::PathBuf,
    server_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    server_key: rustls::pki_types::PrivateKeyDer<'static>,
}

impl TestCa {
    pub fn new(dir: &std::path::Path) -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "batchd test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, ca.as_ref().pem()).unwrap();
        TestCa {
            ca_path,
            server_chain: vec![leaf.der().clone()],
            server_key: rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        }
    }

    /// An https server on a loopback port answering every request `200 hello over tls`; counts
    /// the requests that got past the handshake. It ends with the test's runtime.
    pub async fn serve(&self) -> (String, Arc<AtomicUsize>) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(self.server_chain.clone(), self.server_key.clone_key())
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        tokio::spawn(async move {
            // Bounded: a test makes a handful of requests.
            for _ in 0..64 {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (acceptor, count) = (acceptor.clone(), count.clone());
                tokio::spawn(async move {
                    // A client that refuses the certificate ends the handshake: nothing to answer.
                    let Ok(Ok(mut tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                    else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    let body = "hello over tls";
                    let answer =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                    let _ = tls.write_all(answer.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        (format!("https://localhost:{port}"), served)
    }
}

fn hook(base: &str) -> String {
    format!("[[definition]]\nname = \"secure-hook\"\nrunner = \"http\"\nurl = \"{base}/hook/{{id}}\"\n")
}

#[tokio::test]
async fn an_https_run_succeeds_with_the_ca_file_and_fails_naming_the_certificate_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (base, served) = ca.serve().await;

    let ca_file = CaFile::load(&ca.ca_path).unwrap();
    let app = spawn_runner_with(&hook(&base), move |c: &mut Config| c.runner.ca_file = Some(ca_file)).await;
    let id = app.create(&json!({"Name": "secure-hook"})).await;
    let t = wait_state(&app, id, "Succeeded").await;
    assert_eq!((t["Result"].as_str(), t["Response"].as_str()), (Some("HTTP 200"), Some("hello over tls")), "{t}");
    assert_eq!(served.load(Ordering::SeqCst), 1);

    let app = spawn_runner_with(&hook(&base), |_| {}).await;
    let id = app.create(&json!({"Name": "secure-hook"})).await;
    let t = wait_state(&app, id, "Failed").await;
    let result = t["Result"].as_str().unwrap();
    assert!(result.starts_with("cannot connect: certificate verification failed: UnknownIssuer"), "{result}");
    assert_eq!(served.load(Ordering::SeqCst), 1, "no request went to an unverified server");
}

#[test]
fn ca_file_is_read_and_checked_with_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let load = |toml: String| {
        let path = dir.path().join("batchd.toml");
        std::fs::write(&path, toml).unwrap();
        Config::load(Some(&path)).map_err(|e| format!("{e:#}"))
    };
    let cfg = load(format!("[runner]\nca_file = {:?}\n", ca.ca_path.display().to_string())).unwrap();
    let file = cfg.runner.ca_file.expect("ca_file set");
    assert_eq!((file.path.as_path(), file.certs.len()), (ca.ca_path.as_path(), 1));
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "just text\n").unwrap();
    for (path, says) in [
        (dir.path().join("missing.pem"), "cannot be read"),
        (not_pem, "holds no PEM certificate"),
        (dir.path().to_owned(), "cannot be read"),
    ] {
        let e = load(format!("[runner]\nca_file = {:?}\n", path.display().to_string())).unwrap_err();
        assert!(e.contains("runner.ca_file") && e.contains(says), "{e}");
    }
}

/// The real binary trusts what `SSL_CERT_FILE` names, instead of the system's roots.
#[tokio::test]
async fn the_binary_trusts_ssl_cert_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (base, served) = ca.serve().await;
    let config = dir.path().join("batchd.toml");
    std::fs::write(&config, hook(&base)).unwrap();
    let db = format!("sqlite:{}", dir.path().join("https.db").display());
    let ca_path = ca.ca_path.display().to_string();
    let config_path = config.display().to_string();
    let server = crate::process::serve_database(&db, &[("SSL_CERT_FILE", &ca_path), ("BATCHD_CONFIG", &config_path)]);
    let id = crate::runner_process::create(&server.base, json!({"Name": "secure-hook"})).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = crate::runner_process::get(&server.base, &format!("/api/v1/BatchTask/{id}")).await;
        if t["State"] == "Succeeded" {
            assert_eq!(t["Response"], "hello over tls");
            break;
        }
        assert!(t["State"] != "Failed" && Instant::now() < deadline, "{t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(served.load(Ordering::SeqCst), 1);
}
