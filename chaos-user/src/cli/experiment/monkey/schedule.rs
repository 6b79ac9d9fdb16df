//! The monkey's day: when it may strike (days of the week, hours of the day, local time), how
//! often (a Poisson process over the allowed time), and the plan it draws from a seed — the same
//! seed, menu, pool and start always give the same plan, so a day can be replayed.

use std::time::Duration;

use crate::rng::Rng;

/// A moment on the monkey's clock: milliseconds since the Unix epoch.
pub type MonkeyTime = u64;

/// When the monkey may start a fault, and how much it may do.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Allowed days, indexed as `tm_wday` (Sunday = 0).
    pub days: [bool; 7],
    /// Allowed minutes of each allowed day, `[from, to)`; `to < from` runs past midnight into
    /// the next day (a Friday's 22:00-06:00 ends on Saturday morning). `None`: the whole day.
    pub hours: Option<(u32, u32)>,
    /// The mean allowed time between two picks.
    pub mean_interval: Duration,
    /// At most this many faults run at once.
    pub max_at_once: usize,
    /// The total fault time of one run, if limited.
    pub budget: Option<Duration>,
}

pub const DAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
pub const DAY_FULL_NAMES: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];

#[cfg(test)]
const DAY_MS: u64 = 86_400_000;

/// The local calendar fields of `at` that the schedule reads.
struct Local {
    weekday: usize,
    /// Milliseconds since local midnight.
    ms_of_day: u64,
}

fn local(at: MonkeyTime) -> Local {
    let tm = local_tm(at);
    let seconds = tm.tm_hour as u64 * 3600 + tm.tm_min as u64 * 60 + tm.tm_sec.min(59) as u64;
    Local {
        weekday: tm.tm_wday as usize % 7,
        ms_of_day: seconds * 1000 + at % 1000,
    }
}

fn local_tm(at: MonkeyTime) -> libc::tm {
    // Inferred, not named: musl's libc crate deprecates the time_t alias.
    let seconds = (at / 1000).try_into().unwrap_or_default();
    // SAFETY: localtime_r writes only the tm it is given; a zeroed tm is a valid value.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&seconds, &mut tm);
        tm
    }
}

/// The moment of a local calendar time (fields normalised: minute 1440 is the next midnight);
/// a time the clocks skip comes out after the skip.
fn local_moment(tm: &libc::tm) -> Option<MonkeyTime> {
    let mut tm = *tm;
    tm.tm_isdst = -1;
    // SAFETY: mktime reads and normalises the tm it is given.
    let seconds = unsafe { libc::mktime(&mut tm) };
    u64::try_from(seconds).ok().map(|s| s * 1000)
}

/// `at` as local time with its UTC offset, `2026-12-07T09:13:05+01:00`.
pub fn format(at: MonkeyTime) -> String {
    let tm = local_tm(at);
    let offset = tm.tm_gmtoff / 60;
    let sign = if offset < 0 { '-' } else { '+' };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        offset.abs() / 60,
        offset.abs() % 60
    )
}

