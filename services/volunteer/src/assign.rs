//! A community's open places given to volunteers all at once, at the minimum total cost: a
//! rectangular assignment problem (rows are places, columns are volunteers' free slots; a cell is
//! the cost of that volunteer in that place, or not allowed).
//!
//! The optimum comes from the Hungarian method (`pathfinding`'s `kuhn_munkres`, maximising the
//! negated costs the matrix keeps, so the matrix is never copied), on a thread of its own,
//! within a deadline; past the deadline the answer is greedy's (each place in
//! turn takes its cheapest free volunteer), flagged as such. Greedy's answer always comes
//! beside the chosen one, so staff see what optimising gained.
//!
//! A cell that is not allowed costs [`FORBIDDEN`], more than every allowed cell of the matrix
//! together: the optimum fills as many places as can be filled, and then costs least. A place
//! left with no allowed volunteer is reported unfilled.

use std::sync::Arc;
use std::time::Duration;

use pathfinding::kuhn_munkres::{Weights, kuhn_munkres};
use pathfinding::matrix::Matrix;

/// The cost of a score of 0; a score of 1 costs 0.
pub const SCALE: i64 = 10_000;

/// The most cells one problem may have (2,500 places × 10,000 slots): the matrix is kept twice
/// while solving, 8 bytes a cell.
pub const MAX_CELLS: usize = 25_000_000;

/// The cost of a cell that is not allowed: above [`SCALE`] times the most rows a problem can
/// have, so one such cell costs more than any set of allowed ones.
pub const FORBIDDEN: i64 = SCALE * MAX_CELLS as i64 + 1;

/// The cost of a pair whose score (0..=1, higher is better) is `score`.
pub fn cost_of(score: f64) -> i64 {
    let score = if score.is_nan() { 0.0 } else { score.clamp(0.0, 1.0) };
    // Rounded half up by a cast (the score is not negative): no call to the maths library.
    ((1.0 - score) * SCALE as f64 + 0.5) as i64
}

/// A problem too large to be solved in one go.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{rows} places × {columns} slots is more than {MAX_CELLS} pairs")]
pub struct TooLarge {
    /// Places.
    pub rows: usize,
    /// Slots.
    pub columns: usize,
}

/// The cost of every (place, slot) pair, kept as the Hungarian method reads it (negated: it
/// maximises; a pair not allowed is `-FORBIDDEN`), so nothing is copied for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Costs {
    rows: usize,
    columns: usize,
    cells: Cells,
}

/// How the costs are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cells {
    /// Every cell, negated.
    Dense(Matrix<i64>),
    /// A batch's places are its needs' places over again: the cost of each (need, slot) pair
    /// once (`NOT_ALLOWED` where not allowed), need by need, and for each place its need — two
    /// bytes a pair rather than eight a cell, read with one look-up more than every cell kept.
    /// For each slot its volunteer, too: a volunteer's slots are alike to greedy.
    Pairs { slots: Arc<Vec<u16>>, needs_of: Arc<Vec<u32>>, volunteers_of: Arc<Vec<u32>> },
}

/// In [`Costs::pairs`], a pair that is not allowed.
pub const NOT_ALLOWED: u16 = u16::MAX;

impl Costs {
    /// The matrix of `rows` places × `columns` slots whose cell is `cell(row, column)`: a cost in
    /// 0..=[`SCALE`], or `None` when the pair is not allowed. Filled on as many threads as the
    /// machine has, each a band of rows.
    pub fn new(
        rows: usize,
        columns: usize,
        cell: impl Fn(usize, usize) -> Option<i64> + Sync,
    ) -> Result<Self, TooLarge> {
        Self::from_rows(rows, columns, |r, out| {
            for (c, value) in out.iter_mut().enumerate() {
                *value = cell(r, c).unwrap_or(FORBIDDEN);
            }
        })
    }

