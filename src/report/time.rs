//! Event times as instants, for `--since`: the wall-clock text of a line prefix (dmesg -T,
//! iso, syslog, journal formats), or seconds since boot plus a known boot time (live sources).

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

use super::event::Time;

/// The instant of an event time. `boot`: when the machine whose monotonic stamps these are
/// booted (only for live sources of this boot). `now`: to place year-less syslog dates.
pub fn instant(t: &Time, boot: Option<Timestamp>, now: &Zoned) -> Option<Timestamp> {
    if let Some(w) = &t.wallclock
        && let Some(ts) = parse_wallclock(w, now)
    {
        return Some(ts);
    }
    let m = t.monotonic_s?;
    let boot = boot?;
    boot.checked_add(jiff::SignedDuration::from_secs_f64(m))
        .ok()
}

/// Wall-clock text in any of the prefix formats, read in the system time zone unless it
/// carries an offset.
pub fn parse_wallclock(w: &str, now: &Zoned) -> Option<Timestamp> {
    let tz = now.time_zone().clone();
    let w = w.trim();
    if let Ok(ts) = w.parse::<Timestamp>() {
        return Some(ts);
    }
    // ISO with a ",frac" or an offset without colon: normalise.
    let norm = w.replacen(',', ".", 1);
    if let Ok(ts) = norm.parse::<Timestamp>() {
        return Some(ts);
    }
    if let Ok(z) =
        jiff::fmt::strtime::parse("%Y-%m-%dT%H:%M:%S%.f%z", &norm).and_then(|b| b.to_timestamp())
    {
        return Some(z);
    }
    if let Ok(dt) = norm.replacen(' ', "T", 1).parse::<DateTime>() {
        return local(dt, &tz);
    }
    // journal short-full: "Mon 2024-01-02 03:04:05 UTC"
    if w.len() > 4 && w.as_bytes()[3] == b' ' {
        let rest = &w[4..];
        let mut it = rest.splitn(3, ' ');
        if let (Some(d), Some(t), zone) = (it.next(), it.next(), it.next())
            && let Ok(dt) = format!("{d}T{t}").parse::<DateTime>()
        {
            let tz = match zone {
                Some("UTC") | Some("GMT") => TimeZone::UTC,
                _ => tz.clone(),
            };
            if let Some(ts) = local(dt, &tz) {
                return Some(ts);
            }
        }
    }
    // short-unix: seconds since the epoch.
    if let Ok(secs) = w.parse::<f64>() {
        return jiff::SignedDuration::try_from_secs_f64(secs)
            .ok()
            .and_then(|d| Timestamp::from_duration(d).ok());
    }
    // dmesg -T: "Thu May 14 23:17:24 2020"
    if let Ok(b) = jiff::fmt::strtime::parse("%a %b %e %H:%M:%S %Y", w)
        && let Ok(dt) = b.to_datetime()
    {
        return local(dt, &tz);
    }
    // syslog and journal short(-precise): "May 19 18:14:43[.frac]" — the year is not
    // printed: the year of `now`, or the one before when that would lie after it (`now` is the
    // source's anchor, see [`year_anchor`]: then the dates of a log that runs over New Year
    // fall on both sides of it, in order).
    let year = now.year();
    for y in [year, year - 1] {
        if let Ok(b) = jiff::fmt::strtime::parse("%b %e %H:%M:%S%.f %Y", format!("{w} {y}"))
            && let Ok(dt) = b.to_datetime()
            && let Some(ts) = local(dt, &tz)
            && ts <= now.timestamp() + jiff::SignedDuration::from_hours(24)
        {
            return Some(ts);
        }
    }
    None
}

/// The reference that places a source's year-less dates (syslog, journal `short`): the time of
/// its last line when known, so that a log read long after it ends, or one that runs over New
/// Year, keeps one year per date in file order (each date in the year up to that last line:
/// one that comes later in the month order than the last line's is of the year before).
///
/// `last`: the wall-clock text of the source's last stamped line, when it could be read (an
/// uncompressed file's tail); `written`: when the source was last written (a file's mtime:
/// at or after its last line, so that line's date is placed by it), or now for a stream.
/// Without `last`, `written` itself is the reference (a compressed file's mtime is its last
/// line's time, as gzip, xz and zstd keep the original's). A source that spans more than a
/// year cannot be told apart from one that does not: its older dates land in the last year.
pub fn year_anchor(last: Option<&str>, written: &Zoned) -> Zoned {
    last.and_then(|w| parse_wallclock(w, written))
        .map(|ts| ts.to_zoned(written.time_zone().clone()))
        .unwrap_or_else(|| written.clone())
}

