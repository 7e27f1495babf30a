//! `chatlm chat` driven through a pipe on the real SmolLM2-135M-Instruct GGUF: commands,
//! streaming, and Ctrl-C stopping an answer without ending the program.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn smollm2() -> Option<PathBuf> {
    let path = std::env::var_os("CHATLM_SMOLLM2")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/chatlm/models/SmolLM2-135M-Instruct.Q4_1.gguf")))?;
    if path.is_file() {
        Some(path)
    } else {
        println!("skipped: SmolLM2 GGUF not found (set CHATLM_SMOLLM2 or run scripts/fetch-smollm2.sh)");
        None
    }
}

#[test]
fn commands_and_answers_through_a_pipe() {
    let Some(model) = smollm2() else { return };
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatlm"))
        .args(["chat", "--model", model.to_str().unwrap(), "--max-new-tokens", "40"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let script = "Give me three tips for staying healthy.\n/system You are a pirate.\n/system\n/nonsense\n\
                  Where is the treasure?\n/reset\n/system -\n/system\n/exit\nnever read\n";
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    for want in ["[system message set]", "[system: You are a pirate.]", "unknown command /nonsense", "[conversation cleared]", "[system message removed]", "[no system message"] {
        assert!(stderr.contains(want), "missing {want:?} in stderr: {stderr}");
    }
    // Two answers of real text; nothing after /exit.
    assert!(stdout.contains("1."), "{stdout}");
    assert!(stdout.matches(char::is_alphabetic).count() > 60, "{stdout}");
    assert!(!stderr.contains("error"), "{stderr}");
}

#[test]
fn ctrl_c_stops_the_answer_not_the_program() {
    let Some(model) = smollm2() else { return };
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatlm"))
        .args(["chat", "--model", model.to_str().unwrap(), "--max-new-tokens", "2000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    stdin.write_all(b"Write a very long story about a dragon who learns to cook, with many chapters.\n").unwrap();
    stdin.flush().unwrap();
    // Wait until the answer is streaming (more than the `>>> ` prompt arrived).
    let mut seen = Vec::new();
    let start = Instant::now();
    while seen.len() < 40 {
        let chunk = rx.recv_timeout(Duration::from_secs(120)).expect("the answer starts streaming");
        seen.extend(chunk);
        assert!(start.elapsed() < Duration::from_secs(120));
    }
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    // The program keeps going: it answers the next line, then exits on end of input.
    stdin.write_all(b"/system\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    reader.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(stderr.contains("[stopped]"), "{stderr}");
    assert!(stderr.contains("[no system message"), "the REPL read the next line after Ctrl-C: {stderr}");
}
