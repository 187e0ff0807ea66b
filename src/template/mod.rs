//! Mirror templates: the sandboxed engine that builds a mirrored Secret's values out of the
//! PrivX secret's data (`spec.mirror.template`, `spec.mirror.templateFrom`).
//!
//! The engine is `minijinja` built without its builtins, loader, `include`/`import`/`extends`
//! and macros. A template sees the secret's data fields (as top-level variables, and all of
//! them as the map `data`) and the filters listed in [`FILTERS`]; nothing else exists: no
//! functions, no tests, no files, no environment, no network, no clock, no other objects.
//! Every render has a fuel budget (bounded work, hence bounded time) and an output cap.
//!
//! Errors name the template (the key, or the ConfigMap entry) and the line, never the data:
//! a runtime error's detail is dropped when it contains any value of the data.
//!
//! This module does no I/O and knows no Kubernetes types; the controller and `check` use it.
//! (Somewhat over 600 lines: the sandbox, its twelve filters and the offline analysis share the
//! same environment and limits and are kept in one place on purpose.)

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;

use base64::Engine as _;
use minijinja::machinery::Token;
use minijinja::value::{Serde, Value, ValueKind};
use minijinja::{Environment, Error as EngineError, ErrorKind, UndefinedBehavior};

/// The only filters a template may use.
pub const FILTERS: &[&str] = &[
    "b64enc",
    "b64dec",
    "urlencode",
    "toJson",
    "toYaml",
    "fromJson",
    "default",
    "required",
    "indent",
    "trim",
    "lower",
    "upper",
];

/// The variable holding every data field as a map (for fields whose names are not identifiers,
/// such as `data["tls.crt"]`). A data field named `data` takes its place.
pub const DATA_VARIABLE: &str = "data";

/// Most bytes one template may produce.
pub const MAX_OUTPUT_PER_KEY: usize = 512 * 1024;
/// Most bytes all templates of one mirror may produce together (a Secret holds at most 1 MiB).
pub const MAX_OUTPUT_TOTAL: usize = 1024 * 1024;
/// Longest template text accepted.
pub const MAX_TEMPLATE_LEN: usize = 64 * 1024;
/// Work budget of one render (one unit per instruction, plus the bytes it produces: about
/// 6 MB of data moved). Bounds the time of a render to milliseconds.
pub const FUEL: u64 = 100_000;
/// Deepest nesting of recursive loops and filter calls.
const RECURSION_LIMIT: usize = 16;

/// Where a template comes from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `spec.mirror.template[key]`.
    Inline,
    /// `spec.mirror.templateFrom[index]`, a ConfigMap's entry.
    ConfigMap {
        index: usize,
        name: String,
        key: String,
    },
}

/// One template: the Secret key it produces and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pub key: String,
    pub origin: Origin,
    pub text: String,
}

impl Template {
    /// A `spec.mirror.template` entry.
    pub fn inline(key: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            origin: Origin::Inline,
            text: text.into(),
        }
    }

    /// Where the template is declared, as a field path.
    pub fn location(&self) -> String {
        match &self.origin {
            Origin::Inline => format!("spec.mirror.template[{:?}]", self.key),
            Origin::ConfigMap { index, name, key } => {
                format!("spec.mirror.templateFrom[{index}] (ConfigMap {name:?}, key {key:?})")
            }
        }
    }
}

/// A template that cannot be compiled or rendered. Carries no data.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct TemplateError {
    /// Where the template is declared (see [`Template::location`]).
    pub location: String,
    /// The line of the template, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}, line {line}: {}", self.location, self.message),
            None => write!(f, "{}: {}", self.location, self.message),
        }
    }
}

/// The sandboxed environment: no builtins, only [`FILTERS`], strict about undefined values
/// (printing or filtering a missing field fails; `if field` is allowed), fuel and recursion
/// limits.
fn environment<'s>() -> Environment<'s> {
    let mut env = Environment::empty();
    env.set_syntax(syntax());
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    env.add_filter("b64enc", filters::b64enc);
    env.add_filter("b64dec", filters::b64dec);
    env.add_filter("urlencode", filters::urlencode);
    env.add_filter("toJson", filters::to_json);
    env.add_filter("toYaml", filters::to_yaml);
    env.add_filter("fromJson", filters::from_json);
    env.add_filter("default", filters::default);
    env.add_filter("required", filters::required);
    env.add_filter("indent", filters::indent);
    env.add_filter("trim", filters::trim);
    env.add_filter("lower", filters::lower);
    env.add_filter("upper", filters::upper);
    env
}

