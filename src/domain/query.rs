//! The OData-style list over SuperOffice's `BatchTasks` archive: its columns and a typed filter
//! expression. Stores turn an [`Expr`] into SQL with bound parameters, never pasted text.

use chrono::{DateTime, Utc};

/// The `BatchTasks` archive columns batchd serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    Id,
    DefinitionId,
    DefinitionName,
    DefinitionDescription,
    DefinitionTimeOut,
    Description,
    DbTag,
    State,
    DetailsTable,
    DetailsRecord,
    Request,
    Response,
    StartCount,
    LastStarted,
    ProgressPercent,
    ProgressDescription,
    UpdatedBy,
    UpdatedDate,
    RegisteredBy,
    RegisteredDate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Int,
    Text,
    Date,
    /// An associate id, shown as a number.
    Associate,
}

impl Column {
    pub const ALL: [Column; 20] = [
        Column::Id,
        Column::DefinitionId,
        Column::DefinitionName,
        Column::DefinitionDescription,
        Column::DefinitionTimeOut,
        Column::Description,
        Column::DbTag,
        Column::State,
        Column::DetailsTable,
        Column::DetailsRecord,
        Column::Request,
        Column::Response,
        Column::StartCount,
        Column::LastStarted,
        Column::ProgressPercent,
        Column::ProgressDescription,
        Column::UpdatedBy,
        Column::UpdatedDate,
        Column::RegisteredBy,
        Column::RegisteredDate,
    ];

    /// Columns shown when `$select` is absent.
    pub const DEFAULT_SELECT: [Column; 8] = [
        Column::DefinitionName,
        Column::Description,
        Column::State,
        Column::StartCount,
        Column::LastStarted,
        Column::ProgressPercent,
        Column::ProgressDescription,
        Column::RegisteredDate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Column::Id => "batchTaskId",
            Column::DefinitionId => "DefinitionId",
            Column::DefinitionName => "DefinitionName",
            Column::DefinitionDescription => "DefinitionDescription",
            Column::DefinitionTimeOut => "DefinitionTimeOut",
            Column::Description => "Description",
            Column::DbTag => "DbTag",
            Column::State => "State",
            Column::DetailsTable => "DetailsTable",
            Column::DetailsRecord => "DetailsRecord",
            Column::Request => "Request",
            Column::Response => "Response",
            Column::StartCount => "StartCount",
            Column::LastStarted => "LastStarted",
            Column::ProgressPercent => "ProgressPercent",
            Column::ProgressDescription => "ProgressDescription",
            Column::UpdatedBy => "updatedBy",
            Column::UpdatedDate => "updatedDate",
            Column::RegisteredBy => "registeredBy",
            Column::RegisteredDate => "registeredDate",
        }
    }

    pub fn parse(name: &str) -> Option<Column> {
        let n = name.trim();
        Column::ALL.into_iter().find(|c| c.name().eq_ignore_ascii_case(n))
    }

    pub fn kind(self) -> ColumnType {
        use Column::*;
        match self {
            Id | DefinitionId | DefinitionTimeOut | State | DetailsTable | DetailsRecord | StartCount
            | ProgressPercent => ColumnType::Int,
            DefinitionName | DefinitionDescription | Description | DbTag | Request | Response | ProgressDescription => {
                ColumnType::Text
            }
            LastStarted | UpdatedDate | RegisteredDate => ColumnType::Date,
            UpdatedBy | RegisteredBy => ColumnType::Associate,
        }
    }

    /// The archive marks Request, Response and ProgressDescription as not sortable.
    pub fn sortable(self) -> bool {
        !matches!(self, Column::Request | Column::Response | Column::ProgressDescription)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextOp {
    Contains,
    NotContains,
    Begins,
    NotBegins,
    Ends,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Int(i64),
    Text(String),
    Date(DateTime<Utc>),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare { column: Column, op: CompareOp, value: Literal },
    Text { column: Column, op: TextOp, value: String },
    OneOf { column: Column, values: Vec<Literal>, negated: bool },
}
