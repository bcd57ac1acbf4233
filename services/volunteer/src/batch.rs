//! A community's open needs given out all at once (AssignBatch): each need with its places
//! still free, each volunteer with the places they may still take (their slots), at the least
//! total cost — the score of [`crate::matching`] turned into a cost by [`assign::cost_of`].
//!
//! Places and slots are expanded into the rows and columns of one assignment problem
//! ([`assign`]), pairs a volunteer is not eligible for left out. An assignment problem cannot
//! say that one volunteer's slots must go to different needs that do not overlap in time and
//! stay within their monthly cap together, so the answer is checked for that: of a volunteer's
//! pairs that clash, the cheapest compatible ones are kept, the others are barred, and the
//! problem is solved again — [`MAX_ROUNDS`] times at most. The places still free then go to
//! the volunteers who may yet take them beside what they hold, one place each per round
//! ([`fill`]), so no place stays free while someone could take it.
//!
//! Where needs crowd the same hours, the optimum keeps giving the best volunteers several places
//! at once and settling keeps taking them back; there, giving each volunteer one place first and
//! their other slots to the places left is the better plan (and quicker), while where needs are
//! spread out every slot at once is. Both are worked out when volunteers have several slots, and
//! the plan that fills more places, then costs less, is proposed. Greedy's plan (every slot at
//! once), settled and filled the same way, comes beside it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::FixedOffset;

use crate::assign::{self, Costs, NOT_ALLOWED, TooLarge};
use crate::matching::{self, Need, Volunteer, Weights};

/// How many times the problem is solved again after barring clashing pairs.
pub const MAX_ROUNDS: usize = 5;

/// A need and how many of its places are free.
#[derive(Debug, Clone, Copy)]
pub struct Open<'a> {
    /// The need.
    pub need: Need<'a>,
    /// Free places.
    pub places: usize,
}

/// A volunteer and how many places they may still take.
#[derive(Debug, Clone, Copy)]
pub struct Offer<'a> {
    /// The volunteer.
    pub volunteer: Volunteer<'a>,
    /// Places they may still take.
    pub slots: usize,
}

/// One volunteer in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pairing {
    /// The need's index in the batch.
    pub need: usize,
    /// The volunteer's index in the batch.
    pub volunteer: usize,
    /// Its cost (0 for a perfect fit, [`assign::SCALE`] for the worst).
    pub cost: i64,
}

/// A settled plan: no volunteer twice on one need, at two needs at once, or past their cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// Who goes where, by need then volunteer.
    pub pairings: Vec<Pairing>,
    /// The cost of the pairings.
    pub total: i64,
    /// Places left free.
    pub unfilled: usize,
}

/// What [`plan`] proposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The best plan found in time.
    pub best: Settled,
    /// Whether every round of it was solved to the optimum (otherwise a deadline passed and
    /// greedy's answer stood in).
    pub optimal: bool,
    /// How many times an assignment problem was solved (each round of both plans, and of
    /// filling the places left).
    pub rounds: usize,
    /// Greedy's plan, settled the same way.
    pub greedy: Settled,
}

