//! Error codes of the API envelope (`{"code":..,"message":..,"ttl":1,"data":..}`).
//!
//! The seed only says "0 is success, any other integer is an error". dts uses
//! five digits: the HTTP status times 100 plus a detail, so a client can branch
//! on the class (`code / 100`) or on the exact cause. The numbers are part of the
//! public contract: never renumber, only add.

/// Every code the API can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Success.
    Ok,
    /// The body is not valid JSON (syntax error or truncated).
    MalformedJson,
    /// A field is unknown, missing or of the wrong type.
    InvalidField,
    /// `task.source` is invalid (host, port, user).
    InvalidSource,
    /// `task.kafka` is invalid (addr, topic, topic_mode, ...).
    InvalidKafka,
    /// `task.filters` is empty or an entry lacks `dbname`/`match`.
    InvalidFilters,
    /// A `match` written as `/regex/` does not compile.
    InvalidTableRegex,
    /// A row-filter expression does not parse.
    InvalidRowFilter,
    /// `rate_limit` is out of range.
    InvalidRateLimit,
    /// Partitioning options are inconsistent.
    InvalidPartition,
    /// `exclude_columns` holds a malformed name.
    InvalidExcludeColumns,
    /// An ingest stream's names or options are invalid.
    InvalidStream,
    /// Alter tried to change a field that cannot change (`source`, `incr`).
    ImmutableField,
    /// A query parameter (`page`, `per_page`) is not a valid number in range.
    InvalidQuery,
    /// A task id in the path is not a positive integer.
    InvalidTaskId,
    /// The request is not valid HTTP (request line, header syntax, chunked
    /// body); answered by the HTTP layer before any handler.
    MalformedRequest,
    /// Missing or wrong credentials.
    Unauthorized,
    /// The user's role does not allow this request (a viewer changing
    /// something, a non-admin managing users).
    Forbidden,
    /// No task with that id.
    TaskNotFound,
    /// No worker node with that id.
    WorkerNotFound,
    /// No API user with that name.
    UserNotFound,
    /// No ingest stream with that id.
    StreamNotFound,
    /// No such endpoint.
    RouteNotFound,
    /// The endpoint exists but not for this HTTP method.
    MethodNotAllowed,
    /// The request's head did not arrive in time.
    RequestTimeout,
    /// The task changed under the request (optimistic concurrency), or the
    /// requested state change is not possible from the task's state.
    Conflict,
    /// The request body is larger than the configured limit.
    BodyTooLarge,
    /// The request's head is too large (bytes or number of headers).
    HeadTooLarge,
    /// Too many failed logins for this user or from this address, or too
    /// many password checks at once; `Retry-After` says when to retry.
    TooManyRequests,
    /// A bug or an unexpected condition on our side.
    Internal,
    /// The task store cannot be reached right now; retrying may succeed.
    StoreUnavailable,
}

impl ErrorCode {
    /// The number sent in the envelope's `code` field.
    pub const fn number(self) -> i32 {
        match self {
            Self::Ok => 0,
            Self::MalformedJson => 40001,
            Self::InvalidField => 40002,
            Self::InvalidSource => 40010,
            Self::InvalidKafka => 40011,
            Self::InvalidFilters => 40012,
            Self::InvalidTableRegex => 40013,
            Self::InvalidRowFilter => 40014,
            Self::InvalidRateLimit => 40015,
            Self::InvalidPartition => 40016,
            Self::InvalidExcludeColumns => 40017,
            Self::InvalidStream => 40018,
            Self::ImmutableField => 40020,
            Self::InvalidQuery => 40030,
            Self::InvalidTaskId => 40031,
            Self::MalformedRequest => 40000,
            Self::Unauthorized => 40100,
            Self::Forbidden => 40300,
            Self::TaskNotFound => 40400,
            Self::WorkerNotFound => 40401,
            Self::UserNotFound => 40402,
            Self::StreamNotFound => 40403,
            Self::RouteNotFound => 40404,
            Self::MethodNotAllowed => 40500,
            Self::RequestTimeout => 40800,
            Self::Conflict => 40900,
            Self::BodyTooLarge => 41300,
            Self::TooManyRequests => 42900,
            Self::HeadTooLarge => 43100,
            Self::Internal => 50000,
            Self::StoreUnavailable => 50300,
        }
    }

    /// The HTTP status that goes with the code.
    pub const fn http_status(self) -> u16 {
        match self {
            Self::Ok => 200,
            other => (other.number() / 100) as u16,
        }
    }

    /// Every code, for documentation and exhaustive tests.
    pub const ALL: [ErrorCode; 31] = [
        Self::Ok,
        Self::MalformedJson,
        Self::InvalidField,
        Self::InvalidSource,
        Self::InvalidKafka,
        Self::InvalidFilters,
        Self::InvalidTableRegex,
        Self::InvalidRowFilter,
        Self::InvalidRateLimit,
        Self::InvalidPartition,
        Self::InvalidExcludeColumns,
        Self::InvalidStream,
        Self::ImmutableField,
        Self::InvalidQuery,
        Self::InvalidTaskId,
        Self::MalformedRequest,
        Self::Unauthorized,
        Self::Forbidden,
        Self::TaskNotFound,
        Self::WorkerNotFound,
        Self::UserNotFound,
        Self::StreamNotFound,
        Self::RouteNotFound,
        Self::MethodNotAllowed,
        Self::RequestTimeout,
        Self::Conflict,
        Self::BodyTooLarge,
        Self::TooManyRequests,
        Self::HeadTooLarge,
        Self::Internal,
        Self::StoreUnavailable,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_map_to_real_http_statuses() {
        let numbers: HashSet<i32> = ErrorCode::ALL.iter().map(|c| c.number()).collect();
        assert_eq!(numbers.len(), ErrorCode::ALL.len());
        for code in ErrorCode::ALL {
            let status = code.http_status();
            assert!((200..600).contains(&status), "{code:?} -> {status}");
            assert_eq!(code == ErrorCode::Ok, status == 200);
        }
    }
}
