//! Tests of the error mapping: variants by status, fixed outage messages, redaction.

use super::*;

fn ctx() -> CallContext {
    CallContext {
        operation: "create shared secret \"db\"".into(),
        what: "shared secret \"db\"".into(),
        service: "vault",
        redact: vec!["hunter2".into()],
    }
}

fn answer(status: u16, body: &str) -> PrivxError {
    error_from_answer(&ctx(), status, None, body.as_bytes())
}

#[test]
fn status_decides_the_variant() {
    assert!(matches!(answer(404, "{}"), PrivxError::NotFound { .. }));
    assert!(matches!(answer(409, ""), PrivxError::AlreadyExists { .. }));
    assert!(matches!(
        answer(403, r#"{"error_code":"PERMISSION_DENIED"}"#),
        PrivxError::PermissionDenied { .. }
    ));
    assert!(matches!(
        answer(401, ""),
        PrivxError::Unauthenticated { .. }
    ));
    assert!(matches!(answer(500, ""), PrivxError::Unavailable { .. }));
    assert!(matches!(
        answer(502, "<html>bad gateway</html>"),
        PrivxError::Unavailable { .. }
    ));
    assert!(matches!(answer(418, ""), PrivxError::Other { .. }));
    assert!(matches!(answer(302, ""), PrivxError::Other { .. }));
}

#[test]
fn both_duplicate_answers_are_already_exists() {
    assert!(matches!(
        answer(400, r#"{"error_code":"VALUE_DUPLICATE","property":"name"}"#),
        PrivxError::AlreadyExists { .. }
    ));
    assert!(matches!(
        answer(409, r#"{"error_code":"VALUE_DUPLICATE"}"#),
        PrivxError::AlreadyExists { .. }
    ));
}

#[test]
fn overload_codes_are_retryable_whatever_the_status() {
    for code in OVERLOAD_CODES {
        let err = answer(400, &format!(r#"{{"error_code":"{code}"}}"#));
        assert!(err.is_retryable(), "{code}: {err}");
    }
}

#[test]
fn invalid_request_keeps_property_and_message() {
    let err = answer(
        400,
        r#"{"error_code":"VALUE_OUT_OF_BOUNDS","error_message":"too long","property":"password_max_length"}"#,
    );
    match &err {
        PrivxError::InvalidRequest {
            code,
            property,
            message,
            ..
        } => {
            assert_eq!(code, "VALUE_OUT_OF_BOUNDS");
            assert_eq!(property.as_deref(), Some("password_max_length"));
            assert!(message.contains("too long"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("field password_max_length"));
}

#[test]
fn property_falls_back_to_details() {
    let err = answer(
        400,
        r#"{"error_code":"INVALID_REQUEST_DATA","details":[{"error_code":"VALUE_INCORRECT_FORMAT","property":"rotation_interval"}]}"#,
    );
    assert!(
        matches!(err, PrivxError::InvalidRequest { property: Some(ref p), .. } if p == "rotation_interval")
    );
}

#[test]
fn echoed_secret_values_are_redacted_and_messages_truncated() {
    let err = answer(
        400,
        r#"{"error_code":"BAD_REQUEST","error_message":"value hunter2 is bad"}"#,
    );
    assert!(!err.to_string().contains("hunter2"));
    assert!(!format!("{err:?}").contains("hunter2"));
    let long = "x".repeat(5000);
    let err = answer(
        400,
        &format!(r#"{{"error_code":"BAD_REQUEST","error_message":"{long}"}}"#),
    );
    assert!(err.to_string().chars().count() < 400);
}

/// The message of an outage, whatever the body said.
fn unavailable_message(status: u16, body: &str) -> String {
    match answer(status, body) {
        PrivxError::Unavailable { message, .. } => message,
        other => panic!("not an outage: {other:?}"),
    }
}

#[test]
fn outages_are_fixed_text_without_any_of_the_body() {
    let html = "<html><head><title>503 Service Unavailable</title></head><body><h1>Service Unavailable</h1><p>nginx/1.25.3 request 9f8e7d</p></body></html>";
    assert_eq!(unavailable_message(503, html), "HTTP 503 from vault");
    let max_load = r#"{"error_code":"MAX_LOAD","error_message":"server load 97% at 04:12:31, request id 5d1c"}"#;
    assert_eq!(
        unavailable_message(503, max_load),
        "HTTP 503 from vault (MAX_LOAD)"
    );
    let proxy =
        "502 Bad Gateway\nX-Request-Id: 0af7651916cd43dd8448eb211c80319c\nupstream connect error";
    assert_eq!(unavailable_message(502, proxy), "HTTP 502 from vault");
    let err = answer(503, html).to_string();
    for fragment in ["html", "nginx", "9f8e7d", "Service Unavailable"] {
        assert!(!err.contains(fragment), "{fragment} in {err}");
    }
    assert_eq!(
        err,
        "PrivX unavailable during create shared secret \"db\": HTTP 503 from vault"
    );
}

#[test]
fn identical_failures_give_identical_text_whatever_the_body() {
    let a = answer(503, "<html>request id 1111 at 04:00:01</html>").to_string();
    let b = answer(503, "upstream timed out; request id 2222").to_string();
    assert_eq!(a, b);
    let a = answer(
        503,
        r#"{"error_code":"MAX_LOAD","error_message":"load 91%"}"#,
    );
    let b = answer(
        503,
        r#"{"error_code":"MAX_LOAD","error_message":"load 99%, id 7"}"#,
    );
    assert_eq!(a.to_string(), b.to_string());
    // An overload code on a 400 is an outage too, and just as fixed.
    assert_eq!(
        unavailable_message(
            400,
            r#"{"error_code":"TOO_MANY_CONNECTIONS","error_message":"x"}"#
        ),
        "HTTP 400 from vault (TOO_MANY_CONNECTIONS)"
    );
}

#[test]
fn free_text_in_a_json_error_code_is_not_a_code() {
    let body = r#"{"error_code":"upstream 10.0.0.7 said no (id 42)"}"#;
    assert_eq!(unavailable_message(503, body), "HTTP 503 from vault");
}

#[test]
fn unexpected_statuses_and_foreign_refusals_carry_no_body() {
    let err = answer(418, "<html>I'm a teapot, trace 77</html>").to_string();
    assert!(err.ends_with("HTTP 418 from vault"), "{err}");
    let err = answer(403, "<html>WAF blocked request 123</html>").to_string();
    assert!(err.ends_with("HTTP 403 from vault"), "{err}");
    let err = answer(401, "<html>login page</html>").to_string();
    assert!(!err.contains("login page"), "{err}");
    // PrivX's own refusal keeps its words: the user has to act on it.
    let err = answer(
        403,
        r#"{"error_code":"PERMISSION_DENIED","error_message":"missing role vault-manager"}"#,
    );
    assert!(
        err.to_string().contains("missing role vault-manager"),
        "{err}"
    );
}

#[test]
fn services_come_from_the_route() {
    assert_eq!(service_of("POST /vault/api/v1/secrets"), "vault");
    assert_eq!(service_of("POST /auth/api/v1/oauth/token"), "auth");
    assert_eq!(
        service_of("GET /secrets-manager/api/v1/password-policy/{id}"),
        "secrets-manager"
    );
    assert_eq!(service_of("/role-store/api/v1/users/current"), "role-store");
    assert_eq!(service_of(""), "PrivX");
}

#[test]
fn transport_failures_are_classified_into_fixed_words() {
    use std::io::ErrorKind;
    let classify = TransportFailure::classify;
    let timeout = classify(true, false, None, "operation timed out after 10.0013s");
    assert_eq!(timeout.message("vault"), "timeout talking to vault");
    let refused = classify(
        false,
        true,
        Some(ErrorKind::ConnectionRefused),
        "error sending request for url (https://privx.example/vault/api/v1/secrets/db): Connection refused (os error 111)",
    );
    assert_eq!(refused.message("vault"), "connection refused by PrivX");
    assert_eq!(
        classify(false, true, None, "invalid peer certificate: UnknownIssuer").message("vault"),
        "PrivX's TLS certificate is not trusted (check the CA bundle)"
    );
    assert_eq!(
        classify(false, true, None, "invalid peer certificate: Expired"),
        TransportFailure::CertificateExpired
    );
    assert_eq!(
        classify(
            false,
            true,
            None,
            "invalid peer certificate: NotValidForName"
        ),
        TransportFailure::CertificateWrongName
    );
    assert_eq!(
        classify(false, true, None, "received fatal alert: HandshakeFailure"),
        TransportFailure::Tls
    );
    assert_eq!(
        classify(false, true, None, "dns error: failed to lookup address"),
        TransportFailure::NoSuchHost
    );
    assert_eq!(
        classify(
            false,
            false,
            Some(ErrorKind::ConnectionReset),
            "connection reset"
        )
        .message("secrets-manager"),
        "connection lost talking to secrets-manager"
    );
}

#[test]
fn parse_failures_do_not_quote_the_input() {
    let e = serde_json::from_str::<Vec<u32>>(r#"["hunter2"]"#).unwrap_err();
    assert!(
        e.to_string().contains("hunter2"),
        "premise: serde_json quotes values"
    );
    let err = parse_failure(&ctx(), &e);
    assert!(!err.to_string().contains("hunter2"));
}

#[test]
fn only_outage_answers_count_for_the_breaker() {
    let outage = |status: u16, body: &str| outage_message(status, body.as_bytes(), "vault");
    for status in [500, 502, 503, 504, 408, 429] {
        assert_eq!(
            outage(status, "<html>down</html>"),
            Some(format!("HTTP {status} from vault"))
        );
    }
    assert_eq!(
        outage(400, r#"{"error_code":"MAX_LOAD"}"#).as_deref(),
        Some("HTTP 400 from vault (MAX_LOAD)")
    );
    // Answers about one object (or the caller) say the service serves.
    for status in [200, 204, 400, 401, 403, 404, 409, 413, 422] {
        assert_eq!(
            outage(status, r#"{"error_code":"OBJECT_NOT_FOUND"}"#),
            None,
            "{status}"
        );
    }
    // The text a refusal repeats is the one the failure itself gave.
    let ctx = CallContext {
        operation: "get shared secret \"x\"".into(),
        what: "shared secret \"x\"".into(),
        service: "vault",
        redact: vec![],
    };
    let PrivxError::Unavailable {
        message,
        service,
        refused,
        ..
    } = error_from_answer(&ctx, 503, None, br#"{"error_code":"MAX_LOAD"}"#)
    else {
        panic!("503 is an outage")
    };
    assert_eq!(Some(message), outage(503, r#"{"error_code":"MAX_LOAD"}"#));
    assert_eq!((service, refused), (Some(Service::Vault), false));
}

/// Issue 23 §2: the answer to a call carrying secret values is never logged as a body (PrivX
/// may echo a value JSON-escaped, or one too short to redact by substring), and its error
/// message redacts the escaped form too.
#[test]
fn bodies_of_calls_carrying_values_are_not_logged_and_escaped_values_are_redacted() {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    // Tests run in parallel threads without a subscriber: a callsite one of them reached
    // first may have cached "never enabled"; ask every callsite again with ours in place.
    tracing::callsite::rebuild_interest_cache();

    let data = crate::SecretData(
        [
            ("password".to_string(), serde_json::json!("hu\"nt\\er2")),
            ("pin".to_string(), serde_json::json!("Qz")),
        ]
        .into(),
    );
    let call = crate::core::Call::new(
        reqwest::Method::POST,
        "POST /vault/api/v1/secrets",
        "/vault/api/v1/secrets".into(),
        "create shared secret \"db\"".into(),
        "shared secret \"db\"".into(),
    )
    .redacting(&data);
    let body = r#"{"error_code":"BAD_REQUEST","error_message":"bad value hu\"nt\\er2 and Qz"}"#;
    let err = error_from_answer(&call.ctx, 400, None, body.as_bytes());
    // A call without values still logs its (redacted) body.
    let plain = CallContext {
        redact: Vec::new(),
        ..ctx()
    };
    error_from_answer(
        &plain,
        400,
        None,
        br#"{"error_message":"plain-answer-text"}"#,
    );
    drop(guard);

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("plain-answer-text"),
        "the capture works: {logs}"
    );
    assert!(logs.contains("body not logged"), "{logs}");
    for form in [r#"hu\"nt\\er2"#, "hu\"nt\\er2", "Qz"] {
        assert!(!logs.contains(form), "{form} in the log: {logs}");
    }
    let message = err.to_string();
    assert!(
        !message.contains(r#"hu\"nt\\er2"#) && !message.contains("hu\"nt\\er2"),
        "{message}"
    );
}
