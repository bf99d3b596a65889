//! The TOML config file: raw values first (every field optional, unknown keys refused), then
//! one validated [`Config`]. Errors name the file and the line, so `check-config` and the
//! daemon's SIGHUP reload can point at the mistake.

use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use crate::decide::policy::{Rule, RuleKind, UserMatch};
use crate::values::{KillUnit, LevelPair, PsiSpec, ScopeSpec, ValueError};

pub mod fleet;

/// The path read when no `--config` is given, if it exists.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/oomguard/oomguard.toml";

/// Largest config file read (a larger one, or an endless one such as `/dev/zero`, is refused
/// before it is parsed, so a bad reload cannot grow the daemon's locked memory).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Most compiled size of one regex (the `regex` crate's `size_limit`).
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// Most lazy-DFA cache of one regex.
const REGEX_DFA_LIMIT: usize = 256 * 1024;
/// Most rules (`[[protect]]`, `[[prefer]]`, `[[avoid]]`, `[[watch]]` together).
pub const MAX_RULES: usize = 256;

/// Compiles a rule's regex with bounded compiled size and cache.
pub(crate) fn compile_regex(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_LIMIT)
        .build()
}

/// Reads at most [`MAX_CONFIG_BYTES`] of a config file; more is [`ConfigError::TooLarge`].
fn read_bounded(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    let read_err = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(read_err)?;
    let mut buf = Vec::new();
    f.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(read_err)?;
    if buf.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    String::from_utf8(buf).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
    })
}

/// A config file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error(
        "config file {path} is larger than {} KiB (or endless, like a device); a config file is a few lines of TOML",
        MAX_CONFIG_BYTES / 1024
    )]
    TooLarge { path: PathBuf },
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    run: RawRun,
    #[serde(default)]
    protect: Vec<Spanned<RawRule>>,
    #[serde(default)]
    prefer: Vec<Spanned<RawRule>>,
    #[serde(default)]
    avoid: Vec<Spanned<RawRule>>,
    metrics: Option<fleet::RawMetrics>,
    warn: Option<fleet::RawWarn>,
    hooks: Option<fleet::RawHooks>,
    notify: Option<fleet::RawNotify>,
    #[serde(default)]
    watch: Vec<Spanned<fleet::RawWatch>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    scope: Option<Spanned<String>>,
    mem_min: Option<Spanned<Scalar>>,
    swap_min: Option<Spanned<Scalar>>,
    mem_min_size: Option<Spanned<Scalar>>,
    swap_min_size: Option<Spanned<Scalar>>,
    psi: Option<Spanned<String>>,
    kill_unit: Option<Spanned<String>>,
    term_grace: Option<Spanned<String>>,
    event_log: Option<Spanned<String>>,
    dry_run: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<Spanned<String>>,
    cmdline: Option<Spanned<String>>,
    exe: Option<Spanned<String>>,
    user: Option<Spanned<UserValue>>,
    cgroup: Option<Spanned<String>>,
    unit: Option<Spanned<String>>,
    oom_score_adj: Option<Spanned<i64>>,
}

/// A level written as a string (`"10,5"`, `"800M"`) or a bare TOML number (`10`, `7.5`): a PCT
/// may be a bare number, a SIZE without unit is refused by its parser with the list of units.
#[derive(Debug)]
pub(super) enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
}

