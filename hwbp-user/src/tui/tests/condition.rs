//! A target with a condition: the details panel names it with the hits it
//! rejected (the targets table's HITS counts only the hits kept).

use super::{S, T0, exited_app, screen};
use crate::output::stats::Stats;

#[test]
fn the_details_name_the_condition_and_its_rejected_hits() {
    let mut app = exited_app();
    app.targets[0].condition = Some("value != old".into());
    let mut stats: Stats = app.view.clone();
    stats.counters[0].cond_rejected = 7;
    app.refresh(stats, T0 + 2 * S);
    let text = screen(&app, 120, 32);
    assert!(
        text.contains("HWBP_FX_COUNTER:w · rejected 7 · if value != old · user w"),
        "the condition and its 7 rejected hits in the details title:\n{text}"
    );
}