/// Reads `YYYY-MM-DD HH:MM[:SS]` (or with `T`) as local time.
pub fn parse_local(text: &str) -> Result<MonkeyTime, String> {
    let invalid = || {
        format!(
            "invalid time '{text}': expected local time as YYYY-MM-DD HH:MM[:SS], such as '2026-12-07 08:00'"
        )
    };
    let (date, time) = text.trim().split_once([' ', 'T']).ok_or_else(invalid)?;
    let numbers = |part: &str, separator: char| -> Option<Vec<i32>> {
        part.split(separator).map(|n| n.parse().ok()).collect()
    };
    let date = numbers(date, '-')
        .filter(|d| d.len() == 3)
        .ok_or_else(invalid)?;
    let time = numbers(time, ':')
        .filter(|t| (2..=3).contains(&t.len()))
        .ok_or_else(invalid)?;
    let (month, day, hour, minute, second) = (
        date[1],
        date[2],
        time[0],
        time[1],
        *time.get(2).unwrap_or(&0),
    );
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(0..24).contains(&hour)
        || !(0..60).contains(&minute)
        || !(0..60).contains(&second)
        || date[0] < 1970
    {
        return Err(invalid());
    }
    // SAFETY: a zeroed tm is a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    (tm.tm_year, tm.tm_mon, tm.tm_mday) = (date[0] - 1900, month - 1, day);
    (tm.tm_hour, tm.tm_min, tm.tm_sec) = (hour, minute, second);
    let at = local_moment(&tm).ok_or_else(invalid)?;
    // mktime moves a day that does not exist (February 31) and a time the clocks skip.
    let back = local_tm(at);
    if (back.tm_mon, back.tm_mday, back.tm_hour, back.tm_min) != (tm.tm_mon, day, hour, minute) {
        return Err(format!(
            "invalid time '{text}': there is no such local time (it would be {})",
            format(at)
        ));
    }
    Ok(at)
}

/// Reads `HH:MM-HH:MM` as minutes of the day, `[from, to)`.
pub fn parse_hours(text: &str) -> Result<(u32, u32), String> {
    let invalid = || {
        format!(
            "invalid hours '{text}': expected HH:MM-HH:MM in local time, such as 09:00-17:00 (22:00-06:00 runs past midnight)"
        )
    };
    let minute_of_day = |part: &str| -> Option<u32> {
        let (hour, minute) = part.trim().split_once(':')?;
        let (hour, minute): (u32, u32) = (hour.parse().ok()?, minute.parse().ok()?);
        (hour <= 24 && minute < 60 && hour * 60 + minute <= 1440).then_some(hour * 60 + minute)
    };
    let (from, to) = text.split_once('-').ok_or_else(invalid)?;
    let (from, to) = (
        minute_of_day(from).ok_or_else(invalid)?,
        minute_of_day(to).ok_or_else(invalid)?,
    );
    if from == to || from == 1440 {
        return Err(invalid());
    }
    Ok((from, to))
}

impl Schedule {
    /// Whether a fault may start at `at`.
    pub fn allowed(&self, at: MonkeyTime) -> bool {
        let local = local(at);
        let minute = (local.ms_of_day / 60_000) as u32;
        let yesterday = (local.weekday + 6) % 7;
        match self.hours {
            None => self.days[local.weekday],
            Some((from, to)) if from < to => {
                self.days[local.weekday] && (from..to).contains(&minute)
            }
            // Past midnight, the hours belong to the day they began on.
            Some((from, to)) => {
                (minute >= from && self.days[local.weekday])
                    || (minute < to && self.days[yesterday])
            }
        }
    }

    /// The next moment after `at` at which [`Schedule::allowed`] may change: the start or end
    /// of the hours, or midnight, as local time (so that a day the clocks change has its hours
    /// where they are on the wall).
    fn next_mark(&self, at: MonkeyTime) -> MonkeyTime {
        let today = local_tm(at);
        let minutes = match self.hours {
            Some((from, to)) => vec![from, to, 1440],
            None => vec![1440],
        };
        minutes
            .into_iter()
            .filter_map(|minute| {
                let mut mark = today;
                (mark.tm_hour, mark.tm_min, mark.tm_sec) =
                    (minute as i32 / 60, minute as i32 % 60, 0);
                local_moment(&mark)
            })
            .filter(|&mark| mark > at)
            .min()
            // Past the day's last mark (a skipped hour): an hour on, to look again.
            .unwrap_or(at + 3_600_000)
    }

    /// The moment `gap` of allowed time after `from`, if it comes before `end`.
    fn advance(&self, from: MonkeyTime, gap: u64, end: MonkeyTime) -> Option<MonkeyTime> {
        let (mut at, mut left) = (from, gap);
        while at < end {
            let mark = self.next_mark(at).min(end);
            if self.allowed(at) {
                if at + left < mark {
                    return Some(at + left);
                }
                left -= mark - at;
            }
            at = mark;
        }
        None
    }

