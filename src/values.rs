//! Value syntax shared by the command line and the config file (`docs/cli-contract.md`):
//! PCT, SIZE, DURATION, level pairs, PSI triggers, scopes and kill units. Each parser names
//! the bad value and says what would have been accepted, so the CLI can print it as is.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Why a value did not parse. The message is complete: it quotes the value and lists what fits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ValueError> {
    Err(ValueError(msg.into()))
}

fn parse_number(s: &str, what: &str) -> Result<f64, ValueError> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| ValueError(format!("{what}: '{s}' is not a number")))?;
    if !v.is_finite() || v < 0.0 {
        return err(format!(
            "{what}: '{s}' must be a finite number of 0 or more"
        ));
    }
    Ok(v)
}

/// A percentage of the scope's total, 0 to 100.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Pct(pub f64);

impl FromStr for Pct {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let t = s.trim();
        let t = t.strip_suffix('%').unwrap_or(t);
        let v = parse_number(t, "percentage")?;
        if v > 100.0 {
            return err(format!("percentage '{s}' is above 100"));
        }
        Ok(Pct(v))
    }
}

impl fmt::Display for Pct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

/// A size in bytes, written with a binary unit (`512M`, `1.5GiB`, `64k`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

const SIZE_UNITS: &str = "K, M, G or T (1024-based; KiB/MiB/GiB/TiB and KB/MB/GB/TB also accepted)";

impl FromStr for Size {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        if num.is_empty() {
            return err(format!(
                "size '{s}' does not start with a number (e.g. 512M)"
            ));
        }
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" => {
                return err(format!(
                    "size '{s}' has no unit: write it with {SIZE_UNITS}, e.g. {s}M"
                ));
            }
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            "t" | "tb" | "tib" => 1 << 40,
            other => {
                return err(format!(
                    "size '{s}': unknown unit '{other}'; use {SIZE_UNITS}"
                ));
            }
        };
        let v = parse_number(num, "size")?;
        let bytes = v * mult as f64;
        if bytes > u64::MAX as f64 / 2.0 {
            return err(format!("size '{s}' is too large"));
        }
        Ok(Size(bytes.round() as u64))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (unit, m) in [
            ("T", 1u64 << 40),
            ("G", 1 << 30),
            ("M", 1 << 20),
            ("K", 1 << 10),
        ] {
            if b >= m && b % m == 0 {
                return write!(f, "{}{unit}", b / m);
            }
        }
        if b >= 1 << 20 {
            write!(f, "{:.1}M", b as f64 / (1u64 << 20) as f64)
        } else {
            write!(f, "{b}B")
        }
    }
}

/// The one size format of every command's text output, from kB: binary units with a space,
/// one decimal below 100 of the unit (`0 KiB`, `512 KiB`, `12.3 MiB`, `400 MiB`, `2.4 GiB`).
/// JSON output keeps integers in kB (`_kb`); this is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanKb(pub u64);

/// A figure to one decimal (`85.2`; `85` when the decimal is 0), written with integer
/// arithmetic: Rust's float formatting (`{:.1}`) runs code and reads tables that nothing on the
/// guard loop's usual path touches, so in a daemon they are read from storage at first use
/// (the warning's line, as memory runs short). Rounds ten times the figure half away from
/// zero, without the C library's `round` (see [`round_to`]): `1.45` gives `1.5` where `{:.1}`
/// gives `1.4` (the binary `1.45` lies below it).
#[derive(Debug, Clone, Copy)]
pub struct Tenths(pub f64);

impl fmt::Display for Tenths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Ten times the figure within `round_half_away`'s range (below 2^52).
        if !self.0.is_finite() || self.0.abs() >= 1e14 {
            return write!(f, "{}", self.0);
        }
        let t = round_half_away(self.0 * 10.0);
        let sign = if t < 0 { "-" } else { "" };
        let (whole, tenth) = (t.unsigned_abs() / 10, t.unsigned_abs() % 10);
        if tenth == 0 {
            write!(f, "{sign}{whole}")
        } else {
            write!(f, "{sign}{whole}.{tenth}")
        }
    }
}

