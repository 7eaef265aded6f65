//! Quantiles for the benches.

use std::time::Duration;

/// p50, p99 and max of `ds`, in ms (nearest rank); `None` when empty.
pub fn quantiles_ms(mut ds: Vec<Duration>) -> Option<(f64, f64, f64)> {
    ds.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| ds[((ds.len() as f64 * q).ceil() as usize).clamp(1, ds.len()) - 1];
    (!ds.is_empty()).then(|| (ms(at(0.5)), ms(at(0.99)), ms(*ds.last().unwrap())))
}