/// Jinja's delimiters; the text is rendered as written, its final newline included (a config
/// file keeps it).
fn syntax() -> minijinja::syntax::SyntaxConfig {
    minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
        .expect("the default delimiters")
}

/// The variables a template sees: each data field, and `data` (all of them).
fn context(data: &BTreeMap<String, serde_json::Value>) -> Value {
    let mut vars: BTreeMap<String, Value> = data
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(Serde(v))))
        .collect();
    vars.entry(DATA_VARIABLE.to_string())
        .or_insert_with(|| Value::from(Serde(data)));
    Value::from(vars)
}

/// Renders every template over `data`: the Secret values they produce, by key.
pub fn render_all(
    templates: &[Template],
    data: &BTreeMap<String, serde_json::Value>,
) -> Result<BTreeMap<String, Vec<u8>>, TemplateError> {
    let ctx = context(data);
    let secrets = secret_strings(data);
    let mut out = BTreeMap::new();
    let mut total = 0usize;
    for template in templates {
        let cap = MAX_OUTPUT_PER_KEY.min(MAX_OUTPUT_TOTAL - total);
        let bytes = render_one(template, &ctx, &secrets, cap)?;
        total += bytes.len();
        if out.insert(template.key.clone(), bytes).is_some() {
            return Err(TemplateError {
                location: template.location(),
                line: None,
                message: "another template already produces this key".into(),
            });
        }
    }
    Ok(out)
}

fn render_one(
    template: &Template,
    ctx: &Value,
    secrets: &[String],
    cap: usize,
) -> Result<Vec<u8>, TemplateError> {
    let env = environment();
    let compiled = compile(&env, template)?;
    let mut sink = Capped {
        buf: Vec::new(),
        cap,
        exceeded: false,
    };
    match compiled.render_captured_to(ctx.clone(), &mut sink) {
        Ok(_) => Ok(sink.buf),
        Err(_) if sink.exceeded => Err(TemplateError {
            location: template.location(),
            line: None,
            message: format!("the output exceeds {cap} bytes"),
        }),
        Err(e) => Err(runtime_error(template, &e, secrets)),
    }
}

fn compile<'e, 's>(
    env: &'e Environment<'s>,
    template: &'s Template,
) -> Result<minijinja::Template<'e, 's>, TemplateError> {
    if template.text.len() > MAX_TEMPLATE_LEN {
        return Err(TemplateError {
            location: template.location(),
            line: None,
            message: format!("the template is longer than {MAX_TEMPLATE_LEN} bytes"),
        });
    }
    // Before compiling: the compiler folds constant expressions such as `1 in [2] * 100000000`
    // (which takes it a minute).
    refuse_repetition(template)?;
    // Compiling sees only the template's own text: its detail (what the parser expected)
    // cannot contain data.
    env.template_from_str(&template.text)
        .map_err(|e| TemplateError {
            location: template.location(),
            line: e.line(),
            message: describe(&e, e.detail()),
        })
}