impl fmt::Display for HumanKb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
        let kb = self.0;
        if kb < 1024 {
            return write!(f, "{kb} KiB");
        }
        // In integers (as float formatting would print it: the exact quotient, ties to even).
        // The daemon logs sizes on its kill path, and float formatting there reads tables
        // picked by the value's exponent: pages a warm-up would have to touch for every
        // magnitude (see `daemon::warm_up`). 64-bit only: 128-bit division is a function of
        // its own, elsewhere in the binary.
        let mut den: u64 = 1024;
        let mut u = 1;
        while kb / den >= 1024 && u < UNITS.len() - 1 {
            den *= 1024;
            u += 1;
        }
        // kb = q * den + r, r < den <= 2^30: r * 20 fits, and q <= 2^34 (q * 10 fits).
        let (q, r) = (kb / den, kb % den);
        // Decide on the rounded value, so 99.96 prints as `100 MiB`, not `100.0 MiB`.
        let tenths = round_even(q * 10 + (r * 10) / den, (r * 10) % den, den);
        if tenths < 1000 {
            write!(f, "{}.{} {}", tenths / 10, tenths % 10, UNITS[u])
        } else {
            write!(f, "{} {}", round_even(q, r, den), UNITS[u])
        }
    }
}

/// `whole + rem / den` (with `rem < den`) rounded to an integer, ties to even.
fn round_even(whole: u64, rem: u64, den: u64) -> u64 {
    match (2 * rem).cmp(&den) {
        std::cmp::Ordering::Less => whole,
        std::cmp::Ordering::Greater => whole + 1,
        std::cmp::Ordering::Equal => whole + (whole & 1),
    }
}

/// `x` rounded to `1/scale` (`round_to(0.125, 100.0)` is 0.13), as `(x * scale).round() / scale`
/// gives it, without the C library's `round`: that function sits apart from the daemon's packed
/// code (link/hot-first.sh), and the kill record would fault its page in. Ties go away from zero.
pub fn round_to(x: f64, scale: f64) -> f64 {
    let y = x * scale;
    // Beyond 2^52 every float is a whole number (and NaN or infinity stays as it is).
    if y.is_nan() || y.abs() >= 4_503_599_627_370_496.0 {
        return y / scale;
    }
    // -0.4 rounds to -0.0, as f64::round gives it.
    (round_half_away(y) as f64).copysign(y) / scale
}

/// `y` (finite, under 2^52 in size) rounded to a whole number, ties away from zero, without
/// the C library's `round` (see [`round_to`]).
fn round_half_away(y: f64) -> i64 {
    let whole = y as i64;
    let frac = y - whole as f64; // exact below 2^52
    if frac >= 0.5 {
        whole + 1
    } else if frac <= -0.5 {
        whole - 1
    } else {
        whole
    }
}

/// [`HumanKb`] as a string.
pub fn human_kb(kb: u64) -> String {
    HumanKb(kb).to_string()
}

/// A duration with a unit: `500ms`, `1.5s`, `2m`, `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl Dur {
    /// An interval of at least 100 ms: a shorter one (`0s` included) would keep the daemon
    /// busy with nothing but what the interval paces.
    pub fn parse_interval(s: &str) -> Result<Dur, ValueError> {
        let d: Dur = s.parse()?;
        if d.0 < Duration::from_millis(100) {
            return err(format!("interval '{s}' is too short: write at least 100ms"));
        }
        Ok(d)
    }
}

impl FromStr for Dur {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        if num.is_empty() {
            return err(format!(
                "duration '{s}' does not start with a number (e.g. 2s)"
            ));
        }
        let secs_per: f64 = match unit.trim() {
            "" => {
                return err(format!(
                    "duration '{s}' has no unit: write ms, s, m or h, e.g. {s}s"
                ));
            }
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => {
                return err(format!(
                    "duration '{s}': unknown unit '{other}'; use ms, s, m or h"
                ));
            }
        };
        let v = parse_number(num, "duration")?;
        let secs = v * secs_per;
        if secs > 1e9 {
            return err(format!("duration '{s}' is too long"));
        }
        Ok(Dur(Duration::from_secs_f64(secs)))
    }
}

