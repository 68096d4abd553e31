//! Calendar dates without a clock: the shop lives on a fixed "today", so
//! that the same seed always gives the same orders, whenever it runs.

use serde::{Serialize, Serializer};

/// A day of the proleptic Gregorian calendar, stored as days since
/// 1970-01-01 so that adding days is plain arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    days: i32,
}

/// The shop's "today": the date herd's Llama 3.1 tool prompt states
/// (`herd_tokenizer::DEFAULT_TODAY`, 26 Jul 2024), so dialogues and the
/// prompt agree about what "recent" means.
pub const TODAY: Date = Date::from_ymd_const(2024, 7, 26);

/// Days of the week, Monday first (ISO 8601).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    /// Monday.
    Monday,
    /// Tuesday.
    Tuesday,
    /// Wednesday.
    Wednesday,
    /// Thursday.
    Thursday,
    /// Friday.
    Friday,
    /// Saturday.
    Saturday,
    /// Sunday.
    Sunday,
}

impl Weekday {
    /// All seven, Monday first.
    pub const ALL: [Weekday; 7] = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
        Weekday::Saturday,
        Weekday::Sunday,
    ];
}

impl Date {
    /// The date `year-month-day`; the caller passes a valid date (this is
    /// only used for constants and generated dates).
    const fn from_ymd_const(year: i32, month: u32, day: u32) -> Self {
        // Howard Hinnant's days_from_civil.
        let y = if month <= 2 { year - 1 } else { year };
        let era = if y >= 0 { y } else { y - 399 } / 400;
        let yoe = y - era * 400;
        let m = month as i32;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i32 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        Self {
            days: era * 146_097 + doe - 719_468,
        }
    }

    /// The date `days` days after 1970-01-01 (before it for negative
    /// `days`): how a clock's Unix time becomes a calendar date.
    pub fn from_unix_days(days: i32) -> Self {
        Self { days }
    }

    /// The date `n` days later (earlier for negative `n`).
    pub fn add_days(self, n: i32) -> Self {
        Self {
            days: self.days + n,
        }
    }

    /// Year, month (1–12), day (1–31).
    pub fn ymd(self) -> (i32, u32, u32) {
        // Howard Hinnant's civil_from_days.
        let z = self.days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i32::from(month <= 2);
        (year, month, day)
    }

    /// The day of the week.
    pub fn weekday(self) -> Weekday {
        // 1970-01-01 was a Thursday.
        Weekday::ALL[(self.days + 3).rem_euclid(7) as usize]
    }
}

impl std::fmt::Display for Date {
    /// ISO 8601, `2024-07-26`: the form tool results carry and answers copy.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

impl Serialize for Date {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_conversion_round_trips_and_knows_weekdays() {
        assert_eq!(TODAY.to_string(), "2024-07-26");
        assert_eq!(TODAY.weekday(), Weekday::Friday);
        assert_eq!(Date::from_ymd_const(1970, 1, 1).days, 0);
        assert_eq!(TODAY.add_days(6).to_string(), "2024-08-01");
        assert_eq!(
            Date::from_ymd_const(2024, 3, 1).add_days(-1).to_string(),
            "2024-02-29"
        );
        assert_eq!(TODAY.add_days(-40).days, TODAY.days - 40);
        assert_eq!(Date::from_unix_days(-1).to_string(), "1969-12-31");
        assert_eq!(Date::from_unix_days(11_016).to_string(), "2000-02-29");
        for n in -800..800 {
            let d = TODAY.add_days(n);
            let (y, m, day) = d.ymd();
            assert_eq!(Date::from_ymd_const(y, m, day), d);
        }
    }
}