/// Refuses the `*` operator. `'x' * n` and `[..] * n` are the only ways a template could build
/// a value far larger than its text and its data, and the engine walks a repeated list without
/// charging fuel for it (printing `[1] * 100000000` takes about a minute). A secret's template
/// has no use for arithmetic multiplication.
fn refuse_repetition(template: &Template) -> Result<(), TemplateError> {
    for item in minijinja::machinery::tokenize(&template.text, false, syntax()) {
        match item {
            Ok((Token::Mul, span)) => {
                return Err(TemplateError {
                    location: template.location(),
                    line: Some(usize::from(span.start_line)),
                    message: "the `*` operator is not available in mirror templates (repetition could build unbounded values)".into(),
                });
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(())
}

/// A render error. The engine's detail may quote values (it names operands, attributes, the
/// text a filter got): it is kept only when no value of the data occurs in it.
fn runtime_error(template: &Template, e: &EngineError, secrets: &[String]) -> TemplateError {
    let detail = e
        .detail()
        .filter(|d| !secrets.iter().any(|s| d.contains(s.as_str())));
    let message = match e.kind() {
        ErrorKind::OutOfFuel => format!(
            "the template does too much work (render budget of {FUEL} exhausted; loops or repetition too large)"
        ),
        _ => describe(e, detail),
    };
    TemplateError {
        location: template.location(),
        line: e.line(),
        message,
    }
}

fn describe(e: &EngineError, detail: Option<&str>) -> String {
    match detail {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    }
}

/// Every value of the data as it could appear in a message (strings, their pieces of JSON).
/// Values shorter than two bytes are not searched for: they occur in any text.
fn secret_strings(data: &BTreeMap<String, serde_json::Value>) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) => out.push(s.clone()),
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            serde_json::Value::Object(o) => o.values().for_each(|v| walk(v, out)),
            other => out.push(other.to_string()),
        }
    }
    let mut out = Vec::new();
    data.values().for_each(|v| walk(v, &mut out));
    out.retain(|s| s.len() >= 2);
    out
}

/// An output buffer that refuses to grow past `cap`.
struct Capped {
    buf: Vec<u8>,
    cap: usize,
    exceeded: bool,
}

impl io::Write for Capped {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.buf.len() + bytes.len() > self.cap {
            self.exceeded = true;
            return Err(io::Error::other("template output limit"));
        }
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a template uses, found without rendering it (for `check`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Analysis {
    /// Top-level variables the template reads (data fields, or `data`).
    pub reads: BTreeSet<String>,
    /// Names the template uses that do not exist, with their line: filters not in
    /// [`FILTERS`], and any test or function (there are none).
    pub unknown: Vec<Unknown>,
}

/// A filter, test or function a template uses that the sandbox does not provide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unknown {
    pub what: &'static str,
    pub name: String,
    pub line: usize,
}

impl fmt::Display for Unknown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: unknown {} {:?} (filters: {})",
            self.line,
            self.what,
            self.name,
            FILTERS.join(", ")
        )
    }
}

/// Compiles a template and lists what it reads and what it uses that does not exist.
pub fn analyse(template: &Template) -> Result<Analysis, TemplateError> {
    let env = environment();
    let compiled = compile(&env, template)?;
    let reads = compiled.undeclared_variables(false).into_iter().collect();
    let mut unknown = Vec::new();
    let mut prev: Vec<Token<'_>> = Vec::new();
    let tokens = minijinja::machinery::tokenize(&template.text, false, syntax());
    for item in tokens {
        let Ok((token, span)) = item else {
            break; // compiled above, so the tokenizer agrees; stop at anything unexpected
        };
        let line = usize::from(span.start_line);
        let last = prev.last();
        let before_last = prev.len().checked_sub(2).and_then(|i| prev.get(i));
        match (&token, last, before_last) {
            // `| name` and `{% filter name %}`
            (Token::Ident(name), Some(Token::Pipe), _)
            | (Token::Ident(name), Some(Token::Ident("filter")), Some(Token::BlockStart))
                if !FILTERS.contains(name) =>
            {
                unknown.push(Unknown {
                    what: "filter",
                    name: (*name).to_string(),
                    line,
                });
            }
            // `is name`, `is not name`
            (Token::Ident(name), Some(Token::Ident("is")), _) if *name != "not" => {
                unknown.push(Unknown {
                    what: "test",
                    name: (*name).to_string(),
                    line,
                });
            }
            (Token::Ident(name), Some(Token::Ident("not")), Some(Token::Ident("is"))) => {
                unknown.push(Unknown {
                    what: "test",
                    name: (*name).to_string(),
                    line,
                });
            }
            // `name(` not after `.` or `|`: a function call (`loop(...)` of a recursive loop
            // is the engine's own)
            (Token::ParenOpen, Some(Token::Ident(name)), before)
                if !matches!(before, Some(Token::Dot | Token::Pipe))
                    && !(matches!(before, Some(Token::Ident("filter"))))
                    && *name != "loop" =>
            {
                unknown.push(Unknown {
                    what: "function",
                    name: (*name).to_string(),
                    line,
                });
            }
            _ => {}
        }
        prev.push(token);
    }
    Ok(Analysis { reads, unknown })
}

mod filters;

#[cfg(test)]
mod tests;
