//! The contract's rules (`[[protect]]`, `[[prefer]]`, `[[avoid]]`) and how they change the
//! choice: protect is never chosen, prefer / avoid are scored as if their `oom_score_adj` were
//! 300 higher / lower. The first rule that matches decides.

use regex::Regex;
use serde::Serialize;

/// The kind of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    Protect,
    Prefer,
    Avoid,
}

impl RuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Protect => "protect",
            RuleKind::Prefer => "prefer",
            RuleKind::Avoid => "avoid",
        }
    }
    /// The adj shift a rule of this kind applies to oomguard's own ranking.
    pub fn adj_shift(self) -> i64 {
        match self {
            RuleKind::Protect => 0,
            RuleKind::Prefer => 300,
            RuleKind::Avoid => -300,
        }
    }
}

/// A user given by name or by uid. A name that does not resolve matches nothing.
#[derive(Debug, Clone)]
pub struct UserMatch {
    pub written: String,
    pub uid: Option<u32>,
}

/// One rule: all given fields must match (AND).
#[derive(Debug, Clone)]
pub struct Rule {
    pub kind: RuleKind,
    pub name: Option<Regex>,
    pub cmdline: Option<Regex>,
    pub exe: Option<Regex>,
    pub user: Option<UserMatch>,
    pub cgroup: Option<Regex>,
    pub unit: Option<Regex>,
    pub oom_score_adj: Option<i16>,
    /// Where the rule came from: `--protect '^sshd$'` or `FILE:LINE`.
    pub origin: String,
}

/// What a rule may look at. Fields not yet read are `None` and only read when a rule needs them.
pub trait ProcFacts {
    fn comm(&self) -> &str;
    fn uid(&mut self) -> Option<u32>;
    fn cmdline(&mut self) -> Option<&str>;
    fn exe(&mut self) -> Option<&str>;
    fn cgroup(&mut self) -> Option<&str>;
}

impl Rule {
    /// A rule with only a name regex (the `--protect/--prefer/--avoid REGEX` flags).
    pub fn name_only(kind: RuleKind, regex: &str) -> Result<Rule, regex::Error> {
        Ok(Rule {
            kind,
            name: Some(Regex::new(regex)?),
            cmdline: None,
            exe: None,
            user: None,
            cgroup: None,
            unit: None,
            oom_score_adj: None,
            origin: format!("--{} '{}'", kind.as_str(), regex),
        })
    }

    /// Which fields the rule needs beyond the name (callers read them lazily).
    pub fn needs_more_than_name(&self) -> bool {
        self.cmdline.is_some()
            || self.exe.is_some()
            || self.user.is_some()
            || self.cgroup.is_some()
            || self.unit.is_some()
    }

    pub fn matches(&self, p: &mut dyn ProcFacts) -> bool {
        if let Some(re) = &self.name
            && !re.is_match(p.comm())
        {
            return false;
        }
        if let Some(u) = &self.user {
            match (u.uid, p.uid()) {
                (Some(want), Some(have)) if want == have => {}
                _ => return false,
            }
        }
        if let Some(re) = &self.cmdline {
            match p.cmdline() {
                Some(c) if re.is_match(c) => {}
                _ => return false,
            }
        }
        if let Some(re) = &self.exe {
            match p.exe() {
                Some(c) if re.is_match(c) => {}
                _ => return false,
            }
        }
        if let Some(re) = &self.cgroup {
            match p.cgroup() {
                Some(c) if re.is_match(c) => {}
                _ => return false,
            }
        }
        if let Some(re) = &self.unit {
            match p.cgroup().and_then(unit_of_cgroup) {
                Some(c) if re.is_match(c) => {}
                _ => return false,
            }
        }
        true
    }