    /// When the allowed time that holds `at` ends (at most `end`).
    pub fn window_end(&self, at: MonkeyTime, end: MonkeyTime) -> MonkeyTime {
        let mut at = at;
        while at < end && self.allowed(at) {
            at = self.next_mark(at);
        }
        at.min(end)
    }
}

/// What the planner needs of a menu entry.
#[derive(Debug, Clone)]
pub struct MenuItem {
    pub weight: u32,
    pub lifetime: Duration,
    /// Which kinds of target (indexes of [`super::pool::Kind::ALL`]) its command accepts.
    pub accepts: Vec<bool>,
}

/// Why a drawn pick does not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// `max_at_once` faults would already be running.
    AtCap,
    /// Its target would already be under a fault: two faults never hit one target at once.
    TargetBusy,
    /// Its fault time would exceed the budget.
    Budget,
    /// The fault would run past the end of the allowed hours (or of the run).
    OutlastsHours,
    /// The pool holds no target this fault can take.
    NoTarget,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::AtCap => "at-cap",
            Skip::TargetBusy => "target-busy",
            Skip::Budget => "budget-spent",
            Skip::OutlastsHours => "outlasts-hours",
            Skip::NoTarget => "no-target",
        }
    }
}

/// One draw of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    pub at: MonkeyTime,
    pub fault: usize,
    /// The number that picks the target among the candidates that fit the fault.
    pub draw: u64,
    /// The target `draw` picks from the pool as it was when planned: an index into its
    /// candidates.
    pub target: Option<usize>,
    pub skip: Option<Skip>,
}

/// The candidate `draw` picks for `item` among candidates of these kinds (indexes of
/// [`super::pool::Kind::ALL`]): one of those whose kind the fault takes.
pub fn choose(item: &MenuItem, kinds: &[usize], draw: u64) -> Option<usize> {
    let fitting: Vec<usize> = (0..kinds.len())
        .filter(|&candidate| item.accepts[kinds[candidate]])
        .collect();
    (!fitting.is_empty()).then(|| fitting[(draw % fitting.len() as u64) as usize])
}

