//! `privx-operator check`: offline validation of VaultSecret and PasswordPolicy manifests, the
//! way a GitOps pipeline runs it before merging.
//!
//! Owns reading manifest files (YAML streams, JSON), running the structural-schema walk of
//! [`crate::crd::schema`], the CRDs' CEL rules and the semantic checks of
//! [`crate::crd::validate`], and the one-line-per-problem report. Reads only the files it is given; never talks to a cluster or to
//! PrivX. Objects of other kinds are skipped.

use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kube::core::cel::{CompiledSchema, Validator, compile_schema};
use serde_json::Value;

use crate::crd::schema::{crd_schema, validate_structure};
use crate::crd::validate::{
    FieldError, is_dns_subdomain, validate_password_policy, validate_vault_secret,
};
use crate::crd::{GROUP, PasswordPolicySpec, VERSION, VaultSecretSpec, all_crds};

/// Arguments of `privx-operator check`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Checks every VaultSecret and PasswordPolicy in the given files: YAML/JSON syntax, the CRD's \
structural schema (types, required fields, enums, bounds, unknown fields), its CEL rules and the \
operator's own semantic checks. Other kinds (Secrets, Deployments, ...) are skipped.

Directories are searched recursively for .yaml, .yml and .json files; '-' reads standard input.

Each problem is one line on stdout:  FILE: Kind/name: field: message
A summary goes to stderr.

Exit status: 0 when every object is valid, 1 when any problem was found, 2 for usage errors and \
unreadable paths.")]
pub struct CheckArgs {
    /// Manifest files or directories to check (repeatable; '-' for standard input).
    #[arg(short = 'f', long = "filename", value_name = "FILE_OR_DIR", required = true, num_args = 1..)]
    pub paths: Vec<PathBuf>,
}

/// One problem in one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    /// `Kind/name`, or `document N` when the document is no object of ours; absent for errors
    /// of the whole file (syntax).
    pub object: Option<String>,
    pub error: FieldError,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.object {
            Some(object) => write!(f, "{}: {object}: {}", self.file, self.error),
            None => write!(f, "{}: {}", self.file, self.error),
        }
    }
}

/// What checking some text found.
#[derive(Debug, Default)]
pub struct Report {
    /// VaultSecrets and PasswordPolicies checked.
    pub objects: usize,
    /// Documents of other kinds, skipped.
    pub skipped: usize,
    pub problems: Vec<Problem>,
}

/// The file formats `check` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A YAML stream of one or more documents.
    Yaml,
    /// One JSON value.
    Json,
}

impl Format {
    pub fn of(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Self::Json,
            _ => Self::Yaml,
        }
    }
}

struct KindSchema {
    kind: &'static str,
    schema: Value,
    compiled: CompiledSchema,
}

/// Validates manifests against the operator's CRDs; build once, check many files.
pub struct Checker {
    kinds: Vec<KindSchema>,
    cel: Validator,
}

impl Default for Checker {
    fn default() -> Self {
        Self::new()
    }
}

const API_VERSION: &str = "privx-operator.dev/v1alpha1";

impl Checker {
    pub fn new() -> Self {
        let kinds = all_crds()
            .into_iter()
            .filter_map(|crd| {
                let kind = match crd.spec.names.kind.as_str() {
                    "VaultSecret" => "VaultSecret",
                    "PasswordPolicy" => "PasswordPolicy",
                    _ => return None,
                };
                let schema = crd_schema(&crd, VERSION)?;
                let compiled = compile_schema(&schema);
                Some(KindSchema {
                    kind,
                    schema,
                    compiled,
                })
            })
            .collect();
        Self {
            kinds,
            cel: Validator::new(),
        }
    }

    /// Checks the text of one file; `file` names it in the problems.
    pub fn check_text(&self, file: &str, text: &str, format: Format) -> Report {
        let mut report = Report::default();
        let documents = match parse(text, format) {
            Ok(documents) => documents,
            Err(error) => {
                report.problems.push(Problem {
                    file: file.to_string(),
                    object: None,
                    error,
                });
                return report;
            }
        };
        for (index, document) in documents.iter().enumerate() {
            self.check_document(
                file,
                &format!("document {}", index + 1),
                document,
                &mut report,
            );
        }
        report
    }

