//! Table tests of the template sandbox: what renders, and every refused function and escape.

use super::*;
use serde_json::json;

fn data() -> BTreeMap<String, serde_json::Value> {
    BTreeMap::from([
        ("username".into(), json!("app")),
        ("password".into(), json!("p@ss:w/rd?&=#S3cr3t")),
        ("port".into(), json!(5432)),
        (
            "config".into(),
            json!("{\"host\":\"db\",\"replicas\":[1,2]}"),
        ),
        ("tls.crt".into(), json!("CERTDATA")),
        ("encoded".into(), json!("aGVsbG8gd29ybGQ=")),
        ("blank".into(), json!("")),
        ("multi".into(), json!("a: 1\nb: 2\n\nc: 3")),
        ("nested".into(), json!({"k": "v", "list": ["x", "y"]})),
    ])
}

fn render(text: &str) -> Result<String, TemplateError> {
    render_all(&[Template::inline("OUT", text)], &data())
        .map(|m| String::from_utf8(m["OUT"].clone()).expect("utf-8"))
}

#[test]
fn renders_the_documented_cases() {
    let cases: &[(&str, &str)] = &[
        (
            "postgres://{{ username }}:{{ password | urlencode }}@db:5432/app",
            "postgres://app:p%40ss%3Aw%2Frd%3F%26%3D%23S3cr3t@db:5432/app",
        ),
        ("{{ port }}", "5432"),
        ("{{ port | urlencode }}", "5432"),
        ("{{ username | b64enc }}", "YXBw"),
        ("{{ encoded | b64dec }}", "hello world"),
        ("{{ username | b64enc | b64dec }}", "app"),
        ("{{ username | toJson }}", "\"app\""),
        ("{{ nested | toJson }}", r#"{"k":"v","list":["x","y"]}"#),
        ("{{ (config | fromJson).host }}", "db"),
        ("{{ (config | fromJson).replicas | toJson }}", "[1,2]"),
        ("{{ nested | toYaml }}", "k: v\nlist:\n- x\n- \"y\""),
        ("{{ missing | default('fallback') }}", "fallback"),
        ("{{ blank | default('fallback') }}", "fallback"),
        ("{{ username | default('fallback') }}", "app"),
        ("{{ username | required('need a user') }}", "app"),
        ("{{ '  x  ' | trim }}", "x"),
        ("{{ username | upper }}", "APP"),
        ("{{ 'ABC' | lower }}", "abc"),
        ("{{ multi | indent(2) }}", "a: 1\n  b: 2\n\n  c: 3"),
        ("{{ multi | indent(2, true) }}", "  a: 1\n  b: 2\n\n  c: 3"),
        ("{{ data['tls.crt'] }}", "CERTDATA"),
        ("{% if port %}p={{ port }}{% endif %}", "p=5432"),
        ("{% if missing %}yes{% else %}no{% endif %}", "no"),
        ("{% for k in nested.list %}{{ k }},{% endfor %}", "x,y,"),
        ("{% set u = username | upper %}{{ u }}", "APP"),
        ("{{ username ~ '@' ~ port }}", "app@5432"),
        ("{% raw %}{{ not a tag }}{% endraw %}", "{{ not a tag }}"),
        (
            r#"{"auths":{"r.io":{"auth":"{{ (username ~ ':' ~ password) | b64enc }}"}}}"#,
            r#"{"auths":{"r.io":{"auth":"YXBwOnBAc3M6dy9yZD8mPSNTM2NyM3Q="}}}"#,
        ),
    ];
    for (template, want) in cases {
        assert_eq!(
            render(template).as_deref(),
            Ok(*want),
            "template {template}"
        );
    }
}

/// Every function a secret does not need, and every way out of the sandbox, is refused.
#[test]
fn refuses_every_function_not_listed_and_every_escape() {
    let cases: &[(&str, &str)] = &[
        // functions: none exist
        ("{{ range(10) }}", "unknown function"),
        (
            "{% for i in range(100000000) %}x{% endfor %}",
            "unknown function",
        ),
        ("{{ lipsum() }}", "unknown function"),
        ("{{ namespace() }}", "unknown function"),
        ("{{ dict(a=1) }}", "unknown function"),
        ("{{ debug() }}", "unknown function"),
        ("{{ env('HOME') }}", "unknown function"),
        ("{{ now() }}", "unknown function"),
        ("{{ cycler(1, 2) }}", "unknown function"),
        ("{{ joiner() }}", "unknown function"),
        // filters outside the list (Jinja's and Helm/Sprig's favourites)
        ("{{ username | safe }}", "unknown filter"),
        ("{{ username | e }}", "unknown filter"),
        ("{{ username | tojson }}", "unknown filter"),
        ("{{ '%s' | format(username) }}", "unknown filter"),
        ("{{ username | replace('a', 'b') }}", "unknown filter"),
        ("{{ nested | items }}", "unknown filter"),
        ("{{ nested | attr('k') }}", "unknown filter"),
        ("{{ nested | map('upper') }}", "unknown filter"),
        ("{{ username | pprint }}", "unknown filter"),
        ("{{ username | env }}", "unknown filter"),
        ("{{ username | getHostByName }}", "unknown filter"),
        ("{{ username | randAlphaNum }}", "unknown filter"),
        ("{{ username | sha256sum }}", "unknown filter"),
        ("{% filter safe %}x{% endfilter %}", "unknown filter"),
        // tests: none exist
        ("{% if username is defined %}x{% endif %}", "unknown test"),
        ("{% if username is not none %}x{% endif %}", "unknown test"),
        // other templates, files: no loader, no include/import/extends/block
        ("{% include 'other' %}", "syntax error"),
        ("{% include '/etc/passwd' %}", "syntax error"),
        ("{% import 'm' as m %}", "syntax error"),
        ("{% from 'm' import x %}", "syntax error"),
        ("{% extends 'base' %}", "syntax error"),
        ("{% block b %}{% endblock %}", "syntax error"),
        // macros and call blocks (recursion)
        (
            "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
            "syntax error",
        ),
        ("{% call x() %}{% endcall %}", "syntax error"),
        // Python-style internals do not exist
        ("{{ username.__class__ }}", "undefined value"),
        ("{{ username.__class__.__mro__ }}", "undefined value"),
        ("{{ nested.__init__ }}", "undefined value"),
        ("{{ self }}", "undefined value"),
        ("{{ config.items() }}", "unknown method"),
        ("{{ username.upper() }}", "unknown method"),
        ("{{ username.format() }}", "unknown method"),
        ("{{ loop }}", "undefined value"),
        ("{{ environ }}", "undefined value"),
        // a missing field fails instead of rendering empty
        ("{{ missing }}", "undefined value"),
        ("{{ missing | upper }}", "undefined value"),
        ("{{ blank | required }}", "a required value is missing"),
        (
            "{{ missing | required('set password in PrivX') }}",
            "set password in PrivX",
        ),
        // bad data for a filter
        ("{{ username | b64dec }}", "not valid base64"),
        ("{{ username | fromJson }}", "not valid JSON"),
        ("{{ nested | urlencode }}", "expects text"),
        ("{{ multi | indent(100000) }}", "at most 256"),
        // syntax
        ("{{ username ", "syntax error"),
        ("{% for x in y %}", "syntax error"),
    ];
    for (template, want) in cases {
        let err = render(template).expect_err(template);
        assert!(
            err.message.contains(want),
            "template {template}: got {err}, wanted {want:?}"
        );
        assert_eq!(err.location, "spec.mirror.template[\"OUT\"]", "{template}");
    }
}

/// Work and output are bounded: huge repetition, loops and recursion run out of fuel or hit
/// the output cap; none takes long or allocates without bound.
#[test]
fn bounds_work_output_and_recursion() {
    // A literal list of 100 items: loops over it are paid for item by item.
    let hundred = format!("[{}]", vec!["1"; 100].join(","));
    let nested_loops = format!(
        "{{% for a in {hundred} %}}{{% for b in {hundred} %}}{{% for c in {hundred} %}}{{% endfor %}}{{% endfor %}}{{% endfor %}}"
    );
    // Forty doublings: a terabyte from a short text.
    let doubling = format!(
        "{{% set s = password %}}{}{{{{ s }}}}",
        "{% set s = s ~ s %}".repeat(40)
    );
    let cases: Vec<(&str, &str)> = vec![
        // Repetition is refused outright: the engine repeats lists lazily and does not charge
        // fuel for walking them (printing `[1] * 100000000` takes a minute).
        ("{{ 'x' * 100000000 }}", "`*` operator"),
        ("{{ password * 10000000 }}", "`*` operator"),
        ("{{ [1] * 100000000 }}", "`*` operator"),
        (
            "{% set l = [1] %}{{ (l * 100000000) | toJson }}",
            "`*` operator",
        ),
        ("{{ 1 in [2] * 100000000 }}", "`*` operator"),
        // Loops and string growth run out of fuel.
        (nested_loops.as_str(), "too much work"),
        (doubling.as_str(), "too much work"),
        // Recursive loops hit the recursion limit.
        (
            "{% for x in [nested] recursive %}{{ loop([x]) }}{% endfor %}",
            "recursion",
        ),
    ];
    for (template, want) in &cases {
        let started = std::time::Instant::now();
        let err = render(template).expect_err(template);
        assert!(
            err.message.contains(want),
            "template {template}: got {err}, wanted {want:?}"
        );
        if want == &"`*` operator" {
            assert!(
                analyse(&Template::inline("OUT", *template)).is_err(),
                "{template}"
            );
        }
        // Not a timing assertion of the engine: a guard that the case cannot hang the suite.
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
    }
}

#[test]
fn output_over_the_cap_is_refused_naming_the_cap() {
    // 600 KiB of literal text: within fuel, over the per-key cap.
    let big = "y".repeat(600 * 1024);
    let err = render_all(&[Template::inline("BIG", big.clone())], &data());
    // A template longer than MAX_TEMPLATE_LEN is refused before rendering.
    assert!(err.unwrap_err().message.contains("longer than"));

    // Output built by a loop: within the template length, over the output cap.
    let seven_hundred = format!("[{}]", vec!["1"; 700].join(","));
    let looped = format!("{{% for a in {seven_hundred} %}}") + &"z".repeat(1024) + "{% endfor %}";
    let err = render_all(&[Template::inline("BIG", looped)], &data()).unwrap_err();
    assert!(
        err.message.contains("exceeds") || err.message.contains("too much work"),
        "{err}"
    );

    // Several keys together may not exceed the Secret's limit.
    let four_hundred = format!("[{}]", vec!["1"; 400].join(","));
    let each = format!("{{% for a in {four_hundred} %}}") + &"z".repeat(1024) + "{% endfor %}";
    let many: Vec<Template> = (0..3)
        .map(|i| Template::inline(format!("K{i}"), each.clone()))
        .collect();
    let result = render_all(&many, &data());
    let err = result.expect_err("1.2 MiB in total");
    assert_eq!(err.location, "spec.mirror.template[\"K2\"]");
}

/// No data reaches an error message, whatever the template does with it.
#[test]
fn errors_never_carry_the_data() {
    let templates = [
        "{{ password | b64dec }}",
        "{{ password | fromJson }}",
        "{{ password + 1 }}",
        "{{ password - 1 }}",
        "{{ password.foo.bar }}",
        "{{ password[1000] }}",
        "{{ nested.k.zz }}",
        "{{ password | required(password) }}",
        "{{ nested | indent(2) }}",
        "{{ (password | fromJson).x }}",
        "{% for c in password %}{{ c.x.y }}{% endfor %}",
        "{{ password(1) }}",
        "{{ password is password }}",
        "{{ username | required(password ~ '!') | missing_filter }}",
    ];
    let secret = "p@ss:w/rd?&=#S3cr3t";
    for template in templates {
        if let Err(err) = render(template) {
            let text = err.to_string();
            assert!(!text.contains(secret), "{template}: {text}");
            assert!(!text.contains("S3cr3t"), "{template}: {text}");
        }
    }
    // `required(password)` with a value present passes; with it missing, the message is the
    // template's text, which here is the secret: it must still not appear.
    let err = render_all(
        &[Template::inline("X", "{{ missing | required(password) }}")],
        &data(),
    )
    .unwrap_err();
    assert!(!err.to_string().contains("S3cr3t"), "{err}");
}

#[test]
fn errors_name_the_key_and_the_line() {
    let err = render("line one\n{{ username }}\n{{ nope | upper }}").unwrap_err();
    assert_eq!(err.line, Some(3));
    assert_eq!(
        err.to_string(),
        "spec.mirror.template[\"OUT\"], line 3: undefined value: upper got an undefined value (a field the data lacks?)"
    );
    let from = Template {
        key: "app.yaml".into(),
        origin: Origin::ConfigMap {
            index: 0,
            name: "app-config".into(),
            key: "app.yaml".into(),
        },
        text: "a: 1\nb: {{ \n".into(),
    };
    let err = render_all(&[from], &data()).unwrap_err();
    assert!(
        err.to_string().starts_with(
            "spec.mirror.templateFrom[0] (ConfigMap \"app-config\", key \"app.yaml\"), line 2: syntax error"
        ),
        "{err}"
    );
}

#[test]
fn identical_failures_give_identical_messages() {
    let a = render("{{ x | nope }}").unwrap_err();
    let b = render("{{ x | nope }}").unwrap_err();
    assert_eq!(a, b);
}

#[test]
fn two_templates_for_one_key_are_refused() {
    let err = render_all(
        &[Template::inline("K", "a"), Template::inline("K", "b")],
        &data(),
    )
    .unwrap_err();
    assert!(err.message.contains("already produces"));
}

#[test]
fn a_field_named_data_shadows_the_map() {
    let with_data = BTreeMap::from([("data".to_string(), json!("plain"))]);
    let out = render_all(&[Template::inline("K", "{{ data }}")], &with_data).unwrap();
    assert_eq!(out["K"], b"plain");
}

#[test]
fn analysis_lists_reads_and_unknown_names_without_rendering() {
    let t = Template::inline(
        "K",
        "{{ username }}:{{ password | urlencode }}\n{% if port %}{{ port | frobnicate }}{% endif %}\n{{ range(3) }}{% if x is defined %}{% endif %}{{ loop_var.method() }}",
    );
    let a = analyse(&t).unwrap();
    assert_eq!(
        a.reads,
        BTreeSet::from(
            ["username", "password", "port", "range", "x", "loop_var"].map(String::from)
        )
    );
    let names: Vec<(&str, &str, usize)> = a
        .unknown
        .iter()
        .map(|u| (u.what, u.name.as_str(), u.line))
        .collect();
    assert_eq!(
        names,
        vec![
            ("filter", "frobnicate", 2),
            ("function", "range", 3),
            ("test", "defined", 3)
        ]
    );
    // Filters with arguments, filter blocks and `is not` are recognised.
    let t = Template::inline(
        "K",
        "{{ a | indent(2) | nope(1) }}{% filter upper %}x{% endfilter %}{% filter bad %}{% endfilter %}{% if a is not none %}{% endif %}",
    );
    let names: Vec<String> = analyse(&t)
        .unwrap()
        .unknown
        .iter()
        .map(|u| format!("{} {}", u.what, u.name))
        .collect();
    assert_eq!(names, ["filter nope", "filter bad", "test none"]);
    // Syntax errors come with their line.
    let err = analyse(&Template::inline("K", "ok\n{% if %}")).unwrap_err();
    assert_eq!(err.line, Some(2));
}
