//! Where the CLI finds its server and credentials: the environment, else a profile file.
//!
//! Credentials are never flag values: a flag shows up in `ps`, shell history and CI logs.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{CliError, Exit};

/// What the client sends in `Authorization`. No `Debug`: nothing may print a secret by accident.
#[derive(Clone)]
pub enum Credentials {
    Basic { user: String, password: String },
    Bearer(String),
}

impl Credentials {
    /// Who is asking, for messages: never the secret.
    pub fn describe(&self) -> String {
        match self {
            Credentials::Basic { user, .. } => format!("user {user:?}"),
            Credentials::Bearer(_) => "the API token".to_owned(),
        }
    }
}

/// `~/.config/batchd/profile.toml` (or `BATCHD_PROFILE`): every key optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub server: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
}

impl Profile {
    fn holds_secret(&self) -> bool {
        self.password.is_some() || self.token.is_some()
    }
}

/// The profile's path: `BATCHD_PROFILE`, else `$XDG_CONFIG_HOME/batchd/profile.toml`, else
/// `~/.config/batchd/profile.toml`. The flag says whether it was named explicitly (then it must
/// exist).
fn profile_path(env: &dyn Fn(&str) -> Option<String>) -> Option<(PathBuf, bool)> {
    if let Some(p) = env("BATCHD_PROFILE").filter(|p| !p.is_empty()) {
        return Some((PathBuf::from(p), true));
    }
    let config = env("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").filter(|h| !h.is_empty()).map(|h| Path::new(&h).join(".config")))?;
    Some((config.join("batchd").join("profile.toml"), false))
}

fn usage(message: String) -> CliError {
    CliError::new(Exit::Usage, message)
}

/// Reads the profile, if there is one. Like ssh with a private key, a profile holding a password
/// or token that others may read is refused rather than used: the secret has leaked already.
pub fn load_profile(env: &dyn Fn(&str) -> Option<String>) -> Result<Profile, CliError> {
    let Some((path, named)) = profile_path(env) else { return Ok(Profile::default()) };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named => return Ok(Profile::default()),
        Err(e) => return Err(usage(format!("cannot read the profile {}: {e}", path.display()))),
    };
    // toml's message quotes the offending line, which may be the password: say where only.
    let profile: Profile = toml::from_str(&text).map_err(|e| {
        let at = e.span().map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        let line = at.map_or_else(String::new, |l| format!(" at line {l}"));
        usage(format!(
            "the profile {} is not valid{line}: use the keys server, user, password and token",
            path.display()
        ))
    })?;
    if profile.holds_secret() {
        check_private(&path)?;
    }
    Ok(profile)
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), CliError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| usage(format!("cannot read the profile {}: {e}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(usage(format!(
            "the profile {} holds a secret but others may read it (mode {:03o}): run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), CliError> {
    Ok(())
}

/// The credentials to send: `BATCHD_TOKEN`, else `BATCHD_USER` with `BATCHD_PASSWORD`, else the
/// profile's token, else its user and password; none is fine (the server will say 401).
pub fn credentials(env: &dyn Fn(&str) -> Option<String>, profile: &Profile) -> Result<Option<Credentials>, CliError> {
    if let Some(t) = env("BATCHD_TOKEN").filter(|t| !t.is_empty()) {
        return Ok(Some(Credentials::Bearer(t)));
    }
    match (env("BATCHD_USER").filter(|u| !u.is_empty()), env("BATCHD_PASSWORD")) {
        (Some(user), Some(password)) => return Ok(Some(Credentials::Basic { user, password })),
        (Some(_), None) => return Err(usage("BATCHD_USER is set but BATCHD_PASSWORD is not".into())),
        (None, Some(_)) => return Err(usage("BATCHD_PASSWORD is set but BATCHD_USER is not".into())),
        (None, None) => {}
    }
    if let Some(t) = profile.token.clone().filter(|t| !t.is_empty()) {
        return Ok(Some(Credentials::Bearer(t)));
    }
    match (profile.user.clone(), profile.password.clone()) {
        (Some(user), Some(password)) => Ok(Some(Credentials::Basic { user, password })),
        (Some(_), None) => Err(usage("the profile names a user but no password".into())),
        (None, Some(_)) => Err(usage("the profile has a password but no user".into())),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn the_environment_comes_before_the_profile_and_a_token_before_a_password() {
        let profile = Profile { user: Some("p".into()), password: Some("pp".into()), ..Profile::default() };
        let env = env_of(&[("BATCHD_TOKEN", "t"), ("BATCHD_USER", "u"), ("BATCHD_PASSWORD", "x")]);
        assert!(matches!(credentials(&env, &profile), Ok(Some(Credentials::Bearer(t))) if t == "t"));
        let env = env_of(&[("BATCHD_USER", "u"), ("BATCHD_PASSWORD", "x")]);
        assert!(matches!(credentials(&env, &profile), Ok(Some(Credentials::Basic { user, .. })) if user == "u"));
        let env = env_of(&[]);
        assert!(matches!(credentials(&env, &profile), Ok(Some(Credentials::Basic { user, .. })) if user == "p"));
        assert!(matches!(credentials(&env, &Profile::default()), Ok(None)));
        let env = env_of(&[("BATCHD_USER", "u")]);
        assert!(credentials(&env, &profile).is_err(), "a user without a password is a mistake");
    }

    #[test]
    fn a_profile_with_a_secret_must_be_private_and_errors_never_quote_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profile.toml");
        std::fs::write(&path, "server = \"http://h:1\"\nuser = \"a\"\npassword = \"hunter2\"\n").unwrap();
        let named = path.display().to_string();
        let env = env_of(&[("BATCHD_PROFILE", &named)]);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_profile(&env).err().expect("refused");
        assert!(e.message.contains("chmod 600") && !e.message.contains("hunter2"), "{}", e.message);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let p = load_profile(&env).unwrap();
        assert_eq!(p.server.as_deref(), Some("http://h:1"));

        std::fs::write(&path, "password = hunter2\n").unwrap();
        let e = load_profile(&env).err().expect("invalid");
        assert!(e.message.contains("line 1") && !e.message.contains("hunter2"), "{}", e.message);

        // A secret-free profile may be readable.
        std::fs::write(&path, "server = \"http://h:1\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_profile(&env).is_ok());

        let missing = env_of(&[("BATCHD_PROFILE", "/nonexistent/batchd-profile.toml")]);
        assert!(load_profile(&missing).is_err(), "a profile named explicitly must exist");
        let home = env_of(&[("HOME", "/nonexistent")]);
        assert!(load_profile(&home).is_ok(), "the default profile is optional");
    }
}
