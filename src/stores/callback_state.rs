//! The rules for forgetting a callback, which every store holding callbacks follows: a `sqlite`, `postgres` or
//! `mysql` table with a `state` column, and the `callback-http` service. A callback a dialer may be working on
//! ([`IN_FLIGHT`]) is cancelled first, and the cancel committed (or, for a service, confirmed), before it is
//! deleted, so that no dialer calls a person whose data was just forgotten.

/// States in which a dialer may be working on a callback: cancelled before the forget deletes them.
pub(crate) const IN_FLIGHT: [&str; 3] = ["PROCESSING", "QUEUED", "ROUTING"];

/// The state a cancelled callback is in (and that a store writes when it cancels one).
pub(crate) const CANCELLED: &str = "CANCELLED";

/// States in which a callback is deleted at once, nobody working on it.
pub(crate) const DELETABLE: [&str; 3] = ["SCHEDULED", "COMPLETED", CANCELLED];

/// Whether a callback in `state` must be cancelled before it is deleted.
pub(crate) fn is_in_flight(state: &str) -> bool {
    IN_FLIGHT.contains(&state)
}

/// Whether a callback in `state` can be deleted at once.
pub(crate) fn is_deletable(state: &str) -> bool {
    DELETABLE.contains(&state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_state_is_both_in_flight_and_deletable() {
        assert!(IN_FLIGHT.iter().all(|s| !is_deletable(s)));
        assert!(is_deletable(CANCELLED) && !is_in_flight(CANCELLED));
    }
}