    /// A one-line description for logs and `why`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = &self.name {
            parts.push(format!("name =~ /{}/", r.as_str()));
        }
        if let Some(r) = &self.cmdline {
            parts.push(format!("cmdline =~ /{}/", r.as_str()));
        }
        if let Some(r) = &self.exe {
            parts.push(format!("exe =~ /{}/", r.as_str()));
        }
        if let Some(u) = &self.user {
            parts.push(format!("user = {}", u.written));
        }
        if let Some(r) = &self.cgroup {
            parts.push(format!("cgroup =~ /{}/", r.as_str()));
        }
        if let Some(r) = &self.unit {
            parts.push(format!("unit =~ /{}/", r.as_str()));
        }
        if let Some(a) = self.oom_score_adj {
            parts.push(format!("oom_score_adj = {a}"));
        }
        format!(
            "{} [{}] ({})",
            self.kind.as_str(),
            parts.join(", "),
            self.origin
        )
    }
}

impl Rule {
    /// What is wrong with the rule though it parses: it can match nothing (a user that does
    /// not exist here, a name longer than the kernel's 15-byte comm) or everything (every
    /// field it has matches any text). Said by `check-config` and at the daemon's start: a
    /// typo must not silently disable a protection, nor protect every process.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if let Some(u) = &self.user
            && u.uid.is_none()
        {
            w.push(format!(
                "{}: user '{}' does not exist here; the rule matches nothing",
                self.origin, u.written
            ));
        }
        if let Some(name) = &self.name
            && let Ok(hir) = regex_syntax::Parser::new().parse(name.as_str())
            && hir.properties().minimum_len().is_some_and(|n| n > 15)
        {
            w.push(format!(
                "{}: name '{}' needs more than 15 bytes, and a process name (the kernel's comm) has at most 15; the rule matches nothing (match the first 15 bytes, or use cmdline or exe)",
                self.origin,
                name.as_str()
            ));
        }
        let regexes = [
            &self.name,
            &self.cmdline,
            &self.exe,
            &self.cgroup,
            &self.unit,
        ];
        if self.user.is_none()
            && regexes
                .iter()
                .all(|r| r.as_ref().is_none_or(|r| r.is_match("")))
        {
            w.push(format!(
                "{}: every field matches any text, so the rule matches every process{}",
                self.origin,
                if self.kind == RuleKind::Protect {
                    ": none can be chosen, and the guard cannot act"
                } else {
                    ""
                }
            ));
        }
        w
    }
}

/// The systemd unit named by a cgroup path, as systemd reads it (`sd_pid_get_unit`): the
/// first component that is not a slice. Units below it do not count: a user's own
/// `sshd.service` (`/user.slice/user-1000.slice/user@1000.service/app.slice/sshd.service`)
/// and a container's (`/machine.slice/machine-web.scope/…/sshd.service`) are in
/// `user@1000.service` and `machine-web.scope`, not in the system's `sshd.service`: a rule
/// on the unit cannot be met by anyone who can start a unit of their own.
pub fn unit_of_cgroup(path: &str) -> Option<&str> {
    const SUFFIXES: [&str; 5] = [".service", ".scope", ".socket", ".mount", ".swap"];
    let first = path
        .split('/')
        .filter(|c| !c.is_empty())
        .find(|c| !(c.ends_with(".slice") && c.len() > ".slice".len()))?;
    SUFFIXES
        .iter()
        .any(|s| first.ends_with(s) && first.len() > s.len())
        .then_some(first)
}

/// Highest uid of a system user (Debian's and Fedora's `SYS_UID_MAX`); `nobody` (65534) counts
/// as one too.
pub const SYSTEM_UID_MAX: u32 = 999;