/// Gives the places of `needs` to the slots of `volunteers` (see the module docs), within
/// `deadline` for the whole, in the street's time zone `zone`. It scores every pair and solves
/// a problem of up to [`assign::MAX_CELLS`] pairs: it blocks, so from async code call it on a
/// blocking thread (`tokio::task::spawn_blocking`), never on a runtime worker.
pub fn plan(
    needs: &[Open<'_>],
    volunteers: &[Offer<'_>],
    weights: &Weights,
    zone: FixedOffset,
    deadline: Duration,
) -> Result<Plan, TooLarge> {
    let started = Instant::now();
    let problem = Problem::new(needs, volunteers, weights, zone)?;
    // Every volunteer once first, their other slots to the places left (quick, and the better
    // plan where needs crowd the same hours); then every slot at once (the better where they
    // do not): the plan that fills more places, then costs less, is proposed.
    let once = problem.once().map(|once| solve_settled(&once, needs, volunteers, started, deadline)).transpose()?;
    let mut every = solve_settled(&problem, needs, volunteers, started, deadline)?;
    let rounds = every.rounds + once.as_ref().map_or(0, |o| o.rounds);
    let (best, optimal) = match once {
        Some(once) if (once.best.unfilled, once.best.total) < (every.best.unfilled, every.best.total) => {
            (once.best, once.optimal)
        }
        _ => (every.best, every.optimal),
    };
    let (rows, columns) = (&problem.rows, &problem.columns);
    let cost = |i: usize, j: usize| problem.cost(i, j);
    let greedy = {
        let mut bars = Bars::default();
        let mut round = 0;
        loop {
            round += 1;
            let planned = match every.first_greedy.take() {
                Some(plan) => plan,
                None => assign::greedy(&problem.costs(&bars)?),
            };
            let (kept, clashing) = settle(pairs_of(&planned, rows, columns, cost), needs, volunteers);
            if clashing.is_empty() || round > MAX_ROUNDS {
                break finish(fill(&problem, needs, volunteers, kept, || None)?.pairings, rows.len());
            }
            bars.add(&clashing);
        }
    };
    Ok(Plan { best, optimal, rounds, greedy })
}

/// A plan found for one problem by [`solve_settled`].
struct Solved {
    best: Settled,
    /// Whether every round was solved to the optimum, and how many there were.
    optimal: bool,
    rounds: usize,
    /// Greedy's plan of the first round, before settling.
    first_greedy: Option<assign::Plan>,
}

/// `problem` solved within what is left of `deadline` since `started`, settled, solved again
/// without what clashed ([`MAX_ROUNDS`] times at most), and the places left filled.
fn solve_settled(
    problem: &Problem,
    needs: &[Open<'_>],
    volunteers: &[Offer<'_>],
    started: Instant,
    deadline: Duration,
) -> Result<Solved, TooLarge> {
    let (rows, columns) = (&problem.rows, &problem.columns);
    let cost = |i: usize, j: usize| problem.cost(i, j);
    let mut bars = Bars::default();
    let mut optimal = true;
    let mut rounds = 0;
    let mut first_greedy = None;
    loop {
        rounds += 1;
        let costs = problem.costs(&bars)?;
        let proposal = assign::solve(costs, deadline.saturating_sub(started.elapsed()));
        optimal &= proposal.best.optimal;
        if rounds == 1 {
            first_greedy = Some(proposal.greedy);
        }
        let (kept, clashing) = settle(pairs_of(&proposal.best, rows, columns, cost), needs, volunteers);
        if clashing.is_empty() || rounds > MAX_ROUNDS {
            let filled = fill(problem, needs, volunteers, kept, || Some(deadline.saturating_sub(started.elapsed())))?;
            let best = finish(filled.pairings, rows.len());
            return Ok(Solved {
                best,
                optimal: optimal && filled.optimal,
                rounds: rounds + filled.rounds,
                first_greedy,
            });
        }
        bars.add(&clashing);
    }
}

/// What [`fill`] did.
struct Filled {
    pairings: Vec<Pairing>,
    /// Times it solved a problem, and whether each was solved to the optimum.
    rounds: usize,
    optimal: bool,
}

/// The places a settled plan (`kept`) left free, offered to the volunteers who may still take
/// them beside what they hold (a slot left, another need, not at the same time, within their
/// cap): round after round, each volunteer one place at most per round, so no round can clash
/// with itself or with what is held; until every place is filled, a round fills none, or
/// [`MAX_ROUNDS`]. A volunteer's slots are alike in the problem, so the optimum may give one
/// volunteer places at the same hour, which settling then takes back: without this, those places
/// would stay free beside volunteers who could take them. Each round is solved within what
/// `left` says is left of the deadline, or by greedy's rule when it says `None`.
fn fill(
    problem: &Problem,
    needs: &[Open<'_>],
    volunteers: &[Offer<'_>],
    mut kept: Vec<Pairing>,
    left: impl Fn() -> Option<Duration>,
) -> Result<Filled, TooLarge> {
    let (mut rounds, mut optimal) = (0, true);
    while rounds < MAX_ROUNDS {
        let mut taken = vec![0; needs.len()];
        let mut held: Vec<Vec<usize>> = vec![Vec::new(); volunteers.len()];
        let mut hours: Vec<f64> = volunteers.iter().map(|o| o.volunteer.hours_this_month).collect();
        for p in &kept {
            taken[p.need] += 1;
            held[p.volunteer].push(p.need);
            hours[p.volunteer] += needs[p.need].need.hours();
        }
        let places: Vec<usize> = needs
            .iter()
            .enumerate()
            .flat_map(|(i, n)| std::iter::repeat_n(i, n.places.saturating_sub(taken[i])))
            .collect();
        if places.is_empty() {
            break;
        }
        let may_take = |i: usize, j: usize| -> Option<i64> {
            let need = &needs[i].need;
            let within = hours[j] + need.hours() <= volunteers[j].volunteer.monthly_cap_hours + 1e-9;
            let free =
                held[j].iter().all(|&h| h != i && !(needs[h].need.start < need.end && need.start < needs[h].need.end));
            if within && free { problem.cost(i, j) } else { None }
        };
        let takers: Vec<usize> = (0..volunteers.len())
            .filter(|&j| held[j].len() < volunteers[j].slots && places.iter().any(|&i| may_take(i, j).is_some()))
            .collect();
        if takers.is_empty() {
            break;
        }
        let costs = Costs::new(places.len(), takers.len(), |r, c| may_take(places[r], takers[c]))?;
        rounds += 1;
        let planned = match left() {
            Some(left) => {
                let proposal = assign::solve(costs, left);
                optimal &= proposal.best.optimal;
                proposal.best
            }
            None => assign::greedy(&costs),
        };
        let before = kept.len();
        // A plan's columns are of allowed cells only: places these takers may take.
        for (r, c) in planned.columns.iter().enumerate() {
            let Some(c) = *c else { continue };
            let (need, volunteer) = (places[r], takers[c]);
            if let Some(cost) = problem.cost(need, volunteer) {
                kept.push(Pairing { need, volunteer, cost });
            }
        }
        if kept.len() == before {
            break;
        }
    }
    Ok(Filled { pairings: kept, rounds, optimal })
}

/// How many places a volunteer offers in a batch: as many as their hours left this month hold
/// of the batch's shortest need (`shortest_hours`), at most `most` and at most one per need.
pub fn slots(volunteer: &Volunteer<'_>, shortest_hours: f64, most: usize, needs: usize) -> usize {
    let room = (volunteer.monthly_cap_hours - volunteer.hours_this_month).max(0.0);
    let fits =
        if shortest_hours > 0.0 && shortest_hours.is_finite() { (room / shortest_hours + 1e-9).floor() } else { 0.0 };
    (fits as usize).min(most).min(needs)
}

/// A batch as an assignment problem: each row a place (its need's index), each column a slot
/// (its volunteer's index), and the cost of each (need, volunteer) pair.
struct Problem {
    rows: Vec<usize>,
    columns: Vec<usize>,
    /// Need by need, each volunteer's cost ([`NOT_ALLOWED`] where they are not eligible).
    pair_cost: Arc<Vec<u16>>,
    volunteers: usize,
    /// `rows` and `columns` as the matrix of pairs reads them.
    needs_of: Arc<Vec<u32>>,
    volunteers_of: Arc<Vec<u32>>,
}

impl Problem {
    fn new(
        needs: &[Open<'_>],
        volunteers: &[Offer<'_>],
        weights: &Weights,
        zone: FixedOffset,
    ) -> Result<Self, TooLarge> {
        let rows: Vec<usize> = needs.iter().enumerate().flat_map(|(i, n)| std::iter::repeat_n(i, n.places)).collect();
        if rows.len().saturating_mul(volunteers.len()) > assign::MAX_CELLS {
            return Err(TooLarge { rows: rows.len(), columns: volunteers.len() });
        }
        // Each (need, volunteer) pair is scored once, however many places and slots they have.
        let pair_cost = pair_costs(needs, volunteers, weights, zone);
        // Only volunteers who may take one of the needs at least are columns; their slots too,
        // when the problem stays within bounds, else one slot each.
        let mut allowed = vec![false; volunteers.len()];
        for row in pair_cost.chunks(volunteers.len().max(1)) {
            for (allowed, cell) in allowed.iter_mut().zip(row) {
                *allowed |= *cell != NOT_ALLOWED;
            }
        }
        let useful: Vec<usize> = (0..volunteers.len()).filter(|&j| allowed[j]).collect();
        let expand = |most: usize| -> Vec<usize> {
            useful.iter().flat_map(|&j| std::iter::repeat_n(j, volunteers[j].slots.min(most))).collect()
        };
        let mut columns = expand(usize::MAX);
        if rows.len().saturating_mul(columns.len()) > assign::MAX_CELLS {
            columns = expand(1);
        }
        if rows.len().saturating_mul(columns.len()) > assign::MAX_CELLS {
            return Err(TooLarge { rows: rows.len(), columns: columns.len() });
        }
        let (needs_of, volunteers_of) = (narrow(&rows), narrow(&columns));
        Ok(Self {
            rows,
            columns,
            pair_cost: Arc::new(pair_cost),
            volunteers: volunteers.len(),
            needs_of,
            volunteers_of,
        })
    }

    /// The same problem with one slot per volunteer, when some volunteer has more.
    fn once(&self) -> Option<Self> {
        let mut columns = self.columns.clone();
        // A volunteer's slots are next to each other.
        columns.dedup();
        (columns.len() < self.columns.len()).then(|| Self {
            rows: self.rows.clone(),
            volunteers_of: narrow(&columns),
            columns,
            pair_cost: self.pair_cost.clone(),
            volunteers: self.volunteers,
            needs_of: self.needs_of.clone(),
        })
    }

    /// The cost of need `i` for volunteer `j`, `None` when not allowed.
    fn cost(&self, i: usize, j: usize) -> Option<i64> {
        let cost = self.pair_cost[i * self.volunteers + j];
        (cost != NOT_ALLOWED).then_some(i64::from(cost))
    }

    /// The matrix of places × slots, with the pairs of `bars` not allowed: kept by pair while
    /// nothing is barred.
    fn costs(&self, bars: &Bars) -> Result<Costs, TooLarge> {
        if bars.is_empty() {
            return Costs::pairs(
                self.pair_cost.clone(),
                self.volunteers,
                self.needs_of.clone(),
                self.volunteers_of.clone(),
            );
        }
        self.dense(bars)
    }

    /// The matrix of places × slots with every cell kept, the pairs of `bars` not allowed.
    fn dense(&self, bars: &Bars) -> Result<Costs, TooLarge> {
        Costs::from_rows(self.rows.len(), self.columns.len(), |r, out| {
            let need = self.rows[r];
            let base = &self.pair_cost[need * self.volunteers..(need + 1) * self.volunteers];
            for (value, &j) in out.iter_mut().zip(&self.columns) {
                let cost = base[j];
                *value = if cost == NOT_ALLOWED { assign::FORBIDDEN } else { i64::from(cost) };
            }
            if !bars.is_empty() {
                for (value, &j) in out.iter_mut().zip(&self.columns) {
                    if bars.bars(r, need, j) {
                        *value = assign::FORBIDDEN;
                    }
                }
            }
        })
    }
}

/// Indices as the matrix of pairs keeps them.
fn narrow(indices: &[usize]) -> Arc<Vec<u32>> {
    Arc::new(indices.iter().map(|&i| u32::try_from(i).unwrap_or(u32::MAX)).collect())
}

/// The matrix [`plan`] first solves for `needs` and `volunteers`, with every cell kept: what a
/// benchmark times the bare solver on.
pub fn matrix(
    needs: &[Open<'_>],
    volunteers: &[Offer<'_>],
    weights: &Weights,
    zone: FixedOffset,
) -> Result<Costs, TooLarge> {
    Problem::new(needs, volunteers, weights, zone)?.dense(&Bars::default())
}

/// The matrix [`plan`] first solves, kept as it solves it: by (need, volunteer) pair.
pub fn pair_matrix(
    needs: &[Open<'_>],
    volunteers: &[Offer<'_>],
    weights: &Weights,
    zone: FixedOffset,
) -> Result<Costs, TooLarge> {
    Problem::new(needs, volunteers, weights, zone)?.costs(&Bars::default())
}

/// The cost of every (need, volunteer) pair, need by need (`None` where the volunteer is not
/// eligible): each need prepared once, then scored on as many threads as the machine has, each
/// a band of needs.
fn pair_costs(needs: &[Open<'_>], volunteers: &[Offer<'_>], weights: &Weights, zone: FixedOffset) -> Vec<u16> {
    let mut costs = vec![NOT_ALLOWED; needs.len() * volunteers.len()];
    if costs.is_empty() {
        return costs;
    }
    let matcher = matching::Matcher::new(weights, zone, needs.iter().map(|n| &n.need));
    let prepared: Vec<matching::Prepared<'_>> = needs.iter().map(|n| matcher.need(n.need)).collect();
    let fits: Vec<matching::Fit<'_>> = volunteers.iter().map(|v| matcher.volunteer(v.volunteer)).collect();
    let threads = std::thread::available_parallelism().map_or(1, usize::from).clamp(1, 8);
    let band = needs.len().div_ceil(threads);
    let (matcher, fits) = (&matcher, &fits);
    std::thread::scope(|scope| {
        for (needs, out) in prepared.chunks(band).zip(costs.chunks_mut(band * volunteers.len())) {
            scope.spawn(move || {
                // The needs of one window one after another, so each volunteer's minutes free
                // in it are worked out once for all of them (a weekend's activities share a few
                // windows).
                let mut rows: Vec<_> = needs.iter().zip(out.chunks_mut(fits.len())).collect();
                rows.sort_by(|a, b| a.0.window().cmp(b.0.window()));
                let (mut free, mut window) = (Vec::with_capacity(fits.len()), None);
                for (n, row) in rows {
                    if window != Some(n.window()) {
                        free.clear();
                        free.extend(fits.iter().map(|fit| matcher.free_minutes(fit, n)));
                        window = Some(n.window());
                    }
                    for ((fit, cell), &free) in fits.iter().zip(row).zip(&free) {
                        if matcher.eligible(fit, n) {
                            let cost = assign::cost_of(matcher.total_with(fit, n, || free));
                            *cell = u16::try_from(cost).unwrap_or(NOT_ALLOWED - 1);
                        }
                    }
                }
            });
        }
    });
    costs
}

/// Pairs barred from the next round: a place (row) for a volunteer who holds another place of
/// the same need, or a whole need for a volunteer it clashes with otherwise.
#[derive(Default)]
struct Bars {
    places: HashSet<(usize, usize)>,
    needs: HashSet<(usize, usize)>,
}

impl Bars {
    fn is_empty(&self) -> bool {
        self.places.is_empty() && self.needs.is_empty()
    }

    /// Whether the volunteer is barred from the place (`row`, of `need`).
    fn bars(&self, row: usize, need: usize, volunteer: usize) -> bool {
        self.places.contains(&(row, volunteer)) || self.needs.contains(&(need, volunteer))
    }

    fn add(&mut self, clashing: &[(Placed, Clash)]) {
        for (p, clash) in clashing {
            match clash {
                Clash::SameNeed => self.places.insert((p.row, p.pairing.volunteer)),
                Clash::Other => self.needs.insert((p.pairing.need, p.pairing.volunteer)),
            };
        }
    }
}

/// A pairing in the place (row) it fills.
#[derive(Debug, Clone, Copy)]
struct Placed {
    row: usize,
    pairing: Pairing,
}

/// Why a pairing cannot stand beside a volunteer's others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clash {
    /// They hold another place of the same need.
    SameNeed,
    /// It overlaps one they hold, or would pass their cap.
    Other,
}

/// The pairs of `plan`'s filled places.
fn pairs_of(
    plan: &assign::Plan,
    rows: &[usize],
    columns: &[usize],
    cost: impl Fn(usize, usize) -> Option<i64>,
) -> Vec<Placed> {
    plan.columns
        .iter()
        .enumerate()
        .filter_map(|(row, c)| {
            let (need, volunteer) = (rows[row], columns[(*c)?]);
            cost(need, volunteer).map(|cost| Placed { row, pairing: Pairing { need, volunteer, cost } })
        })
        .collect()
}

/// Splits `pairs` into those that can stand together and those that clash: for each volunteer,
/// their pairs cheapest first, each kept if it is not a second place on a need they have, does
/// not overlap one kept, and keeps them within their cap.
fn settle(
    mut pairs: Vec<Placed>,
    needs: &[Open<'_>],
    volunteers: &[Offer<'_>],
) -> (Vec<Pairing>, Vec<(Placed, Clash)>) {
    pairs.sort_by_key(|p| (p.pairing.volunteer, p.pairing.cost, p.pairing.need, p.row));
    let (mut kept, mut clashing) = (Vec::with_capacity(pairs.len()), Vec::new());
    let mut mine: Vec<usize> = Vec::new();
    let mut current = usize::MAX;
    let mut hours = 0.0;
    for placed in pairs {
        let p = placed.pairing;
        let volunteer = &volunteers[p.volunteer].volunteer;
        if p.volunteer != current {
            (current, hours) = (p.volunteer, volunteer.hours_this_month);
            mine.clear();
        }
        let need = &needs[p.need].need;
        let clash = if mine.contains(&p.need) {
            Some(Clash::SameNeed)
        } else if mine.iter().any(|&other| needs[other].need.start < need.end && need.start < needs[other].need.end)
            || hours + need.hours() > volunteer.monthly_cap_hours + 1e-9
        {
            Some(Clash::Other)
        } else {
            None
        };
        match clash {
            Some(clash) => clashing.push((placed, clash)),
            None => {
                hours += need.hours();
                mine.push(p.need);
                kept.push(p);
            }
        }
    }
    (kept, clashing)
}

fn finish(mut pairings: Vec<Pairing>, places: usize) -> Settled {
    pairings.sort_by_key(|p| (p.need, p.volunteer));
    let total = pairings.iter().map(|p| p.cost).sum();
    let unfilled = places - pairings.len();
    Settled { pairings, total, unfilled }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matching::WeeklyRange;
    use crate::matching::tests::{at, zone};

    fn need(start: &str, end: &str) -> Need<'static> {
        Need { required_skills: &[], start: at(start), end: at(end), place: None, household: "" }
    }

    fn volunteer(hours: f64, cap: f64) -> Volunteer<'static> {
        Volunteer {
            skills: &[],
            availability: &[],
            home: None,
            hours_this_month: hours,
            monthly_cap_hours: cap,
            booked: &[],
            served_households: &[],
        }
    }

    const MORNING: (&str, &str) = ("2026-12-05T09:00:00+08:00", "2026-12-05T11:00:00+08:00");
    const LATE_MORNING: (&str, &str) = ("2026-12-05T10:00:00+08:00", "2026-12-05T12:00:00+08:00");
    const AFTERNOON: (&str, &str) = ("2026-12-05T14:00:00+08:00", "2026-12-05T16:00:00+08:00");

    fn planned(needs: &[Open<'_>], volunteers: &[Offer<'_>]) -> Plan {
        plan(needs, volunteers, &Weights::default(), zone(), Duration::from_secs(30)).expect("small")
    }

    #[test]
    fn the_matrix_kept_by_pair_reads_as_every_cell_kept() {
        // Volunteers of different loads and caps (one eligible for nothing), needs of one to
        // three places at different times.
        let volunteers: Vec<Offer<'_>> = (0..7)
            .map(|n| Offer {
                volunteer: volunteer(f64::from(n) * 3.0, if n == 6 { 1.0 } else { 20.0 }),
                slots: 1 + n as usize % 3,
            })
            .collect();
        let needs = [
            Open { need: need(MORNING.0, MORNING.1), places: 3 },
            Open { need: need(LATE_MORNING.0, LATE_MORNING.1), places: 1 },
            Open { need: need(AFTERNOON.0, AFTERNOON.1), places: 2 },
        ];
        let problem = Problem::new(&needs, &volunteers, &Weights::default(), zone()).expect("small");
        let (pairs, dense) =
            (problem.costs(&Bars::default()).expect("pairs"), problem.dense(&Bars::default()).expect("dense"));
        assert_eq!((pairs.rows(), pairs.columns()), (dense.rows(), dense.columns()));
        assert_eq!((pairs.rows(), pairs.columns()), (6, 12), "volunteer 6 is eligible for nothing: no slots");
        for r in 0..pairs.rows() {
            for c in 0..pairs.columns() {
                assert_eq!(pairs.get(r, c), dense.get(r, c), "({r}, {c})");
            }
        }
        assert_eq!(assign::optimal(&pairs), assign::optimal(&dense));
        assert_eq!(assign::greedy(&pairs), assign::greedy(&dense));
    }

    #[test]
    fn each_pair_costs_what_its_score_says_whatever_the_order_of_the_windows() {
        // Needs of three windows, in no order; volunteers free at some of them.
        let windows = [MORNING, AFTERNOON, LATE_MORNING, MORNING, AFTERNOON, MORNING];
        let needs: Vec<Open<'_>> = windows.iter().map(|w| Open { need: need(w.0, w.1), places: 1 }).collect();
        let free = [
            vec![WeeklyRange { weekday: 6, start_minute: 9 * 60, end_minute: 11 * 60 }],
            vec![WeeklyRange { weekday: 6, start_minute: 14 * 60, end_minute: 15 * 60 }],
            vec![],
            vec![
                WeeklyRange { weekday: 6, start_minute: 10 * 60, end_minute: 12 * 60 },
                WeeklyRange { weekday: 6, start_minute: 15 * 60, end_minute: 16 * 60 },
            ],
        ];
        let volunteers: Vec<Offer<'_>> = free
            .iter()
            .map(|f| Offer { volunteer: Volunteer { availability: f, ..volunteer(0.0, 40.0) }, slots: 1 })
            .collect();
        let problem = Problem::new(&needs, &volunteers, &Weights::default(), zone()).expect("small");
        let matcher = matching::Matcher::new(&Weights::default(), zone(), needs.iter().map(|n| &n.need));
        let mut costs = HashSet::new();
        for (i, n) in needs.iter().enumerate() {
            for (j, v) in volunteers.iter().enumerate() {
                let expected = assign::cost_of(matcher.total(&matcher.volunteer(v.volunteer), &matcher.need(n.need)));
                assert_eq!(problem.cost(i, j), Some(expected), "need {i}, volunteer {j}");
                costs.insert(expected);
            }
        }
        assert!(costs.len() >= 3, "the windows tell the volunteers apart: {costs:?}");
    }

    #[test]
    fn one_volunteer_never_takes_two_places_of_one_need_nor_two_at_once() {
        // Two places in the morning, one late in the morning, one in the afternoon; one
        // volunteer with four slots and plenty of hours.
        let needs = [
            Open { need: need(MORNING.0, MORNING.1), places: 2 },
            Open { need: need(LATE_MORNING.0, LATE_MORNING.1), places: 1 },
            Open { need: need(AFTERNOON.0, AFTERNOON.1), places: 1 },
        ];
        let volunteers = [Offer { volunteer: volunteer(0.0, 40.0), slots: 4 }];
        let p = planned(&needs, &volunteers);
        let needs_taken: Vec<usize> = p.best.pairings.iter().map(|x| x.need).collect();
        // One of the two overlapping morning needs, and the afternoon.
        assert_eq!(needs_taken.len(), 2, "{p:?}");
        assert!(needs_taken.contains(&2), "{p:?}");
        assert_eq!(p.best.unfilled, 2);
        assert!(p.rounds >= 2, "the first answer clashed and was settled: {p:?}");
        assert_eq!(p.greedy.pairings.len(), 2, "greedy's is settled too: {p:?}");
    }

    #[test]
    fn places_settling_took_back_go_to_the_volunteers_still_free() {
        // Twenty one-place needs at the same hour and place, thirty volunteers of three slots
        // each, the nearer the better: the optimum gives the nearest their three slots at once,
        // settling takes two back, and again each round. Every place is filled all the same,
        // each volunteer once.
        let place = (35.55, 106.66);
        let needs: Vec<Open<'_>> = (0..20)
            .map(|_| Open { need: Need { place: Some(place), ..need(MORNING.0, MORNING.1) }, places: 1 })
            .collect();
        let volunteers: Vec<Offer<'_>> = (0..30)
            .map(|j| Offer {
                volunteer: Volunteer { home: Some((place.0 + 0.001 * f64::from(j), place.1)), ..volunteer(0.0, 40.0) },
                slots: 3,
            })
            .collect();
        let p = planned(&needs, &volunteers);
        for plan in [&p.best, &p.greedy] {
            assert_eq!((plan.pairings.len(), plan.unfilled), (20, 0), "{p:?}");
            let mut who: Vec<usize> = plan.pairings.iter().map(|x| x.volunteer).collect();
            who.sort_unstable();
            who.dedup();
            assert_eq!(who.len(), 20, "one place each, as they are all at one hour: {p:?}");
        }
        // The twenty nearest, as the places are alike.
        assert!(p.best.pairings.iter().all(|x| x.volunteer < 20), "{p:?}");
    }

    #[test]
    fn the_plan_proposed_is_the_better_of_each_volunteer_once_first_and_every_slot_at_once() {
        // On a line east–west: need X at 0 km, need Y 3 km east; volunteer A (two slots) 1 km
        // east, B 1.2 km west. Costs follow distance alone.
        let east = |km: f64| (35.55, 106.66 + km / 90.57);
        let (a, b) = (0, 1);
        let volunteers = [
            Offer { volunteer: Volunteer { home: Some(east(1.0)), ..volunteer(0.0, 40.0) }, slots: 2 },
            Offer { volunteer: Volunteer { home: Some(east(-1.2)), ..volunteer(0.0, 40.0) }, slots: 2 },
        ];
        let at_place = |window: (&str, &str), km: f64| Open {
            need: Need { place: Some(east(km)), ..need(window.0, window.1) },
            places: 1,
        };
        let who = |p: &Plan| p.best.pairings.iter().map(|x| (x.need, x.volunteer)).collect::<Vec<_>>();
        // At the same hour: every slot at once gives A both (3 km), settling keeps A on X and bars
        // Y to them, and B walks 4.2 km to Y (5.2 km). Each volunteer once: A on Y, B on X (3.2).
        let crowded = planned(&[at_place(MORNING, 0.0), at_place(MORNING, 3.0)], &volunteers);
        assert_eq!(who(&crowded), vec![(0, b), (1, a)], "{crowded:?}");
        // At different hours A takes both (3 km), which each volunteer once cannot do.
        let spread = planned(&[at_place(MORNING, 0.0), at_place(AFTERNOON, 3.0)], &volunteers);
        assert_eq!(who(&spread), vec![(0, a), (1, a)], "{spread:?}");
        assert!(spread.best.total < crowded.best.total);
    }

    #[test]
    fn the_cap_holds_across_the_places_given() {
        // Two separate two-hour needs; a volunteer with 3 hours left can take one of them.
        let needs = [
            Open { need: need(MORNING.0, MORNING.1), places: 1 },
            Open { need: need(AFTERNOON.0, AFTERNOON.1), places: 1 },
        ];
        let volunteers = [Offer { volunteer: volunteer(17.0, 20.0), slots: 2 }];
        let p = planned(&needs, &volunteers);
        assert_eq!((p.best.pairings.len(), p.best.unfilled), (1, 1), "{p:?}");
    }

    #[test]
    fn the_plan_beats_greedy_where_greedy_spends_the_best_volunteer_first() {
        // The cook fits both needs best (no load either way), so greedy gives them to the first
        // need, which asks for nothing, and the need that asks for cooking gets the other
        // volunteer. The optimum swaps them.
        let skills = ["cooking".to_owned()];
        let needs = [
            Open { need: need(MORNING.0, MORNING.1), places: 1 },
            Open { need: Need { required_skills: &skills, ..need(AFTERNOON.0, AFTERNOON.1) }, places: 1 },
        ];
        let cook = Volunteer { skills: &skills, ..volunteer(0.0, 20.0) };
        let volunteers = [Offer { volunteer: cook, slots: 1 }, Offer { volunteer: volunteer(0.0, 20.0), slots: 1 }];
        let p = planned(&needs, &volunteers);
        assert!(p.optimal);
        assert_eq!((p.best.unfilled, p.greedy.unfilled), (0, 0));
        assert!(p.best.total < p.greedy.total, "{p:?}");
        let cook_goes_to: Vec<usize> = p.best.pairings.iter().filter(|x| x.volunteer == 0).map(|x| x.need).collect();
        assert_eq!(cook_goes_to, vec![1], "{p:?}");
        let greedy_cook: Vec<usize> = p.greedy.pairings.iter().filter(|x| x.volunteer == 0).map(|x| x.need).collect();
        assert_eq!(greedy_cook, vec![0], "{p:?}");
    }

    #[test]
    fn nobody_eligible_leaves_the_places_unfilled() {
        let needs = [Open { need: need(MORNING.0, MORNING.1), places: 3 }];
        let volunteers = [Offer { volunteer: volunteer(19.5, 20.0), slots: 3 }];
        let p = planned(&needs, &volunteers);
        assert_eq!((p.best.pairings.len(), p.best.unfilled, p.rounds), (0, 3, 1));
    }
}