    /// The matrix of `rows` places × `columns` slots whose row `r` `fill(r, row)` writes: a cost
    /// in 0..=[`SCALE`] per slot, or [`FORBIDDEN`] where the pair is not allowed. Filled on as
    /// many threads as the machine has, each a band of rows.
    pub fn from_rows(rows: usize, columns: usize, fill: impl Fn(usize, &mut [i64]) + Sync) -> Result<Self, TooLarge> {
        if rows.saturating_mul(columns) > MAX_CELLS {
            return Err(TooLarge { rows, columns });
        }
        let mut cells = vec![0; rows * columns];
        if !cells.is_empty() {
            let threads = std::thread::available_parallelism().map_or(1, usize::from).clamp(1, 8);
            let band = rows.div_ceil(threads);
            let fill = &fill;
            std::thread::scope(|scope| {
                for (n, out) in cells.chunks_mut(band * columns).enumerate() {
                    scope.spawn(move || {
                        for (i, row) in out.chunks_mut(columns).enumerate() {
                            fill(n * band + i, row);
                            for value in row.iter_mut() {
                                *value = if *value == FORBIDDEN { -FORBIDDEN } else { -(*value).clamp(0, SCALE) };
                            }
                        }
                    });
                }
            });
        }
        // A matrix without rows or without columns holds nothing (and its shape is ours to keep).
        let cells = if cells.is_empty() {
            Matrix::new_empty(0)
        } else {
            Matrix::from_vec(rows, columns, cells).expect("rows × columns cells, by construction")
        };
        Ok(Self { rows, columns, cells: Cells::Dense(cells) })
    }

    /// The costs of a batch kept by pair: `pairs` holds, need by need, each of `volunteers`
    /// volunteers' cost (0..=[`SCALE`], or [`NOT_ALLOWED`]); place `r` is a place of need
    /// `needs_of[r]` and slot `c` one of volunteer `volunteers_of[c]`. Kept as they are when
    /// every volunteer has one slot, in order; else spread over the slots once (at most
    /// [`MAX_CELLS`] pairs: there are no more needs than places), so the solver never looks a
    /// slot's volunteer up.
    pub fn pairs(
        pairs: Arc<Vec<u16>>,
        volunteers: usize,
        needs_of: Arc<Vec<u32>>,
        volunteers_of: Arc<Vec<u32>>,
    ) -> Result<Self, TooLarge> {
        let (rows, columns) = (needs_of.len(), volunteers_of.len());
        if rows.saturating_mul(columns) > MAX_CELLS {
            return Err(TooLarge { rows, columns });
        }
        let needs = pairs.len().checked_div(volunteers).unwrap_or(0);
        let inside =
            needs_of.iter().all(|&n| (n as usize) < needs) && volunteers_of.iter().all(|&v| (v as usize) < volunteers);
        assert!(inside, "every place of a need and every slot of a volunteer of the pairs");
        let pairs = if pairs.iter().all(|&p| p == NOT_ALLOWED || i64::from(p) <= SCALE) {
            pairs
        } else {
            Arc::new(pairs.iter().map(|&p| if p == NOT_ALLOWED { p } else { p.min(SCALE as u16) }).collect())
        };
        let one_slot_each = columns == volunteers && volunteers_of.iter().enumerate().all(|(c, &v)| v as usize == c);
        let slots = if one_slot_each || columns == 0 {
            pairs
        } else {
            let mut slots = Vec::with_capacity(needs * columns);
            for row in pairs.chunks_exact(volunteers) {
                slots.extend(volunteers_of.iter().map(|&v| row[v as usize]));
            }
            Arc::new(slots)
        };
        Ok(Self { rows, columns, cells: Cells::Pairs { slots, needs_of, volunteers_of } })
    }

