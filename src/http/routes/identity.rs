//! Identity and access endpoints: tickets, browser sessions, API tokens, associates,
//! and the agent-style `SoPrincipal/AuthenticateUsernamePassword`. JSON in (or form), JSON out.
//! See docs/auth.md for the shapes. The rules are the identity service's (`src/identity.rs`):
//! these handlers read the request, call it and write the answer. Where a handler checks the
//! caller before reading the request, the service checks again; the early check keeps "you may
//! not" the first answer, whatever else is wrong with the request.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::domain::access::{Scope, parse_duration};
use crate::domain::{Associate, DomainError, Expected, Field, Role, time};
use crate::http::AppState;
use crate::http::auth::{AuthError, Client, DEVICE_COOKIE, SESSION_COOKIE, XSRF_COOKIE, xsrf_token};
use crate::http::body::Body;
use crate::http::context::Prefs;
use crate::http::error::ApiError;
use crate::http::format::{self, Payload};
use crate::http::wire::Props;
use crate::i18n::{Key, Msg};
use crate::identity::{
    self, AssociateEdit, AssociateRequest, Authenticated, Principal, TokenRequest, Via, may_manage_associates,
    may_manage_credentials,
};
use crate::store::access::{CredentialKind, CredentialRow};

use super::Query;

type Result<T> = std::result::Result<T, AuthError>;

fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).expect("JSON values serialise");
    (status, [(header::CONTENT_TYPE, format::Format::Json.content_type())], bytes).into_response()
}

fn date(d: Option<DateTime<Utc>>, prefs: &Prefs) -> Value {
    d.map_or(Value::Null, |d| Value::from(time::format(d, prefs.zone)))
}

/// The body as an object (an empty body is an empty object).
fn object(body: Body) -> Result<Map<String, Value>> {
    match body.value {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(ApiError::bad_request(Msg::new(Key::BodyNotObject).arg("type", "the request")).into()),
    }
}

/// A text property; `None` when absent or null.
fn text(props: &Props<'_>, name: &'static str) -> Result<Option<String>> {
    match props.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => {
            Err(ApiError::from(DomainError::WrongType { field: Field::Param(name), expected: Expected::Text }).into())
        }
    }
}

fn boolean(props: &Props<'_>, name: &'static str) -> Result<Option<bool>> {
    let bad = || {
        AuthError::from(ApiError::from(DomainError::WrongType {
            field: Field::Param(name),
            expected: Expected::Boolean,
        }))
    };
    match props.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(Some(true)),
            "false" | "0" | "no" => Ok(Some(false)),
            _ => Err(bad()),
        },
        Some(_) => Err(bad()),
    }
}

fn role(props: &Props<'_>) -> Result<Option<Role>> {
    match text(props, "Role")? {
        None => Ok(None),
        Some(r) => Role::parse(&r)
            .map(Some)
            .ok_or_else(|| ApiError::from(DomainError::UnknownValue { field: Field::Param("Role"), value: r }).into()),
    }
}

fn required<T>(v: Option<T>, name: &'static str) -> Result<T> {
    v.ok_or_else(|| ApiError::from(DomainError::Required { field: Field::Param(name) }).into())
}

/// Checks the types of `UserName`, `Name` and `Password`, present or not.
fn credentials_if_typed(props: &Props<'_>) -> Result<()> {
    for name in ["UserName", "Name", "Password"] {
        text(props, name)?;
    }
    Ok(())
}

/// `UserName`/`Password` from a body (JSON or form; any letter case).
fn credentials(props: &Props<'_>) -> Result<(String, String)> {
    let name = text(props, "UserName")?.or(text(props, "Name")?);
    Ok((required(name, "UserName")?, required(text(props, "Password")?, "Password")?))
}

// ---------------------------------------------------------------------------------------------
// Tickets

fn ticket_json(secret: &str, row: &CredentialRow, role: Role, prefs: &Prefs) -> Value {
    json!({
        "Ticket": secret,
        "Expires": date(row.expires, prefs),
        "AssociateId": row.associate_id,
        "Associate": row.associate_name,
        "Role": role.as_str(),
    })
}