/// The longest `term_grace` (between SIGTERM and SIGKILL): meanwhile the guard waits for that
/// victim and chooses no other while memory stays above the KILL level, so a grace of hours
/// would leave it blind. systemd's default stop timeout is 90 s; a service that needs longer to
/// end cleanly is better protected or avoided than waited for at the bottom of memory.
pub const TERM_GRACE_MAX: Duration = Duration::from_secs(60);

/// `term_grace`: a [`Dur`] of at most [`TERM_GRACE_MAX`].
pub fn parse_term_grace(s: &str) -> Result<Dur, ValueError> {
    let d = s.parse::<Dur>()?;
    if d.0 > TERM_GRACE_MAX {
        return err(format!(
            "term grace '{s}' is longer than {}: the guard chooses no other victim while it \
             waits, so the grace is at most {}",
            Dur(TERM_GRACE_MAX),
            Dur(TERM_GRACE_MAX)
        ));
    }
    Ok(d)
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms % 1000 == 0 {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

/// A level: a share of the scope's total or an absolute size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Level {
    Pct(Pct),
    Size(Size),
}

impl Level {
    /// The level in kB for a scope whose total is `total_kb`.
    pub fn kb(&self, total_kb: u64) -> u64 {
        match self {
            Level::Pct(p) => (total_kb as f64 * p.0 / 100.0) as u64,
            Level::Size(s) => s.0 / 1024,
        }
    }
    fn half(&self) -> Level {
        match self {
            Level::Pct(p) => Level::Pct(Pct(p.0 / 2.0)),
            Level::Size(s) => Level::Size(Size(s.0 / 2)),
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Level::Pct(p) => p.fmt(f),
            Level::Size(s) => s.fmt(f),
        }
    }
}

/// `TERM[,KILL]`: below TERM send SIGTERM, below KILL send SIGKILL. KILL omitted = half of TERM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelPair {
    pub term: Level,
    pub kill: Level,
}

impl LevelPair {
    pub fn parse_pct(s: &str) -> Result<Self, ValueError> {
        Self::parse_with(s, |x| x.parse::<Pct>().map(Level::Pct))
    }
    pub fn parse_size(s: &str) -> Result<Self, ValueError> {
        Self::parse_with(s, |x| x.parse::<Size>().map(Level::Size))
    }
    fn parse_with(
        s: &str,
        one: impl Fn(&str) -> Result<Level, ValueError>,
    ) -> Result<Self, ValueError> {
        let mut parts = s.split(',');
        let term = one(parts.next().unwrap_or(""))?;
        let kill = match parts.next() {
            Some(k) => one(k)?,
            None => term.half(),
        };
        if parts.next().is_some() {
            return err(format!(
                "level pair '{s}' has more than two values; write TERM[,KILL]"
            ));
        }
        let bigger = match (term, kill) {
            (Level::Pct(t), Level::Pct(k)) => k.0 > t.0,
            (Level::Size(t), Level::Size(k)) => k.0 > t.0,
            _ => return err(format!("level pair '{s}' mixes a percentage and a size")),
        };
        if bigger {
            return err(format!(
                "level pair '{s}': the KILL level ({kill}) is above the TERM level ({term}); \
                 KILL must be the lower one"
            ));
        }
        Ok(LevelPair { term, kill })
    }
}

impl fmt::Display for LevelPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.term, self.kill)
    }
}

/// Which PSI line a trigger watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PsiKind {
    Some,
    Full,
}

impl PsiKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PsiKind::Some => "some",
            PsiKind::Full => "full",
        }
    }
}

/// `some|full:PCT:DURATION`: stall share above PCT over the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PsiSpec {
    pub kind: PsiKind,
    pub pct: Pct,
    pub window: Duration,
}

impl FromStr for PsiSpec {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 3 {
            return err(format!(
                "PSI trigger '{s}' must be some|full:PCT:DURATION, e.g. full:20:2s"
            ));
        }
        let kind = match parts[0] {
            "some" => PsiKind::Some,
            "full" => PsiKind::Full,
            other => {
                return err(format!(
                    "PSI trigger '{s}': '{other}' is not 'some' or 'full'"
                ));
            }
        };
        let pct: Pct = parts[1].parse()?;
        let window = parts[2].parse::<Dur>()?.0;
        if window < Duration::from_millis(100) || window > Duration::from_secs(600) {
            return err(format!(
                "PSI trigger '{s}': the window must be between 100ms and 10m"
            ));
        }
        Ok(PsiSpec { kind, pct, window })
    }
}

