//! `GET /api/v1/Nodes`: the batchd processes sharing the database (admins only). Who is listed
//! and who is alive is decided in `crate::domain::node`.

use axum::extract::State;
use axum::response::Response;
use serde_json::{Value, json};

use crate::domain::node::NodeStatus;
use crate::domain::{Caller, time};
use crate::http::AppState;
use crate::http::context::Prefs;
use crate::http::error::ApiError;
use crate::http::format::{Format, XmlWriter};

use super::runner::{json_response, xml_response};

pub async fn list(caller: Caller, State(app): State<AppState>, prefs: Prefs) -> Result<Response, ApiError> {
    let nodes = app.tasks.nodes(&caller).await?;
    let date = |t| time::format(t, prefs.zone);
    Ok(match prefs.format {
        Format::Json => {
            let list: Vec<Value> = nodes
                .iter()
                .map(|NodeStatus { row, alive }| {
                    json!({
                        "Name": row.name,
                        "Version": row.version,
                        "Address": row.address,
                        "Started": date(row.started),
                        "LastSeen": date(row.last_seen),
                        "Running": row.running,
                        "RunnerEnabled": row.runner_enabled,
                        "Alive": alive,
                    })
                })
                .collect();
            json_response(&Value::Array(list))
        }
        Format::Xml => {
            let mut x = XmlWriter::new();
            x.open_root("ArrayOfNode");
            for NodeStatus { row, alive } in &nodes {
                x.open("Node");
                x.leaf("Name", &row.name);
                x.leaf("Version", &row.version);
                x.leaf("Address", &row.address);
                x.leaf("Started", &date(row.started));
                x.leaf("LastSeen", &date(row.last_seen));
                x.leaf("Running", &row.running.to_string());
                x.leaf("RunnerEnabled", if row.runner_enabled { "true" } else { "false" });
                x.leaf("Alive", if *alive { "true" } else { "false" });
                x.close("Node");
            }
            x.close("ArrayOfNode");
            xml_response(x)
        }
    })
}