/// The match fields of a suggested `[[protect]]` rule for a process named `comm` run by `uid`
/// (`user`: its name in passwd, if known), as one line of TOML key/value pairs:
/// `name = "^sshd$" user = "root"`. A name alone can be taken by any local user (a copy of a
/// binary under that name, or `prctl(PR_SET_NAME)`), whose process the rule would then shield
/// (and, with `oom_score_adj`, have a root daemon lower its adj): so when the process runs as
/// root or as a system user, its user is part of the rule. Strings are quoted as JSON writes
/// them (control characters in a name become `\uXXXX` escapes, valid TOML).
pub fn protect_fields(comm: &str, uid: Option<u32>, user: Option<&str>) -> String {
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"?\"".into());
    let name = quote(&format!("^{}$", regex::escape(comm)));
    match uid {
        Some(u) if u <= SYSTEM_UID_MAX || u == 65534 => {
            let user = user.map_or_else(|| u.to_string(), quote);
            format!("name = {name} user = {user}")
        }
        _ => format!("name = {name}"),
    }
}

/// The ordered rule list: command-line rules first, then the config file's in file order.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

impl Policy {
    /// The first rule that matches, if any.
    pub fn classify(&self, p: &mut dyn ProcFacts) -> Option<&Rule> {
        self.rules.iter().find(|r| r.matches(p))
    }
    pub fn has_adj_rules(&self) -> bool {
        self.rules.iter().any(|r| r.oom_score_adj.is_some())
    }
}