impl fmt::Display for PsiSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.kind.as_str(),
            self.pct.0,
            Dur(self.window)
        )
    }
}

/// What the daemon watches: the whole machine or one cgroup (and its descendants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeSpec {
    System,
    /// As written by the user: a cgroup directory or a path as in `/proc/PID/cgroup`.
    Cgroup(PathBuf),
}

impl FromStr for ScopeSpec {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        if s == "system" {
            return Ok(ScopeSpec::System);
        }
        match s.strip_prefix("cgroup:") {
            Some(p) if p.starts_with('/') => Ok(ScopeSpec::Cgroup(PathBuf::from(p))),
            Some(p) => err(format!(
                "scope '{s}': the cgroup path '{p}' must be absolute (e.g. cgroup:/system.slice/nginx.service)"
            )),
            None => err(format!("scope '{s}' must be 'system' or 'cgroup:PATH'")),
        }
    }
}

impl fmt::Display for ScopeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScopeSpec::System => f.write_str("system"),
            ScopeSpec::Cgroup(p) => write!(f, "cgroup:{}", p.display()),
        }
    }
}

/// What one kill decision signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KillUnit {
    /// The victim process only.
    #[default]
    Process,
    /// The victim and all its descendants.
    Tree,
    /// Every process of the victim's leaf cgroup (v2: `cgroup.kill`).
    Cgroup,
}

impl FromStr for KillUnit {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        match s {
            "process" => Ok(KillUnit::Process),
            "tree" => Ok(KillUnit::Tree),
            "cgroup" => Ok(KillUnit::Cgroup),
            _ => err(format!("kill unit '{s}' must be process, tree or cgroup")),
        }
    }
}