fn local(dt: DateTime, tz: &TimeZone) -> Option<Timestamp> {
    dt.to_zoned(tz.clone()).ok().map(|z| z.timestamp())
}

/// `--since` values, for `explain` and `events` alike: a duration ago (a DURATION, `15m`,
/// `2h`, or days, `3d`), RFC 3339, a date `YYYY-MM-DD`, a local time `YYYY-MM-DD HH:MM[:SS]`
/// (the system time zone), or a wall-clock text as kernel log prefixes print it (`dmesg -T`,
/// syslog, journal). A bare number is refused: `--since 15` is 15 what? (The contract's
/// DURATION: "a bare number is an error".)
pub fn parse_since(s: &str, now: &Zoned) -> Result<Timestamp, String> {
    let t = s.trim();
    let ago = if let Some(days) = t.strip_suffix('d') {
        days.parse::<f64>()
            .ok()
            .filter(|d| d.is_finite() && *d >= 0.0 && *d < 1e6)
            .map(|d| std::time::Duration::from_secs_f64(d * 86400.0))
    } else {
        t.parse::<crate::values::Dur>().ok().map(|d| d.0)
    };
    if let Some(d) = ago {
        let d = jiff::SignedDuration::try_from(d).map_err(|e| format!("--since {s}: {e}"))?;
        return now
            .timestamp()
            .checked_sub(d)
            .map_err(|e| format!("--since {s}: {e}"));
    }
    if !t.is_empty() && t.parse::<f64>().is_ok() {
        return Err(format!(
            "--since '{s}': a bare number has no unit; give a duration ago with its unit \
             ({t}m, {t}h, {t}d), or a time"
        ));
    }
    if let Some(ts) = parse_wallclock(t, now) {
        return Ok(ts);
    }
    if let Ok(d) = t.parse::<jiff::civil::Date>()
        && let Some(ts) = local(
            d.to_datetime(jiff::civil::Time::midnight()),
            now.time_zone(),
        )
    {
        return Ok(ts);
    }
    if let Ok(dt) = format!("{}:00", t.replacen(' ', "T", 1)).parse::<DateTime>()
        && let Some(ts) = local(dt, now.time_zone())
    {
        return Ok(ts);
    }
    Err(format!(
        "--since '{s}': not a time; give RFC 3339 (2026-11-30T08:00:00Z), a date (2026-11-30), \
         a local time (2026-11-30 08:00) or a duration ago (15m, 2h, 3d)"
    ))
}