/// Who a login endpoint is for: `Authorization: Basic` if sent, else `UserName`/`Password` in the body.
async fn password_login(app: &AppState, headers: &HeaderMap, body: Body, client: Client) -> Result<Associate> {
    // The body is read whatever the credentials: a malformed one is a 400 with Basic too.
    let obj = object(body)?;
    let props = Props::new(&obj);
    let name = text(&props, "UserName")?.or(text(&props, "Name")?);
    let password = text(&props, "Password")?;
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let is_basic =
            v.to_str().ok().and_then(|v| v.trim().get(..6)).is_some_and(|s| s.eq_ignore_ascii_case("basic "));
        if !is_basic {
            return Err(ApiError::unauthorized(Key::AuthUnsupportedScheme).into());
        }
        let auth = app.auth.authenticate("POST", headers, client.addr).await?;
        let c = auth.caller;
        return Ok(Associate { id: c.associate_id, name: c.name, role: c.role, active: true });
    }
    let Some(password) = password else {
        return Err(ApiError::unauthorized(Key::AuthRequired).into());
    };
    app.auth.login(&required(name, "UserName")?, &password, &client).await
}

/// Marks the client as one that logged in as `name`: the device cookie (see docs/auth.md,
/// "Abuse"), so failures of others for that name do not make it wait.
fn set_device_cookie(app: &AppState, res: &mut Response, name: &str) {
    let lifetime = app.config.access.device_lifetime.as_secs();
    let value = app.auth.device_cookie(name);
    let secure = app.config.access.secure_cookies;
    res.headers_mut().append(header::SET_COOKIE, cookie_header(DEVICE_COOKIE, &value, lifetime, true, secure));
}

/// `POST /api/v1/Ticket`: Basic credentials (or `UserName`/`Password` in the body) → an SOTicket.
pub async fn create_ticket(
    State(app): State<AppState>,
    prefs: Prefs,
    client: Client,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let a = password_login(&app, &headers, body, client).await?;
    let t = app.identity.issue_ticket(a.id).await?;
    let mut res = json_response(StatusCode::OK, &ticket_json(&t.secret, &t.row, a.role, &prefs));
    set_device_cookie(&app, &mut res, &a.name);
    Ok(res)
}

/// `DELETE /api/v1/Ticket`: with `SOTicket`, ends that ticket (logout); with a password-grade
/// credential, ends every ticket of the caller.
pub async fn delete_ticket(State(app): State<AppState>, auth: Authenticated) -> Result<Response> {
    app.identity.logout(&auth, CredentialKind::Ticket).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/v1/Agents/SoPrincipal/AuthenticateUsernamePassword`, modelled on SuperOffice's
/// SoPrincipal agent: `{"UserName", "Password"}` → `AuthenticationSucceeded` and a ticket.
pub async fn authenticate_username_password(
    State(app): State<AppState>,
    prefs: Prefs,
    client: Client,
    body: Body,
) -> Result<Response> {
    let obj = object(body)?;
    let props = Props::new(&obj);
    // Types first: a malformed parameter is a 400 even when the other is missing.
    credentials_if_typed(&props)?;
    let missing = ["UserName", "Password"].into_iter().find(|n| matches!(props.get(n), None | Some(Value::Null)));
    if let Some(name) = missing {
        return Ok(format::respond(
            prefs.format,
            &Payload::Invalid {
                message: Msg::new(Key::RequestInvalid).render(prefs.lang),
                detail: Msg::new(Key::ParameterMissing).arg("name", name).render(prefs.lang),
            },
        ));
    }
    let (name, password) = credentials(&props)?;
    let a = match app.auth.login(&name, &password, &client).await {
        Ok(a) => a,
        // Agents answer a failed login in the body, as SoPrincipal does; throttling stays a 429.
        Err(e) if e.error.status == StatusCode::UNAUTHORIZED => {
            return Ok(json_response(
                StatusCode::OK,
                &json!({"AuthenticationSucceeded": false, "Credentials": null, "Response": null}),
            ));
        }
        Err(e) => return Err(e),
    };
    let t = app.identity.issue_ticket(a.id).await?;
    let mut res = json_response(
        StatusCode::OK,
        &json!({
            "AuthenticationSucceeded": true,
            "Credentials": {"Ticket": t.secret, "Expires": date(t.row.expires, &prefs)},
            "Response": {"Associate": a.name, "AssociateId": a.id, "RoleName": a.role.as_str()},
        }),
    );
    set_device_cookie(&app, &mut res, &a.name);
    Ok(res)
}

// ---------------------------------------------------------------------------------------------
// Browser sessions

fn cookie_header(name: &str, value: &str, max_age: u64, http_only: bool, secure: bool) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; Max-Age={max_age}; SameSite=Strict");
    if http_only {
        c.push_str("; HttpOnly");
    }
    if secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).expect("cookie values are base64url")
}

/// A same-site path to go to after a form login; anything else (another host, `//x`) is ignored.
fn local_redirect(next: &str) -> Option<&str> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && next.chars().all(|c| c.is_ascii_graphic());
    ok.then_some(next)
}

