//! Test harness: a real server on a random loopback port, over a fresh SQLite file.

use std::sync::Arc;

use batchd::config::Config;
use batchd::domain::Role;
use batchd::identity::hash_password;
use batchd::server::Server;
use batchd::store::{NewAssociate, Store};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;
use tokio::sync::oneshot;

pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "test-admin-password";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub auth: Arc<batchd::http::auth::Authenticator>,
    pub db_path: std::path::PathBuf,
    pub user: (String, String),
    _dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// A server with the test defaults changed by `tweak`.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let db_path = dir.path().join("batchd.db");
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            database: format!("sqlite:{}", db_path.display()),
            admin_user: Some(ADMIN.into()),
            admin_password: Some(ADMIN_PASSWORD.into()),
            ..Config::default()
        };
        tweak(&mut config);
        let server = Server::build(config).await.expect("server starts");
        let addr = server.local_addr().expect("bound");
        let store = server.state.tasks.store().clone();
        let auth = server.state.auth.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        TestApp {
            base: format!("http://{addr}"),
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            store,
            auth,
            db_path,
            user: (ADMIN.into(), ADMIN_PASSWORD.into()),
            _dir: dir,
            _stop: stop,
        }
    }

    /// Adds an associate and returns its credentials.
    pub async fn add_associate(&self, name: &str, role: Role) -> (String, String) {
        let password = format!("{name}-password");
        let hash = hash_password(&password).unwrap();
        self.store
            .create_associate(NewAssociate { name: name.into(), password_hash: hash, role }, chrono::Utc::now())
            .await
            .unwrap();
        (name.into(), password)
    }

    /// This app, acting as another associate.
    pub fn as_user(&self, creds: &(String, String)) -> Client<'_> {
        Client { app: self, user: creds.clone() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path)).basic_auth(&self.user.0, Some(&self.user.1))
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.unwrap()
    }

    pub async fn send_json(&self, method: Method, path: &str, body: &Value) -> Response {
        self.request(method, path).json(body).send().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.send_json(Method::POST, path, body).await
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> Response {
        self.send_json(Method::PUT, path, body).await
    }

    pub async fn agent(&self, method: &str, body: &Value) -> Response {
        self.post_json(&format!("/api/v1/Agents/Batch/{method}"), body).await
    }

    /// Creates a task and returns its id.
    pub async fn create(&self, body: &Value) -> i64 {
        let res = self.post_json("/api/v1/BatchTask", body).await;
        assert_eq!(res.status(), 200, "create failed: {}", res.text().await.unwrap());
        res.json::<i64>().await.unwrap()
    }

    pub async fn task(&self, id: i64) -> Value {
        let res = self.get(&format!("/api/v1/BatchTask/{id}")).await;
        assert_eq!(res.status(), 200, "get {id}");
        res.json().await.unwrap()
    }
}

/// Same app, other credentials.
pub struct Client<'a> {
    pub app: &'a TestApp,
    pub user: (String, String),
}

impl Client<'_> {
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.app.client.request(method, self.app.url(path)).basic_auth(&self.user.0, Some(&self.user.1))
    }
    pub async fn send_json(&self, method: Method, path: &str, body: &Value) -> Response {
        self.request(method, path).json(body).send().await.unwrap()
    }
    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.unwrap()
    }
    pub async fn agent(&self, method: &str, body: &Value) -> Response {
        self.send_json(Method::POST, &format!("/api/v1/Agents/Batch/{method}"), body).await
    }
    pub async fn create(&self, body: &Value) -> i64 {
        let res = self.send_json(Method::POST, "/api/v1/BatchTask", body).await;
        assert_eq!(res.status(), 200, "create failed: {}", res.text().await.unwrap());
        res.json::<i64>().await.unwrap()
    }
}

/// Asserts an error response: status, ErrorType, and that the message mentions `needle`.
pub async fn assert_error(res: Response, status: u16, error_type: &str, needle: &str) -> Value {
    let got = res.status().as_u16();
    let text = res.text().await.unwrap();
    assert_eq!(got, status, "body: {text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("error body is not JSON: {text}"));
    assert_eq!(body["Error"], true, "{body}");
    assert_eq!(body["ErrorType"], error_type, "{body}");
    assert_eq!(body["ErrorSource"], "batchd", "{body}");
    assert_eq!(body["Message"], body["ErrorMessage"], "{body}");
    let msg = body["ErrorMessage"].as_str().unwrap();
    assert!(msg.contains(needle), "message {msg:?} should mention {needle:?}");
    body
}