/// Wall-clock text of a log prefix as RFC 3339 with milliseconds and the offset of `now`'s time
/// zone (`dmesg -T` and syslog print local time without a zone; syslog prints no year either:
/// see [`parse_wallclock`]). `None` when the text is no time this knows.
pub fn wallclock_rfc3339(w: &str, now: &Zoned) -> Option<String> {
    let ts = parse_wallclock(w, now)?;
    Some(
        ts.to_zoned(now.time_zone().clone())
            .strftime("%Y-%m-%dT%H:%M:%S%.3f%:z")
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Zoned {
        "2026-11-30T18:00:00[UTC]".parse().unwrap()
    }

    #[test]
    fn wallclock_formats() {
        let n = now();
        let ts = |s: &str| parse_wallclock(s, &n).map(|t| t.to_string());
        assert_eq!(
            ts("2024-02-20T19:15:36Z").as_deref(),
            Some("2024-02-20T19:15:36Z")
        );
        assert_eq!(
            ts("2024-02-20T19:15:36,500000+00:00").as_deref(),
            Some("2024-02-20T19:15:36.5Z")
        );
        assert_eq!(
            ts("Thu May 14 23:17:24 2020").as_deref(),
            Some("2020-05-14T23:17:24Z")
        );
        assert_eq!(
            ts("May 19 18:14:43").as_deref(),
            Some("2026-05-19T18:14:43Z")
        );
        assert_eq!(
            ts("Dec 19 18:14:43").as_deref(),
            Some("2025-12-19T18:14:43Z")
        );
        assert_eq!(
            ts("Mon 2024-01-01 03:04:05 UTC").as_deref(),
            Some("2024-01-01T03:04:05Z")
        );
        assert_eq!(
            ts("1700000000.5").as_deref(),
            Some("2023-11-14T22:13:20.5Z")
        );
    }

    /// Year-less dates take their year from the source's anchor, its last line: a log that
    /// runs over New Year, read in December, keeps its dates in order on both sides of it.
    #[test]
    fn year_less_dates_are_placed_by_the_sources_last_line() {
        let read_on: Zoned = "2026-12-07T12:00:00[UTC]".parse().unwrap();
        let anchor = year_anchor(Some("Jan  2 10:00:00"), &read_on);
        assert_eq!(anchor.timestamp().to_string(), "2026-01-02T10:00:00Z");
        let ts = |w: &str| parse_wallclock(w, &anchor).map(|t| t.to_string());
        assert_eq!(
            ts("Nov 30 10:00:00").as_deref(),
            Some("2025-11-30T10:00:00Z")
        );
        assert_eq!(
            ts("Dec 20 10:00:00").as_deref(),
            Some("2025-12-20T10:00:00Z")
        );
        assert_eq!(
            ts("Jan  2 10:00:00").as_deref(),
            Some("2026-01-02T10:00:00Z")
        );
        // No last line known: the anchor is when the source was written (or now).
        assert_eq!(year_anchor(None, &read_on), read_on);
        assert_eq!(year_anchor(Some("not a time"), &read_on), read_on);
        // A last line of a full date: that instant.
        assert_eq!(
            year_anchor(Some("2025-03-01T00:00:00Z"), &read_on)
                .timestamp()
                .to_string(),
            "2025-03-01T00:00:00Z"
        );
    }

    /// journalctl `short-precise` keeps its fraction of a second.
    #[test]
    fn short_precise_keeps_its_fraction() {
        let n = now();
        let ts = |s: &str| parse_wallclock(s, &n).map(|t| t.to_string());
        assert_eq!(
            ts("Nov 30 17:35:10.123456").as_deref(),
            Some("2026-11-30T17:35:10.123456Z")
        );
        assert_eq!(
            wallclock_rfc3339("Nov 30 17:35:10.25", &n).as_deref(),
            Some("2026-11-30T17:35:10.250+00:00")
        );
    }

    #[test]
    fn since_values() {
        let n = now();
        assert_eq!(
            parse_since("2h", &n).unwrap().to_string(),
            "2026-11-30T16:00:00Z"
        );
        assert_eq!(
            parse_since("2026-11-30", &n).unwrap().to_string(),
            "2026-11-30T00:00:00Z"
        );
        assert_eq!(
            parse_since("2026-11-30 17:30", &n).unwrap().to_string(),
            "2026-11-30T17:30:00Z"
        );
        assert!(parse_since("yesterday-ish", &n).is_err());
        assert_eq!(
            parse_since("3d", &n).unwrap().to_string(),
            "2026-11-27T18:00:00Z"
        );
        assert_eq!(
            parse_since("2026-11-30T08:00:00Z", &n).unwrap().to_string(),
            "2026-11-30T08:00:00Z"
        );
        // A bare number is no time: the epoch's 15th second is not what `--since 15` means.
        for bare in ["15", "1700000000", "7.5"] {
            let e = parse_since(bare, &n).unwrap_err();
            assert!(e.contains("bare number"), "{bare}: {e}");
        }
    }

    #[test]
    fn wallclock_text_becomes_rfc3339_in_the_readers_zone() {
        let n = now();
        let r = |s: &str| wallclock_rfc3339(s, &n);
        assert_eq!(
            r("Thu May 14 23:17:24 2020").as_deref(),
            Some("2020-05-14T23:17:24.000+00:00")
        );
        assert_eq!(
            r("Mar  2 17:35:10").as_deref(),
            Some("2026-03-02T17:35:10.000+00:00")
        );
        assert_eq!(
            r("2024-02-20T19:15:36,500000+01:00").as_deref(),
            Some("2024-02-20T18:15:36.500+00:00")
        );
        assert_eq!(
            r("1700000000.25").as_deref(),
            Some("2023-11-14T22:13:20.250+00:00")
        );
        assert_eq!(r("not a time"), None);
    }
}
