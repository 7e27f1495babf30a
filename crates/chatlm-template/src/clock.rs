//! The clock behind `strftime_now`, and Python's `strftime` for it.
//!
//! Templates such as Llama 3.1's print today's date; tests and reproducible data pipelines need that
//! date fixed, so a request may carry its own `now` (see [`ChatRequest::now`](crate::ChatRequest::now)).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A calendar date and time without a time zone, what Python's naive `datetime.now()` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateTime {
    /// Year, e.g. 2025.
    pub year: i32,
    /// Month 1..=12.
    pub month: u32,
    /// Day of month 1..=31.
    pub day: u32,
    /// Hour 0..=23.
    pub hour: u32,
    /// Minute 0..=59.
    pub minute: u32,
    /// Second 0..=59.
    pub second: u32,
}

const MONTHS: [&str; 12] = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November",
    "December",
];
const WEEKDAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(if m <= 2 { y - 1 } else { y });
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m, d)
}

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

impl DateTime {
    /// The current UTC time of this machine. (Python's `datetime.now()` is local time; servers and CI
    /// run in UTC, and a fixed [`ChatRequest::now`](crate::ChatRequest::now) makes renders reproducible.)
    pub fn now_utc() -> DateTime {
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        DateTime::from_unix(secs)
    }

    /// The UTC date and time `secs` seconds after the Unix epoch.
    pub fn from_unix(secs: i64) -> DateTime {
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let rem = secs.rem_euclid(86_400) as u32;
        DateTime { year, month, day, hour: rem / 3600, minute: rem / 60 % 60, second: rem % 60 }
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS` (also with a space, or just `YYYY-MM-DD`), Python's `isoformat()`.
    ///
    /// ```
    /// let t = chatlm_template::DateTime::parse("2025-03-09T14:05:00").unwrap();
    /// assert_eq!(t.strftime("%d %b %Y %H:%M"), "09 Mar 2025 14:05");
    /// ```
    pub fn parse(s: &str) -> Option<DateTime> {
        let s = s.trim();
        let (date, time) = match s.split_once(['T', ' ']) {
            Some((d, t)) => (d, Some(t)),
            None => (s, None),
        };
        let mut d = date.splitn(3, '-');
        let year: i32 = d.next()?.parse().ok()?;
        let month: u32 = d.next()?.parse().ok()?;
        let day: u32 = d.next()?.parse().ok()?;
        let (mut hour, mut minute, mut second) = (0, 0, 0);
        if let Some(t) = time {
            // Fractions of a second are accepted and ignored.
            let t = t.split('.').next().unwrap_or(t);
            let mut p = t.splitn(3, ':');
            hour = p.next()?.parse().ok()?;
            minute = p.next().map(str::parse).transpose().ok()?.unwrap_or(0);
            second = p.next().map(str::parse).transpose().ok()?.unwrap_or(0);
        }
        let dim = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if is_leap(year) => 29,
            2 => 28,
            _ => return None,
        };
        if day == 0 || day > dim || hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        Some(DateTime { year, month, day, hour, minute, second })
    }

    fn weekday(&self) -> usize {
        // 1970-01-01 was a Thursday (index 3 from Monday).
        (days_from_civil(self.year, self.month, self.day) + 3).rem_euclid(7) as usize
    }

    fn day_of_year(&self) -> u32 {
        (days_from_civil(self.year, self.month, self.day) - days_from_civil(self.year, 1, 1)) as u32 + 1
    }