    fn check_document(&self, file: &str, label: &str, document: &Value, report: &mut Report) {
        let problem = |object: String, error: FieldError| Problem {
            file: file.to_string(),
            object: Some(object),
            error,
        };
        let Some(object) = document.as_object() else {
            report.problems.push(problem(
                label.to_string(),
                FieldError::new(
                    "<root>",
                    format!(
                        "must be a Kubernetes object (a mapping with apiVersion and kind), not {}",
                        describe(document)
                    ),
                ),
            ));
            return;
        };
        let kind = object.get("kind").and_then(Value::as_str);
        let api_version = object.get("apiVersion").and_then(Value::as_str);
        let (Some(kind), Some(api_version)) = (kind, api_version) else {
            let field = if kind.is_none() { "kind" } else { "apiVersion" };
            report.problems.push(problem(
                label.to_string(),
                FieldError::new(field, "required field is missing (or not a string)"),
            ));
            return;
        };
        if kind.ends_with("List") && api_version == "v1" {
            for (i, item) in object
                .get("items")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                self.check_document(file, &format!("{label} item {}", i + 1), item, report);
            }
            return;
        }
        let group = api_version.split_once('/').map(|(g, _)| g);
        let Some(our_kind) = self.kinds.iter().find(|k| k.kind == kind) else {
            if group == Some(GROUP) {
                report.problems.push(problem(
                    format!("{kind}/{}", object_name(document)),
                    FieldError::new("kind", format!("{GROUP} has no kind {kind:?}; the kinds are VaultSecret and PasswordPolicy")),
                ));
            } else {
                report.skipped += 1;
            }
            return;
        };
        report.objects += 1;
        let object_label = format!("{kind}/{}", object_name(document));
        let errors = self.check_object(our_kind, api_version, document);
        report.problems.extend(
            errors
                .into_iter()
                .map(|error| problem(object_label.clone(), error)),
        );
    }

    fn check_object(
        &self,
        kind: &KindSchema,
        api_version: &str,
        document: &Value,
    ) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if api_version != API_VERSION {
            errors.push(FieldError::new(
                "apiVersion",
                format!(
                    "{api_version:?} is not served for {}; use {API_VERSION}",
                    kind.kind
                ),
            ));
        }
        errors.extend(check_metadata(kind.kind, document.get("metadata")));
        let structural = validate_structure(&kind.schema, document, "");
        if !structural.is_empty() {
            // CEL rules and semantics assume the schema holds, as in the API server.
            errors.extend(structural);
            return errors;
        }
        if let Err(failures) = self.cel.validate_compiled(&kind.compiled, document, None) {
            for failure in failures.iter() {
                let field = if failure.field_path.is_empty() {
                    "<root>".to_string()
                } else {
                    failure.field_path.clone()
                };
                errors.push(FieldError::new(field, failure.message.clone()));
            }
        }
        let spec = document.get("spec").cloned().unwrap_or(Value::Null);
        let semantic = match kind.kind {
            "VaultSecret" => {
                serde_json::from_value::<VaultSecretSpec>(spec).map(|s| validate_vault_secret(&s))
            }
            _ => serde_json::from_value::<PasswordPolicySpec>(spec)
                .map(|s| validate_password_policy(&s)),
        };
        match semantic {
            Ok(semantic) => {
                // One line per field: where a CEL rule already spoke, its message stands.
                let reported: HashSet<String> = errors.iter().map(|e| e.field.clone()).collect();
                errors.extend(
                    semantic
                        .into_iter()
                        .filter(|e| !reported.contains(&e.field)),
                );
            }
            Err(error) => errors.push(FieldError::new("spec", format!("cannot be read: {error}"))),
        }
        errors
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "an empty document",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn object_name(document: &Value) -> String {
    let metadata = document.get("metadata");
    if let Some(name) = metadata.and_then(|m| m.get("name")).and_then(Value::as_str) {
        name.to_string()
    } else if let Some(prefix) = metadata
        .and_then(|m| m.get("generateName"))
        .and_then(Value::as_str)
    {
        format!("{prefix}*")
    } else {
        "<unnamed>".to_string()
    }
}

fn check_metadata(kind: &str, metadata: Option<&Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let Some(metadata) = metadata else {
        errors.push(FieldError::new("metadata", "required field is missing"));
        return errors;
    };
    let Some(map) = metadata.as_object() else {
        errors.push(FieldError::new("metadata", "must be an object"));
        return errors;
    };
    match (map.get("name"), map.get("generateName")) {
        (None, None) => errors.push(FieldError::new("metadata.name", "required field is missing")),
        (Some(Value::String(name)), _) if !is_dns_subdomain(name) => errors.push(FieldError::new(
            "metadata.name",
            format!("{name:?} is not a valid {kind} name (lowercase DNS subdomain, at most 253 characters)"),
        )),
        (Some(Value::String(_)), _) | (None, Some(Value::String(_))) => {}
        _ => errors.push(FieldError::new("metadata.name", "must be a string")),
    }
    if let Some(namespace) = map.get("namespace") {
        let valid = namespace
            .as_str()
            .is_some_and(|n| n.len() <= 63 && is_dns_subdomain(n) && !n.contains('.'));
        if !valid {
            errors.push(FieldError::new(
                "metadata.namespace",
                "must be a valid namespace name (lowercase DNS label)",
            ));
        }
    }
    for field in ["labels", "annotations"] {
        if let Some(entries) = map.get(field) {
            let all_strings = entries
                .as_object()
                .is_some_and(|m| m.values().all(Value::is_string));
            if !all_strings {
                errors.push(FieldError::new(
                    format!("metadata.{field}"),
                    "must map strings to strings",
                ));
            }
        }
    }
    errors
}

