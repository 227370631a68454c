//! The HTTP surface (axum on hyper 1, HTTP/1.1): `POST /v1/predict`, `GET /healthz`,
//! `GET /metrics`. One middleware around every route counts and times the answer and, when
//! a token is configured, turns away requests without it (401) before any body is read.
//! Every refusal is `{"error": "…"}` with a sentence that says what was expected: 400 for a
//! malformed request, 413 over the body limit, 415 for another Content-Type, 503 when the
//! queue is full or the service is stopping, 500 when libtorch fails on a valid request.

use crate::auth::Token;
use crate::batcher::{Batcher, SubmitError};
use crate::codec::{self, DTYPE_HEADER, SHAPE_HEADER};
use crate::metrics::Metrics;
use crate::spec::ModelSpec;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;
use std::time::Instant;

pub struct App {
    pub spec: ModelSpec,
    pub batcher: Batcher,
    pub metrics: Arc<Metrics>,
    pub token: Option<Token>,
    pub max_body_bytes: usize,
    /// Shown by `/healthz`.
    pub model_name: String,
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/predict", post(predict))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

fn route_name(path: &str) -> &'static str {
    match path {
        "/v1/predict" => "/v1/predict",
        "/healthz" => "/healthz",
        "/metrics" => "/metrics",
        _ => "other",
    }
}

async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = route_name(request.uri().path());
    let response = match &app.token {
        Some(token) if route != "/healthz" && !token.accepts(request.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes)) => {
            let mut response = error(StatusCode::UNAUTHORIZED, "expected a header Authorization: Bearer <token> with this service's token");
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
        _ => next.run(request).await,
    };
    app.metrics.observe_request(route, response.status().as_u16(), start.elapsed().as_secs_f64());
    response
}

pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": message.into() }).to_string() + "\n";
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    let body = serde_json::json!({ "status": "ok", "model": app.model_name, "input": app.spec.describe_input() }).to_string() + "\n";
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.render()).into_response()
}

enum Format {
    Json,
    Raw,
}

async fn predict(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    match predict_inner(&app, &headers, body).await {
        Ok(response) => response,
        Err(response) => response,
    }
}

async fn predict_inner(app: &App, headers: &HeaderMap, body: Body) -> Result<Response, Response> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let format = match essence.as_str() {
        "application/json" => Format::Json,
        "application/octet-stream" => Format::Raw,
        _ => {
            let found = if content_type.is_empty() { "none".to_string() } else { format!("{content_type:?}") };
            return Err(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type: expected application/json or application/octet-stream, found {found}"),
            ));
        }
    };
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body: expected at most {} bytes (--max-body-bytes), found more", app.max_body_bytes),
        )
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > app.max_body_bytes) {
        return Err(too_large());
    }
    let bytes = match axum::body::to_bytes(body, app.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(e) if is_length_limit(&e) => return Err(too_large()),
        Err(e) => return Err(error(StatusCode::BAD_REQUEST, format!("the body could not be read: {e}"))),
    };
    let header_text = |name: &str| -> Result<Option<&str>, Response> {
        match headers.get(name) {
            None => Ok(None),
            Some(v) => v.to_str().map(Some).map_err(|_| error(StatusCode::BAD_REQUEST, format!("{name}: expected ASCII text"))),
        }
    };
    let decoded = match format {
        Format::Json => codec::decode_json(&bytes, &app.spec),
        Format::Raw => codec::decode_raw(&bytes, header_text(SHAPE_HEADER)?, header_text(DTYPE_HEADER)?, &app.spec),
    };
    let input = decoded.map_err(|message| error(StatusCode::BAD_REQUEST, message))?;
    let examples = input.size()[0];
    if let Some(fixed) = app.spec.fixed_batch.filter(|&n| examples > n) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("expected at most {fixed} examples per request (the model was traced for batches of {fixed}), found {examples}"),
        ));
    }
    let answer = app.batcher.submit(input).map_err(|e| match e {
        SubmitError::Busy => error(StatusCode::SERVICE_UNAVAILABLE, "overloaded: the queue of waiting requests is full, retry later"),
        SubmitError::Stopped => error(StatusCode::SERVICE_UNAVAILABLE, "the service is stopping"),
    })?;
    let output = match answer.await {
        Ok(Ok(output)) => output,
        Ok(Err(message)) => {
            app.metrics.observe_inference_error();
            return Err(error(StatusCode::INTERNAL_SERVER_ERROR, format!("the model failed: {message}")));
        }
        Err(_) => return Err(error(StatusCode::SERVICE_UNAVAILABLE, "the service is stopping")),
    };
    let internal = |message: String| error(StatusCode::INTERNAL_SERVER_ERROR, message);
    Ok(match format {
        Format::Json => {
            let body = codec::encode_json(&output).map_err(internal)?;
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Format::Raw => {
            let (body, shape, dtype) = codec::encode_raw(&output).map_err(internal)?;
            let mut response = ([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response();
            let headers = response.headers_mut();
            headers.insert(SHAPE_HEADER, HeaderValue::from_str(&shape).map_err(|e| internal(e.to_string()))?);
            headers.insert(DTYPE_HEADER, HeaderValue::from_static(dtype));
            response
        }
    })
}

/// Whether reading the body stopped at the size limit (http-body-util's `LengthLimitError`
/// somewhere in the error's chain) rather than failing otherwise.
fn is_length_limit(error: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = e.source();
    }
    false
}
