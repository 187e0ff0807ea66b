//! The command line as a user meets it: help texts, the CRD stream, and one clear line when
//! there is no cluster.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_privx-operator"))
}

#[test]
fn top_level_help_lists_every_command() {
    let out = bin().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for command in ["run", "crd", "check", "sim"] {
        assert!(
            text.contains(command),
            "{command} missing from --help:\n{text}"
        );
    }
}

#[test]
fn run_help_documents_every_flag() {
    use clap::{Args, Command as ClapCommand};
    let out = bin().args(["run", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let command = privx_operator::runtime::RunArgs::augment_args(ClapCommand::new("run"));
    let mut flags = 0;
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        flags += 1;
        assert!(
            help.contains(&format!("--{long}")),
            "--{long} missing from run --help"
        );
        assert!(
            arg.get_help()
                .is_some_and(|h| !h.to_string().trim().is_empty()),
            "--{long} has no help text"
        );
    }
    assert!(flags >= 20, "expected the run flags, found {flags}");
}

#[test]
fn crd_prints_exactly_the_committed_crds() {
    let out = bin().arg("crd").output().unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let expected: String = privx_operator::crd::all_crds()
        .iter()
        .map(|crd| {
            let file = dir.join(privx_operator::crd::crd_file_name(crd));
            format!("---\n{}", std::fs::read_to_string(file).unwrap())
        })
        .collect();
    assert_eq!(printed, expected, "`privx-operator crd` differs from crds/");
}

#[test]
fn run_without_a_cluster_says_so_in_one_line() {
    let dir = std::env::temp_dir().join(format!("privx-operator-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = bin()
        .args([
            "run",
            "--http-addr",
            "127.0.0.1:0",
            "--privx-url",
            "https://privx.example.com",
        ])
        .env("KUBECONFIG", dir.join("no-such-kubeconfig"))
        .env("HOME", &dir)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("privx-operator:"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{stderr}");
    assert!(errors[0].contains("Kubernetes"), "{}", errors[0]);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}

/// Issue 14 item 3: logs written to a pipe (as here, and as under a container runtime) carry no
/// ANSI colour codes, in either format.
#[test]
fn logs_to_a_pipe_are_not_coloured() {
    let dir =
        std::env::temp_dir().join(format!("privx-operator-cli-colour-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for format in ["text", "json"] {
        let out = bin()
            .args([
                "run",
                "--log-format",
                format,
                "--http-addr",
                "127.0.0.1:0",
                "--privx-url",
                "https://privx.example.com",
            ])
            .env("KUBECONFIG", dir.join("no-such-kubeconfig"))
            .env("HOME", &dir)
            .env_remove("NO_COLOR")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        // The HTTP listener is up (and logs so) before the missing cluster stops the run.
        assert!(
            stdout.contains("/livez"),
            "{format}: no log line:\n{stdout}"
        );
        assert!(
            !stdout.contains('\u{1b}'),
            "{format}: ANSI codes in {stdout:?}"
        );
        assert!(!String::from_utf8(out.stderr).unwrap().contains('\u{1b}'));
    }
}

#[test]
fn bad_flag_values_name_the_flag() {
    let out = bin()
        .args([
            "run",
            "--name-template",
            "static-name",
            "--http-addr",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("--name-template"), "{stderr}");

    let out = bin()
        .args(["run", "--lease-duration", "soon"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("--lease-duration")
    );
}

#[test]
fn a_taken_http_port_is_a_clear_start_up_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = bin()
        .args([
            "run",
            "--http-addr",
            &addr,
            "--privx-url",
            "https://privx.example.com",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("--http-addr") && stderr.contains(&addr),
        "{stderr}"
    );
}

#[test]
fn a_bad_selector_or_controller_names_the_flag_and_what_is_wrong() {
    for (args, flag, words) in [
        (
            ["run", "--selector", "team in (a"],
            "--selector",
            "unbalanced",
        ),
        (
            ["run", "--selector", "bad key=1"],
            "--selector",
            "label key",
        ),
        (
            ["run", "--controllers", "vaultsecrets"],
            "--controllers",
            "vaultsecret",
        ),
    ] {
        let out = bin().args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            stderr.contains(flag) && stderr.contains(words),
            "{args:?}: {stderr}"
        );
    }
}