/// Parses a file into its documents; a syntax error is one problem with its location.
fn parse(text: &str, format: Format) -> Result<Vec<Value>, FieldError> {
    match format {
        Format::Json => serde_json::from_str::<Value>(text)
            .map(|v| vec![v])
            .map_err(|e| {
                FieldError::new(
                    format!("line {} column {}", e.line(), e.column()),
                    format!("invalid JSON: {}", strip_location(&e.to_string())),
                )
            }),
        Format::Yaml => {
            // Empty documents (a stray `---`) are skipped by serde-saphyr.
            serde_saphyr::from_multiple::<Value>(text).map_err(|e| {
                let options =
                    serde_saphyr::render_options! { snippets: serde_saphyr::SnippetMode::Off };
                let message = one_line(&e.render_with_options(options));
                let location = e
                    .location()
                    .map(|l| format!("line {} column {}", l.line(), l.column()))
                    .unwrap_or_else(|| "<unknown location>".to_string());
                FieldError::new(location, format!("invalid YAML: {message}"))
            })
        }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// serde_json appends " at line L column C", which the field already says.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

/// The manifest files under `path`: the file itself, or a directory's .yaml/.yml/.json files,
/// recursively, in name order, skipping hidden entries.
fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let metadata = std::fs::metadata(path)?;
    if !metadata.is_dir() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(path)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let entry_path = entry.path();
        // Symlinked directories are not followed: no loops.
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            collect_files(&entry_path, out)?;
        } else {
            let manifest = entry_path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| {
                    ["yaml", "yml", "json"]
                        .iter()
                        .any(|m| e.eq_ignore_ascii_case(m))
                });
            if manifest && entry_path.is_file() {
                out.push(entry_path);
            }
        }
    }
    Ok(())
}

/// Runs `privx-operator check`.
pub fn main(args: CheckArgs) -> ExitCode {
    let checker = Checker::new();
    let mut unreadable = 0usize;
    let mut files = 0usize;
    let mut total = Report::default();
    let mut check = |name: String, text: String, format: Format| {
        let report = checker.check_text(&name, &text, format);
        for problem in &report.problems {
            println!("{problem}");
        }
        total.objects += report.objects;
        total.skipped += report.skipped;
        total.problems.extend(report.problems);
    };
    for path in &args.paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => {
                    files += 1;
                    check("<stdin>".to_string(), text, Format::Yaml);
                }
                Err(error) => {
                    eprintln!("privx-operator check: reading standard input: {error}");
                    unreadable += 1;
                }
            }
            continue;
        }
        let mut found = Vec::new();
        if let Err(error) = collect_files(path, &mut found) {
            eprintln!("privx-operator check: {}: {error}", path.display());
            unreadable += 1;
            continue;
        }
        for file in found {
            match std::fs::read_to_string(&file) {
                Ok(text) => {
                    files += 1;
                    check(file.display().to_string(), text, Format::of(&file));
                }
                Err(error) => {
                    eprintln!("privx-operator check: {}: {error}", file.display());
                    unreadable += 1;
                }
            }
        }
    }
    let problems = total.problems.len();
    let objects_with_problems: HashSet<(&str, Option<&str>)> = total
        .problems
        .iter()
        .map(|p| (p.file.as_str(), p.object.as_deref()))
        .collect();
    eprintln!(
        "privx-operator check: {files} files, {} objects checked ({} of other kinds skipped): {}{}",
        total.objects,
        total.skipped,
        if problems == 0 {
            "no problems".to_string()
        } else {
            format!(
                "{problems} problems in {} objects or files",
                objects_with_problems.len()
            )
        },
        if unreadable > 0 {
            format!(", {unreadable} paths unreadable")
        } else {
            String::new()
        },
    );
    if unreadable > 0 {
        ExitCode::from(2)
    } else if problems > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
