//! The command line as a user meets it, through the real binary: help text on every
//! command and argument (the clap tree walked), docs/CLI.md current with the definitions,
//! completions and a man page.

use std::path::PathBuf;
use std::process::Command;

fn mlc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mlc")).args(args).env_remove("MLC_CONFIG").output().expect("run mlc")
}

/// Every (sub)command path under `cmd`, the root first.
fn paths(cmd: &clap::Command, prefix: Vec<String>, out: &mut Vec<(Vec<String>, clap::Command)>) {
    out.push((prefix.clone(), cmd.clone()));
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let mut p = prefix.clone();
        p.push(sub.get_name().to_string());
        paths(sub, p, out);
    }
}

#[test]
fn every_command_and_argument_has_help_text_and_every_command_an_example() {
    let mut all = Vec::new();
    paths(&mlc::cli::command(), Vec::new(), &mut all);
    assert!(all.len() > 30, "the tree has {} commands", all.len());
    let mut missing = Vec::new();
    for (path, cmd) in &all {
        let shown = format!("mlc {}", path.join(" "));
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let out = mlc(&args);
        let help = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{shown} --help: {}", String::from_utf8_lossy(&out.stderr));
        if cmd.get_about().is_none_or(|a| a.to_string().trim().is_empty()) {
            missing.push(format!("{shown}: no description"));
        }
        if !path.is_empty() && cmd.get_subcommands().next().is_none() && !help.contains("Example: mlc") {
            missing.push(format!("{shown}: no example"));
        }
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            match a.get_help().map(|h| h.to_string()).filter(|h| !h.trim().is_empty()) {
                None => missing.push(format!("{shown}: argument {id} has no help")),
                Some(text) => {
                    // What the user sees: the real binary's help shows it.
                    let first = text.lines().next().unwrap_or("").trim().to_string();
                    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
                    let want = first.split_whitespace().collect::<Vec<_>>().join(" ");
                    if !flat.contains(&want) {
                        missing.push(format!("{shown}: {id}'s help {want:?} is not in --help"));
                    }
                }
            }
        }
    }
    assert!(missing.is_empty(), "{} gaps:\n{}", missing.len(), missing.join("\n"));
    // The root help documents the exit statuses.
    let root = String::from_utf8_lossy(&mlc(&["--help"]).stdout).to_string();
    for code in
        ["EXIT STATUS", "  0  ok", "  2  usage", "  3  drift", " 69  unavailable", " 78  configuration"]
    {
        assert!(root.contains(code), "{code:?} missing from mlc --help:\n{root}");
    }
}

#[test]
fn docs_cli_md_is_generated_from_the_definitions_and_current() {
    let out = mlc(&["docs"]);
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).expect("utf-8");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/CLI.md");
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &generated).expect("write docs/CLI.md");
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/CLI.md is behind the clap definitions: regenerate it with \
         `cargo run -p mlc -- docs > docs/CLI.md` (or UPDATE_DOCS=1 cargo test -p mlc --test cli_help)"
    );
    for section in ["## Exit status", "### mlc status", "### mlc dlq retry", "### mlc status --json"] {
        assert!(generated.contains(section), "{section}");
    }
}

#[test]
fn completions_and_a_man_page_come_from_the_same_tree() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = mlc(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("backfill") && text.contains("dlq"), "{shell}: {text}");
    }
    let man = mlc(&["man"]);
    assert!(man.status.success());
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(page.starts_with(".ie") || page.contains(".TH mlc"), "{page}");
    let dir = tempfile::tempdir().unwrap();
    assert!(mlc(&["man", "--dir", dir.path().to_str().unwrap()]).status.success());
    assert!(dir.path().join("mlc-status.1").exists());
    assert!(dir.path().join("mlc-dlq-retry.1").exists());
}

#[test]
fn usage_errors_exit_2_and_json_where_there_is_none_is_one() {
    assert_eq!(mlc(&["status", "--no-such-flag"]).status.code(), Some(2));
    assert_eq!(mlc(&["run", "all", "--json"]).status.code(), Some(2));
    // A bad config file is a configuration error: 78.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[nats]\nuri = \"x\"\n").unwrap();
    let out = mlc(&["--config", bad.to_str().unwrap(), "status"]);
    assert_eq!(out.status.code(), Some(78), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nats.uri"));
    // NATS that does not answer: unavailable, 69.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = Command::new(env!("CARGO_BIN_EXE_mlc"))
        .args(["status"])
        .env_remove("MLC_CONFIG")
        .env("MLC_NATS_URL", format!("nats://127.0.0.1:{port}"))
        .env("MLC_STORE_URL", format!("sqlite://{}", dir.path().join("s.db").display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69), "{}", String::from_utf8_lossy(&out.stderr));
}