/// `POST /api/v1/Session`: a login form (`UserName`/`Password`, form or JSON), refused when a
/// browser says it comes from another site. Sets the HttpOnly
/// session cookie and the readable `XSRF-TOKEN` cookie; answers the session as JSON, or with a
/// form field `next=/path`, a 303 to that path.
pub async fn create_session(
    State(app): State<AppState>,
    prefs: Prefs,
    _: crate::http::forwarded::FromOwnSite,
    client: Client,
    body: Body,
) -> Result<Response> {
    let obj = object(body)?;
    let props = Props::new(&obj);
    let (name, password) = credentials(&props)?;
    let next = text(&props, "next")?;
    let a = app.auth.login(&name, &password, &client).await?;
    let lifetime = app.config.access.session_lifetime;
    let identity::FreshCredential { secret, row } = app.identity.issue_session(a.id).await?;
    let xsrf = xsrf_token(&secret);
    let secure = app.config.access.secure_cookies;
    let mut res = match next.as_deref().and_then(local_redirect) {
        Some(to) => (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response(),
        None => json_response(
            StatusCode::OK,
            &json!({
                "AssociateId": a.id,
                "Associate": a.name,
                "Role": a.role.as_str(),
                "Expires": date(row.expires, &prefs),
                "XsrfToken": xsrf,
            }),
        ),
    };
    let h = res.headers_mut();
    h.append(header::SET_COOKIE, cookie_header(SESSION_COOKIE, &secret, lifetime.as_secs(), true, secure));
    h.append(header::SET_COOKIE, cookie_header(XSRF_COOKIE, &xsrf, lifetime.as_secs(), false, secure));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    set_device_cookie(&app, &mut res, &a.name);
    Ok(res)
}

/// `GET /api/v1/Session`: who the caller is and how it authenticated (any credential).
pub async fn current_session(auth: Authenticated) -> Result<Response> {
    let (via, scope) = match &auth.via {
        Via::Basic => ("Basic", None),
        Via::Ticket { .. } => ("SOTicket", None),
        Via::Token { scope, .. } => ("Bearer", Some(scope.as_str())),
        Via::Session { .. } => ("Session", None),
    };
    let c = &auth.caller;
    Ok(json_response(
        StatusCode::OK,
        &json!({"AssociateId": c.associate_id, "Associate": c.name, "Role": c.role.as_str(),
                "ReadOnly": c.read_only, "Authentication": via, "Scope": scope}),
    ))
}

/// `DELETE /api/v1/Session`: logout. Ends this session (cookie), or with another password-grade
/// credential every session of the caller; clears both cookies.
pub async fn delete_session(State(app): State<AppState>, auth: Authenticated) -> Result<Response> {
    app.identity.logout(&auth, CredentialKind::Session).await?;
    let secure = app.config.access.secure_cookies;
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut().append(header::SET_COOKIE, cookie_header(SESSION_COOKIE, "", 0, true, secure));
    res.headers_mut().append(header::SET_COOKIE, cookie_header(XSRF_COOKIE, "", 0, false, secure));
    Ok(res)
}

// ---------------------------------------------------------------------------------------------
// API tokens

fn token_json(row: &CredentialRow, prefs: &Prefs) -> Value {
    json!({
        "TokenId": row.id,
        "AssociateId": row.associate_id,
        "Associate": row.associate_name,
        "Name": row.name,
        "Scope": row.scope.map(Scope::as_str),
        "Created": date(Some(row.created), prefs),
        "Expires": date(row.expires, prefs),
        "Revoked": date(row.revoked, prefs),
        "Live": row.is_live(Utc::now()),
    })
}

/// `GET /api/v1/Token`: the caller's tokens; an admin sees all (`?associateId=` narrows).
pub async fn list_tokens(
    State(app): State<AppState>,
    prefs: Prefs,
    auth: Authenticated,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let who = Principal::Request(&auth);
    may_manage_credentials(who)?;
    let q = Query::parse(raw.as_deref());
    // Only the callers who may use `associateId` hear that it is not a number.
    let associate = match q.get("associateId") {
        Some(v) if identity::sees_all_tokens(who) => Some(v.trim().parse::<i32>().map_err(|_| {
            ApiError::from(DomainError::WrongType { field: Field::Param("associateId"), expected: Expected::Integer })
        })?),
        _ => None,
    };
    let rows = app.identity.list_tokens(who, associate).await?;
    Ok(json_response(StatusCode::OK, &Value::Array(rows.iter().map(|r| token_json(r, &prefs)).collect())))
}

/// `POST /api/v1/Token`: `{"Scope", "Name"?, "Expires"? ("30d"), "Associate"? (admins)}` → the
/// token, shown this once.
pub async fn create_token(
    State(app): State<AppState>,
    prefs: Prefs,
    auth: Authenticated,
    body: Body,
) -> Result<Response> {
    let who = Principal::Request(&auth);
    may_manage_credentials(who)?;
    let obj = object(body)?;
    let props = Props::new(&obj);
    let scope_text = required(text(&props, "Scope")?, "Scope")?;
    let scope = Scope::parse(&scope_text).ok_or_else(|| {
        ApiError::from(DomainError::UnknownValue { field: Field::Param("Scope"), value: scope_text.clone() })
    })?;
    let lifetime = match text(&props, "Expires")? {
        None => None,
        Some(e) => Some(parse_duration(&e).ok_or_else(|| {
            ApiError::from(DomainError::UnknownValue { field: Field::Param("Expires"), value: e.clone() })
        })?),
    };
    let label = text(&props, "Name")?;
    if let Some(l) = &label {
        identity::check_label(l)?;
    }
    let associate = text(&props, "Associate")?;
    let t = app.identity.create_token(who, TokenRequest { scope, lifetime, label, associate }).await?;
    let mut body = token_json(&t.row, &prefs);
    body["Token"] = Value::from(t.secret);
    let mut res = json_response(StatusCode::CREATED, &body);
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// `DELETE /api/v1/Token/{id}`: revokes one of the caller's tokens (an admin: anyone's).
pub async fn delete_token(
    State(app): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    app.identity.revoke_token(Principal::Request(&auth), &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------------------------
// Associates (admins only)

fn associate_json(a: &Associate) -> Value {
    json!({"AssociateId": a.id, "Name": a.name, "Role": a.role.as_str(), "Active": a.active})
}

fn parse_associate_id(raw: &str) -> Result<i32> {
    raw.trim().parse::<i32>().map_err(|_| {
        ApiError::from(DomainError::WrongType { field: Field::Param("id"), expected: Expected::Integer }).into()
    })
}

/// `GET /api/v1/Associate`
pub async fn list_associates(State(app): State<AppState>, auth: Authenticated) -> Result<Response> {
    let all = app.identity.list_associates(Principal::Request(&auth)).await?;
    Ok(json_response(StatusCode::OK, &Value::Array(all.iter().map(associate_json).collect())))
}

/// `GET /api/v1/Associate/{id}`
pub async fn get_associate(
    State(app): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    let who = Principal::Request(&auth);
    may_manage_associates(who)?;
    let a = app.identity.get_associate(who, parse_associate_id(&id)?).await?;
    Ok(json_response(StatusCode::OK, &associate_json(&a)))
}

/// `POST /api/v1/Associate`: `{"Name", "Password", "Role"?: user|worker|admin, "Active"?}`.
pub async fn create_associate(State(app): State<AppState>, auth: Authenticated, body: Body) -> Result<Response> {
    let who = Principal::Request(&auth);
    may_manage_associates(who)?;
    let obj = object(body)?;
    let props = Props::new(&obj);
    // Read and checked in this order, so the first thing wrong is the one reported.
    let name = required(text(&props, "Name")?, "Name")?;
    identity::check_name(&name)?;
    let password = required(text(&props, "Password")?, "Password")?;
    identity::check_password(&password)?;
    let role = role(&props)?.unwrap_or(Role::User);
    let active = boolean(&props, "Active")?;
    let a = app.identity.create_associate(who, AssociateRequest { name, password, role, active }).await?;
    let mut res = json_response(StatusCode::CREATED, &associate_json(&a));
    let location = crate::http::forwarded::local_path(&app.config, &format!("/api/v1/Associate/{}", a.id));
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// `PUT /api/v1/Associate/{id}`: any of `Name`, `Password`, `Role`, `Active`.
pub async fn update_associate(
    State(app): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response> {
    let who = Principal::Request(&auth);
    may_manage_associates(who)?;
    let id = parse_associate_id(&id)?;
    let obj = object(body)?;
    let props = Props::new(&obj);
    let name = text(&props, "Name")?;
    if let Some(n) = &name {
        identity::check_name(n)?;
    }
    let password = text(&props, "Password")?;
    if let Some(p) = &password {
        identity::check_password(p)?;
    }
    let edit = AssociateEdit { name, password, role: role(&props)?, active: boolean(&props, "Active")? };
    let a = app.identity.update_associate(who, id, edit).await?;
    Ok(json_response(StatusCode::OK, &associate_json(&a)))
}

/// `DELETE /api/v1/Associate/{id}`: removes the associate and its credentials (its tasks stay).
pub async fn delete_associate(
    State(app): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
) -> Result<Response> {
    let who = Principal::Request(&auth);
    may_manage_associates(who)?;
    app.identity.delete_associate(who, parse_associate_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