    /// The negated cost of the pair (`-FORBIDDEN` when not allowed).
    fn profit(&self, row: usize, column: usize) -> i64 {
        match &self.cells {
            Cells::Dense(m) => m[(row, column)],
            Cells::Pairs { slots, needs_of, .. } => {
                let cost = slots[needs_of[row] as usize * self.columns + column];
                // Kept within 0..=SCALE by `Costs::pairs`.
                if cost == NOT_ALLOWED { -FORBIDDEN } else { -i64::from(cost) }
            }
        }
    }

    /// Places.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Slots.
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// The cost of the pair, `None` when it is not allowed.
    pub fn get(&self, row: usize, column: usize) -> Option<i64> {
        let profit = self.profit(row, column);
        (profit != -FORBIDDEN).then_some(-profit)
    }

    fn plan(&self, columns: Vec<Option<usize>>, optimal: bool) -> Plan {
        let columns: Vec<Option<usize>> =
            columns.into_iter().enumerate().map(|(r, c)| c.filter(|&c| self.get(r, c).is_some())).collect();
        let total = columns.iter().enumerate().filter_map(|(r, c)| c.and_then(|c| self.get(r, c))).sum();
        let filled = columns.iter().filter(|c| c.is_some()).count();
        Plan { columns, total, filled, optimal }
    }
}

/// Who takes which place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// For each place, its slot; `None` when no allowed slot was left for it.
    pub columns: Vec<Option<usize>>,
    /// The cost of the filled places.
    pub total: i64,
    /// How many places are filled.
    pub filled: usize,
    /// Whether it is the optimum (otherwise greedy's).
    pub optimal: bool,
}

/// What [`solve`] proposes: the best plan it found in time, and greedy's beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// The optimum, or greedy's plan when the deadline passed first.
    pub best: Plan,
    /// Greedy's plan.
    pub greedy: Plan,
}

/// Costs kept by pair as the Hungarian method reads them: each place's row of slots, found
/// once; profits (negated costs) unless `negated`.
struct ByPlace<'a> {
    rows: Vec<&'a [u16]>,
    columns: usize,
    negated: bool,
}

impl<'a> ByPlace<'a> {
    fn new(slots: &'a [u16], needs_of: &[u32], columns: usize) -> Self {
        let rows = needs_of.iter().map(|&n| &slots[n as usize * columns..(n as usize + 1) * columns]).collect();
        Self { rows, columns, negated: false }
    }
}

impl Weights<i64> for ByPlace<'_> {
    fn rows(&self) -> usize {
        self.rows.len()
    }

    fn columns(&self) -> usize {
        self.columns
    }

    #[inline]
    fn at(&self, row: usize, col: usize) -> i64 {
        let cost = self.rows[row][col];
        // Kept within 0..=SCALE by `Costs::pairs`.
        let profit = if cost == NOT_ALLOWED { -FORBIDDEN } else { -i64::from(cost) };
        if self.negated { -profit } else { profit }
    }

    fn neg(&self) -> Self {
        Self { rows: self.rows.clone(), columns: self.columns, negated: !self.negated }
    }
}

/// Each place in turn takes its cheapest slot still free (the first of equals).
pub fn greedy(costs: &Costs) -> Plan {
    if let Cells::Pairs { slots, needs_of, volunteers_of } = &costs.cells {
        return costs.plan(greedy_by_pair(slots, needs_of, volunteers_of), false);
    }
    let mut taken = vec![false; costs.columns];
    let mut columns = Vec::with_capacity(costs.rows);
    for r in 0..costs.rows {
        let best = (0..costs.columns)
            .map(|c| (c, costs.profit(r, c)))
            .filter(|&(c, profit)| !taken[c] && profit != -FORBIDDEN)
            .min_by_key(|&(c, profit)| (-profit, c))
            .map(|(c, _)| c);
        if let Some(c) = best {
            taken[c] = true;
        }
        columns.push(best);
    }
    costs.plan(columns, false)
}

