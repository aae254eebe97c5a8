//! `pgfleet completions` and `pgfleet man`: what they print works in the
//! shell and in man.

// Tests may unwrap: a failure is the report.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};

fn pgfleet(args: &[&str]) -> Vec<u8> {
    let output = Command::new(env!("CARGO_BIN_EXE_pgfleet")).args(args).stdin(Stdio::null()).output().unwrap();
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

#[test]
fn bash_completion_parses_and_completes_subcommands_and_options() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("pgfleet.bash");
    std::fs::write(&script, pgfleet(&["completions", "bash"])).unwrap();
    let syntax = Command::new("bash").arg("-n").arg(&script).output().unwrap();
    assert!(syntax.status.success(), "bash -n: {}", String::from_utf8_lossy(&syntax.stderr));

    // What bash does on `pgfleet pl<TAB>` and `pgfleet monitor --au<TAB>`.
    let complete = |words: &str| {
        let output = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}; _pgfleet pgfleet \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                script.display()
            ))
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let subcommands = complete("pgfleet pl");
    assert_eq!(subcommands.trim(), "plan", "{subcommands}");
    let all = complete("pgfleet ''");
    for subcommand in ["apply", "monitor", "status", "switchover", "completions", "man"] {
        assert!(all.lines().any(|line| line == subcommand), "{subcommand} in {all}");
    }
    let options = complete("pgfleet monitor --au");
    assert_eq!(options.trim(), "--auth-token-file", "{options}");
}

#[test]
fn zsh_and_fish_completions_name_the_subcommands() {
    for shell in ["zsh", "fish"] {
        let script = String::from_utf8(pgfleet(&["completions", shell])).unwrap();
        assert!(script.contains("switchover") && script.contains("auth-token-file"), "{shell}: {script}");
    }
}

#[test]
fn man_page_renders_with_man() {
    let page = pgfleet(&["man"]);
    let mut man = Command::new("man")
        .args(["-l", "-"])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    man.stdin.take().unwrap().write_all(&page).unwrap();
    let output = man.wait_with_output().unwrap();
    assert!(output.status.success(), "man: {}", String::from_utf8_lossy(&output.stderr));
    let rendered = String::from_utf8_lossy(&output.stdout);
    assert!(!rendered.contains(".TH") && !rendered.contains("\\fB"), "rendered, not roff: {rendered}");
    for part in ["NAME", "SYNOPSIS", "SUBCOMMANDS", "pgfleet-switchover", "Reconcile PostgreSQL"] {
        assert!(rendered.contains(part), "{part} in {rendered}");
    }
}