impl fmt::Display for KillUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KillUnit::Process => "process",
            KillUnit::Tree => "tree",
            KillUnit::Cgroup => "cgroup",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenths_are_written_without_float_formatting() {
        for (x, text) in [
            (85.0, "85"),
            (85.24, "85.2"),
            (72.5, "72.5"),
            (0.04, "0"),
            (99.96, "100"),
            (-1.26, "-1.3"),
            (0.0, "0"),
        ] {
            assert_eq!(Tenths(x).to_string(), text, "{x}");
            // What `{:.1}` says for these, without a trailing ".0" (it differs at binary
            // figures just below a half: see `Tenths`).
            let std = format!("{x:.1}");
            assert_eq!(std.strip_suffix(".0").unwrap_or(&std), text, "{x}");
        }
        assert_eq!(Tenths(f64::NAN).to_string(), "NaN");
    }

    #[test]
    fn pct_accepts_decimals_and_percent_sign() {
        assert_eq!("10".parse::<Pct>().unwrap(), Pct(10.0));
        assert_eq!("7.5".parse::<Pct>().unwrap(), Pct(7.5));
        assert_eq!("10%".parse::<Pct>().unwrap(), Pct(10.0));
        assert!("101".parse::<Pct>().is_err());
        assert!("-1".parse::<Pct>().is_err());
        assert!("ten".parse::<Pct>().is_err());
    }

    #[test]
    fn size_units_are_binary_and_case_insensitive() {
        assert_eq!("512M".parse::<Size>().unwrap(), Size(512 << 20));
        assert_eq!("1.5GiB".parse::<Size>().unwrap(), Size(3 << 29));
        assert_eq!("64k".parse::<Size>().unwrap(), Size(64 << 10));
        assert_eq!("2TB".parse::<Size>().unwrap(), Size(2 << 40));
        let e = "512".parse::<Size>().unwrap_err().0;
        assert!(e.contains("no unit") && e.contains("K, M, G or T"), "{e}");
        assert!("5X".parse::<Size>().unwrap_err().0.contains("unknown unit"));
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(
            "500ms".parse::<Dur>().unwrap().0,
            Duration::from_millis(500)
        );
        assert_eq!(
            "1.5s".parse::<Dur>().unwrap().0,
            Duration::from_millis(1500)
        );
        assert_eq!("2m".parse::<Dur>().unwrap().0, Duration::from_secs(120));
        assert_eq!("1h".parse::<Dur>().unwrap().0, Duration::from_secs(3600));
        assert!("2".parse::<Dur>().unwrap_err().0.contains("no unit"));
        // An interval (`--report-interval`, the protection scan's) is at least 100 ms.
        assert!(
            Dur::parse_interval("0s")
                .unwrap_err()
                .0
                .contains("at least 100ms")
        );
        assert!(Dur::parse_interval("99ms").is_err());
        assert_eq!(
            Dur::parse_interval("100ms").unwrap().0,
            Duration::from_millis(100)
        );
        assert!(Dur::parse_interval("2").unwrap_err().0.contains("no unit"));
    }

    #[test]
    fn level_pairs_default_kill_to_half_and_refuse_kill_above_term() {
        let p = LevelPair::parse_pct("10").unwrap();
        assert_eq!(p.kill, Level::Pct(Pct(5.0)));
        let p = LevelPair::parse_size("800M,400M").unwrap();
        assert_eq!(p.term, Level::Size(Size(800 << 20)));
        assert_eq!(p.kill.kb(0), 400 * 1024);
        assert!(
            LevelPair::parse_pct("5,10")
                .unwrap_err()
                .0
                .contains("above")
        );
        assert!(LevelPair::parse_pct("5,4,3").is_err());
        assert_eq!(Level::Pct(Pct(10.0)).kb(1000), 100);
    }

    #[test]
    fn psi_scope_and_kill_unit() {
        let p: PsiSpec = "full:20:2s".parse().unwrap();
        assert_eq!(p.kind, PsiKind::Full);
        assert_eq!(p.window, Duration::from_secs(2));
        assert!("half:20:2s".parse::<PsiSpec>().is_err());
        assert!("full:20".parse::<PsiSpec>().is_err());
        assert!("full:20:2".parse::<PsiSpec>().is_err());
        assert_eq!("system".parse::<ScopeSpec>().unwrap(), ScopeSpec::System);
        assert_eq!(
            "cgroup:/a/b".parse::<ScopeSpec>().unwrap(),
            ScopeSpec::Cgroup("/a/b".into())
        );
        assert!("cgroup:a".parse::<ScopeSpec>().is_err());
        assert!("box".parse::<ScopeSpec>().is_err());
        assert_eq!("tree".parse::<KillUnit>().unwrap(), KillUnit::Tree);
        assert!("all".parse::<KillUnit>().is_err());
    }

    #[test]
    fn one_size_format_for_people() {
        let cases = [
            (0, "0 KiB"),
            (1023, "1023 KiB"),
            (1024, "1.0 MiB"),
            (12_595, "12.3 MiB"),
            (102_359, "100 MiB"),
            (409_600, "400 MiB"),
            (2_467_840, "2.4 GiB"),
            (65_392, "63.9 MiB"),
            (24 << 20, "24.0 GiB"),
            (3 << 30, "3.0 TiB"),
        ];
        for (kb, text) in cases {
            assert_eq!(human_kb(kb), text, "{kb} kB");
        }
    }

    /// `round_to` against `f64::round`, bit for bit: ties both ways, ±0, the edge of 2^52,
    /// infinities, NaN, and values over 27 orders of magnitude.
    #[test]
    fn rounding_without_libm_matches_f64_round() {
        let mut xs = vec![
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.5,
            2.5,
            -2.5,
            0.49999999999999994,
            -0.49999999999999994,
            4_503_599_627_370_495.5,
            4_503_599_627_370_497.0,
            1e300,
            -1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
        ];
        let mut v = 1e-9_f64;
        while v < 1e18 {
            xs.extend([v, -v, v + 0.005, v * 1.000_000_1]);
            v *= 1.37;
        }
        xs.extend((0..200_000).map(|i| i as f64 * 0.000_5 - 50.0));
        for x in xs {
            for scale in [1.0, 10.0, 100.0] {
                let want = (x * scale).round() / scale;
                let got = round_to(x, scale);
                assert_eq!(got.to_bits(), want.to_bits(), "round_to({x:e}, {scale})");
            }
        }
        assert!(round_to(f64::NAN, 100.0).is_nan());
    }

    /// The format in integers prints what float formatting of the quotient printed (the
    /// version before it): every size up to 2 GiB in steps that cover each MiB and GiB
    /// boundary and the ties (`4.75 MiB` is 4864 kB, printed `4.8`; `2.25 MiB`, `2.2`),
    /// and large sizes up to u64::MAX.
    #[test]
    fn the_size_format_in_integers_matches_float_formatting() {
        fn by_float(kb: u64) -> String {
            const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
            if kb < 1024 {
                return format!("{kb} KiB");
            }
            let mut v = kb as f64;
            let mut u = 0;
            while v >= 1024.0 && u < UNITS.len() - 1 {
                v /= 1024.0;
                u += 1;
            }
            if (v * 10.0).round() / 10.0 < 100.0 {
                format!("{v:.1} {}", UNITS[u])
            } else {
                format!("{v:.0} {}", UNITS[u])
            }
        }
        let mut kbs: Vec<u64> = (0..300_000).collect();
        kbs.extend((0..2_100_000u64).step_by(97));
        kbs.extend((0..(2u64 << 30)).step_by(104_729));
        for unit in [1u64 << 10, 1 << 20, 1 << 30] {
            for k in [1u64, 2, 99, 100, 999, 1000, 1023, 1024] {
                for d in 0..64 {
                    kbs.push((k * unit).saturating_add(d).saturating_sub(32));
                }
            }
        }
        kbs.extend([u64::MAX, u64::MAX - 1, 1 << 62, (1 << 53) + 1]);
        assert_eq!(human_kb(4864), "4.8 MiB");
        assert_eq!(human_kb(2304), "2.2 MiB");
        for kb in kbs {
            assert_eq!(human_kb(kb), by_float(kb), "{kb} kB");
        }
    }
}