    /// Formats like Python's `datetime.strftime` on Linux (glibc): the C89 directives, `%e %F %T %D %R
    /// %u %C %G %V %s`-style extras where cheap, and glibc's `-` flag (`%-d`) that drops padding.
    /// Unknown directives are copied as written, as glibc does.
    pub fn strftime(&self, format: &str) -> String {
        use fmt::Write as _;
        // Every piece is written straight into the result (templates call this once per render,
        // a `String` per directive showed in profiles). Writing to a `String` cannot fail.
        let mut out = String::with_capacity(format.len() + 16);
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let mut no_pad = false;
            if chars.peek() == Some(&'-') {
                no_pad = true;
                chars.next();
            }
            let Some(spec) = chars.next() else {
                out.push('%');
                break;
            };
            let num = |out: &mut String, v: u32, width: usize| {
                let _ = if no_pad { write!(out, "{v}") } else { write!(out, "{v:0width$}") };
            };
            macro_rules! w {
                ($($arg:tt)*) => {{
                    let _ = write!(out, $($arg)*);
                }};
            }
            let hour12 = match self.hour % 12 {
                0 => 12,
                h => h,
            };
            let (year, month, day) = (self.year, self.month, self.day);
            let (hour, minute, second) = (self.hour, self.minute, self.second);
            match spec {
                'a' => out.push_str(&WEEKDAYS[self.weekday()][..3]),
                'A' => out.push_str(WEEKDAYS[self.weekday()]),
                'b' | 'h' => out.push_str(&MONTHS[month as usize - 1][..3]),
                'B' => out.push_str(MONTHS[month as usize - 1]),
                'd' => num(&mut out, day, 2),
                'e' if no_pad => w!("{day}"),
                'e' => w!("{day:2}"),
                'm' => num(&mut out, month, 2),
                'y' => num(&mut out, year.rem_euclid(100) as u32, 2),
                'Y' => w!("{year}"),
                'C' => num(&mut out, (year / 100) as u32, 2),
                'H' => num(&mut out, hour, 2),
                'I' => num(&mut out, hour12, 2),
                'M' => num(&mut out, minute, 2),
                'S' => num(&mut out, second, 2),
                'p' => out.push_str(if hour < 12 { "AM" } else { "PM" }),
                'j' => num(&mut out, self.day_of_year(), 3),
                'u' => w!("{}", self.weekday() + 1),
                'w' => w!("{}", (self.weekday() + 1) % 7),
                'F' => w!("{year:04}-{month:02}-{day:02}"),
                'T' | 'X' => w!("{hour:02}:{minute:02}:{second:02}"),
                'R' => w!("{hour:02}:{minute:02}"),
                'D' | 'x' => w!("{month:02}/{day:02}/{:02}", year.rem_euclid(100)),
                'c' => w!(
                    "{} {} {day:2} {hour:02}:{minute:02}:{second:02} {year}",
                    &WEEKDAYS[self.weekday()][..3],
                    &MONTHS[month as usize - 1][..3],
                ),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                '%' => out.push('%'),
                // A naive datetime has no zone: Python prints nothing for these.
                'z' | 'Z' => {}
                other if no_pad => w!("%-{other}"),
                other => w!("%{other}"),
            }
        }
        out
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_and_formats() {
        let t = DateTime::parse("2025-03-09T14:05:00").unwrap();
        assert_eq!(t.strftime("%A %a %B %b %d %-d %e %j %Y-%m-%d %I:%M %p %%"), "Sunday Sun March Mar 09 9  9 068 2025-03-09 02:05 PM %");
        assert_eq!(t.to_string(), "2025-03-09T14:05:00");
        // Expected texts from Python's `datetime.strftime` (glibc).
        let t = DateTime::parse("2025-03-09T14:05:07").unwrap();
        assert_eq!(
            t.strftime("%F %T %R %D %x %X|%c|%n%t%z%Z %y %C %H %S %u %w %-m %-H %-I %e %-e|%q"),
            "2025-03-09 14:05:07 14:05 03/09/25 03/09/25 14:05:07|Sun Mar  9 14:05:07 2025|\n\t 25 20 14 07 7 0 3 14 2  9 9|%q"
        );
        let t = DateTime::parse("2024-12-31T00:00:00").unwrap();
        assert_eq!(t.strftime("%j %I %p %a %-j %"), "366 12 AM Tue 366 %");
        assert_eq!(DateTime::from_unix(0).to_string(), "1970-01-01T00:00:00");
        assert_eq!(DateTime::from_unix(951_782_400).to_string(), "2000-02-29T00:00:00");
        assert!(DateTime::parse("2025-02-29").is_none());
        assert!(DateTime::parse("nonsense").is_none());
    }
}