/// Draws the picks of `[start, end)`. Every draw takes the same three numbers from the
/// generator (the wait, the fault, the target) whether it runs or not, so that one skipped pick
/// does not change the ones after it.
pub fn plan(
    schedule: &Schedule,
    menu: &[MenuItem],
    kinds: &[usize],
    seed: u64,
    start: MonkeyTime,
    end: MonkeyTime,
) -> Vec<Pick> {
    let mut rng = Rng::new(seed);
    let weights: Vec<u32> = menu.iter().map(|item| item.weight).collect();
    let mut picks = Vec::new();
    // The end and target of each fault the plan has running.
    let mut running: Vec<(MonkeyTime, usize)> = Vec::new();
    let mut spent = Duration::ZERO;
    let mut at = start;
    loop {
        let gap = rng.exponential(schedule.mean_interval);
        let fault = rng.weighted(&weights);
        let draw = rng.next_u64();
        let Some(next) = schedule.advance(at, gap, end) else {
            break;
        };
        at = next;
        let item = &menu[fault];
        let target = choose(item, kinds, draw);
        let lifetime = item.lifetime.as_millis() as u64;
        running.retain(|&(ends, _)| ends > at);
        let skip = if target.is_none() {
            Some(Skip::NoTarget)
        } else if at + lifetime > schedule.window_end(at, end) {
            Some(Skip::OutlastsHours)
        } else if running.len() >= schedule.max_at_once {
            Some(Skip::AtCap)
        } else if running.iter().any(|&(_, busy)| Some(busy) == target) {
            Some(Skip::TargetBusy)
        } else if schedule
            .budget
            .is_some_and(|budget| spent + item.lifetime > budget)
        {
            Some(Skip::Budget)
        } else {
            None
        };
        if let (None, Some(target)) = (skip, target) {
            running.push((at + lifetime, target));
            spent += item.lifetime;
        }
        picks.push(Pick {
            at,
            fault,
            draw,
            target,
            skip,
        });
    }
    picks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: set once, before any of these tests reads local time; no other test of the
        // crate reads TZ (other time zones are tested through the binary, in tests/monkey.rs).
        ONCE.call_once(|| unsafe { std::env::set_var("TZ", "UTC") });
    }

    fn weekdays_nine_to_five() -> Schedule {
        Schedule {
            days: [false, true, true, true, true, true, false],
            hours: Some((9 * 60, 17 * 60)),
            mean_interval: Duration::from_secs(1800),
            max_at_once: 1,
            budget: None,
        }
    }

    fn item(minutes: u64) -> MenuItem {
        MenuItem {
            weight: 1,
            lifetime: Duration::from_secs(minutes * 60),
            accepts: vec![true; 3],
        }
    }

    #[test]
    fn times_read_and_print_in_local_time() {
        utc();
        let monday = parse_local("2026-12-07 08:00").unwrap();
        assert_eq!(format(monday), "2026-12-07T08:00:00+00:00");
        assert_eq!(parse_local("2026-12-07T08:00:30").unwrap(), monday + 30_000);
        for bad in [
            "2026-12-07",
            "08:00",
            "2026-13-01 08:00",
            "2026-12-07 25:00",
            "soon",
        ] {
            assert!(parse_local(bad).unwrap_err().contains(bad), "{bad}");
        }
        assert_eq!(parse_hours("09:00-17:00"), Ok((540, 1020)));
        assert_eq!(parse_hours("22:00-06:00"), Ok((1320, 360)));
        assert_eq!(parse_hours("00:00-24:00"), Ok((0, 1440)));
        for bad in ["9-5", "09:00-09:00", "17:00", "09:60-10:00", "24:00-01:00"] {
            assert!(parse_hours(bad).unwrap_err().contains(bad), "{bad}");
        }
    }

    #[test]
    fn picks_fall_in_the_allowed_hours_only() {
        utc();
        // From Saturday 00:00 for a week: only Monday to Friday, 09:00 to 17:00.
        let start = parse_local("2026-12-05 00:00").unwrap();
        let end = start + 7 * DAY_MS;
        let schedule = weekdays_nine_to_five();
        let picks = plan(&schedule, &[item(10)], &[0, 1], 7, start, end);
        assert!(
            picks.len() > 50,
            "{} picks in 40 allowed hours",
            picks.len()
        );
        for pick in &picks {
            let local = local(pick.at);
            assert!((1..=5).contains(&local.weekday), "{}", format(pick.at));
            assert!((9 * 3_600_000..17 * 3_600_000).contains(&local.ms_of_day));
            if pick.skip.is_none() {
                assert!(
                    local.ms_of_day + 600_000 <= 17 * 3_600_000,
                    "{}",
                    format(pick.at)
                );
            }
        }
        // The Poisson process over the allowed time: 40 hours at one per 30 minutes.
        assert!((55..=110).contains(&picks.len()), "{} picks", picks.len());
        let overnight = Schedule {
            hours: Some((22 * 60, 6 * 60)),
            days: [true; 7],
            ..schedule
        };
        for pick in plan(&overnight, &[item(1)], &[0], 7, start, end) {
            let hour = local(pick.at).ms_of_day / 3_600_000;
            assert!(!(6..22).contains(&hour), "{}", format(pick.at));
        }
        // Friday nights only: Friday from 22:00 to Saturday 06:00, not Friday morning.
        let friday_nights = Schedule {
            days: [false, false, false, false, false, true, false],
            ..overnight
        };
        let picks = plan(
            &friday_nights,
            &[item(1)],
            &[0],
            7,
            start,
            start + 14 * DAY_MS,
        );
        assert!(picks.len() > 20, "{}", picks.len());
        for pick in picks {
            let local = local(pick.at);
            let friday_evening = local.weekday == 5 && local.ms_of_day >= 22 * 3_600_000;
            let saturday_morning = local.weekday == 6 && local.ms_of_day < 6 * 3_600_000;
            assert!(friday_evening || saturday_morning, "{}", format(pick.at));
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_plan_and_another_seed_another() {
        utc();
        let start = parse_local("2026-12-07 08:00").unwrap();
        let end = start + DAY_MS;
        let menu = [item(10), item(20)];
        let schedule = weekdays_nine_to_five();
        let first = plan(&schedule, &menu, &[0, 1, 2], 42, start, end);
        assert_eq!(first, plan(&schedule, &menu, &[0, 1, 2], 42, start, end));
        assert_ne!(first, plan(&schedule, &menu, &[0, 1, 2], 43, start, end));
        // Both faults and several targets are drawn.
        for fault in 0..2 {
            assert!(first.iter().any(|p| p.fault == fault));
        }
        // Targets are drawn evenly.
        let week = plan(&schedule, &menu, &[0, 1, 2], 42, start, start + 28 * DAY_MS);
        for target in 0..3 {
            let share =
                week.iter().filter(|p| p.target == Some(target)).count() as f64 / week.len() as f64;
            assert!(
                (0.2..0.47).contains(&share),
                "target {target}: {share} of {}",
                week.len()
            );
        }
    }

    #[test]
    fn the_cap_and_the_budget_hold() {
        utc();
        let start = parse_local("2026-12-07 00:00").unwrap();
        let schedule = Schedule {
            days: [true; 7],
            hours: None,
            mean_interval: Duration::from_secs(600),
            max_at_once: 2,
            budget: Some(Duration::from_secs(5 * 3600)),
        };
        let picks = plan(&schedule, &[item(30)], &[0, 0, 0], 1, start, start + DAY_MS);
        let runs: Vec<&Pick> = picks.iter().filter(|p| p.skip.is_none()).collect();
        for pick in &runs {
            let at_once = runs
                .iter()
                .filter(|other| other.at <= pick.at && pick.at < other.at + 1_800_000)
                .count();
            assert!(at_once <= 2, "{at_once} at {}", format(pick.at));
            let on_target = runs
                .iter()
                .filter(|other| other.target == pick.target)
                .filter(|other| other.at <= pick.at && pick.at < other.at + 1_800_000)
                .count();
            assert_eq!(
                on_target,
                1,
                "two faults on one target at {}",
                format(pick.at)
            );
        }
        assert_eq!(runs.len(), 10, "5 hours of 30-minute faults");
        assert!(picks.iter().any(|p| p.skip == Some(Skip::AtCap)));
        assert!(picks.iter().any(|p| p.skip == Some(Skip::Budget)));
        assert!(picks.iter().any(|p| p.skip == Some(Skip::TargetBusy)));
    }

    #[test]
    fn a_fault_without_a_fitting_target_is_skipped() {
        utc();
        let start = parse_local("2026-12-07 00:00").unwrap();
        let mut menu = [item(1)];
        menu[0].accepts = vec![true, false, false];
        let schedule = Schedule {
            days: [true; 7],
            hours: None,
            ..weekdays_nine_to_five()
        };
        let picks = plan(&schedule, &menu, &[1, 2], 1, start, start + DAY_MS);
        assert!(!picks.is_empty());
        assert!(picks.iter().all(|p| p.skip == Some(Skip::NoTarget)));
        let picks = plan(&schedule, &menu, &[1, 0, 2], 1, start, start + DAY_MS);
        assert!(picks.iter().all(|p| p.target == Some(1)));
    }
}