/// [`greedy`] on costs kept by pair: a volunteer's slots are alike to a need, so each place
/// looks at each volunteer once (the cost of their next free slot), not at every slot; the
/// first of equals is still the slot of the lowest column.
fn greedy_by_pair(costs: &[u16], needs_of: &[u32], volunteers_of: &[u32]) -> Vec<Option<usize>> {
    let width = volunteers_of.len();
    // Runs of slots of one volunteer: (first column, slots).
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut last = None;
    for (c, &v) in volunteers_of.iter().enumerate() {
        match runs.last_mut() {
            Some((_, slots)) if last == Some(v) => *slots += 1,
            _ => runs.push((c, 1)),
        }
        last = Some(v);
    }
    let mut used = vec![0; runs.len()];
    let mut columns = Vec::with_capacity(needs_of.len());
    for &need in needs_of {
        let row = &costs[need as usize * width..(need as usize + 1) * width];
        let mut best: Option<(u16, usize, usize)> = None; // (cost, column, run)
        for (k, &(first, slots)) in runs.iter().enumerate() {
            let cost = row[first];
            if cost == NOT_ALLOWED || used[k] == slots {
                continue;
            }
            let column = first + used[k];
            if best.is_none_or(|(b, bc, _)| (cost, column) < (b, bc)) {
                best = Some((cost, column, k));
            }
        }
        columns.push(best.map(|(_, column, k)| {
            used[k] += 1;
            column
        }));
    }
    columns
}

/// The plan of least total cost among those that fill the most places.
pub fn optimal(costs: &Costs) -> Plan {
    if costs.rows == 0 || costs.columns == 0 {
        return costs.plan(vec![None; costs.rows], true);
    }
    let columns = if costs.rows <= costs.columns {
        // The method reads each cell many times: it is given the costs as kept, so that no
        // read asks how they are kept.
        let found = match &costs.cells {
            Cells::Dense(matrix) => kuhn_munkres(matrix).1,
            Cells::Pairs { slots, needs_of, .. } => kuhn_munkres(&ByPlace::new(slots, needs_of, costs.columns)).1,
        };
        found.into_iter().map(Some).collect()
    } else {
        // More places than slots: the method wants no more rows than columns, so slots choose.
        let mut transposed = Vec::with_capacity(costs.rows * costs.columns);
        for c in 0..costs.columns {
            transposed.extend((0..costs.rows).map(|r| costs.profit(r, c)));
        }
        let matrix = Matrix::from_vec(costs.columns, costs.rows, transposed)
            .expect("the cells are columns × rows, by construction");
        let mut columns = vec![None; costs.rows];
        for (c, r) in kuhn_munkres(&matrix).1.into_iter().enumerate() {
            columns[r] = Some(c);
        }
        columns
    };
    costs.plan(columns, true)
}

