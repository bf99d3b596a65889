//! The live view of `oomguard top`, driven in a real terminal: tmux starts it, keys go in with
//! `send-keys`, the screen comes back with `capture-pane -p`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::predict::hog;
use crate::util::{Reaped, TestCgroup, bin, require};

static SERVERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A tmux server of its own (socket named after the test), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(cmd: &str) -> Option<Tmux> {
        let have = Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !require(have, "tmux (scripts/test.sh installs it)") {
            return None;
        }
        let t = Tmux {
            // One server per view: the tests of this file run side by side.
            socket: format!(
                "oomguard-test-live-{}-{}",
                std::process::id(),
                SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
        };
        let ok = t
            .cmd(&[
                "new-session",
                "-d",
                "-x",
                "160",
                "-y",
                "40",
                "-s",
                "top",
                cmd,
            ])
            .success();
        assert!(ok, "tmux new-session failed");
        Some(t)
    }
    fn cmd(&self, args: &[&str]) -> std::process::ExitStatus {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .expect("tmux")
    }
    fn keys(&self, keys: &[&str]) {
        let mut a = vec!["send-keys", "-t", "top"];
        a.extend_from_slice(keys);
        assert!(self.cmd(&a).success(), "send-keys {keys:?}");
    }
    /// A tmux format of the pane (`#{alternate_on}`, `#{pane_pid}`).
    fn display(&self, format: &str) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "display", "-p", "-t", "top", format])
            .output()
            .expect("display");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", "top"])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    /// Waits until the screen satisfies `ok` (up to 15 s), returning it.
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "waiting for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

fn row(screen: &str, pid: i32) -> Option<&str> {
    let p = pid.to_string();
    screen
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(p.as_str()))
}

#[test]
fn live_view_in_tmux_shows_filters_sorts_switches_scope_and_quits() {
    let Some(cg) = TestCgroup::new("predict-live", 1 << 30) else {
        return;
    };
    let big = hog(&cg, "96M");
    let mut sleeper = Command::new("sleep");
    sleeper.arg("120").stdin(Stdio::null());
    let sleeper = Reaped(cg.spawn(&mut sleeper));
    let scope = format!("cgroup:{}", cg.rel());
    let cmd = format!(
        "{} top --scope {scope}; echo top-exit=$?; sleep 60",
        bin().display()
    );
    let Some(t) = Tmux::start(&cmd) else { return };

    // The header, the hog as the next victim and the sleeper (both rows: a capture can fall
    // between the drawing of two rows).
    let s = t.wait_for("the hog's and the sleeper's rows", |s| {
        row(s, big.pid()).is_some() && row(s, sleeper.pid()).is_some_and(|r| r.contains("sleep"))
    });
    assert!(s.contains("oomguard top") && s.contains(&scope), "{s}");
    assert!(s.contains("mem") && s.contains("SIGTERM at"), "{s}");
    assert!(s.contains("psi") && s.contains("swap"), "{s}");
    let r = row(&s, big.pid()).unwrap();
    assert!(r.contains("next_victim") && r.contains("oomguard"), "{r}");
    assert!(row(&s, sleeper.pid()).is_some_and(|r| r.contains("sleep")));

    // Filter by name: only sleep stays.
    t.keys(&["/"]);
    t.keys(&["-l", "slee"]);
    let s = t.wait_for("the filter", |s| {
        row(s, big.pid()).is_none() && s.contains("filter name: slee")
    });
    assert!(row(&s, sleeper.pid()).is_some(), "{s}");
    t.keys(&["Enter"]);
    t.wait_for("the filter kept", |s| s.contains("/ filter [slee]"));
    t.keys(&["/", "Escape"]);
    t.wait_for("the filter cleared", |s| row(s, big.pid()).is_some());

    // Sort by rss, then group by tree.
    t.keys(&["s"]);
    t.wait_for("sort rss", |s| s.contains("sort rss"));
    t.keys(&["g"]);
    t.wait_for("tree groups", |s| {
        s.contains("PROCS") && s.contains("next victim")
    });
    t.keys(&["g", "g", "g"]);
    t.wait_for("back to processes", |s| row(s, big.pid()).is_some());

    // An adj written now shows on the next refresh: sleep (adj 1000) overtakes the hog.
    crate::predict::set_adj(sleeper.pid(), 1000);
    let s = t.wait_for("sleep as the next victim", |s| {
        row(s, sleeper.pid()).is_some_and(|r| r.contains("next_victim") && r.contains(" 1000 "))
    });
    assert!(
        row(&s, big.pid()).is_some_and(|r| r.contains("candidate")),
        "{s}"
    );

    // Switch scope to the system: PID 1 appears; then back to a scope that does not exist.
    t.keys(&["c"]);
    t.wait_for("the scope prompt", |s| {
        s.contains("scope (system or cgroup:PATH): system")
    });
    t.keys(&["Enter"]);
    let s = t.wait_for("the system scope", |s| s.contains("scope system"));
    assert!(!s.contains(&scope), "{s}");
    t.keys(&[
        "c", "BSpace", "BSpace", "BSpace", "BSpace", "BSpace", "BSpace",
    ]);
    t.keys(&["-l", "cgroup:/no/such/group"]);
    t.keys(&["Enter"]);
    t.wait_for("the refusal", |s| s.contains("cannot switch scope"));

    // Quit: the shell prints the exit code.
    t.keys(&["q"]);
    let s = t.wait_for("exit", |s| s.contains("top-exit="));
    assert!(s.contains("top-exit=0"), "{s}");
    drop((big, sleeper));
}

/// `kill`, `timeout` or a closed terminal end the live view as `q` does: SIGTERM, SIGINT and
/// SIGHUP restore the terminal (alternate screen left, raw mode off) and exit 0. Before, their
/// default action ended `top` at once and left the shell's terminal without echo and line
/// editing, on the alternate screen.
#[test]
fn a_signal_ends_the_live_view_with_the_terminal_restored() {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        let cmd = format!(
            "{} top; echo top-exit=$?; stty -a | tr ' ;' '\\n\\n' | grep -x -- '-\\?icanon'; sleep 60",
            bin().display()
        );
        let Some(t) = Tmux::start(&cmd) else { return };
        t.wait_for("the live view", |s| s.contains("oomguard top"));
        assert_eq!(
            t.display("#{alternate_on}"),
            "1",
            "the view is not on the alternate screen"
        );
        // The shell running the command line, and `top` its child.
        let shell: i32 = t.display("#{pane_pid}").parse().expect("pane pid");
        let children =
            std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap();
        let top: Vec<i32> = children
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        assert_eq!(top.len(), 1, "the shell's children: {children}");
        // SAFETY: a signal to the `top` this test started (the pane shell's only child).
        assert_eq!(unsafe { libc::kill(top[0], sig) }, 0);
        let s = t.wait_for("the exit", |s| {
            s.contains("top-exit=") && s.contains("icanon")
        });
        assert!(s.contains("top-exit=0"), "signal {sig}:\n{s}");
        assert!(
            s.lines().any(|l| l.trim() == "icanon"),
            "signal {sig}: raw mode left on:\n{s}"
        );
        assert_eq!(
            t.display("#{alternate_on}"),
            "0",
            "signal {sig}: the alternate screen left on:\n{s}"
        );
    }
}
