//! Config sections of the fleet features: `[metrics]`, `[warn]`, `[hooks]`, `[notify]` and
//! `[[watch]]`. Raw values (unknown keys refused) are validated into [`FleetSettings`]; errors
//! name the line.

use std::net::SocketAddr;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use crate::decide::policy::{Rule, RuleKind};
use crate::values::{Dur, Pct};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    listen: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWarn {
    enabled: Option<bool>,
    /// PCT: a string (`"85%"`) or a bare number (`85`).
    level: Option<Spanned<super::Scalar>>,
    clear: Option<Spanned<super::Scalar>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHooks {
    pre_kill: Option<Spanned<Vec<String>>>,
    post_kill: Option<Spanned<Vec<String>>>,
    timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    dbus_signal: Option<bool>,
    desktop: Option<bool>,
    user_runtime_dir: Option<String>,
    system_bus: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWatch {
    name: Option<Spanned<String>>,
    cmdline: Option<Spanned<String>>,
    exe: Option<Spanned<String>>,
    cgroup: Option<Spanned<String>>,
    unit: Option<Spanned<String>>,
    restart: Option<Spanned<Vec<String>>>,
    max_restarts: Option<Spanned<i64>>,
    timeout: Option<Spanned<String>>,
}

/// The fleet sections as found in the file.
pub(super) struct RawFleet<'a> {
    pub metrics: Option<&'a RawMetrics>,
    pub warn: Option<&'a RawWarn>,
    pub hooks: Option<&'a RawHooks>,
    pub notify: Option<&'a RawNotify>,
    pub watch: &'a [Spanned<RawWatch>],
}

/// `[warn]`: a level of the scope's memory use that logs, records `warn` and notifies.
#[derive(Debug, Clone, PartialEq)]
pub struct WarnSettings {
    /// Percent of the scope's memory in use at which to warn; `None` = off.
    pub level_pct: Option<f64>,
    /// Percent below which the warning clears (hysteresis).
    pub clear_pct: f64,
}

impl Default for WarnSettings {
    fn default() -> Self {
        WarnSettings {
            level_pct: Some(85.0),
            clear_pct: 80.0,
        }
    }
}

/// `[hooks]`: programs (argv, no shell) run before and after a kill.
#[derive(Debug, Clone, PartialEq)]
pub struct HookSettings {
    pub pre_kill: Vec<String>,
    pub post_kill: Vec<String>,
    pub timeout: Duration,
}

impl Default for HookSettings {
    fn default() -> Self {
        HookSettings {
            pre_kill: Vec::new(),
            post_kill: Vec::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// `[notify]`: D-Bus signal on the system bus and desktop notifications.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifySettings {
    pub dbus_signal: bool,
    pub desktop: bool,
    /// Where the users' runtime directories (with their session bus socket `bus`) live.
    pub user_runtime_dir: String,
    /// The system bus address (`None`: `DBUS_SYSTEM_BUS_ADDRESS` or the standard socket), e.g.
    /// a host socket mounted elsewhere in a container.
    pub system_bus: Option<String>,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            dbus_signal: true,
            desktop: true,
            user_runtime_dir: "/run/user".into(),
            system_bus: None,
        }
    }
}

/// One `[[watch]]` entry: what must be running after an OOM event, and how to restart it.
#[derive(Debug, Clone)]
pub struct WatchEntry {
    /// The match fields (the rule's kind is irrelevant here).
    pub matcher: Rule,
    pub restart: Vec<String>,
    pub max_restarts: u32,
    pub timeout: Duration,
}

impl WatchEntry {
    /// A short name for records and logs: the first match field given.
    pub fn label(&self) -> String {
        let m = &self.matcher;
        [&m.name, &m.unit, &m.cmdline, &m.exe, &m.cgroup]
            .into_iter()
            .flatten()
            .map(|r| r.as_str().to_string())
            .next()
            .unwrap_or_default()
    }
}

/// The validated fleet sections.
#[derive(Debug, Clone, Default)]
pub struct FleetSettings {
    /// `[metrics] listen`: serve Prometheus metrics there (`None` = off unless `--metrics`).
    pub metrics_listen: Option<SocketAddr>,
    pub warn: WarnSettings,
    pub hooks: HookSettings,
    pub notify: NotifySettings,
    pub watch: Vec<WatchEntry>,
}

type At<'a> = &'a dyn Fn(std::ops::Range<usize>, String) -> super::ConfigError;

fn pct(s: &Spanned<super::Scalar>, key: &str, at: At) -> Result<f64, super::ConfigError> {
    s.get_ref()
        .text()
        .parse::<Pct>()
        .map(|p| p.0)
        .map_err(|e| at(s.span(), format!("{key}: {e}")))
}

fn dur(s: &Spanned<String>, key: &str, at: At) -> Result<Duration, super::ConfigError> {
    s.get_ref()
        .parse::<Dur>()
        .map(|d| d.0)
        .map_err(|e| at(s.span(), format!("{key}: {e}")))
}

fn argv(
    v: &Option<Spanned<Vec<String>>>,
    key: &str,
    at: At,
) -> Result<Vec<String>, super::ConfigError> {
    match v {
        None => Ok(Vec::new()),
        Some(s) if s.get_ref().is_empty() || s.get_ref()[0].is_empty() => Err(at(
            s.span(),
            format!(
                "{key}: give the program and its arguments, e.g. [\"/usr/local/bin/page\", \"--oom\"]"
            ),
        )),
        Some(s) => Ok(s.get_ref().clone()),
    }
}

pub(super) fn validate(raw: RawFleet, at: At) -> Result<FleetSettings, super::ConfigError> {
    let mut f = FleetSettings::default();
    if let Some(m) = raw.metrics
        && let Some(l) = &m.listen
    {
        f.metrics_listen = Some(l.get_ref().parse().map_err(|_| {
            at(
                l.span(),
                format!(
                    "metrics.listen: '{}' is not an address; write IP:PORT, e.g. \"127.0.0.1:9577\"",
                    l.get_ref()
                ),
            )
        })?);
    }
    if let Some(w) = raw.warn {
        if let Some(l) = &w.level {
            let v = pct(l, "warn.level", at)?;
            f.warn.level_pct = Some(v);
            f.warn.clear_pct = (v - 5.0).max(0.0);
        }
        if let Some(c) = &w.clear {
            let v = pct(c, "warn.clear", at)?;
            let level = f.warn.level_pct.unwrap_or(85.0);
            if v >= level {
                return Err(at(
                    c.span(),
                    format!("warn.clear ({v}%) must be below warn.level ({level}%)"),
                ));
            }
            f.warn.clear_pct = v;
        }
        if w.enabled == Some(false) {
            f.warn.level_pct = None;
        }
    }
    if let Some(h) = raw.hooks {
        f.hooks.pre_kill = argv(&h.pre_kill, "hooks.pre_kill", at)?;
        f.hooks.post_kill = argv(&h.post_kill, "hooks.post_kill", at)?;
        if let Some(t) = &h.timeout {
            f.hooks.timeout = dur(t, "hooks.timeout", at)?;
        }
    }
    if let Some(n) = raw.notify {
        if let Some(b) = n.dbus_signal {
            f.notify.dbus_signal = b;
        }
        if let Some(b) = n.desktop {
            f.notify.desktop = b;
        }
        if let Some(d) = &n.user_runtime_dir {
            f.notify.user_runtime_dir = d.clone();
        }
        f.notify.system_bus = n.system_bus.clone();
    }
    for w in raw.watch {
        let span = w.span();
        let w = w.get_ref();
        let regex =
            |v: &Option<Spanned<String>>, key: &str| -> Result<Option<Regex>, super::ConfigError> {
                match v {
                    None => Ok(None),
                    Some(s) => super::compile_regex(s.get_ref())
                        .map(Some)
                        .map_err(|e| at(s.span(), format!("[[watch]] {key}: bad regex: {e}"))),
                }
            };
        let matcher = Rule {
            kind: RuleKind::Protect,
            name: regex(&w.name, "name")?,
            cmdline: regex(&w.cmdline, "cmdline")?,
            exe: regex(&w.exe, "exe")?,
            user: None,
            cgroup: regex(&w.cgroup, "cgroup")?,
            unit: regex(&w.unit, "unit")?,
            oom_score_adj: None,
            origin: String::new(),
        };
        if matcher.name.is_none() && !matcher.needs_more_than_name() {
            return Err(at(
                span,
                "[[watch]] has no match field; give at least one of name, cmdline, exe, cgroup, unit"
                    .into(),
            ));
        }
        let max_restarts = match &w.max_restarts {
            None => 3,
            Some(m) => u32::try_from(*m.get_ref())
                .ok()
                .filter(|n| *n <= 1000)
                .ok_or_else(|| {
                    at(
                        m.span(),
                        format!(
                            "[[watch]] max_restarts = {} is outside 0..1000",
                            m.get_ref()
                        ),
                    )
                })?,
        };
        f.watch.push(WatchEntry {
            matcher,
            restart: argv(&w.restart, "[[watch]] restart", at)?,
            max_restarts,
            timeout: match &w.timeout {
                Some(t) => dur(t, "[[watch]] timeout", at)?,
                None => Duration::from_secs(60),
            },
        });
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, crate::config::ConfigError> {
        Config::parse(text, Path::new("t.toml"), &|_| None)
    }

    #[test]
    fn sections_parse_with_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.fleet.warn.level_pct, Some(85.0));
        assert_eq!(c.fleet.warn.clear_pct, 80.0);
        assert!(c.fleet.metrics_listen.is_none());
        let c = parse(
            "[metrics]\nlisten = \"127.0.0.1:9577\"\n[warn]\nlevel = \"90%\"\n[hooks]\npre_kill = [\"/bin/echo\", \"x\"]\ntimeout = \"2s\"\n[notify]\ndesktop = false\n[[watch]]\nname = \"^nginx$\"\nrestart = [\"systemctl\", \"restart\", \"nginx\"]\nmax_restarts = 2\n",
        )
        .unwrap();
        let f = &c.fleet;
        assert_eq!(f.metrics_listen.unwrap().port(), 9577);
        assert_eq!((f.warn.level_pct, f.warn.clear_pct), (Some(90.0), 85.0));
        // A PCT may be a bare TOML number, as in [run].
        let c = parse("[warn]\nlevel = 90\nclear = 72.5\n").unwrap();
        assert_eq!(
            (c.fleet.warn.level_pct, c.fleet.warn.clear_pct),
            (Some(90.0), 72.5)
        );
        assert_eq!(f.hooks.pre_kill, ["/bin/echo", "x"]);
        assert_eq!(f.hooks.timeout, std::time::Duration::from_secs(2));
        assert!(!f.notify.desktop && f.notify.dbus_signal);
        assert_eq!(f.watch[0].max_restarts, 2);
        assert_eq!(f.watch[0].label(), "^nginx$");
        let c = parse("[warn]\nenabled = false\n").unwrap();
        assert_eq!(c.fleet.warn.level_pct, None);
    }

    #[test]
    fn mistakes_name_the_line() {
        for (text, line, what) in [
            ("[metrics]\nlisten = \"9577\"\n", 2, "not an address"),
            (
                "[warn]\nlevel = \"85\"\nclear = \"90\"\n",
                3,
                "below warn.level",
            ),
            ("[hooks]\npre_kill = []\n", 2, "program and its arguments"),
            ("[hooks]\ntimeout = \"5\"\n", 2, "no unit"),
            ("\n[[watch]]\nrestart = [\"x\"]\n", 2, "no match field"),
            ("[[watch]]\nname = \"(\"\n", 2, "bad regex"),
            ("[[watch]]\nname = \"x\"\nmax_restarts = -1\n", 3, "outside"),
            ("[notify]\ndesktp = true\n", 2, "desktp"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("t.toml:{line}:")) && e.contains(what),
                "{text}: {e}"
            );
        }
    }
}
