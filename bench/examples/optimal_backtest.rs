//! Backtest of `sendAt: "optimal"` (`shared::schedule::choose`) on a synthetic population: does
//! sending at the chosen moment shorten the time from send to read?
//!
//! ```text
//! cargo run --release -p herald-bench --example optimal_backtest    (BACKTEST_SEED, BACKTEST_USERS)
//! ```
//!
//! Assumptions (all synthetic; the figure says how much the method helps *these* users):
//! - Each user opens the inbox in sessions; a session reads every unread notification. Sessions
//!   are a Poisson process whose rate depends on the hour of the week, per habit:
//!   - `commuter`: weekdays 07–09 and 17–19 UTC;
//!   - `evening`: every day 19–23;
//!   - `office`: weekdays 09–17, low;
//!   - `weekend`: Saturday and Sunday 10–22;
//!   - `night`: every day 00–03;
//!   - `scattered`: a flat low rate all week (nothing to learn).
//! - Each user's hours are shifted by a personal offset of −2…+2 h (time zones, habits), and a
//!   small base rate (0.02 sessions an hour) makes any hour possible.
//! - History: 4 weeks of sessions feed the user's histogram (one event per session, as the
//!   analytics function adds one per read), and every user's feed the global one.
//! - Test: over the following 2 weeks, 20 notifications per user are requested at uniformly
//!   random instants with `within = 24h`. *Immediate* sends at the request; *optimal* sends at
//!   `choose(user, global, request, 24h)`. The read is the first session at or after the send.
//! - Figures: the median send→read (how long a notification waits unread in the inbox), and
//!   for the optimal strategy also request→read (what the sender waits overall). Notifications
//!   unread after 7 days are counted as unread and left out of the medians.

use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shared::schedule::{choose, hour_of_week, Histogram, Reason, HOURS_PER_WEEK};

/// Sessions an hour, per hour of the week (Monday 00:00 UTC = 0).
fn habit(name: &str, shift: i64) -> Vec<f64> {
    let mut rate = vec![0.02; HOURS_PER_WEEK];
    for (how, r) in rate.iter_mut().enumerate() {
        let local = (how as i64 - shift).rem_euclid(HOURS_PER_WEEK as i64) as usize;
        let (day, hour) = (local / 24, local % 24);
        let weekday = day < 5;
        let peak = match name {
            "commuter" => weekday && ((7..9).contains(&hour) || (17..19).contains(&hour)),
            "evening" => (19..23).contains(&hour),
            "office" => weekday && (9..17).contains(&hour),
            "weekend" => !weekday && (10..22).contains(&hour),
            "night" => hour < 3,
            _ => false,
        };
        if peak {
            *r = if name == "office" { 0.35 } else { 0.9 };
        } else if name == "scattered" {
            *r = 0.12;
        }
    }
    rate
}

const HABITS: [&str; 6] = [
    "commuter",
    "evening",
    "office",
    "weekend",
    "night",
    "scattered",
];

/// Session instants between `from` and `to` (hour by hour, Poisson within each hour).
fn sessions(
    rng: &mut StdRng,
    rate: &[f64],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let mut hour = from;
    while hour < to {
        let lambda = rate[hour_of_week(hour)];
        // Poisson arrivals inside the hour: exponential gaps.
        let mut t = 0.0;
        loop {
            t += -(1.0 - rng.gen::<f64>()).ln() / lambda;
            if t >= 1.0 {
                break;
            }
            out.push(hour + Duration::milliseconds((t * 3_600_000.0) as i64));
        }
        hour += Duration::hours(1);
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let seed: u64 = std::env::var("BACKTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(14);
    let users: usize = std::env::var("BACKTEST_USERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_200);
    let mut rng = StdRng::seed_from_u64(seed);
    let start = Utc
        .with_ymd_and_hms(2026, 9, 7, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let split = start + Duration::weeks(4);
    let end = split + Duration::weeks(3);

    struct User {
        habit: &'static str,
        histogram: Histogram,
        future: Vec<DateTime<Utc>>,
    }
    let mut population = Vec::with_capacity(users);
    let mut global = Histogram::default();
    for i in 0..users {
        let name = HABITS[i % HABITS.len()];
        let rate = habit(name, rng.gen_range(-2..=2));
        let mut histogram = Histogram::default();
        for at in sessions(&mut rng, &rate, start, split) {
            histogram.add(at);
            global.add(at);
        }
        let future = sessions(&mut rng, &rate, split, end);
        population.push(User {
            habit: name,
            histogram,
            future,
        });
    }

    let read_at = |future: &[DateTime<Utc>], sent: DateTime<Utc>| {
        let i = future.partition_point(|s| *s < sent);
        future
            .get(i)
            .copied()
            .filter(|r| *r - sent <= Duration::days(7))
    };
    let hours = |d: Duration| d.num_seconds() as f64 / 3600.0;
    /// One habit's results: hours from send to read (immediate, optimal), from request to read
    /// (optimal), and the sends left unread (immediate, optimal).
    type Row<'a> = (&'a str, [Vec<f64>; 3], [usize; 2]);
    let mut rows: Vec<Row> = Vec::new();
    let mut reasons = [0usize; 3];
    for name in HABITS.iter().copied().chain(["all"]) {
        let (mut immediate, mut optimal, mut overall) = (vec![], vec![], vec![]);
        let (mut unread_immediate, mut unread_optimal) = (0, 0);
        for user in population
            .iter()
            .filter(|u| name == "all" || u.habit == name)
        {
            for _ in 0..20 {
                let offset = rng.gen_range(0..(14 * 86_400));
                let requested = split + Duration::seconds(offset);
                match read_at(&user.future, requested) {
                    Some(r) => immediate.push(hours(r - requested)),
                    None => unread_immediate += 1,
                }
                let choice = choose(&user.histogram, &global, requested, Duration::hours(24));
                if name == "all" {
                    reasons[match choice.reason {
                        Reason::UserHistogram => 0,
                        Reason::GlobalHistogram => 1,
                        Reason::NoData => 2,
                    }] += 1;
                }
                match read_at(&user.future, choice.send_at) {
                    Some(r) => {
                        optimal.push(hours(r - choice.send_at));
                        overall.push(hours(r - requested));
                    }
                    None => unread_optimal += 1,
                }
            }
        }
        rows.push((
            name,
            [immediate, optimal, overall],
            [unread_immediate, unread_optimal],
        ));
    }

    println!("optimal backtest: seed {seed}, {users} users, 4 weeks of history, 20 sends each over 2 weeks, within 24h");
    println!(
        "{:<10} {:>14} {:>14} {:>18} {:>10}",
        "habit", "immediate p50", "optimal p50", "optimal req→read", "unread i/o"
    );
    for (name, [immediate, optimal, overall], [ui, uo]) in rows {
        println!(
            "{:<10} {:>12.2} h {:>12.2} h {:>16.2} h {:>5}/{}",
            name,
            median(immediate),
            median(optimal),
            median(overall),
            ui,
            uo
        );
    }
    println!(
        "choices: {} user-histogram, {} global-histogram, {} no-data",
        reasons[0], reasons[1], reasons[2]
    );
}