/// `s` safe to print on a terminal or in a log line: control characters (C0, DEL, C1) are
/// escaped as `\n`, `\t`, `\r`, `\xNN` / `\u{NN}`, bidi overrides as `\u{...}`, and a backslash
/// as `\\`, so a process name or cmdline chosen by any user cannot move the cursor, recolour
/// the terminal or forge a line. Borrowed when nothing needs escaping. (JSON output does not
/// use this: serde escapes exactly.)
pub fn escape_text(s: &str) -> std::borrow::Cow<'_, str> {
    fn bad(c: char) -> bool {
        moves_the_terminal(c) || c == '\\'
    }
    if !s.chars().any(bad) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            c if (c as u32) < 0x80 && bad(c) => {
                use std::fmt::Write as _;
                let _ = write!(o, "\\x{:02x}", c as u32);
            }
            c if bad(c) => {
                use std::fmt::Write as _;
                let _ = write!(o, "\\u{{{:x}}}", c as u32);
            }
            c => o.push(c),
        }
    }
    std::borrow::Cow::Owned(o)
}

/// A control character or a bidi override: what [`escape_text`] must escape for a terminal.
fn moves_the_terminal(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Multi-line text made safe for a terminal line by line: a line with a control character or
/// a bidi override is escaped whole ([`escape_text`]); other lines stay as they are, their
/// backslashes (systemd's escaped unit names in cgroup paths) included. Borrowed when no line
/// needs it.
pub fn escape_lines(text: &str) -> std::borrow::Cow<'_, str> {
    let risky = |l: &str| l.chars().any(|c| c != '\n' && moves_the_terminal(c));
    if !risky(text) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        if risky(body) {
            out.push_str(&escape_text(body));
        } else {
            out.push_str(body);
        }
        out.push_str(nl);
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod escape_tests {
    use super::{escape_lines, escape_text};

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_text("plain name"), "plain name");
        assert_eq!(
            escape_text("a\x1b[31mb\nc\td\\e\x7f\u{9b}\u{202e}"),
            "a\\x1b[31mb\\nc\\td\\\\e\\x7f\\u{9b}\\u{202e}"
        );
    }

    #[test]
    fn lines_are_escaped_only_where_they_need_it() {
        let text = "cgroup /system.slice/dev-x\\x2d1.swap\nname ev\x1b[31mil\ty\n";
        assert_eq!(
            escape_lines(text),
            "cgroup /system.slice/dev-x\\x2d1.swap\nname ev\\x1b[31mil\\ty\n"
        );
        assert!(matches!(
            escape_lines("a\nb\n"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