/// By hand, not `untagged`: a value of the wrong type (`mem_min = [10, 5]`) is then refused
/// with what is expected, not "did not match any variant".
impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a level: a number (percent) or a string such as \"10,5\" or \"800M,400M\"",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Scalar, E> {
                i64::try_from(v)
                    .map(Scalar::Int)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl Scalar {
    pub(super) fn text(&self) -> String {
        match self {
            Scalar::Str(s) => s.clone(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
        }
    }
}

#[derive(Debug)]
enum UserValue {
    Uid(u32),
    Name(String),
}

/// By hand, not `untagged`, for the error's sake (see [`Scalar`]).
impl<'de> Deserialize<'de> for UserValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = UserValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a user name (a string) or a numeric uid from 0 to 4294967295")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<UserValue, E> {
                Ok(UserValue::Name(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<UserValue, E> {
                u32::try_from(v)
                    .map(UserValue::Uid)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<UserValue, E> {
                u32::try_from(v)
                    .map(UserValue::Uid)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

/// Daemon settings that may come from the file; `None` = not set there.
#[derive(Debug, Clone, Default)]
pub struct RunSettings {
    pub scope: Option<ScopeSpec>,
    pub mem_min: Option<LevelPair>,
    pub swap_min: Option<LevelPair>,
    pub mem_min_size: Option<LevelPair>,
    pub swap_min_size: Option<LevelPair>,
    pub psi: Option<PsiSpec>,
    pub kill_unit: Option<KillUnit>,
    pub term_grace: Option<Duration>,
    pub event_log: Option<PathBuf>,
    pub dry_run: Option<bool>,
}

/// A validated config file.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Where it came from (`None`: built-in defaults).
    pub path: Option<PathBuf>,
    pub run: RunSettings,
    /// The file's rules in file order (protect, prefer and avoid tables interleaved as written).
    pub rules: Vec<Rule>,
    /// `[metrics]`, `[warn]`, `[hooks]`, `[notify]`, `[[watch]]`.
    pub fleet: fleet::FleetSettings,
}

impl Config {
    /// Reads `path`, or the default path when it exists, or returns the built-in defaults.
    pub fn load(
        path: Option<&Path>,
        users: &dyn Fn(&str) -> Option<u32>,
    ) -> Result<Config, ConfigError> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None => {
                let d = Path::new(DEFAULT_CONFIG_PATH);
                if !d.exists() {
                    return Ok(Config::default());
                }
                d.to_path_buf()
            }
        };
        let text = read_bounded(&path)?;
        Config::parse(&text, &path, users)
    }

    /// Parses and validates the text of a config file.
    pub fn parse(
        text: &str,
        path: &Path,
        users: &dyn Fn(&str) -> Option<u32>,
    ) -> Result<Config, ConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            let msg = e.message().trim().to_string();
            match line {
                Some(line) => ConfigError::Invalid {
                    path: path.into(),
                    line,
                    message: msg,
                },
                None => ConfigError::Syntax {
                    path: path.into(),
                    message: msg,
                },
            }
        })?;
        let n_rules = raw.protect.len() + raw.prefer.len() + raw.avoid.len() + raw.watch.len();
        if n_rules > MAX_RULES {
            return Err(ConfigError::Syntax {
                path: path.into(),
                message: format!(
                    "{n_rules} rules ([[protect]], [[prefer]], [[avoid]], [[watch]]); at most {MAX_RULES} are allowed (merge names into one regex: name = \"^(a|b|c)$\")"
                ),
            });
        }
        let at = |span: std::ops::Range<usize>, message: String| ConfigError::Invalid {
            path: path.into(),
            line: line_of(text, span.start),
            message,
        };
        let val = |v: &Option<Spanned<String>>,
                   key: &str,
                   f: &dyn Fn(&str) -> Result<(), ValueError>|
         -> Result<(), ConfigError> {
            if let Some(s) = v {
                f(s.get_ref()).map_err(|e| at(s.span(), format!("run.{key}: {e}")))?;
            }
            Ok(())
        };
        let level = |v: &Option<Spanned<Scalar>>,
                     key: &str,
                     f: fn(&str) -> Result<LevelPair, ValueError>|
         -> Result<Option<LevelPair>, ConfigError> {
            v.as_ref()
                .map(|s| {
                    f(&s.get_ref().text()).map_err(|e| at(s.span(), format!("run.{key}: {e}")))
                })
                .transpose()
        };
        let r = &raw.run;
        let mut run = RunSettings::default();
        val(&r.scope, "scope", &|s| s.parse::<ScopeSpec>().map(|_| ()))?;
        run.scope = r.scope.as_ref().and_then(|s| s.get_ref().parse().ok());
        run.mem_min = level(&r.mem_min, "mem_min", LevelPair::parse_pct)?;
        run.swap_min = level(&r.swap_min, "swap_min", LevelPair::parse_pct)?;
        run.mem_min_size = level(&r.mem_min_size, "mem_min_size", LevelPair::parse_size)?;
        run.swap_min_size = level(&r.swap_min_size, "swap_min_size", LevelPair::parse_size)?;
        val(&r.psi, "psi", &|s| s.parse::<PsiSpec>().map(|_| ()))?;
        run.psi = r.psi.as_ref().and_then(|s| s.get_ref().parse().ok());
        val(&r.kill_unit, "kill_unit", &|s| {
            s.parse::<KillUnit>().map(|_| ())
        })?;
        run.kill_unit = r.kill_unit.as_ref().and_then(|s| s.get_ref().parse().ok());
        val(&r.term_grace, "term_grace", &|s| {
            crate::values::parse_term_grace(s).map(|_| ())
        })?;
        run.term_grace = r
            .term_grace
            .as_ref()
            .and_then(|s| crate::values::parse_term_grace(s.get_ref()).ok())
            .map(|d| d.0);
        run.event_log = r.event_log.as_ref().map(|s| PathBuf::from(s.get_ref()));
        run.dry_run = r.dry_run;

        let mut spanned: Vec<(usize, RuleKind, &Spanned<RawRule>)> = Vec::new();
        for (kind, list) in [
            (RuleKind::Protect, &raw.protect),
            (RuleKind::Prefer, &raw.prefer),
            (RuleKind::Avoid, &raw.avoid),
        ] {
            for rr in list {
                spanned.push((rr.span().start, kind, rr));
            }
        }
        spanned.sort_by_key(|(start, _, _)| *start);
        let mut rules = Vec::new();
        for (start, kind, rr) in spanned {
            let line = line_of(text, start);
            let raw_rule = rr.get_ref();
            let regex =
                |v: &Option<Spanned<String>>, key: &str| -> Result<Option<Regex>, ConfigError> {
                    match v {
                        None => Ok(None),
                        Some(s) => compile_regex(s.get_ref()).map(Some).map_err(|e| {
                            at(
                                s.span(),
                                format!("[[{}]] {key}: bad regex: {e}", kind.as_str()),
                            )
                        }),
                    }
                };
            let rule = Rule {
                kind,
                name: regex(&raw_rule.name, "name")?,
                cmdline: regex(&raw_rule.cmdline, "cmdline")?,
                exe: regex(&raw_rule.exe, "exe")?,
                user: raw_rule.user.as_ref().map(|u| match u.get_ref() {
                    UserValue::Uid(n) => UserMatch {
                        written: n.to_string(),
                        uid: Some(*n),
                    },
                    UserValue::Name(s) => UserMatch {
                        written: s.clone(),
                        uid: s.parse::<u32>().ok().or_else(|| users(s)),
                    },
                }),
                cgroup: regex(&raw_rule.cgroup, "cgroup")?,
                unit: regex(&raw_rule.unit, "unit")?,
                oom_score_adj: match &raw_rule.oom_score_adj {
                    None => None,
                    Some(a) => {
                        let v = *a.get_ref();
                        if !(-1000..=1000).contains(&v) {
                            return Err(at(
                                a.span(),
                                format!(
                                    "[[{}]] oom_score_adj = {v} is outside -1000..1000",
                                    kind.as_str()
                                ),
                            ));
                        }
                        Some(v as i16)
                    }
                },
                origin: format!("{}:{line}", path.display()),
            };
            let has_field = rule.name.is_some() || rule.needs_more_than_name();
            if !has_field {
                return Err(ConfigError::Invalid {
                    path: path.into(),
                    line,
                    message: format!(
                        "[[{}]] has no match field; give at least one of name, cmdline, exe, user, cgroup, unit",
                        kind.as_str()
                    ),
                });
            }
            rules.push(rule);
        }
        let fleet = fleet::validate(
            fleet::RawFleet {
                metrics: raw.metrics.as_ref(),
                warn: raw.warn.as_ref(),
                hooks: raw.hooks.as_ref(),
                notify: raw.notify.as_ref(),
                watch: &raw.watch,
            },
            &at,
        )?;
        Ok(Config {
            path: Some(path.to_path_buf()),
            run,
            rules,
            fleet,
        })
    }
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Looks a user name up in `ROOT/etc/passwd` (through [`crate::sense::users::Users`]).
pub fn passwd_lookup(root: &Path) -> impl Fn(&str) -> Option<u32> + use<> {
    let users = crate::sense::users::Users::load(root);
    move |name: &str| users.uid(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_users(_: &str) -> Option<u32> {
        None
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("t.toml"), &no_users)
    }

    /// A value of the wrong type names its line and what is expected there.
    #[test]
    fn a_value_of_the_wrong_type_says_what_is_expected() {
        for (text, line, want) in [
            (
                "[run]\nmem_min = [10, 5]\n",
                2,
                "expected a level: a number (percent) or a string",
            ),
            (
                "[run]\n\nswap_min_size = true\n",
                3,
                "such as \"10,5\" or \"800M,400M\"",
            ),
            (
                "[[avoid]]\nuser = -1\n",
                2,
                "a user name (a string) or a numeric uid",
            ),
            (
                "[[avoid]]\nuser = 4294967296\n",
                2,
                "a numeric uid from 0 to 4294967295",
            ),
        ] {
            let e = parse(text).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("t.toml:{line}")) && msg.contains(want),
                "{text}: {msg}"
            );
            assert!(!msg.contains("variant"), "{msg}");
        }
        // The right types still parse: a bare number, a string, a uid, a name.
        let c =
            parse("[run]\nmem_min = 7.5\nswap_min = \"10,5\"\n\n[[avoid]]\nuser = 113\n").unwrap();
        assert!(c.run.mem_min.is_some() && c.run.swap_min.is_some());
    }

    #[test]
    fn rules_keep_file_order_across_tables() {
        let c = parse(
            "[[avoid]]\nuser = 113\n\n[[protect]]\nname = \"^sshd$\"\noom_score_adj = -900\n\n[[prefer]]\ncmdline = \"renderer\"\n",
        )
        .unwrap();
        let kinds: Vec<_> = c.rules.iter().map(|r| r.kind).collect();
        assert_eq!(
            kinds,
            [RuleKind::Avoid, RuleKind::Protect, RuleKind::Prefer]
        );
        assert_eq!(c.rules[1].oom_score_adj, Some(-900));
        assert_eq!(c.rules[1].origin, "t.toml:4");
        assert_eq!(c.rules[0].user.as_ref().unwrap().uid, Some(113));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("[run]\nmem_min = \"10,5\"\nmem_mni = \"3\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml:3:") && e.contains("mem_mni"), "{e}");
        let e = parse("[[protect]]\nname = \"(\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml:2:") && e.contains("bad regex"), "{e}");
        let e = parse("\n[[protect]]\noom_score_adj = -900\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("t.toml:2:") && e.contains("no match field"),
            "{e}"
        );
        let e = parse("[run]\nterm_grace = \"2\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml:2:") && e.contains("no unit"), "{e}");
        let e = parse("[run]\nterm_grace = \"999999999s\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("t.toml:2:") && e.contains("at most 60s"),
            "{e}"
        );
        assert!(parse("[run]\nterm_grace = \"60s\"\n").is_ok());
        let e = parse("[[avoid]]\nname = \"x\"\noom_score_adj = 2000\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml:3:"), "{e}");
    }

    #[test]
    fn run_settings_parse() {
        let c = parse("[run]\nscope = \"cgroup:/a\"\nmem_min = \"20\"\npsi = \"full:10:2s\"\nterm_grace = \"500ms\"\ndry_run = true\n")
            .unwrap();
        assert_eq!(c.run.scope, Some(ScopeSpec::Cgroup("/a".into())));
        assert_eq!(c.run.term_grace, Some(Duration::from_millis(500)));
        assert_eq!(c.run.dry_run, Some(true));
        assert!(c.run.psi.is_some());
    }

    #[test]
    fn bare_number_levels() {
        // PCT may be a bare TOML number, as the shipped config's comments say.
        let c = parse("[run]\nmem_min = 10\nswap_min = 7.5\n").unwrap();
        assert_eq!(c.run.mem_min, LevelPair::parse_pct("10").ok());
        assert_eq!(c.run.swap_min, LevelPair::parse_pct("7.5").ok());
        // SIZE needs a unit: a bare number is refused with the list of units, at its line.
        let e = parse("[run]\n\nmem_min_size = 800\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("t.toml:3:") && e.contains("mem_min_size"),
            "{e}"
        );
        assert!(e.contains('M') && e.contains('G'), "{e}");
    }
}