/// The adj oomguard ranks a process by: its own adj shifted by a prefer/avoid rule, clamped.
pub fn effective_adj(adj: i16, kind: Option<RuleKind>) -> i64 {
    let shift = kind.map_or(0, RuleKind::adj_shift);
    (adj as i64 + shift).clamp(-1000, 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct P {
        comm: &'static str,
        uid: u32,
        cmdline: &'static str,
        cgroup: &'static str,
    }
    impl ProcFacts for P {
        fn comm(&self) -> &str {
            self.comm
        }
        fn uid(&mut self) -> Option<u32> {
            Some(self.uid)
        }
        fn cmdline(&mut self) -> Option<&str> {
            Some(self.cmdline)
        }
        fn exe(&mut self) -> Option<&str> {
            None
        }
        fn cgroup(&mut self) -> Option<&str> {
            Some(self.cgroup)
        }
    }

    #[test]
    fn first_matching_rule_decides_and_fields_are_anded() {
        let mut avoid = Rule::name_only(RuleKind::Avoid, "postgres").unwrap();
        avoid.user = Some(UserMatch {
            written: "postgres".into(),
            uid: Some(113),
        });
        let policy = Policy {
            rules: vec![
                Rule::name_only(RuleKind::Protect, "^sshd$").unwrap(),
                avoid,
                Rule::name_only(RuleKind::Prefer, "post").unwrap(),
            ],
        };
        let mut pg = P {
            comm: "postgres",
            uid: 113,
            cmdline: "postgres -D x",
            cgroup: "/",
        };
        assert_eq!(policy.classify(&mut pg).unwrap().kind, RuleKind::Avoid);
        let mut pg_other = P { uid: 0, ..pg };
        assert_eq!(
            policy.classify(&mut pg_other).unwrap().kind,
            RuleKind::Prefer
        );
        let mut sshd_session = P {
            comm: "sshd-session",
            uid: 0,
            cmdline: "",
            cgroup: "/",
        };
        assert!(policy.classify(&mut sshd_session).is_none());
        let mut sshd = P {
            comm: "sshd",
            ..sshd_session
        };
        assert_eq!(policy.classify(&mut sshd).unwrap().kind, RuleKind::Protect);
    }

    #[test]
    fn unit_is_the_first_component_below_the_slices() {
        assert_eq!(
            unit_of_cgroup("/system.slice/nginx.service"),
            Some("nginx.service")
        );
        assert_eq!(
            unit_of_cgroup("/system.slice/nginx.service/worker"),
            Some("nginx.service")
        );
        assert_eq!(
            unit_of_cgroup("/user.slice/user-1000.slice/session-2.scope"),
            Some("session-2.scope")
        );
        assert_eq!(
            unit_of_cgroup(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-ab.scope"
            ),
            Some("cri-containerd-ab.scope")
        );
        // A user's own unit and a container's inner unit are not the system's unit.
        assert_eq!(
            unit_of_cgroup("/user.slice/user-1000.slice/user@1000.service/app.slice/sshd.service"),
            Some("user@1000.service")
        );
        assert_eq!(
            unit_of_cgroup("/machine.slice/machine-web.scope/payload/system.slice/sshd.service"),
            Some("machine-web.scope")
        );
        assert_eq!(
            unit_of_cgroup("/docker/abc/system.slice/sshd.service"),
            None
        );
        assert_eq!(unit_of_cgroup("/user.slice/user-1000.slice"), None);
        assert_eq!(unit_of_cgroup("/"), None);
    }

    /// `unit = "^sshd\.service$"` protects the system's sshd, not a user's unit of that name.
    #[test]
    fn a_unit_rule_is_not_met_by_a_users_unit_of_the_same_name() {
        let mut rule = Rule::name_only(RuleKind::Protect, "^sshd$").unwrap();
        rule.unit = Some(Regex::new(r"^sshd\.service$").unwrap());
        let policy = Policy { rules: vec![rule] };
        let mut system = P {
            comm: "sshd",
            uid: 0,
            cmdline: "",
            cgroup: "/system.slice/sshd.service",
        };
        assert!(policy.classify(&mut system).is_some());
        let mut user = P {
            cgroup: "/user.slice/user-1000.slice/user@1000.service/app.slice/sshd.service",
            uid: 1000,
            ..system
        };
        assert!(policy.classify(&mut user).is_none());
    }

    /// A suggested protect rule for a root or system-user process names the user: as a config
    /// rule it shields that process and not a user's process given the same name.
    #[test]
    fn a_suggested_protect_rule_names_a_system_processs_user() {
        let users = |n: &str| match n {
            "root" => Some(0),
            "postgres" => Some(113),
            _ => None,
        };
        let rule = |fields: String| {
            let text = format!("[[protect]]\n{}\n", fields.replace(" user = ", "\nuser = "));
            let c = crate::config::Config::parse(&text, std::path::Path::new("t.toml"), &users)
                .unwrap_or_else(|e| panic!("{text}: {e}"));
            c.rules.into_iter().next().unwrap()
        };
        let sshd = protect_fields("sshd", Some(0), Some("root"));
        assert_eq!(sshd, r#"name = "^sshd$" user = "root""#);
        let r = rule(sshd);
        let mut root_sshd = P {
            comm: "sshd",
            uid: 0,
            cmdline: "",
            cgroup: "/",
        };
        let mut fake_sshd = P {
            uid: 1000,
            ..root_sshd
        };
        assert!(r.matches(&mut root_sshd));
        assert!(!r.matches(&mut fake_sshd));
        // A system user by name, or by uid when passwd does not name it.
        let pg = protect_fields("postgres", Some(113), Some("postgres"));
        assert_eq!(pg, r#"name = "^postgres$" user = "postgres""#);
        assert!(rule(pg).user.is_some_and(|u| u.uid == Some(113)));
        assert_eq!(
            protect_fields("x.y", Some(998), None),
            r#"name = "^x\\.y$" user = 998"#
        );
        assert_eq!(
            protect_fields("nobodyd", Some(65534), None),
            r#"name = "^nobodyd$" user = 65534"#
        );
        // A login user's process, or one whose user is unknown: the name alone.
        assert_eq!(
            protect_fields("firefox", Some(1000), Some("bob")),
            r#"name = "^firefox$""#
        );
        assert_eq!(protect_fields("sshd", None, None), r#"name = "^sshd$""#);
    }

    #[test]
    fn prefer_and_avoid_shift_by_300_and_clamp() {
        assert_eq!(effective_adj(0, Some(RuleKind::Prefer)), 300);
        assert_eq!(effective_adj(900, Some(RuleKind::Prefer)), 1000);
        assert_eq!(effective_adj(-800, Some(RuleKind::Avoid)), -1000);
        assert_eq!(effective_adj(5, None), 5);
    }
}