/// The optimum if it is found within `deadline`, else greedy's plan; greedy's plan beside it
/// either way (a zero deadline asks for greedy's alone). The search runs on a thread of its own
/// and a search that passes the deadline runs on to its end there (bounded by [`MAX_CELLS`])
/// and is dropped. This call blocks: from async code, call it on a blocking thread
/// (`tokio::task::spawn_blocking`), never on a runtime worker.
pub fn solve(costs: Costs, deadline: Duration) -> Proposal {
    let costs = Arc::new(costs);
    if deadline.is_zero() {
        let greedy = greedy(&costs);
        return Proposal { best: greedy.clone(), greedy };
    }
    let until = std::time::Instant::now() + deadline;
    let (sender, found) = std::sync::mpsc::channel();
    let search = costs.clone();
    let started = std::thread::Builder::new().name("civic-assign".into()).spawn(move || {
        // The receiver is gone when the deadline passed first: nothing waits for the answer.
        let _ = sender.send(optimal(&search));
    });
    // Greedy's plan while the search runs. Once the deadline has passed the answer is greedy's,
    // even if the search happens to have finished meanwhile: the deadline is the rule.
    let greedy = greedy(&costs);
    let left = until.saturating_duration_since(std::time::Instant::now());
    let best = match started {
        Ok(_) if !left.is_zero() => found.recv_timeout(left).unwrap_or_else(|_| greedy.clone()),
        _ => greedy.clone(),
    };
    Proposal { best, greedy }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stream of numbers (xorshift).
    fn numbers(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    /// A matrix of `rows` × `columns` with costs in 0..=SCALE and about `forbidden` in ten pairs
    /// not allowed.
    fn random(seed: u64, rows: usize, columns: usize, forbidden: u64) -> Costs {
        let mut next = numbers(seed);
        let drawn: Vec<u64> = (0..rows * columns).map(|_| next()).collect();
        Costs::new(rows, columns, |r, c| {
            let n = drawn[r * columns + c];
            (n % 10 >= forbidden).then_some((n >> 8) as i64 % (SCALE + 1))
        })
        .expect("small")
    }

    /// The same problem solved by another method (shortest augmenting paths, as SciPy's):
    /// (places filled, their total cost).
    fn by_lsap(costs: &Costs) -> (usize, i64) {
        let (rows, columns) = (costs.rows(), costs.columns());
        let cells: Vec<f64> = (0..rows).flat_map(|r| (0..columns).map(move |c| -costs.profit(r, c) as f64)).collect();
        let (found_rows, found_columns) = lsap::solve(rows, columns, &cells, false).expect("solvable");
        let allowed: Vec<i64> = found_rows.iter().zip(&found_columns).filter_map(|(&r, &c)| costs.get(r, c)).collect();
        (allowed.len(), allowed.iter().sum())
    }

    #[test]
    fn the_optimum_equals_an_independent_solvers() {
        for seed in 1..=60u64 {
            let (rows, columns) = (1 + (seed as usize * 7) % 23, 1 + (seed as usize * 11) % 29);
            let costs = random(seed, rows, columns, seed % 4);
            let plan = optimal(&costs);
            assert!(plan.optimal);
            assert_eq!((plan.filled, plan.total), by_lsap(&costs), "seed {seed}: {rows} × {columns}");
            // A slot serves one place at most, and only where allowed.
            let mut used: Vec<usize> = plan.columns.iter().flatten().copied().collect();
            used.sort_unstable();
            used.dedup();
            assert_eq!(used.len(), plan.filled, "seed {seed}");
            let greedy = greedy(&costs);
            assert!(greedy.filled <= plan.filled, "seed {seed}");
            if greedy.filled == plan.filled {
                assert!(plan.total <= greedy.total, "seed {seed}");
            }
        }
    }

    #[test]
    fn costs_kept_by_pair_give_the_plans_of_every_cell_kept() {
        for seed in 1..=30u64 {
            let mut next = numbers(seed);
            let (needs, volunteers) = (1 + seed as usize % 7, 1 + seed as usize % 9);
            let pairs: Vec<u16> = (0..needs * volunteers)
                .map(|_| {
                    let n = next();
                    if n.is_multiple_of(5) { NOT_ALLOWED } else { (n >> 8) as u16 % (SCALE as u16 + 1) }
                })
                .collect();
            // Each need one to three places; each volunteer one to three slots (one each for a
            // seed in four: the pairs are then read as they are kept).
            let needs_of: Vec<u32> = (0..needs).flat_map(|i| std::iter::repeat_n(i as u32, 1 + i % 3)).collect();
            let slots = |j: usize| if seed % 4 == 0 { 1 } else { 1 + (j + seed as usize) % 3 };
            let volunteers_of: Vec<u32> =
                (0..volunteers).flat_map(|j| std::iter::repeat_n(j as u32, slots(j))).collect();
            let cost = |r: usize, c: usize| {
                let p = pairs[needs_of[r] as usize * volunteers + volunteers_of[c] as usize];
                (p != NOT_ALLOWED).then_some(i64::from(p))
            };
            let dense = Costs::new(needs_of.len(), volunteers_of.len(), cost).expect("small");
            let kept = Costs::pairs(
                Arc::new(pairs.clone()),
                volunteers,
                Arc::new(needs_of.clone()),
                Arc::new(volunteers_of.clone()),
            )
            .expect("small");
            assert_eq!(greedy(&kept), greedy(&dense), "seed {seed}");
            assert_eq!(optimal(&kept).total, optimal(&dense).total, "seed {seed}");
            // What the method reads of the kept costs is every cell's profit, and its negation.
            if let Cells::Pairs { slots, needs_of, .. } = &kept.cells {
                let view = ByPlace::new(slots, needs_of, kept.columns());
                let negated = view.neg();
                for (r, c) in (0..kept.rows()).flat_map(|r| (0..kept.columns()).map(move |c| (r, c))) {
                    assert_eq!((view.at(r, c), negated.at(r, c)), (dense.profit(r, c), -dense.profit(r, c)));
                }
            }
        }
    }

    #[test]
    fn greedy_takes_the_first_cheap_pair_and_the_optimum_does_better() {
        let table = [[1, 2], [2, 100]];
        let costs = Costs::new(2, 2, |r, c| Some(table[r][c])).expect("small");
        let g = greedy(&costs);
        assert_eq!((g.columns.clone(), g.total, g.optimal), (vec![Some(0), Some(1)], 101, false));
        let o = optimal(&costs);
        assert_eq!((o.columns, o.total, o.optimal), (vec![Some(1), Some(0)], 4, true));
    }

    #[test]
    fn places_that_cannot_be_filled_are_left_open_and_the_rest_filled() {
        // Place 0 may take only slot 0, place 1 nothing, place 2 slot 0 or 1.
        let allowed = [[Some(5), None], [None, None], [Some(1), Some(9)]];
        let costs = Costs::new(3, 2, |r, c| allowed[r][c]).expect("small");
        let o = optimal(&costs);
        assert_eq!((o.columns, o.filled, o.total), (vec![Some(0), None, Some(1)], 2, 14));
        // Greedy fills the same here but in another order it need not: place 2 first.
        let flipped = Costs::new(2, 2, |r, c| [[Some(1), Some(9)], [Some(5), None]][r][c]).expect("small");
        let (g, o) = (greedy(&flipped), optimal(&flipped));
        assert_eq!((g.filled, o.filled, o.total), (1, 2, 14));
    }

    #[test]
    fn past_the_deadline_greedy_answers_and_says_so() {
        let costs = random(7, 40, 80, 2);
        let on_time = solve(costs.clone(), Duration::from_secs(30));
        assert!(on_time.best.optimal);
        assert_eq!(on_time.greedy, greedy(&costs));
        assert!(on_time.best.total <= on_time.greedy.total || on_time.best.filled > on_time.greedy.filled);
        let none = solve(costs, Duration::ZERO);
        assert!(!none.best.optimal);
        assert_eq!(none.best, none.greedy);
        // A deadline that passes while greedy's plan is worked out (a nanosecond) is not waited
        // past, whatever the search's thread did meanwhile.
        let late = solve(random(11, 300, 600, 3), Duration::from_nanos(1));
        assert!(!late.best.optimal);
        assert_eq!(late.best, late.greedy);
    }

    #[test]
    fn costs_are_bounded_and_too_large_a_problem_is_refused() {
        assert_eq!(
            (cost_of(1.0), cost_of(0.0), cost_of(0.25), cost_of(f64::NAN), cost_of(7.0)),
            (0, SCALE, 7500, SCALE, 0)
        );
        assert_eq!(Costs::new(5_001, 5_000, |_, _| Some(0)), Err(TooLarge { rows: 5_001, columns: 5_000 }));
        let costs = Costs::new(1, 3, |_, c| Some([-5, 3, 20_000][c])).expect("small");
        assert_eq!((costs.get(0, 0), costs.get(0, 2)), (Some(0), Some(SCALE)));
    }
}
